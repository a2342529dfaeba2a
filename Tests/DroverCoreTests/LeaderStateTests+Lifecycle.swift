@testable import DroverManager
import DroverProtocol
import Testing
import ZKRecipes

/// Suspend, resume, trigger and a later start (issue 15), decided without a server.
extension LeaderStateTests {
    func scheduledJob(_ state: inout LeaderState, _ store: Store) throws -> Schedule {
        register(&state, "e1")
        let schedule = Schedule(referenceMilliseconds: now + 60_000, intervalMilliseconds: 60_000)
        try submit(&state, store, JobSpec(method: "m", kind: .infinite, schedule: schedule))
        #expect(store.records["j-1"]?.nextRunAt == now + 60_000)
        return schedule
    }

    @Test func aSuspendedScheduledJobSkipsItsTimesAndResumesAtTheNextOne() throws {
        var state = makeState()
        let store = Store()
        _ = try scheduledJob(&state, store)
        try operation(&state, store, .suspend, "j-1")
        var record = try #require(store.records["j-1"])
        #expect(record.state == .waiting && record.suspended == true && record.nextRunAt == nil)
        #expect(record.waitingReason == "suspended (drover resume continues it)")
        // Its times pass: nothing runs.
        #expect(try run(&state, store) { $0.planPlacement(now: now + 200_000, loaded: $1) } == nil)
        #expect(tasks(state, "e1").isEmpty)
        // Resumed at +200 s: the next time after that, not the three that passed.
        try run(&state, store) { $0.planQueueBatch([QueueOperation(.resume, job: "j-1")], unreadable: [], now: now + 200_000, loaded: $1, placing: true) }
        record = try #require(store.records["j-1"])
        #expect(record.suspended == nil)
        #expect(record.nextRunAt == now + 240_000)
        try run(&state, store) { $0.planPlacement(now: now + 240_000, loaded: $1) }
        #expect(store.records["j-1"]?.state == .running)
    }

    @Test func aRunningJobSuspendedFinishesItsRunThenWaitsAndANewLeaderLeavesItWaiting() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .infinite))
        try operation(&state, store, .suspend, "j-1")
        #expect(store.records["j-1"]?.state == .running)
        try finish(&state, store, "j-1", on: "e1")
        let record = try #require(store.records["j-1"])
        #expect(record.state == .waiting && record.suspended == true)
        #expect(tasks(state, "e1").isEmpty)
        #expect(state.waitingCount == 0)
        // A new leader does not put it in line either.
        var next = makeState()
        next.loaded(waitingJobs: [record])
        #expect(next.waitingCount == 0 && next.scheduledCount == 0)
        // Resumed: placed at once.
        try operation(&state, store, .resume, "j-1")
        #expect(store.records["j-1"]?.state == .running)
        #expect(tasks(state, "e1").map(\.run) == [2])
    }

    @Test func triggerRunsAScheduledJobNowAndItsScheduleGoesOn() throws {
        var state = makeState()
        let store = Store()
        _ = try scheduledJob(&state, store)
        try operation(&state, store, .trigger, "j-1")
        #expect(store.records["j-1"]?.state == .running)
        // A second trigger while it runs changes nothing (runs never overlap).
        #expect(try operation(&state, store, .trigger, "j-1")?.changedJobs.isEmpty ?? true)
        #expect(tasks(state, "e1").count == 1)
        try finish(&state, store, "j-1", on: "e1", at: now + 1_000)
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(store.records["j-1"]?.nextRunAt == now + 60_000)
    }

    @Test func aSuspendedJobCanBeTriggeredAndStopped() throws {
        var state = makeState()
        let store = Store()
        _ = try scheduledJob(&state, store)
        try operation(&state, store, .suspend, "j-1")
        try operation(&state, store, .trigger, "j-1")
        #expect(store.records["j-1"]?.state == .running)
        try finish(&state, store, "j-1", on: "e1")
        #expect(store.records["j-1"]?.suspended == true)
        #expect(store.records["j-1"]?.nextRunAt == nil)
        try operation(&state, store, .stop, "j-1")
        #expect(store.records["j-1"]?.state == .stopped)
        #expect(store.records["j-1"]?.suspended == nil)
    }

    @Test func aJobThatStartsLaterWaitsForItsTime() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", notBefore: now + 30_000))
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(store.records["j-1"]?.nextRunAt == now + 30_000)
        #expect(try run(&state, store) { $0.planPlacement(now: now + 29_999, loaded: $1) } == nil)
        try run(&state, store) { $0.planPlacement(now: now + 30_000, loaded: $1) }
        #expect(store.records["j-1"]?.state == .running)
        // A scheduled job that starts later: its first time at or after then.
        let schedule = Schedule(referenceMilliseconds: now, intervalMilliseconds: 60_000)
        try submit(&state, store, JobSpec(method: "m", kind: .infinite, schedule: schedule, notBefore: now + 120_000), id: "j-2")
        #expect(store.records["j-2"]?.nextRunAt == now + 120_000)
    }
}
