import Foundation

/// The JSON every Drover document is written in: sorted keys, so equal documents are equal bytes.
public enum Codec {
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(value))
    }

    public static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}

extension KeyedDecodingContainer {
    /// A document's `format`, refused when it is not one this Drover reads (1...`newest`): a
    /// newer or garbled document is then unreadable, not read as one with fields missing.
    public func decodeFormat(upTo newest: Int, forKey key: Key) throws -> Int {
        let format = try decode(Int.self, forKey: key)
        guard (1...newest).contains(format) else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: self, debugDescription: "format \(format) is not one this Drover reads (1...\(newest)) — upgrade Drover")
        }
        return format
    }
}
