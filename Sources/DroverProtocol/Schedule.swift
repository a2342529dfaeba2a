import Foundation

/// When a scheduled job runs: on the grid `reference + k·interval`, or when a cron expression
/// matches the wall clock of a time zone (``CronSchedule``).
///
/// The next run is the first grid point (or cron match) strictly after now. Runs missed while no
/// manager was running are not made up in a burst: the job runs once, at the next grid point, then
/// continues on the grid. Before the reference time, the first run is the reference itself.
public struct Schedule: Codable, Sendable, Hashable {
    /// A point of the grid, in milliseconds since 1970-01-01T00:00:00Z (0 for a cron schedule).
    public var referenceMilliseconds: Int64
    /// The grid spacing in milliseconds; positive (0 for a cron schedule).
    public var intervalMilliseconds: Int64
    /// The cron rule, when the schedule is one (then the grid is unused).
    public var cron: CronSchedule?

    /// A schedule of cron `expression` in the IANA time zone `timeZone` (checked by ``problem``).
    public init(cron expression: String, timeZone: String = "UTC") {
        referenceMilliseconds = 0
        intervalMilliseconds = 0
        cron = CronSchedule(expression: expression, timeZone: timeZone)
    }

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
        if let cron { return cron.nextRun(after: now) ?? .max }
        guard intervalMilliseconds > 0 else { return .max }
        guard now >= referenceMilliseconds else { return referenceMilliseconds }
        let (elapsed, elapsedOverflow) = now.subtractingReportingOverflow(referenceMilliseconds)
        let (offset, offsetOverflow) = (elapsed / intervalMilliseconds + 1).multipliedReportingOverflow(by: intervalMilliseconds)
        let (next, nextOverflow) = referenceMilliseconds.addingReportingOverflow(offset)
        return elapsedOverflow || offsetOverflow || nextOverflow ? .max : next
    }

    /// Why this schedule is outside ``Bounds``, naming the field; nil when it is within them.
    public var problem: SpecError? {
        if let cron { return cron.problem }
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
        case reference, intervalSeconds, cron, timeZone
    }

    // On the wire: {"reference": "2021-01-31T21:01:00Z", "intervalSeconds": 86400}, or
    // {"cron": "0 3 * * *", "timeZone": "Europe/Berlin"} (time zone default UTC).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let expression = try container.decodeIfPresent(String.self, forKey: .cron) {
            referenceMilliseconds = 0
            intervalMilliseconds = 0
            cron = CronSchedule(expression: expression, timeZone: try container.decodeIfPresent(String.self, forKey: .timeZone) ?? "UTC")
            return
        }
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
        cron = nil
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        if let cron {
            try container.encode(cron.expression, forKey: .cron)
            try container.encode(cron.timeZone, forKey: .timeZone)
            return
        }
        try container.encode(Self.format(Date(timeIntervalSince1970: Double(referenceMilliseconds) / 1000)), forKey: .reference)
        try container.encode(Double(intervalMilliseconds) / 1000, forKey: .intervalSeconds)
    }

    /// Parses ISO 8601 with or without fractional seconds.
    public static func parse(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// ISO 8601, with fractional seconds only when there are any.
    public static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: date.timeIntervalSince1970.truncatingRemainder(dividingBy: 1) != 0))
    }
}

/// A cron expression in an IANA time zone: runs when the expression matches the zone's wall clock
/// (daylight saving handled as ``CronExpression/nextRun(after:in:)`` says).
public struct CronSchedule: Sendable, Hashable {
    /// The expression as written (see ``CronExpression``).
    public let expression: String
    /// An IANA time zone name such as `Europe/Berlin`, or `UTC`.
    public let timeZone: String
    /// The parsed expression, or why it is not one.
    public let rule: Result<CronExpression, CronError>
    /// The time zone, nil when the name is not one.
    public let zone: TimeZone?

    public init(expression: String, timeZone: String) {
        self.expression = expression
        self.timeZone = timeZone
        do {
            rule = .success(try CronExpression(expression))
        } catch {
            rule = .failure(error)
        }
        zone = TimeZone(identifier: timeZone)
    }

    /// The first run strictly after `now` (milliseconds since 1970); nil when the schedule is not
    /// valid or never matches.
    public func nextRun(after now: Int64) -> Int64? {
        guard case .success(let expression) = rule, let zone else { return nil }
        return expression.nextRun(after: now, in: zone)
    }

    /// The next `count` runs after `now`, for people (`drover status`).
    public func nextRuns(after now: Int64, count: Int) -> [Int64] {
        var runs: [Int64] = []
        var from = now
        while runs.count < count, let next = nextRun(after: from) {
            runs.append(next)
            from = next
        }
        return runs
    }

    /// Why this schedule cannot be used, naming the field; nil when it can.
    public var problem: SpecError? {
        switch rule {
        case .failure(let error): return SpecError(field: "schedule.cron", reason: error.reason)
        case .success:
            guard zone != nil else {
                return SpecError(field: "schedule.timeZone", reason: "\"\(timeZone)\" is not a time zone (an IANA name such as Europe/Berlin, or UTC)")
            }
            // The matches of the coming eight years are looked at from a fixed day, so the answer
            // does not depend on when it is asked.
            guard nextRun(after: 1_767_225_600_000) != nil else {  // 2026-01-01
                return SpecError(field: "schedule.cron", reason: "\"\(expression)\" never matches a date (such as February 30)")
            }
            return nil
        }
    }
}
