/// A segment's JSON read by hand. Every claim and every batch of ends reads a whole segment
/// first, and Foundation's `JSONDecoder` took a third of an executor's CPU in the million-unit
/// benchmark (docs/PERFORMANCE.md). The scanner reads what `Codec.decode` reads, into the same
/// segment; anything it does not expect (a newer format, a wrong type, a fraction where an
/// integer belongs, a key twice, bad UTF-8) sends the bytes to `Codec.decode`, which reads or
/// refuses them with its own error. `UnitSegmentJSONTests` checks both agree.
extension UnitSegment {
    /// The segment in `bytes`, read by the hand-written scanner, else by `Codec.decode`.
    public static func decodedJSON(_ bytes: [UInt8]) throws -> UnitSegment {
        try JSONScanner.whole(bytes) { $0.segment() } ?? Codec.decode(UnitSegment.self, bytes)
    }
}

extension UnitBucket {
    /// The bucket's index in `bytes`, read by the hand-written scanner, else by `Codec.decode`.
    public static func decodedJSON(_ bytes: [UInt8]) throws -> UnitBucket {
        try JSONScanner.whole(bytes) { $0.bucket() } ?? Codec.decode(UnitBucket.self, bytes)
    }
}

/// Reads JSON from a buffer; every method returns nil (leaving the position anywhere) when the
/// input is not what it expects.
struct JSONScanner {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var position = 0
    /// Arrays and objects open around the position; past ``maximumDepth`` the scanner gives up
    /// (Foundation's reader then says what it says), so nesting cannot exhaust the stack.
    private var depth = 0
    static let maximumDepth = 64

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// What `read` reads from `bytes`, nil unless it read all of them (space aside).
    static func whole<T>(_ bytes: [UInt8], _ read: (inout JSONScanner) -> T?) -> T? {
        bytes.withUnsafeBufferPointer { buffer in
            var scanner = JSONScanner(buffer)
            guard let value = read(&scanner), scanner.atEnd else { return nil }
            return value
        }
    }

    var atEnd: Bool {
        mutating get {
            skipSpace()
            return position == bytes.count
        }
    }

    // MARK: The segment's documents

    mutating func segment() -> UnitSegment? {
        var format: Int?
        var units: [WorkUnit]?
        let read = object { scanner, key in
            switch key {
            case "format":
                format = scanner.integer().flatMap { Int(exactly: $0) }
                return format != nil
            case "units":
                units = scanner.array({ $0.unit() })
                return units != nil
            default:
                return scanner.skipValue()
            }
        }
        guard read, let format, (1...UnitSegment.currentFormat).contains(format), let units else { return nil }
        var segment = UnitSegment(units: units)
        segment.format = format
        return segment
    }

    mutating func bucket() -> UnitBucket? {
        var format: Int64?
        var nextSegment: Int64?
        var segments: [UnitBucket.Segment]?
        let read = object { scanner, key in
            switch key {
            case "format":
                format = scanner.integer()
                return format != nil
            case "nextSegment":
                nextSegment = scanner.integer()
                return nextSegment != nil
            case "segments":
                segments = scanner.array({ $0.bucketSegment() })
                return segments != nil
            default:
                return scanner.skipValue()
            }
        }
        guard read, let format, (1...Int64(UnitBucket.currentFormat)).contains(format), let nextSegment, let next = Int(exactly: nextSegment),
            let segments
        else { return nil }
        var bucket = UnitBucket(nextSegment: next, segments: segments)
        bucket.format = Int(format)
        return bucket
    }

    mutating func bucketSegment() -> UnitBucket.Segment? {
        var name: String?
        var counts: UnitCounts?
        var room: Int64?
        var leaseEnds: Int64??
        var holders: [String]??
        let read = object { scanner, key in
            switch key {
            case "name":
                name = scanner.string()
                return name != nil
            case "counts":
                counts = scanner.counts()
                return counts != nil
            case "room":
                room = scanner.integer()
                return room != nil
            case "leaseEnds":
                leaseEnds = scanner.nullable({ $0.integer() })
                return leaseEnds != nil
            case "holders":
                holders = scanner.nullable({ $0.array({ $0.string() }) })
                return holders != nil
            default:
                return scanner.skipValue()
            }
        }
        guard read, let name, let counts, let room, let roomCount = Int(exactly: room) else { return nil }
        return UnitBucket.Segment(name: name, counts: counts, room: roomCount, leaseEnds: leaseEnds ?? nil, holders: holders ?? nil)
    }

    mutating func counts() -> UnitCounts? {
        var counts = UnitCounts()
        var seen: Set<UnitState> = []
        let read = object { scanner, key in
            guard let state = UnitState(rawValue: key) else { return scanner.skipValue() }
            guard let value = scanner.integer(), let count = Int(exactly: value) else { return false }
            seen.insert(state)
            counts[state] = count
            return true
        }
        // Foundation's reader wants every state's count.
        guard read, seen.count == UnitState.allCases.count else { return nil }
        return counts
    }

    mutating func unit() -> WorkUnit? {
        var key: String?
        var data: JSONValue??
        var state: UnitState?
        var attempts: Int64?
        var lease: UnitLease??
        var last: UnitAttempt??
        var earlier: [UnitAttempt]??
        let read = object { scanner, name in
            switch name {
            case "attempts":
                attempts = scanner.integer()
                return attempts != nil
            case "earlier":
                earlier = scanner.nullable({ $0.array({ $0.attempt() }) })
                return earlier != nil
            case "data":
                data = scanner.value().map { $0 == .null ? JSONValue?.none : $0 }
                return data != nil
            case "key":
                key = scanner.string()
                return key != nil
            case "last":
                last = scanner.nullable({ $0.attempt() })
                return last != nil
            case "lease":
                lease = scanner.nullable({ $0.lease() })
                return lease != nil
            case "state":
                state = scanner.string().flatMap(UnitState.init(rawValue:))
                return state != nil
            default:
                return scanner.skipValue()
            }
        }
        guard read, let key, let state, let attempts, let count = Int(exactly: attempts) else { return nil }
        var unit = WorkUnit(key: key, data: data ?? nil)
        unit.state = state
        unit.attempts = count
        unit.lease = lease ?? nil
        unit.last = last ?? nil
        unit.earlier = earlier ?? nil
        return unit
    }

    mutating func lease() -> UnitLease? {
        var executor: String?
        var claim: String?
        var until: Int64?
        let read = object { scanner, name in
            switch name {
            case "executor":
                executor = scanner.string()
                return executor != nil
            case "claim":
                claim = scanner.string()
                return claim != nil
            case "until":
                until = scanner.integer()
                return until != nil
            default:
                return scanner.skipValue()
            }
        }
        guard read, let executor, let claim, let until else { return nil }
        return UnitLease(executor: executor, claim: claim, until: until)
    }

    mutating func attempt() -> UnitAttempt? {
        var executor: String?
        var startedAt: Int64?
        var endedAt: Int64??
        var outcome: UnitAttempt.Outcome??
        var error: String??
        var result: JSONValue??
        let read = object { scanner, name in
            switch name {
            case "executor":
                executor = scanner.string()
                return executor != nil
            case "startedAt":
                startedAt = scanner.integer()
                return startedAt != nil
            case "endedAt":
                endedAt = scanner.nullable({ $0.integer() })
                return endedAt != nil
            case "outcome":
                outcome = scanner.nullable({ $0.string().flatMap(UnitAttempt.Outcome.init(rawValue:)) })
                return outcome != nil
            case "error":
                error = scanner.nullable({ $0.string() })
                return error != nil
            case "result":
                result = scanner.value().map { $0 == .null ? JSONValue?.none : $0 }
                return result != nil
            default:
                return scanner.skipValue()
            }
        }
        guard read, let executor, let startedAt else { return nil }
        return UnitAttempt(
            executor: executor, startedAt: startedAt, endedAt: endedAt ?? nil, outcome: outcome ?? nil, error: error ?? nil, result: result ?? nil)
    }

    // MARK: JSON

    private mutating func skipSpace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    /// Skips space, then consumes `byte` if it is next.
    private mutating func take(_ byte: UInt8) -> Bool {
        skipSpace()
        guard position < bytes.count, bytes[position] == byte else { return false }
        position += 1
        return true
    }

    private mutating func take(literal: StaticString) -> Bool {
        skipSpace()
        let count = literal.utf8CodeUnitCount
        guard position + count <= bytes.count else { return false }
        for offset in 0..<count where bytes[position + offset] != literal.utf8Start[offset] { return false }
        position += count
        return true
    }

    /// Consumes `null` if it is next.
    mutating func null() -> Bool { take(literal: "null") }

    /// An optional member's value: `null` as nil, else what `read` reads (nil: neither).
    mutating func nullable<T>(_ read: (inout JSONScanner) -> T?) -> T?? {
        if null() { return .some(nil) }
        return read(&self).map { .some($0) }
    }

    /// An object, each member's value read by `member` (false: not what was expected). A key seen
    /// twice is refused: Foundation's reader may take either.
    private mutating func object(_ member: (inout JSONScanner, String) -> Bool) -> Bool {
        guard depth < Self.maximumDepth, take(UInt8(ascii: "{")) else { return false }
        depth += 1
        defer { depth -= 1 }
        if take(UInt8(ascii: "}")) { return true }
        // Documents' objects have a few keys: a list is cheaper than a set until there are many.
        var seen: [String] = []
        var many: Set<String> = []
        repeat {
            guard let key = string() else { return false }
            if seen.count < 16 {
                guard !seen.contains(key) else { return false }
                seen.append(key)
            } else {
                guard !seen.contains(key), many.insert(key).inserted else { return false }
            }
            guard take(UInt8(ascii: ":")), member(&self, key) else { return false }
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "}"))
    }

    private mutating func array<Element>(_ element: (inout JSONScanner) -> Element?) -> [Element]? {
        guard depth < Self.maximumDepth, take(UInt8(ascii: "[")) else { return nil }
        depth += 1
        defer { depth -= 1 }
        var elements: [Element] = []
        if take(UInt8(ascii: "]")) { return elements }
        repeat {
            guard let next = element(&self) else { return nil }
            elements.append(next)
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "]")) ? elements : nil
    }

    mutating func skipValue() -> Bool { value() != nil }

    mutating func value() -> JSONValue? {
        skipSpace()
        guard position < bytes.count else { return nil }
        switch bytes[position] {
        case UInt8(ascii: "n"): return null() ? .null : nil
        case UInt8(ascii: "t"): return take(literal: "true") ? .bool(true) : nil
        case UInt8(ascii: "f"): return take(literal: "false") ? .bool(false) : nil
        case UInt8(ascii: "\""): return string().map(JSONValue.string)
        case UInt8(ascii: "["): return array { $0.value() }.map(JSONValue.array)
        case UInt8(ascii: "{"):
            var fields: [String: JSONValue] = [:]
            let read = object { scanner, key in
                guard let value = scanner.value() else { return false }
                fields[key] = value
                return true
            }
            return read ? .object(fields) : nil
        default: return number().map(JSONValue.number)
        }
    }

    /// A whole number without fraction or exponent, within 64 bits (what Foundation reads as an
    /// integer without question).
    mutating func integer() -> Int64? {
        skipSpace()
        let start = position
        guard scanNumber(), let value = Int64(ascii: bytes, start..<position) else { return nil }
        return value
    }

    /// Any JSON number, as a finite double.
    private mutating func number() -> Double? {
        let start = position
        guard scanNumber(allowingFraction: true) else { return nil }
        let literal = UnsafeBufferPointer(rebasing: bytes[start..<position])
        guard let value = Double(String(decoding: literal, as: UTF8.self)), value.isFinite else { return nil }
        // Foundation refuses a number that is not zero but too small for a double; some parsers
        // give 0 for it.
        if value == 0, literal.prefix(while: { $0 != UInt8(ascii: "e") && $0 != UInt8(ascii: "E") }).contains(where: { (UInt8(ascii: "1")...UInt8(ascii: "9")).contains($0) }) {
            return nil
        }
        return value
    }

    /// Moves past a number of JSON's grammar; with `allowingFraction` false, refuses a fraction or exponent.
    private mutating func scanNumber(allowingFraction: Bool = false) -> Bool {
        func digits() -> Bool {
            let start = position
            while position < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) { position += 1 }
            return position > start
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard position < bytes.count else { return false }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
        } else if !digits() {
            return false
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            guard allowingFraction else { return false }
            position += 1
            guard digits() else { return false }
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
            guard allowingFraction else { return false }
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") { position += 1 }
            guard digits() else { return false }
        }
        return true
    }

    /// A string: valid UTF-8, no raw control characters, JSON's escapes (a `\u` escape of half a
    /// surrogate pair must be followed by its other half).
    mutating func string() -> String? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = position
        var escaped = false
        var highBits: UInt8 = 0
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") { break }
            if byte < 0x20 { return nil }
            highBits |= byte
            if byte == UInt8(ascii: "\\") {
                escaped = true
                position += 1
            }
            position += 1
        }
        guard position < bytes.count else { return nil }
        let end = position
        position += 1
        let raw = UnsafeBufferPointer(rebasing: bytes[start..<end])
        guard !escaped else { return Self.unescaped(raw) }
        // ASCII (keys, states, ids: nearly every string here) is valid UTF-8 as it is, and
        // `String(validating:)`'s generic path was a tenth of an executor's CPU.
        guard highBits & 0x80 != 0 else { return String(decoding: raw, as: UTF8.self) }
        return String(validating: raw, as: UTF8.self)
    }

    private static func unescaped(_ raw: UnsafeBufferPointer<UInt8>) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var index = 0
        func hex4() -> UInt32? {
            guard index + 4 <= raw.count else { return nil }
            var value: UInt32 = 0
            for byte in raw[index..<index + 4] {
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: return nil
                }
                value = value << 4 | UInt32(digit)
            }
            index += 4
            return value
        }
        while index < raw.count {
            let byte = raw[index]
            index += 1
            guard byte == UInt8(ascii: "\\") else {
                out.append(byte)
                continue
            }
            guard index < raw.count else { return nil }
            let escape = raw[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                guard var scalar = hex4() else { return nil }
                if (0xD800..<0xDC00).contains(scalar) {
                    guard index + 2 <= raw.count, raw[index] == UInt8(ascii: "\\"), raw[index + 1] == UInt8(ascii: "u") else { return nil }
                    index += 2
                    guard let low = hex4(), (0xDC00..<0xE000).contains(low) else { return nil }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    return nil
                }
                guard let unicode = Unicode.Scalar(scalar) else { return nil }
                out.append(contentsOf: UTF8.encode(unicode)!)
            default: return nil
            }
        }
        return String(validating: out, as: UTF8.self)
    }
}

extension Int64 {
    /// The decimal integer in `bytes[range]` (an optional minus and digits), nil on overflow.
    fileprivate init?(ascii bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) {
        var index = range.lowerBound
        let negative = index < range.upperBound && bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        var value: Int64 = 0
        while index < range.upperBound {
            let digit = Int64(bytes[index] &- UInt8(ascii: "0"))
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = negative ? shifted.subtractingReportingOverflow(digit) : shifted.addingReportingOverflow(digit)
            guard !overflow1, !overflow2 else { return nil }
            value = next
            index += 1
        }
        self = value
    }
}
