@testable import DroverManager
import DroverProtocol
import Testing
import ZKRecipes

/// Missed-run and overlap policies of scheduled jobs (issue 15), decided without a server.
extension LeaderStateTests {
    func submitScheduled(
        _ state: inout LeaderState, _ store: Store, missed: MissedRunPolicy? = nil, overlap: OverlapPolicy? = nil
    ) throws -> Timestamp {
        register(&state, "e1")
        let first = now + 60_000
        try submit(
            &state, store,
            JobSpec(
                method: "m", kind: .infinite, schedule: Schedule(referenceMilliseconds: first, intervalMilliseconds: 60_000), overlap: overlap,
                missedRuns: missed))
        #expect(store.records["j-1"]?.nextRunAt == first)
        #expect(store.records["j-1"]?.scheduledFor == first)
        return first
    }

    @Test func runOnceRunsALateTimeAndSkipSkipsItPastTheDeadline() throws {
        var state = makeState()
        let store = Store()
        let first = try submitScheduled(&state, store)
        try run(&state, store) { $0.planPlacement(now: first + 200_000, loaded: $1) }
        #expect(store.records["j-1"]?.state == .running)  // runOnce (the default): late, but runs

        var skipping = makeState()
        let skipStore = Store()
        let due = try submitScheduled(&skipping, skipStore, missed: MissedRunPolicy(policy: .skip, startingDeadlineSeconds: 10))
        try run(&skipping, skipStore) { $0.planPlacement(now: due + 30_000, loaded: $1) }
        let record = try #require(skipStore.records["j-1"])
        #expect(record.state == .waiting)
        #expect(record.nextRunAt == due + 60_000)
        #expect(record.waitingReason?.contains("past the starting deadline") == true)
        #expect(tasks(skipping, "e1").isEmpty)
        // Within the deadline: runs.
        try run(&skipping, skipStore) { $0.planPlacement(now: due + 65_000, loaded: $1) }
        #expect(skipStore.records["j-1"]?.state == .running)
    }

    @Test func catchUpRunsEachPassedTimeInTurnUpToItsLimit() throws {
        var state = makeState()
        let store = Store()
        let first = try submitScheduled(&state, store, missed: MissedRunPolicy(policy: .catchUp, maxRuns: 2))
        try run(&state, store) { $0.planPlacement(now: first, loaded: $1) }
        // The run stands for `first` and takes 200 s: three times passed meanwhile.
        var at = first + 200_000
        try finish(&state, store, "j-1", on: "e1", at: at)
        #expect(store.records["j-1"]?.scheduledFor == first + 60_000)
        #expect(store.records["j-1"]?.caughtUp == 1)
        try run(&state, store) { $0.planPlacement(now: at, loaded: $1) }
        at += 1_000
        try finish(&state, store, "j-1", on: "e1", at: at)
        #expect(store.records["j-1"]?.scheduledFor == first + 120_000)
        try run(&state, store) { $0.planPlacement(now: at, loaded: $1) }
        at += 1_000
        // Two catch-up runs in a row: the limit; the rest are skipped, the next time after now.
        try finish(&state, store, "j-1", on: "e1", at: at)
        #expect(store.records["j-1"]?.scheduledFor == first + 240_000)
        #expect(store.records["j-1"]?.caughtUp == nil)
        #expect(store.records["j-1"]?.state == .waiting)
    }

    @Test func catchUpAfterALongOutageStartsFromTheOldestTimeWithinTheDeadline() throws {
        var state = makeState()
        let store = Store()
        let first = try submitScheduled(&state, store, missed: MissedRunPolicy(policy: .catchUp, startingDeadlineSeconds: 3_600))
        // No leader for two hours: the first time within the last hour is run, as that time.
        try run(&state, store) { $0.planPlacement(now: first + 7_200_000, loaded: $1) }
        let record = try #require(store.records["j-1"])
        #expect(record.state == .running)
        #expect(record.scheduledFor == first + 3_600_000)
    }

    @Test func replaceStopsTheRunningRunWhenTheNextTimeComesAndStartsThatTimesRun() throws {
        var state = makeState()
        let store = Store()
        let first = try submitScheduled(&state, store, overlap: .replace)
        try run(&state, store) { $0.planPlacement(now: first, loaded: $1) }
        var record = try #require(store.records["j-1"])
        #expect(record.state == .running)
        #expect(record.nextRunAt == first + 60_000, "the next time is kept while the run runs")
        #expect(state.scheduledCount == 1)
        // The next time comes: the run is asked to stop.
        try run(&state, store) { $0.planPlacement(now: first + 60_000, loaded: $1) }
        #expect(tasks(state, "e1").first?.stopRequested == true)
        #expect(store.records["j-1"]?.replacing == true)
        // It ends stopped: the new time's run starts at once, and the job is not stopped.
        try finish(&state, store, "j-1", on: "e1", .failed, at: first + 61_000)
        record = try #require(store.records["j-1"])
        #expect(record.state == .running)
        #expect(record.history.last?.outcome == .stopped)
        #expect(record.history.last?.error?.contains("replaced by the run of the schedule's next time") == true)
        #expect(tasks(state, "e1").map(\.run) == [2])
        #expect(record.nextRunAt == first + 120_000)
        // A new leader keeps that time.
        var next = makeState()
        next.loaded(waitingJobs: [record])
        #expect(next.scheduledCount == 1)
        // A client's stop still stops it.
        try operation(&state, store, .stop, "j-1")
        try finish(&state, store, "j-1", on: "e1", .failed, at: first + 62_000)
        #expect(store.records["j-1"]?.state == .stopped)
    }

    @Test func forbidLetsTheRunGoOnAndTheTimePass() throws {
        var state = makeState()
        let store = Store()
        let first = try submitScheduled(&state, store)
        try run(&state, store) { $0.planPlacement(now: first, loaded: $1) }
        #expect(store.records["j-1"]?.nextRunAt == nil)
        #expect(try run(&state, store) { $0.planPlacement(now: first + 60_000, loaded: $1) } == nil)
        #expect(tasks(state, "e1").first?.stopRequested == false)
    }

    @Test(arguments: [
        (JobSpec(method: "m", overlap: .replace), "overlap"),
        (JobSpec(method: "m", missedRuns: MissedRunPolicy(policy: .skip)), "missedRuns"),
        (
            JobSpec(
                method: "m", kind: .infinite, schedule: Schedule(cron: "@daily"), missedRuns: MissedRunPolicy(policy: .skip, startingDeadlineSeconds: -1)),
            "missedRuns.startingDeadlineSeconds"
        ),
        (JobSpec(method: "m", kind: .infinite, schedule: Schedule(cron: "@daily"), missedRuns: MissedRunPolicy(policy: .skip, maxRuns: 3)), "missedRuns.maxRuns"),
        (
            JobSpec(method: "m", kind: .infinite, schedule: Schedule(cron: "@daily"), missedRuns: MissedRunPolicy(policy: .catchUp, maxRuns: 0)),
            "missedRuns.maxRuns"
        ),
    ])
    func badSchedulePoliciesNameTheirField(spec: JobSpec, field: String) {
        do {
            try spec.validate()
            Issue.record("accepted: \(spec)")
        } catch {
            #expect(error.field == field)
        }
    }
}
