/// A segment's JSON (and its bucket's index's) written by hand. Every claim and every batch of ends rewrites a whole
/// segment, and with Foundation's `JSONEncoder` the encoding alone took two fifths of an
/// executor's CPU in the million-unit benchmark (docs/PERFORMANCE.md). The output is the same
/// document `Codec.encode` writes — keys sorted, nils left out, compact — read back by the same
/// `Codec.decode` (and by any JSON reader); `UnitSegmentJSONTests` checks both agree.
extension UnitSegment {
    /// The segment as compact JSON with sorted keys.
    public func encodedJSON() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64 + units.count * 192)
        out.append(contentsOf: #"{"format":"#.utf8)
        JSONWriter.integer(Int64(format), into: &out)
        out.append(contentsOf: #","units":["#.utf8)
        for (index, unit) in units.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.unit(unit, into: &out)
        }
        out.append(contentsOf: "]}".utf8)
        return out
    }
}

extension UnitBucket {
    /// The bucket's index as compact JSON with sorted keys (written with every segment change,
    /// so by hand too).
    public func encodedJSON() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64 + segments.count * 160)
        out.append(contentsOf: #"{"format":"#.utf8)
        JSONWriter.integer(Int64(format), into: &out)
        out.append(contentsOf: #","nextSegment":"#.utf8)
        JSONWriter.integer(Int64(nextSegment), into: &out)
        out.append(contentsOf: #","segments":["#.utf8)
        for (index, segment) in segments.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"counts":"#.utf8)
            JSONWriter.counts(segment.counts, into: &out)
            if let holders = segment.holders {
                out.append(contentsOf: #","holders":["#.utf8)
                for (index, holder) in holders.enumerated() {
                    if index > 0 { out.append(UInt8(ascii: ",")) }
                    JSONWriter.string(holder, into: &out)
                }
                out.append(UInt8(ascii: "]"))
            }
            if let leaseEnds = segment.leaseEnds {
                out.append(contentsOf: #","leaseEnds":"#.utf8)
                JSONWriter.integer(leaseEnds, into: &out)
            }
            out.append(contentsOf: #","name":"#.utf8)
            JSONWriter.string(segment.name, into: &out)
            out.append(contentsOf: #","room":"#.utf8)
            JSONWriter.integer(Int64(segment.room), into: &out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: "]}".utf8)
        return out
    }
}

enum JSONWriter {
    static func counts(_ counts: UnitCounts, into out: inout [UInt8]) {
        out.append(contentsOf: #"{"available":"#.utf8)
        integer(Int64(counts.available), into: &out)
        out.append(contentsOf: #","expired":"#.utf8)
        integer(Int64(counts.expired), into: &out)
        out.append(contentsOf: #","failed":"#.utf8)
        integer(Int64(counts.failed), into: &out)
        out.append(contentsOf: #","finished":"#.utf8)
        integer(Int64(counts.finished), into: &out)
        out.append(contentsOf: #","pending":"#.utf8)
        integer(Int64(counts.pending), into: &out)
        out.append(contentsOf: #","retryable":"#.utf8)
        integer(Int64(counts.retryable), into: &out)
        out.append(UInt8(ascii: "}"))
    }

    static func unit(_ unit: WorkUnit, into out: inout [UInt8]) {
        out.append(contentsOf: #"{"attempts":"#.utf8)
        integer(Int64(unit.attempts), into: &out)
        if let data = unit.data {
            out.append(contentsOf: #","data":"#.utf8)
            value(data, into: &out)
        }
        if let earlier = unit.earlier {
            out.append(contentsOf: #","earlier":["#.utf8)
            for (index, previous) in earlier.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                attempt(previous, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
        out.append(contentsOf: #","key":"#.utf8)
        string(unit.key, into: &out)
        if let last = unit.last {
            out.append(contentsOf: #","last":"#.utf8)
            attempt(last, into: &out)
        }
        if let lease = unit.lease {
            out.append(contentsOf: #","lease":{"claim":"#.utf8)
            string(lease.claim, into: &out)
            out.append(contentsOf: #","executor":"#.utf8)
            string(lease.executor, into: &out)
            out.append(contentsOf: #","until":"#.utf8)
            integer(lease.until, into: &out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: #","state":"#.utf8)
        string(unit.state.rawValue, into: &out)
        out.append(UInt8(ascii: "}"))
    }

    static func attempt(_ attempt: UnitAttempt, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var first = true
        func field(_ name: StaticString) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
            out.append(contentsOf: #"":"#.utf8)
        }
        if let endedAt = attempt.endedAt {
            field("endedAt")
            integer(endedAt, into: &out)
        }
        if let error = attempt.error {
            field("error")
            string(error, into: &out)
        }
        field("executor")
        string(attempt.executor, into: &out)
        if let outcome = attempt.outcome {
            field("outcome")
            string(outcome.rawValue, into: &out)
        }
        if let result = attempt.result {
            field("result")
            value(result, into: &out)
        }
        field("startedAt")
        integer(attempt.startedAt, into: &out)
        out.append(UInt8(ascii: "}"))
    }

    static func value(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let flag): out.append(contentsOf: (flag ? "true" : "false").utf8)
        case .number(let number): self.number(number, into: &out)
        case .string(let text): string(text, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                self.value(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let fields):
            out.append(UInt8(ascii: "{"))
            for (index, key) in fields.keys.sorted().enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                string(key, into: &out)
                out.append(UInt8(ascii: ":"))
                self.value(fields[key]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func integer(_ value: Int64, into out: inout [UInt8]) {
        out.append(contentsOf: String(value).utf8)
    }

    /// A whole number within 64-bit integers as an integer (exact: it is whole); others as Swift's
    /// shortest round-tripping form (valid JSON for every finite double).
    static func number(_ value: Double, into out: inout [UInt8]) {
        if value.isFinite, value == value.rounded(), abs(value) < 9.2e18 {
            integer(Int64(value), into: &out)
        } else if value.isFinite {
            out.append(contentsOf: "\(value)".utf8)
        } else {
            out.append(contentsOf: "null".utf8)  // JSON has no infinities (a JSONValue never holds one)
        }
    }

    private static let hex = Array("0123456789abcdef".utf8)

    static func string(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0..<0x20:
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
