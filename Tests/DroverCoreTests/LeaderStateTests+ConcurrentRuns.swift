@testable import DroverManager
import DroverProtocol
import Testing
import ZKRecipes

/// Scheduled jobs with `overlap: allow` (issue 15): several runs at once, decided without a server.
extension LeaderStateTests {
    /// Submits an `overlap: allow` job due every minute from `now + 60 s`; returns its first time.
    func submitAllowing(
        _ state: inout LeaderState, _ store: Store, kind: JobSpec.Kind = .infinite, count: Int? = nil, maximum: Int? = 2, slots: Int = 4
    ) throws -> Timestamp {
        register(&state, "e1", slots: slots)
        let first = now + 60_000
        let spec = JobSpec(
            method: "m", kind: kind, count: count, schedule: Schedule(referenceMilliseconds: first, intervalMilliseconds: 60_000), overlap: .allow,
            maxConcurrentRuns: maximum)
        try spec.validate()
        #expect(spec.requiredFormat == 4)
        try submit(&state, store, spec)
        #expect(store.records["j-1"]?.nextRunAt == first)
        return first
    }

    /// Ends run `run` of job `id` on `executor` as the executor would, then collects.
    func finishRun(
        _ state: inout LeaderState, _ store: Store, _ id: String, run number: Int, on executor: String, _ outcome: TaskState = .succeeded,
        at time: Timestamp
    ) throws {
        var executorState = try #require(state.executors[executor]?.state)
        let index = try #require(executorState.document.tasks.firstIndex { $0.job == id && $0.run == number && !$0.state.isFinished })
        executorState.document.tasks[index].state = outcome
        executorState.document.tasks[index].attempts += 1
        executorState.document.tasks[index].endedAt = time
        executorState.version += 1
        state.assignmentsChanged(executor, executorState, bytes: 100)
        try run(&state, store) { $0.planCollection(now: time, loaded: $1) }
    }

    @Test func allowRunsEachTimeBesideTheRunningRunsUpToItsMaximumAndAStopStopsThemAll() throws {
        var state = makeState()
        let store = Store()
        let first = try submitAllowing(&state, store)
        try run(&state, store) { $0.planPlacement(now: first, loaded: $1) }
        #expect(store.records["j-1"]?.state == .running)
        #expect(store.records["j-1"]?.nextRunAt == first + 60_000, "the next time is kept while the run runs")
        // The next time comes while run 1 runs: run 2 starts beside it.
        try run(&state, store) { $0.planPlacement(now: first + 60_000, loaded: $1) }
        #expect(tasks(state, "e1").map(\.run) == [1, 2])
        #expect(store.records["j-1"]?.concurrentRuns?.map(\.scheduledFor) == [first, first + 60_000])
        // Two run, the maximum: the third time passes, and the job waits for the fourth.
        try run(&state, store) { $0.planPlacement(now: first + 120_000, loaded: $1) }
        #expect(tasks(state, "e1").map(\.run) == [1, 2])
        #expect(store.records["j-1"]?.nextRunAt == first + 180_000)
        // Run 1 ends: the job runs on with run 2; the fourth time starts run 3.
        try finishRun(&state, store, "j-1", run: 1, on: "e1", at: first + 130_000)
        var record = try #require(store.records["j-1"])
        #expect(record.state == .running)
        #expect(record.history.map(\.run) == [1])
        #expect(record.concurrentRuns?.map(\.run) == [2])
        try run(&state, store) { $0.planPlacement(now: first + 180_000, loaded: $1) }
        #expect(tasks(state, "e1").map(\.run) == [2, 3])
        record = try #require(store.records["j-1"])
        #expect(record.executorsOfRuns == ["e1", "e1"])
        // A new leader keeps its time and checks both runs.
        var next = makeState()
        next.loaded(waitingJobs: [record])
        next.adoptRunning([record])
        #expect(next.scheduledCount == 1)
        #expect(next.waitingCount == 0)
        // A stop asks both to stop; the job is stopped once both ended.
        try operation(&state, store, .stop, "j-1")
        #expect(tasks(state, "e1").allSatisfy { $0.stopRequested })
        #expect(store.records["j-1"]?.nextRunAt == nil)
        try finishRun(&state, store, "j-1", run: 2, on: "e1", .failed, at: first + 190_000)
        #expect(store.records["j-1"]?.state == .running)
        try finishRun(&state, store, "j-1", run: 3, on: "e1", .failed, at: first + 191_000)
        record = try #require(store.records["j-1"])
        #expect(record.state == .stopped)
        #expect(record.history.map(\.outcome) == [.succeeded, .stopped, .stopped])
        #expect(record.concurrentRuns == nil)
    }

    @Test func aFiniteAllowJobStartsCountRunsAndAFailureStartsNoMore() throws {
        var state = makeState()
        let store = Store()
        let first = try submitAllowing(&state, store, kind: .finite, count: 2, maximum: 3)
        try run(&state, store) { $0.planPlacement(now: first, loaded: $1) }
        try run(&state, store) { $0.planPlacement(now: first + 60_000, loaded: $1) }
        #expect(tasks(state, "e1").map(\.run) == [1, 2])
        #expect(store.records["j-1"]?.nextRunAt == nil, "two runs started of two: no time is to come")
        try finishRun(&state, store, "j-1", run: 2, on: "e1", at: first + 70_000)
        #expect(store.records["j-1"]?.state == .running)
        try finishRun(&state, store, "j-1", run: 1, on: "e1", at: first + 80_000)
        #expect(store.records["j-1"]?.state == .succeeded)

        var failing = makeState()
        let failingStore = Store()
        _ = try submitAllowing(&failing, failingStore, kind: .finite, count: 5, maximum: 3)
        try run(&failing, failingStore) { $0.planPlacement(now: first, loaded: $1) }
        try run(&failing, failingStore) { $0.planPlacement(now: first + 60_000, loaded: $1) }
        try finishRun(&failing, failingStore, "j-1", run: 1, on: "e1", .failed, at: first + 61_000)
        // onFailure stop (the default): run 2 finishes, no later time starts one.
        #expect(failingStore.records["j-1"]?.nextRunAt == nil)
        #expect(tasks(failing, "e1").filter { !$0.state.isFinished }.map(\.run) == [2])
        try run(&failing, failingStore) { $0.planPlacement(now: first + 120_000, loaded: $1) }
        try finishRun(&failing, failingStore, "j-1", run: 2, on: "e1", at: first + 125_000)
        #expect(failingStore.records["j-1"]?.state == .failed)
        #expect(failingStore.records["j-1"]?.runsStarted == 2)
    }

    @Test func aRunWithoutRoomWaitsInLineAndARunTakenBackKeepsItsNumber() throws {
        var state = makeState(grace: .seconds(10))
        let store = Store()
        let first = try submitAllowing(&state, store, slots: 1)
        try run(&state, store) { $0.planPlacement(now: first, loaded: $1) }
        try run(&state, store) { $0.planPlacement(now: first + 60_000, loaded: $1) }
        // No room for the second time's run: it waits in line while run 1 runs.
        var record = try #require(store.records["j-1"])
        #expect(record.state == .running)
        #expect(record.concurrentRuns?.count == 2)
        #expect(record.concurrentRuns?.last?.executor == nil)
        #expect(record.concurrentRuns?.last?.waitingReason != nil)
        #expect(state.waitingCount == 1)
        #expect(state.scheduledCount == 1)
        // Run 1 ends: the waiting one takes its room, as run 2.
        try finishRun(&state, store, "j-1", run: 1, on: "e1", at: first + 70_000)
        #expect(tasks(state, "e1").map(\.run) == [2])
        #expect(state.waitingCount == 0)
        // Its executor dies: run 2 moves to e2 with its number.
        try markRunning(&state, "e1", startedAt: first + 70_000)
        state.livenessChanged("e1", nil, at: start)
        register(&state, "e2", slots: 1)
        try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: first + 80_000, loaded: $1) }
        #expect(tasks(state, "e1").isEmpty)
        // Taken back, it waits in line with its number; the line places it.
        #expect(tasks(state, "e2").isEmpty)
        #expect(store.records["j-1"]?.concurrentRuns?.first?.resume != nil)
        #expect(state.waitingCount == 1)
        try run(&state, store) { $0.planPlacement(now: first + 80_000, loaded: $1) }
        let moved = try #require(tasks(state, "e2").first)
        #expect(moved.run == 2)
        #expect(moved.attempts == 0)
        record = try #require(store.records["j-1"])
        #expect(record.concurrentRuns?.map(\.executor) == ["e2"])
        #expect(record.runsStarted == 2)
    }

    /// Found by the review of issue 15: with `missedRuns: skip`, a time's run that waited for room
    /// past the starting deadline started however late; now its time passes.
    @Test func aSkipPolicysDeadlineAppliesToAnAllowRunThatWaitedForRoom() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 1)
        let first = now + 60_000
        let spec = JobSpec(
            method: "m", kind: .infinite, schedule: Schedule(referenceMilliseconds: first, intervalMilliseconds: 60_000), overlap: .allow,
            missedRuns: MissedRunPolicy(policy: .skip, startingDeadlineSeconds: 10), maxConcurrentRuns: 2)
        try spec.validate()
        try submit(&state, store, spec)
        try run(&state, store) { $0.planPlacement(now: first, loaded: $1) }
        try run(&state, store) { $0.planPlacement(now: first + 60_000, loaded: $1) }
        #expect(store.records["j-1"]?.concurrentRuns?.count == 2, "the second time's run waits for room")
        // Run 1 ends 30 s after the second time: past its 10 s deadline, that run never starts.
        try finishRun(&state, store, "j-1", run: 1, on: "e1", at: first + 90_000)
        #expect(tasks(state, "e1").isEmpty)
        let record = try #require(store.records["j-1"])
        #expect(record.concurrentRuns == nil)
        #expect(record.state == .waiting && record.nextRunAt == first + 120_000)
        // Within the deadline it would have started: the third time's run does.
        try run(&state, store) { $0.planPlacement(now: first + 120_000, loaded: $1) }
        #expect(tasks(state, "e1").map(\.run) == [2])
    }

    /// Found by the review of issue 15: a cancel of an allow job whose only run was taken back and
    /// waits to be placed again dropped that run without a word in the history.
    @Test func aCancelEndsAnAllowJobsTakenBackRunInItsHistory() throws {
        var state = makeState(grace: .seconds(10))
        let store = Store()
        let first = try submitAllowing(&state, store, slots: 1)
        try run(&state, store) { $0.planPlacement(now: first, loaded: $1) }
        try markRunning(&state, "e1", startedAt: first)
        state.livenessChanged("e1", nil, at: start)
        try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: first + 20_000, loaded: $1) }
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(store.records["j-1"]?.concurrentRuns?.first?.run == 1)
        try operation(&state, store, .cancel, "j-1")
        let record = try #require(store.records["j-1"])
        #expect(record.state == .cancelled)
        #expect(record.history.map(\.run) == [1])
        #expect(record.history.first?.outcome == .stopped)
        #expect(record.history.first?.error?.contains("cancelled") == true)
        #expect(record.runsEnded == 1)
    }

    @Test func anAllowJobIsSuspendedTriggeredAndResumed() throws {
        var state = makeState()
        let store = Store()
        let first = try submitAllowing(&state, store)
        try run(&state, store) { $0.planPlacement(now: first, loaded: $1) }
        try operation(&state, store, .suspend, "j-1")
        #expect(store.records["j-1"]?.nextRunAt == nil, "no time comes while suspended")
        #expect(tasks(state, "e1").first?.stopRequested == false, "the running run finishes")
        // A trigger runs one more now, beside it.
        try operation(&state, store, .trigger, "j-1")
        #expect(tasks(state, "e1").map(\.run) == [1, 2])
        #expect(store.records["j-1"]?.concurrentRuns?.last?.scheduledFor == nil)
        // At the maximum a trigger adds nothing.
        try operation(&state, store, .trigger, "j-1")
        #expect(tasks(state, "e1").count == 2)
        try finishRun(&state, store, "j-1", run: 1, on: "e1", at: first + 10_000)
        try finishRun(&state, store, "j-1", run: 2, on: "e1", at: first + 11_000)
        var record = try #require(store.records["j-1"])
        #expect(record.state == .waiting)
        #expect(record.suspended == true)
        #expect(record.nextRunAt == nil)
        // Resumed: the next time after now (`now` is before the first time: that one).
        try operation(&state, store, .resume, "j-1")
        record = try #require(store.records["j-1"])
        #expect(record.suspended == nil)
        #expect(record.nextRunAt == first)
        #expect(state.scheduledCount == 1)
    }

    @Test(arguments: [
        (JobSpec(method: "m", schedule: Schedule(cron: "@daily"), overlap: .allow), "overlap"),
        (JobSpec(method: "m", kind: .infinite, schedule: Schedule(cron: "@daily"), maxConcurrentRuns: 3), "maxConcurrentRuns"),
        (JobSpec(method: "m", kind: .infinite, schedule: Schedule(cron: "@daily"), overlap: .allow, maxConcurrentRuns: 0), "maxConcurrentRuns"),
        (JobSpec(method: "m", kind: .infinite, schedule: Schedule(cron: "@daily"), overlap: .allow, maxConcurrentRuns: 101), "maxConcurrentRuns"),
        (JobSpec(method: "m", kind: .infinite, schedule: Schedule(cron: "@daily"), retry: RetryPolicy(maxAttempts: 2), overlap: .allow), "retry"),
        (
            JobSpec(method: "m", kind: .infinite, schedule: Schedule(cron: "@daily"), overlap: .allow, missedRuns: MissedRunPolicy(policy: .catchUp)),
            "missedRuns.policy"
        ),
    ])
    func badConcurrentRunPoliciesNameTheirField(spec: JobSpec, field: String) {
        do {
            try spec.validate()
            Issue.record("accepted: \(spec)")
        } catch {
            #expect(error.field == field)
        }
    }
}
