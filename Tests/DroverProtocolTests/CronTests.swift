import Foundation
import Testing

@testable import DroverProtocol

/// Cron schedules in time zones, over daylight-saving changes and leap days (issue 15). No server.
@Suite("Cron expressions")
struct CronTests {
    /// Milliseconds of an ISO 8601 UTC time.
    func at(_ text: String) throws -> Int64 {
        let date = try #require(Schedule.parse(text + "Z"))
        return Int64(date.timeIntervalSince1970 * 1000)
    }

    func next(_ expression: String, _ zone: String = "UTC", after time: String) throws -> Int64? {
        let cron = try CronExpression(expression)
        return cron.nextRun(after: try at(time), in: try #require(TimeZone(identifier: zone)))
    }

    @Test func fieldsRangesStepsListsAndNames() throws {
        #expect(try next("@hourly", after: "2026-01-01T10:15:00") == at("2026-01-01T11:00:00"))
        #expect(try next("*/15 * * * *", after: "2026-01-01T10:15:00") == at("2026-01-01T10:30:00"))
        #expect(try next("5/20 * * * *", after: "2026-01-01T10:30:00") == at("2026-01-01T10:45:00"))
        #expect(try next("0 9 * * mon-fri", after: "2026-01-03T10:00:00") == at("2026-01-05T09:00:00"))  // a Saturday
        #expect(try next("0 0 1 jan,JUL *", after: "2026-01-01T00:00:00") == at("2026-07-01T00:00:00"))
        #expect(try next("0 0 * * 7", after: "2026-01-01T00:00:00") == at("2026-01-04T00:00:00"))  // 7 is Sunday
        // Day of month and day of week both restricted: either one (Vixie cron).
        #expect(try next("0 12 13 * fri", after: "2026-02-01T00:00:00") == at("2026-02-06T12:00:00"))
        // Strictly after: a run at the very time asked for is the next one.
        #expect(try next("0 12 * * *", after: "2026-01-01T12:00:00") == at("2026-01-02T12:00:00"))
    }

    @Test func leapDaysComeEveryFourYears() throws {
        #expect(try next("0 0 29 2 *", after: "2026-01-01T00:00:00") == at("2028-02-29T00:00:00"))
        #expect(try next("0 0 29 2 *", "America/New_York", after: "2028-03-01T00:00:00") == at("2032-02-29T05:00:00"))
    }

    /// Berlin: clocks go from 02:00 CET to 03:00 CEST on 2026-03-29, and from 03:00 CEST back to
    /// 02:00 CET on 2026-10-25.
    @Test func berlinsDaylightSavingGapRunsAtItsEndAndARepeatedTimeRunsOnce() throws {
        // 02:30 does not exist on the 29th: it runs at 03:00 CEST (01:00 UTC), then 02:30 CEST.
        #expect(try next("30 2 * * *", "Europe/Berlin", after: "2026-03-28T12:00:00") == at("2026-03-29T01:00:00"))
        #expect(try next("30 2 * * *", "Europe/Berlin", after: "2026-03-29T01:00:00") == at("2026-03-30T00:30:00"))
        // Four times in the gap: one run at its end, not four.
        #expect(try next("*/15 2 * * *", "Europe/Berlin", after: "2026-03-29T00:00:00") == at("2026-03-29T01:00:00"))
        #expect(try next("*/15 2 * * *", "Europe/Berlin", after: "2026-03-29T01:00:00") == at("2026-03-30T00:00:00"))
        // 02:30 happens twice on 10-25 (00:30 UTC in CEST, 01:30 UTC in CET): it runs at the first only.
        #expect(try next("30 2 * * *", "Europe/Berlin", after: "2026-10-24T12:00:00") == at("2026-10-25T00:30:00"))
        #expect(try next("30 2 * * *", "Europe/Berlin", after: "2026-10-25T00:31:00") == at("2026-10-26T01:30:00"))
        // Hourly runs go on through the repeated hour by the clock: each wall-clock hour once.
        #expect(try next("0 * * * *", "Europe/Berlin", after: "2026-10-25T00:00:00") == at("2026-10-25T02:00:00"))
    }

    /// New York: 02:00 EST → 03:00 EDT on 2026-03-08; 02:00 EDT → 01:00 EST on 2026-11-01.
    @Test func newYorksDaylightSavingChanges() throws {
        #expect(try next("30 2 * * *", "America/New_York", after: "2026-03-07T12:00:00") == at("2026-03-08T07:00:00"))
        #expect(try next("30 1 * * *", "America/New_York", after: "2026-10-31T12:00:00") == at("2026-11-01T05:30:00"))
        #expect(try next("30 1 * * *", "America/New_York", after: "2026-11-01T05:31:00") == at("2026-11-02T06:30:00"))
    }

    @Test(arguments: [
        ("61 * * * *", "minute: 61 is out of 0-59"),
        ("* * * *", "expected 5 fields"),
        ("@often", "not a known name"),
        ("5-1 * * * *", "goes backwards"),
        ("*/0 * * * *", "step"),
        ("x * * * *", "minute: \"x\" is not a number"),
        ("0 0 * foo *", "month: \"foo\" is not a number or a name"),
        ("0 0 32 * *", "day of month: 32 is out of 1-31"),
    ])
    func badExpressionsSayWhichFieldAndWhy(expression: String, reason: String) {
        do {
            _ = try CronExpression(expression)
            Issue.record("\(expression) was accepted")
        } catch {
            #expect(error.reason.contains(reason), "\(error.reason)")
        }
    }

    @Test func aScheduleChecksItsExpressionAndZoneAndTravelsAsJSON() throws {
        #expect(Schedule(cron: "0 3 30 2 *").problem?.field == "schedule.cron")
        #expect(Schedule(cron: "0 25 * * *").problem?.reason == "hour: 25 is out of 0-23")
        #expect(Schedule(cron: "@daily", timeZone: "Mars/Olympus").problem?.field == "schedule.timeZone")
        #expect(Schedule(cron: "@daily", timeZone: "Europe/Berlin").problem == nil)
        let schedule = Schedule(cron: "30 2 * * *", timeZone: "Europe/Berlin")
        let json = String(decoding: try JSONEncoder().encode(schedule), as: UTF8.self)
        #expect(json.contains(#""cron":"30 2 * * *""#) && json.contains(#""timeZone":"Europe\/Berlin""#), "\(json)")
        let decoded = try JSONDecoder().decode(Schedule.self, from: Data(#"{"cron": "30 2 * * *", "timeZone": "Europe/Berlin"}"#.utf8))
        #expect(decoded == schedule)
        #expect(decoded.nextRunMilliseconds(after: try at("2026-03-28T12:00:00")) == (try at("2026-03-29T01:00:00")))
        #expect(schedule.cron?.nextRuns(after: try at("2026-03-28T12:00:00"), count: 3).count == 3)
        // A bad expression decodes (so the leader can fail the job naming the field) and never runs.
        let bad = try JSONDecoder().decode(Schedule.self, from: Data(#"{"cron": "nonsense"}"#.utf8))
        #expect(bad.problem?.field == "schedule.cron")
        #expect(bad.nextRunMilliseconds(after: 0) == .max)
    }
}
