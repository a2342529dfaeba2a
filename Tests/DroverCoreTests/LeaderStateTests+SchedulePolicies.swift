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

/// Found in review of the schedule policies and suspend (issue 15): each a regression test.
extension LeaderStateTests {
    @Test func aSuspendedReplaceJobsRunIsNotStoppedByItsNextTime() throws {
        var state = makeState()
        let store = Store()
        let first = try submitScheduled(&state, store, overlap: .replace)
        try run(&state, store) { $0.planPlacement(now: first, loaded: $1) }
        try operation(&state, store, .suspend, "j-1")
        #expect(store.records["j-1"]?.nextRunAt == nil)
        try run(&state, store) { $0.planPlacement(now: first + 60_000, loaded: $1) }
        #expect(tasks(state, "e1").first?.stopRequested == false, "a suspended job's running run finishes")
        // Resumed while running: its next time is kept again.
        try run(&state, store) { $0.planQueueBatch([QueueOperation(.resume, job: "j-1")], unreadable: [], now: first + 70_000, loaded: $1, placing: true) }
        #expect(store.records["j-1"]?.nextRunAt == first + 120_000)
    }

    @Test func aRunTakenBackWhileBeingReplacedMakesWayForTheNewTimesRunAfresh() throws {
        var state = makeState(grace: .seconds(10))
        let store = Store()
        let first = try submitScheduled(&state, store, overlap: .replace)
        try run(&state, store) { $0.planPlacement(now: first, loaded: $1) }
        try markRunning(&state, "e1", startedAt: first)
        try run(&state, store) { $0.planPlacement(now: first + 60_000, loaded: $1) }
        #expect(store.records["j-1"]?.replacing == true)
        state.livenessChanged("e1", nil, at: start)
        register(&state, "e2")
        try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: first + 70_000, loaded: $1) }
        try run(&state, store) { $0.planQueueBatch([QueueOperation(.submit, job: "j-1")], unreadable: [], now: first + 70_000, loaded: $1, placing: true) }
        let task = try #require(tasks(state, "e2").first)
        #expect(task.run == 2, "a new run, not the old one resumed")
        #expect(task.checkpoint == nil && task.stopRequested == false)
        #expect(store.records["j-1"]?.replacing == nil)
    }

    @Test func resumeKeepsAJobThatStartsLaterWaitingForItsTime() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", notBefore: now + 600_000))
        try operation(&state, store, .suspend, "j-1")
        try operation(&state, store, .resume, "j-1")
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(store.records["j-1"]?.nextRunAt == now + 600_000)
        #expect(tasks(state, "e1").isEmpty)
    }

    @Test func aTriggerOfASuspendedJobWithoutRoomWaitsInLineThenParksAgain() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 1)
        try submit(&state, store, JobSpec(method: "m"), id: "j-busy")
        try submit(&state, store, JobSpec(method: "m", kind: .infinite, schedule: Schedule(referenceMilliseconds: now + 60_000, intervalMilliseconds: 60_000)))
        try operation(&state, store, .suspend, "j-1")
        try operation(&state, store, .trigger, "j-1")
        #expect(store.records["j-1"]?.triggered == true)
        #expect(state.waitingCount == 1, "in line for room")
        try finish(&state, store, "j-busy", on: "e1")
        #expect(store.records["j-1"]?.state == .running)
        try finish(&state, store, "j-1", on: "e1")
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(store.records["j-1"]?.suspended == true && store.records["j-1"]?.nextRunAt == nil)
    }

    @Test func aTriggerUnderCatchUpDoesNotDropTheTimeItWaitedFor() throws {
        var state = makeState()
        let store = Store()
        let first = try submitScheduled(&state, store, missed: MissedRunPolicy(policy: .catchUp))
        try run(&state, store) { $0.planQueueBatch([QueueOperation(.trigger, job: "j-1")], unreadable: [], now: first - 30_000, loaded: $1, placing: true) }
        try finish(&state, store, "j-1", on: "e1", at: first - 20_000)
        #expect(store.records["j-1"]?.nextRunAt == first)
    }

    @Test func skipAppliesToATimeThatWaitedForRoomPastItsDeadline() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 1)
        try submit(&state, store, JobSpec(method: "m"), id: "j-busy")
        let due = now + 60_000
        try submit(
            &state, store,
            JobSpec(
                method: "m", kind: .infinite, schedule: Schedule(referenceMilliseconds: due, intervalMilliseconds: 60_000),
                missedRuns: MissedRunPolicy(policy: .skip, startingDeadlineSeconds: 10)))
        try run(&state, store) { $0.planPlacement(now: due, loaded: $1) }
        #expect(store.records["j-1"]?.state == .waiting && store.records["j-1"]?.nextRunAt == nil, "due, waiting for room")
        // Room comes 30 s after its time: past the deadline, it is skipped.
        try finish(&state, store, "j-busy", on: "e1", at: due + 30_000)
        #expect(tasks(state, "e1").isEmpty)
        #expect(store.records["j-1"]?.nextRunAt == due + 60_000)
    }

    @Test func aJobRecordsWhenItBecameFinalAndRetentionCountsFromThen() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", notBefore: now + 86_400_000))
        let cancelledAt = now + 8 * 86_400_000
        try run(&state, store) { $0.planQueueBatch([QueueOperation(.cancel, job: "j-1")], unreadable: [], now: cancelledAt, loaded: $1, placing: true) }
        let record = try #require(store.records["j-1"])
        #expect(record.finishedAt == cancelledAt)
        #expect(!RetentionRule(periodMilliseconds: 7 * 86_400_000).isDue(record, now: cancelledAt + 1_000))
        try submit(&state, store, JobSpec(method: "m"), id: "j-2")
        try finish(&state, store, "j-2", on: "e1", at: now + 5_000)
        #expect(store.records["j-2"]?.finishedAt == now + 5_000)
    }
}
