import Foundation
import Testing

@testable import DroverProtocol

@Suite("Schedule math (no server)")
struct ScheduleTests {
    func date(_ text: String) -> Date { Schedule.parse(text)! }

    @Test func theArchitectureExample() {
        // reference 2021-01-31 21:01, interval 1 day, now 2021-02-04 09:56 → 2021-02-04 21:01
        let schedule = Schedule(reference: date("2021-01-31T21:01:00Z"), interval: .seconds(86_400))
        #expect(schedule.nextRun(after: date("2021-02-04T09:56:00Z")) == date("2021-02-04T21:01:00Z"))
    }

    @Test func strictlyAfterNow() {
        let schedule = Schedule(reference: date("2021-01-31T21:01:00Z"), interval: .seconds(86_400))
        // Exactly on a grid point: the next one, not this one.
        #expect(schedule.nextRun(after: date("2021-02-04T21:01:00Z")) == date("2021-02-05T21:01:00Z"))
        #expect(schedule.nextRun(after: date("2021-02-04T21:00:59.999Z")) == date("2021-02-04T21:01:00Z"))
    }

    @Test func beforeTheReferenceTheReferenceComesFirst() {
        let schedule = Schedule(reference: date("2030-01-01T00:00:00Z"), interval: .seconds(60))
        #expect(schedule.nextRun(after: date("2021-02-04T09:56:00Z")) == date("2030-01-01T00:00:00Z"))
    }

    @Test func missedRunsAreNotABurst() {
        // A manager that was down for 10 intervals finds one next run, on the grid.
        let schedule = Schedule(referenceMilliseconds: 0, intervalMilliseconds: 600_000)
        #expect(schedule.nextRunMilliseconds(after: 6_000_001) == 6_600_000)
    }

    @Test(arguments: [Int64(1), 7, 1000, 86_400_000])
    func alwaysOnTheGridAndWithinOneInterval(interval: Int64) {
        let reference: Int64 = 1_612_126_860_000
        let schedule = Schedule(referenceMilliseconds: reference, intervalMilliseconds: interval)
        let end: Int64 = reference + 5 * interval + 3
        let step = Int(max(1, interval / 3))
        for now in stride(from: reference, to: end, by: step) {
            let next: Int64 = schedule.nextRunMilliseconds(after: now)
            let wait: Int64 = next - now
            #expect(next > now)
            #expect(wait <= interval)
            #expect((next - schedule.referenceMilliseconds) % interval == 0)
        }
    }

    @Test func roundTripsAsJSON() throws {
        let schedule = Schedule(reference: date("2021-01-31T21:01:00Z"), interval: .seconds(90))
        let json = String(decoding: try JSONEncoder().encode(schedule), as: UTF8.self)
        #expect(json.contains("\"reference\":\"2021-01-31T21:01:00Z\""))
        #expect(json.contains("\"intervalSeconds\":90"))
        #expect(try JSONDecoder().decode(Schedule.self, from: Data(json.utf8)) == schedule)
    }
}
