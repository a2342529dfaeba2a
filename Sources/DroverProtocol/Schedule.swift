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

    /// A schedule from a date and a duration. Values outside ``Bounds`` are clamped to the nearest
    /// end of the range (they are refused by `JobSpec.validate()` before any is written).
    public init(reference: Date, interval: Duration) {
        let reference = (reference.timeIntervalSince1970 * 1000).rounded()
        referenceMilliseconds =
            reference.isFinite
            ? Int64(min(max(reference, Double(Bounds.timestampMilliseconds.lowerBound)), Double(Bounds.timestampMilliseconds.upperBound)))
            : Bounds.timestampMilliseconds.upperBound
        let (seconds, attoseconds) = interval.components
        let (milliseconds, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        intervalMilliseconds = overflow ? Int64.max : milliseconds + attoseconds / 1_000_000_000_000_000
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
    /// Checked arithmetic: a grid point past `Int64.max` (only a schedule outside ``Bounds``, made in
    /// code, can get there) is `Int64.max`, "never"; so is any point of an interval that is not positive.
    public func nextRunMilliseconds(after now: Int64) -> Int64 {
        guard intervalMilliseconds > 0 else { return .max }
        guard now >= referenceMilliseconds else { return referenceMilliseconds }
        let (elapsed, elapsedOverflow) = now.subtractingReportingOverflow(referenceMilliseconds)
        let (offset, offsetOverflow) = (elapsed / intervalMilliseconds + 1).multipliedReportingOverflow(by: intervalMilliseconds)
        let (next, nextOverflow) = referenceMilliseconds.addingReportingOverflow(offset)
        return elapsedOverflow || offsetOverflow || nextOverflow ? .max : next
    }

    /// Why this schedule is outside ``Bounds``, naming the field; nil when it is within them.
    public var problem: SpecError? {
        guard Bounds.intervalMilliseconds.contains(intervalMilliseconds) else {
            return SpecError(
                field: "schedule.intervalSeconds",
                reason: "must be \(Bounds.describeSeconds(Bounds.intervalMilliseconds)) (got \(Double(intervalMilliseconds) / 1000))")
        }
        guard Bounds.timestampMilliseconds.contains(referenceMilliseconds) else {
            return SpecError(field: "schedule.reference", reason: "must be between 1970 and the end of 9999")
        }
        return nil
    }

    static func milliseconds(_ date: Date) -> Int64 {
        let milliseconds = (date.timeIntervalSince1970 * 1000).rounded(.down)
        return milliseconds.isFinite ? Int64(min(max(milliseconds, -9.2e18), 9.2e18)) : .max
    }

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
        guard let reference = Bounds.milliseconds(fromSeconds: date.timeIntervalSince1970, in: Bounds.timestampMilliseconds) else {
            throw DecodingError.dataCorruptedError(forKey: .reference, in: container, debugDescription: "must be between 1970 and the end of 9999, got \"\(text)\"")
        }
        referenceMilliseconds = reference
        let seconds = try container.decode(Double.self, forKey: .intervalSeconds)
        guard let interval = Bounds.milliseconds(fromSeconds: seconds, in: Bounds.intervalMilliseconds) else {
            throw DecodingError.dataCorruptedError(
                forKey: .intervalSeconds, in: container,
                debugDescription: "must be \(Bounds.describeSeconds(Bounds.intervalMilliseconds)), got \(seconds)")
        }
        intervalMilliseconds = interval
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
