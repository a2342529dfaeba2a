/// Any JSON value: a job's arguments and a handler's result are passed through untouched.
public enum JSONValue: Codable, Sendable, Hashable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let value) = self { return value }
        return nil
    }

    public var numberValue: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    /// An upper bound of this value's encoded size in bytes, without encoding it (a string's
    /// characters may each take up to 6 bytes escaped; a number at most 24).
    public var encodedSizeAtMost: Int {
        switch self {
        case .null, .bool: return 5
        case .number: return 24
        case .string(let text): return 2 + 6 * text.utf8.count
        case .array(let values): return 2 + values.reduce(0) { $0 + $1.encodedSizeAtMost + 1 }
        case .object(let members): return 2 + members.reduce(0) { $0 + 4 + 6 * $1.key.utf8.count + $1.value.encodedSizeAtMost }
        }
    }

    /// An upper bound of this value's size as `JSONEncoder` writes it, close to it: strings are
    /// scanned for what is escaped (`"`, `\\`, `/`, control characters), numbers count 24 bytes.
    public var encodedSize: Int {
        switch self {
        case .null, .bool: return 5
        case .number: return 24
        case .string(let text): return Self.encodedSize(of: text)
        case .array(let values): return 2 + values.reduce(0) { $0 + $1.encodedSize + 1 }
        case .object(let members): return 2 + members.reduce(0) { $0 + 2 + Self.encodedSize(of: $1.key) + $1.value.encodedSize }
        }
    }

    /// The size of `text` as a JSON string, quotes and escapes included (at most).
    public static func encodedSize(of text: String) -> Int {
        var size = 2
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): size += 2
            case 0..<0x20: size += 6
            default: size += 1
            }
        }
        return size
    }

    /// Where in this value a NaN or an infinity is (`.a.b[2]`; "" for the value itself), or nil when
    /// there is none. JSON cannot carry them: such a value can only come from code, not a document.
    public func pathOfNonFiniteNumber() -> String? {
        switch self {
        case .null, .bool, .string: return nil
        case .number(let value): return value.isFinite ? nil : ""
        case .array(let values):
            for (index, value) in values.enumerated() {
                if let path = value.pathOfNonFiniteNumber() { return "[\(index)]" + path }
            }
            return nil
        case .object(let values):
            for key in values.keys.sorted() {
                if let path = values[key]!.pathOfNonFiniteNumber() { return "." + key + path }
            }
            return nil
        }
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    public init(nilLiteral: ()) { self = .null }
}
