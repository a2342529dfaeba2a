import DroverProtocol
import Foundation
import Testing

/// The hand-written segment JSON (`UnitSegment.encodedJSON`) against Foundation's encoder.
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
}
