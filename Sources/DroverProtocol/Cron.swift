import Foundation

/// A cron expression: five fields — minute, hour, day of month, month, day of week — or one of
/// `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`.
///
/// Each field is `*`, a number, a range `a-b`, any of these with a step (`*/15`, `1-30/5`, `5/10`
/// = from 5 to the end by 10), or a comma-separated list of them. Months take `jan`–`dec`, days of
/// the week `sun`–`sat` (0 or 7 is Sunday). As in Vixie cron, when both the day of month and the
/// day of week are restricted (neither is `*`), a day matching either runs.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// The expression as written.
    public let text: String
    private let minutes: UInt64
    private let hours: UInt64
    private let daysOfMonth: UInt64
    private let months: UInt64
    private let daysOfWeek: UInt64
    private let dayOfMonthRestricted: Bool
    private let dayOfWeekRestricted: Bool

    public var description: String { text }

    private static let names: [String: String] = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0", "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]
    private static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    private static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    /// Parses `text`. - Throws: why not, naming the field and the value.
    public init(_ text: String) throws(CronError) {
        self.text = text
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let expanded = Self.names[trimmed.lowercased()] ?? trimmed
        if expanded.hasPrefix("@") {
            throw CronError("\"\(trimmed)\" is not a known name (use @yearly, @monthly, @weekly, @daily or @hourly)")
        }
        let fields = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count == 5 else {
            throw CronError("expected 5 fields (minute hour day-of-month month day-of-week), got \(fields.count) in \"\(text)\"")
        }
        minutes = try Self.parse(fields[0], name: "minute", range: 0...59)
        hours = try Self.parse(fields[1], name: "hour", range: 0...23)
        daysOfMonth = try Self.parse(fields[2], name: "day of month", range: 1...31)
        months = try Self.parse(fields[3], name: "month", range: 1...12, names: Self.monthNames, firstName: 1)
        var weekdays = try Self.parse(fields[4], name: "day of week", range: 0...7, names: Self.dayNames, firstName: 0)
        if weekdays & (1 << 7) != 0 { weekdays = (weekdays | 1) & ~(1 << 7) }  // 7 is Sunday too
        daysOfWeek = weekdays
        dayOfMonthRestricted = !fields[2].hasPrefix("*")
        dayOfWeekRestricted = !fields[4].hasPrefix("*")
    }

    private static func parse(_ field: String, name: String, range: ClosedRange<Int>, names: [String] = [], firstName: Int = 0) throws(CronError)
        -> UInt64
    {
        func value(_ text: Substring) throws(CronError) -> Int {
            if let number = Int(text) {
                guard range.contains(number) else { throw CronError("\(name): \(number) is out of \(range.lowerBound)-\(range.upperBound)") }
                return number
            }
            if let index = names.firstIndex(of: text.lowercased()) { return index + firstName }
            throw CronError("\(name): \"\(text)\" is not a number\(names.isEmpty ? "" : " or a name (\(names.first!)…\(names.last!))")")
        }
        var bits: UInt64 = 0
        for item in field.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            var step = 1
            if parts.count == 2 {
                guard let number = Int(parts[1]), number >= 1, number <= range.upperBound + 1 else {
                    throw CronError("\(name): step \"\(parts[1])\" must be a number from 1 to \(range.upperBound + 1)")
                }
                step = number
            }
            let span = parts[0]
            let bounds: ClosedRange<Int>
            if span == "*" {
                bounds = range
            } else if let dash = span.firstIndex(of: "-") {
                let low = try value(span[..<dash])
                let high = try value(span[span.index(after: dash)...])
                guard low <= high else { throw CronError("\(name): the range \(span) goes backwards") }
                bounds = low...high
            } else {
                let start = try value(span)
                bounds = start...(parts.count == 2 ? range.upperBound : start)
            }
            for number in stride(from: bounds.lowerBound, through: bounds.upperBound, by: step) { bits |= 1 << UInt64(number) }
        }
        return bits
    }

    /// Whether runs fall on this day (`weekday`: 0 is Sunday).
    func matches(month: Int, day: Int, weekday: Int) -> Bool {
        guard months & (1 << UInt64(month)) != 0 else { return false }
        let byDay = daysOfMonth & (1 << UInt64(day)) != 0
        let byWeekday = daysOfWeek & (1 << UInt64(weekday)) != 0
        if dayOfMonthRestricted && dayOfWeekRestricted { return byDay || byWeekday }
        return byDay && byWeekday
    }

    /// The first time strictly after `now` (milliseconds since 1970) at which the expression
    /// matches the wall clock of `timeZone`; nil when none does within eight years (say, `0 0 30 2 *`).
    ///
    /// Daylight saving: a matching time that does not exist that day (in a gap where clocks jump
    /// forward) runs at the end of the gap, the first valid minute — once, however many matching
    /// times fell in the gap. A time that exists twice (clocks go back) runs at its first
    /// occurrence only.
    public func nextRun(after now: Int64, in timeZone: TimeZone) -> Int64? {
        let nowSeconds = now.floorDivided(by: 1000)
        let localNow = nowSeconds + Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(nowSeconds))))
        // From the day before (a time of the day before can still be ahead when clocks went back).
        let firstDay = localNow.floorDivided(by: 86_400) - 1
        for day in firstDay...(firstDay + 8 * 366) {
            let (_, month, dayOfMonth) = Self.civil(fromDays: day)
            let weekday = Int((day + 4).modulo(7))  // 1970-01-01 was a Thursday
            guard matches(month: month, day: dayOfMonth, weekday: weekday) else { continue }
            for hour in 0..<24 where hours & (1 << UInt64(hour)) != 0 {
                // Wall-clock times hours before now's cannot be ahead of now (offsets change by
                // less than that): passed over without a look at the time zone.
                guard day * 86_400 + Int64((hour + 1) * 3_600) > localNow - 3 * 3_600 else { continue }
                for minute in 0..<60 where minutes & (1 << UInt64(minute)) != 0 {
                    let local = day * 86_400 + Int64(hour * 3_600 + minute * 60)
                    let instant = Self.firstInstant(ofLocal: local, in: timeZone)
                    if instant * 1000 > now { return instant * 1000 }
                }
            }
        }
        return nil
    }

    /// The first instant (seconds since 1970) whose wall clock in `timeZone` reads `local` (wall-clock
    /// seconds since 1970), or, when no instant does (a gap), the end of the gap.
    static func firstInstant(ofLocal local: Int64, in timeZone: TimeZone) -> Int64 {
        func offset(_ seconds: Int64) -> Int64 { Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(seconds)))) }
        // The offsets in force around it (two at most, either side of a change that day).
        let before = offset(local - 86_400)
        let after = offset(local + 86_400)
        // The common case: no change of offset within a day either side.
        if before == after, offset(local - before) == before { return local - before }
        let valid = Set([before, after]).map { local - $0 }.filter { offset($0) == local - $0 }
        if let first = valid.min() { return first }
        // In a gap: read with the offset before the change, it lies past the change, which is the
        // end of the gap (gaps are hours at most).
        let past = local - before
        if let change = timeZone.nextDaylightSavingTimeTransition(after: Date(timeIntervalSince1970: Double(past - 4 * 3_600))),
            Int64(change.timeIntervalSince1970) <= past
        {
            return Int64(change.timeIntervalSince1970)
        }
        return past
    }

    /// The proleptic Gregorian date of a day number (days since 1970-01-01).
    static func civil(fromDays days: Int64) -> (year: Int, month: Int, day: Int) {
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (Int(yoe + era * 400 + (month <= 2 ? 1 : 0)), Int(month), Int(day))
    }
}

/// Why a cron expression was refused.
public struct CronError: Error, Sendable, Hashable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

extension Int64 {
    fileprivate func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }

    fileprivate func modulo(_ divisor: Int64) -> Int64 {
        let remainder = self % divisor
        return remainder < 0 ? remainder + divisor : remainder
    }
}
