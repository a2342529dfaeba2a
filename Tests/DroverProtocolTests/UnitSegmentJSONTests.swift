import Foundation
import Testing

@testable import DroverProtocol

/// The hand-written segment JSON (`UnitSegment.encodedJSON`, `UnitSegment.decodedJSON`) against
/// Foundation's encoder and decoder.
@Suite("Unit segments' hand-written JSON")
struct UnitSegmentJSONTests {
    /// A small deterministic generator (the same segments every run).
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state ^ (state >> 29)
        }
    }

    static let alphabet: [String] = ["a", "Z", "0", "/", "\"", "\\", "\n", "\r", "\t", "\u{0}", "\u{1}", "\u{8}", "\u{c}", "\u{1f}", " ", "é", "日", "😀", "e\u{301}", "\u{7f}", "\u{2028}", "{", ":"]

    func text(_ random: inout Generator, maximum: Int = 12) -> String {
        (0..<Int.random(in: 0...maximum, using: &random)).map { _ in Self.alphabet.randomElement(using: &random)! }.joined()
    }

    func value(_ random: inout Generator, depth: Int = 0) -> JSONValue {
        switch Int.random(in: 0...(depth > 2 ? 3 : 5), using: &random) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &random))
        case 2:
            let numbers: [Double] = [0, -0.0, 1, -1, 0.1, 1e21, 1e-7, 123_456_789_012, 9_007_199_254_740_993, -2.5, Double.greatestFiniteMagnitude, 3.141592653589793]
            return .number(numbers.randomElement(using: &random)!)
        case 3: return .string(text(&random))
        case 4: return .array((0..<Int.random(in: 0...3, using: &random)).map { _ in value(&random, depth: depth + 1) })
        default:
            var fields: [String: JSONValue] = [:]
            for _ in 0..<Int.random(in: 0...3, using: &random) { fields[text(&random, maximum: 4)] = value(&random, depth: depth + 1) }
            return .object(fields)
        }
    }

    func segment(_ random: inout Generator) -> UnitSegment {
        UnitSegment(
            units: (0..<Int.random(in: 0...20, using: &random)).map { index in
                var unit = WorkUnit(key: "k\(index)" + text(&random), data: Bool.random(using: &random) ? value(&random) : nil)
                unit.state = UnitState.allCases.randomElement(using: &random)!
                unit.attempts = Int.random(in: 0...101, using: &random)
                if Bool.random(using: &random) {
                    unit.lease = UnitLease(executor: text(&random), claim: text(&random), until: Int64.random(in: 0...Int64.max, using: &random))
                }
                if Bool.random(using: &random) {
                    unit.last = UnitAttempt(
                        executor: text(&random), startedAt: Int64.random(in: -5...Int64.max, using: &random),
                        endedAt: Bool.random(using: &random) ? Int64.random(in: 0...1 << 50, using: &random) : nil,
                        outcome: [nil, .finished, .failed, .expired].randomElement(using: &random)!,
                        error: Bool.random(using: &random) ? text(&random, maximum: 40) : nil,
                        result: Bool.random(using: &random) ? value(&random) : nil)
                }
                if Int.random(in: 0..<3, using: &random) == 0 {
                    unit.earlier = (0..<Int.random(in: 0...4, using: &random)).map { _ in
                        UnitAttempt(
                            executor: text(&random), startedAt: Int64.random(in: 0...1 << 50, using: &random),
                            endedAt: Int64.random(in: 0...1 << 50, using: &random), outcome: [.failed, .expired].randomElement(using: &random)!,
                            error: Bool.random(using: &random) ? text(&random, maximum: 40) : nil)
                    }
                }
                return unit
            })
    }

    /// Read back, it is what Foundation's encoding reads back as, for thousands of segments with
    /// every escape, multi-byte characters and awkward numbers; and it is never longer.
    @Test func itReadsBackAsFoundationsEncodingDoesAndIsNeverLonger() throws {
        var random = Generator(state: 42)
        for _ in 0..<2_000 {
            let segment = segment(&random)
            let mine = segment.encodedJSON()
            let foundations = try Codec.encode(segment)
            #expect(try Codec.decode(UnitSegment.self, mine) == Codec.decode(UnitSegment.self, foundations), "\(String(decoding: mine, as: UTF8.self))")
            #expect(mine.count <= foundations.count)
            // Any JSON reader takes it (Foundation's untyped parser, as another language's would).
            #expect((try? JSONSerialization.jsonObject(with: Data(mine))) != nil)
        }
    }

    /// A plain segment (no slash to escape, whole numbers) is the very bytes Foundation writes.
    @Test func aPlainSegmentIsTheSameBytes() throws {
        var unit = WorkUnit(key: "img-7.png", data: ["size": 64, "tags": ["a", "b"], "ok": true, "none": .null])
        unit.state = .pending
        unit.attempts = 2
        unit.lease = UnitLease(executor: "e1", claim: "e1.123", until: 1_733_300_000_000)
        unit.last = UnitAttempt(executor: "e1", startedAt: 1_733_299_000_000, outcome: .failed, error: "exit 1: \"no\"\n", result: ["n": 1])
        let segment = UnitSegment(units: [unit, WorkUnit(key: "plain")])
        #expect(String(decoding: segment.encodedJSON(), as: UTF8.self) == String(decoding: try Codec.encode(segment), as: UTF8.self))
    }

    /// The scanner itself, without the fallback to Foundation (nil: it gave up).
    static func scanned(_ bytes: [UInt8]) -> UnitSegment? { JSONScanner.whole(bytes) { $0.segment() } }

    /// The scanner reads both encoders' output itself (no fallback), into what Foundation reads.
    @Test func theScannerReadsWhatFoundationReads() throws {
        var random = Generator(state: 7)
        for _ in 0..<2_000 {
            let segment = segment(&random)
            for bytes in [segment.encodedJSON(), try Codec.encode(segment)] {
                let foundations = try Codec.decode(UnitSegment.self, bytes)
                let scanned = Self.scanned(bytes)
                #expect(scanned == foundations, "\(String(decoding: bytes, as: UTF8.self))")
                #expect(try UnitSegment.decodedJSON(bytes) == foundations)
            }
        }
    }

    /// Input another program could write: what the scanner reads, Foundation reads the same; what
    /// it gives up on, Foundation reads or refuses, and decodedJSON does just as Foundation does.
    @Test func oddInputIsReadAsFoundationReadsIt() throws {
        let unit = #"{"attempts":1,"key":"k","state":"pending","lease":{"claim":"c","executor":"e","until":5}}"#
        let cases: [(json: String, scanned: Bool)] = [
            (#"{"format":1,"units":[\#(unit)]}"#, true),
            (" {\n \"units\" : [ \(unit) ] ,\t\"format\" : 1 } \n", true),  // space anywhere, keys in any order
            (#"{"format":1,"units":[],"extra":{"a":[1,2,{"b":null}]}}"#, true),  // unknown keys skipped
            (#"{"format":1,"units":[{"attempts":0,"key":"k","state":"available","data":null,"last":null,"lease":null}]}"#, true),
            (#"{"format":1,"units":[{"attempts":0,"key":"\u00e9\ud83d\ude00\/\u0000","state":"available","data":{"n":-1.5e3,"z":-0,"t":true}}]}"#, true),
            (#"{"format":1,"units":[{"attempts":1.0,"key":"k","state":"available"}]}"#, false),  // a fraction where an integer belongs
            (#"{"format":2,"units":[]}"#, false),  // a newer format: refused by Foundation's reader with its message
            (#"{"format":1,"units":[{"attempts":0,"key":"k","state":"lost"}]}"#, false),
            (#"{"format":1,"units":[{"attempts":0,"key":"k"}]}"#, false),
            (#"{"format":1,"format":1,"units":[]}"#, false),  // a key twice
            (#"{"format":1,"units":[{"attempts":99999999999999999999,"key":"k","state":"available"}]}"#, false),
            (#"{"format":1,"units":[{"attempts":0,"key":"\ud83d","state":"available"}]}"#, false),  // half a surrogate pair
            (#"{"format":1,"units":[{"attempts":0,"key":"k","state":"available","data":1e999}]}"#, false),
            (#"{"format":1,"units":[{"attempts":0,"key":"k","state":"available","data":1e-400}]}"#, false),  // not zero, too small
            (#"{"format":1,"units":[]"#, false),
            (#"{"format":1,"units":[]} x"#, false),
            ("{\"format\":1,\"units\":[{\"attempts\":0,\"key\":\"a\u{1}b\",\"state\":\"available\"}]}", false),  // a raw control character
            (#"{"format":1,"units":[{"attempts":0,"key":"k","state":"available","data":"# + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}]}", false),
        ]
        for (json, scannedByHand) in cases {
            let bytes = Array(json.utf8)
            let scanned = Self.scanned(bytes)
            #expect((scanned != nil) == scannedByHand, "\(json)")
            let foundations = Result { try Codec.decode(UnitSegment.self, bytes) }
            let mine = Result { try UnitSegment.decodedJSON(bytes) }
            switch (foundations, mine) {
            case (.success(let expected), .success(let actual)):
                #expect(actual == expected, "\(json)")
                if let scanned { #expect(scanned == expected, "\(json)") }
            case (.failure, .failure): break
            default: Issue.record("\(json): Foundation \(foundations), decodedJSON \(mine)")
            }
        }
        // Bytes that are not UTF-8 inside a string.
        let invalid = Array(#"{"format":1,"units":[{"attempts":0,"key":"#.utf8) + [0x22, 0xC3, 0x28, 0x22] + Array(#","state":"available"}]}"#.utf8)
        #expect(Self.scanned(invalid) == nil)
        #expect(throws: (any Error).self) { try UnitSegment.decodedJSON(invalid) }
    }

    func bucket(_ random: inout Generator) -> UnitBucket {
        UnitBucket(
            nextSegment: Int.random(in: 0...1_000, using: &random),
            segments: (0..<Int.random(in: 0...30, using: &random)).map { index in
                var counts = UnitCounts()
                for state in UnitState.allCases { counts[state] = Int.random(in: 0...400, using: &random) }
                return UnitBucket.Segment(
                    name: String(format: "%06d", index) + (Bool.random(using: &random) ? text(&random, maximum: 3) : ""), counts: counts,
                    room: Int.random(in: 0...300, using: &random),
                    leaseEnds: Bool.random(using: &random) ? Int64.random(in: 0...Int64.max, using: &random) : nil,
                    holders: Bool.random(using: &random) ? (0..<Int.random(in: 1...4, using: &random)).map { _ in text(&random, maximum: 6) } : nil)
            })
    }

    /// A bucket's index, written by hand, reads back (by Foundation and by the scanner alone) as
    /// itself; a plain one is Foundation's very bytes.
    @Test func bucketIndexesGoBothWays() throws {
        var random = Generator(state: 11)
        for _ in 0..<1_000 {
            let bucket = bucket(&random)
            let mine = bucket.encodedJSON()
            let foundations = try Codec.encode(bucket)
            #expect(try Codec.decode(UnitBucket.self, mine) == bucket, "\(String(decoding: mine, as: UTF8.self))")
            #expect(mine.count <= foundations.count)
            for bytes in [mine, foundations] {
                #expect(JSONScanner.whole(bytes, { $0.bucket() }) == bucket, "\(String(decoding: bytes, as: UTF8.self))")
            }
        }
        var counts = UnitCounts()
        counts.available = 3
        counts.pending = 1
        let plain = UnitBucket(nextSegment: 2, segments: [.init(name: "000000", counts: counts, room: 12, leaseEnds: 1_733_300_000_000, holders: ["e1", "e2"]), .init(name: "000001")])
        #expect(String(decoding: plain.encodedJSON(), as: UTF8.self) == String(decoding: try Codec.encode(plain), as: UTF8.self))
        // A count missing, or a newer format: left to Foundation, which refuses both.
        #expect(throws: (any Error).self) { try UnitBucket.decodedJSON(Array(#"{"format":1,"nextSegment":0,"segments":[{"counts":{"available":1},"name":"a","room":0}]}"#.utf8)) }
        #expect(throws: (any Error).self) { try UnitBucket.decodedJSON(Array(#"{"format":2,"nextSegment":0,"segments":[]}"#.utf8)) }
    }
}
