import Foundation

/// When a scheduled job runs: on the grid `reference + k·interval`.
///
/// The next run is the first grid point strictly after now. Runs missed while no manager was
/// running are not made up in a burst: the job runs once, at the next grid point, then continues
/// on the grid. Before the reference time, the first run is the reference itself.
public struct Schedule: Codable, Sendable, Hashable {
    /// A point of the grid, in milliseconds since 1970-01-01T00:00:00Z.
    public var referenceMilliseconds: Int64
    /// The grid spacing in milliseconds; positive.
    public var intervalMilliseconds: Int64

    public init(reference: Date, interval: Duration) {
        referenceMilliseconds = Int64((reference.timeIntervalSince1970 * 1000).rounded())
        intervalMilliseconds = interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000
    }

    public init(referenceMilliseconds: Int64, intervalMilliseconds: Int64) {
        self.referenceMilliseconds = referenceMilliseconds
        self.intervalMilliseconds = intervalMilliseconds
    }

    /// The first `reference + k·interval` strictly after `now` (k ≥ 0).
    public func nextRun(after now: Date) -> Date {
        Date(timeIntervalSince1970: Double(nextRunMilliseconds(after: Self.milliseconds(now))) / 1000)
    }

    /// ``nextRun(after:)`` in milliseconds since the epoch.
    public func nextRunMilliseconds(after now: Int64) -> Int64 {
        precondition(intervalMilliseconds > 0, "a schedule's interval must be positive (validate the spec first)")
        guard now >= referenceMilliseconds else { return referenceMilliseconds }
        let elapsed = now - referenceMilliseconds
        return referenceMilliseconds + (elapsed / intervalMilliseconds + 1) * intervalMilliseconds
    }

    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }

    enum CodingKeys: String, CodingKey {
        case reference, intervalSeconds
    }

    // On the wire: {"reference": "2021-01-31T21:01:00Z", "intervalSeconds": 86400}
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let text = try container.decode(String.self, forKey: .reference)
        guard let date = Self.parse(text) else {
            throw DecodingError.dataCorruptedError(
                forKey: .reference, in: container, debugDescription: "expected an ISO 8601 time such as 2021-01-31T21:01:00Z, got \"\(text)\"")
        }
        referenceMilliseconds = Self.milliseconds(date)
        let seconds = try container.decode(Double.self, forKey: .intervalSeconds)
        intervalMilliseconds = Int64((seconds * 1000).rounded())
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(Self.format(Date(timeIntervalSince1970: Double(referenceMilliseconds) / 1000)), forKey: .reference)
        try container.encode(Double(intervalMilliseconds) / 1000, forKey: .intervalSeconds)
    }

    /// Parses ISO 8601 with or without fractional seconds.
    public static func parse(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: date.timeIntervalSince1970.truncatingRemainder(dividingBy: 1) != 0))
    }
}
