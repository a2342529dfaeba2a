@testable import DroverManager
import DroverProtocol
import Testing
import ZKRecipes

/// Retries, failure policies and priorities (issue 15), decided without a server.
extension LeaderStateTests {
    @Test func aFailedRunIsTriedAgainAfterTheBackOffUntilItsAttemptsAreSpent() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        let retry = RetryPolicy(maxAttempts: 3, initialDelaySeconds: 10, maxDelaySeconds: 15, multiplier: 2)
        try submit(&state, store, JobSpec(method: "m", retry: retry))
        var at = now
        for (attempt, wait) in [(2, 10_000), (3, 15_000)] as [(Int, Int64)] {
            try finish(&state, store, "j-1", on: "e1", .failed, at: at)
            let record = try #require(store.records["j-1"])
            #expect(record.state == .waiting)
            #expect(record.attempt == attempt)
            #expect(record.nextRunAt == at + wait, "the wait before attempt \(attempt)")
            #expect(record.waitingReason == "retrying: attempt \(attempt) of 3 after run \(attempt - 1) failed")
            #expect(try run(&state, store) { $0.planPlacement(now: at + wait - 1, loaded: $1) } == nil)
            at += wait
            try run(&state, store) { $0.planPlacement(now: at, loaded: $1) }
            #expect(store.records["j-1"]?.state == .running)
            // Each attempt is a run of its own (its own output), numbered on.
            #expect(tasks(state, "e1").map(\.run) == [attempt])
        }
        try finish(&state, store, "j-1", on: "e1", .failed, at: at)
        let record = try #require(store.records["j-1"])
        #expect(record.state == .failed)
        #expect(record.history.map(\.attempt) == [nil, 2, 3])
        #expect(record.history.map(\.failure) == [.failed, .failed, .failed])
        #expect(record.runsRetried == 2)
        #expect(record.runsFailed == 1)
    }

    @Test func aRetrySucceedsAndTheJobSucceeds() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 2, initialDelaySeconds: 1)))
        try finish(&state, store, "j-1", on: "e1", .failed)
        try run(&state, store) { $0.planPlacement(now: now + 1_000, loaded: $1) }
        try finish(&state, store, "j-1", on: "e1", .succeeded, at: now + 1_000)
        #expect(store.records["j-1"]?.state == .succeeded)
        #expect(store.records["j-1"]?.attempt == nil)
    }

    @Test func onlyTheKindsOfFailureThePolicyNamesAreRetried() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 5, on: [.timedOut])))
        try finish(&state, store, "j-1", on: "e1", .failed, timedOut: true)
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(store.records["j-1"]?.history.last?.failure == .timedOut)
        #expect(store.records["j-1"]?.waitingReason == "retrying: attempt 2 of 5 after run 1 timedOut")
        try run(&state, store) { $0.planPlacement(now: now + 1_000, loaded: $1) }
        try finish(&state, store, "j-1", on: "e1", .failed)
        #expect(store.records["j-1"]?.state == .failed)
    }

    @Test func retriedRunsDoNotCountTowardsAFiniteJobsCount() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .finite, count: 2, retry: RetryPolicy(maxAttempts: 2, initialDelaySeconds: 1)))
        try finish(&state, store, "j-1", on: "e1", .failed)
        try run(&state, store) { $0.planPlacement(now: now + 1_000, loaded: $1) }
        try finish(&state, store, "j-1", on: "e1", .succeeded, at: now + 1_000)
        // One run done of two: the next runs at once, its attempts counted afresh.
        #expect(store.records["j-1"]?.state == .running)
        #expect(store.records["j-1"]?.attempt == nil)
        try finish(&state, store, "j-1", on: "e1", .succeeded, at: now + 1_000)
        let record = try #require(store.records["j-1"])
        #expect(record.state == .succeeded)
        #expect(record.runsEnded == 3)
        #expect(record.runsDone == 2)
    }

    @Test func aFiniteJobThatContinuesAfterFailuresRunsItsCountAndEndsFailed() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .finite, count: 3, onFailure: .continue))
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        try finish(&state, store, "j-1", on: "e1", .failed)
        #expect(store.records["j-1"]?.state == .running)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        let record = try #require(store.records["j-1"])
        #expect(record.state == .failed)
        #expect(record.runsFailed == 1)
        #expect(record.runsDone == 3)
    }

    @Test func anInfiniteJobWithARetryPolicyFailsWhenItsAttemptsInARowAreSpent() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .infinite, retry: RetryPolicy(maxAttempts: 2, initialDelaySeconds: 5)))
        // A success between failures starts the count again.
        try finish(&state, store, "j-1", on: "e1", .failed)
        try run(&state, store) { $0.planPlacement(now: now + 5_000, loaded: $1) }
        try finish(&state, store, "j-1", on: "e1", .succeeded, at: now + 5_000)
        try finish(&state, store, "j-1", on: "e1", .failed, at: now + 5_000)
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(store.records["j-1"]?.nextRunAt == now + 10_000)
        try run(&state, store) { $0.planPlacement(now: now + 10_000, loaded: $1) }
        try finish(&state, store, "j-1", on: "e1", .failed, at: now + 10_000)
        #expect(store.records["j-1"]?.state == .failed)
        #expect(tasks(state, "e1").isEmpty)
    }

    @Test func aRunLostWithItsExecutorCountsAsAnAttemptAndResumesWithItsCheckpoint() throws {
        var state = makeState(grace: .seconds(10))
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 2, on: [.lost])))
        var executorState = try #require(state.executors["e1"]?.state)
        executorState.document.tasks[0].state = .running
        executorState.document.tasks[0].checkpoint = ["done": 3]
        executorState.version += 1
        state.assignmentsChanged("e1", executorState, bytes: 100)
        state.livenessChanged("e1", nil, at: start)
        try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: now, loaded: $1) }
        var record = try #require(store.records["j-1"])
        #expect(record.state == .queued)
        #expect(record.attempt == 2)
        #expect(record.history.map(\.failure) == [.lost])
        #expect(record.history.first?.error == "lost: executor e1 was gone for the grace period")
        register(&state, "e2")
        try operation(&state, store, .submit, "j-1")
        #expect(tasks(state, "e2").first?.run == 1)
        #expect(tasks(state, "e2").first?.checkpoint == ["done": 3])
        // Lost again before it started: only moved, not counted.
        state.livenessChanged("e2", nil, at: start)
        try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: now, loaded: $1) }
        #expect(store.records["j-1"]?.state == .queued)
        #expect(store.records["j-1"]?.attempt == 2)
        register(&state, "e3")
        try operation(&state, store, .submit, "j-1")
        // Lost again after it started: the attempts are spent and the job fails.
        executorState = try #require(state.executors["e3"]?.state)
        executorState.document.tasks[0].state = .running
        executorState.version += 1
        state.assignmentsChanged("e3", executorState, bytes: 100)
        state.livenessChanged("e3", nil, at: start)
        try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: now, loaded: $1) }
        record = try #require(store.records["j-1"])
        #expect(record.state == .failed)
        #expect(record.history.map(\.attempt) == [nil, 2])
        #expect(tasks(state, "e3").isEmpty)
    }

    @Test func withoutAPolicyForLostRunsTheyAreNotCounted() throws {
        var state = makeState(grace: .seconds(10))
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 1, on: [.failed])))
        try markRunning(&state, "e1", startedAt: now)
        state.livenessChanged("e1", nil, at: start)
        try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: now, loaded: $1) }
        #expect(store.records["j-1"]?.state == .queued)
        #expect(store.records["j-1"]?.history.isEmpty == true)
    }

    /// Found in review: a service lost with its executor after running for days must not count
    /// towards "failures in a row" (a run that lasted long starts the count again, as for failures).
    @Test func aServiceLostAfterALongRunStartsItsCountOfAttemptsAgain() throws {
        var state = makeState(grace: .seconds(10))
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .infinite, retry: RetryPolicy(maxAttempts: 2, on: [.lost])))
        store.records["j-1"]?.attempt = 2  // one attempt lost already
        state.known.removeAll()
        try markRunning(&state, "e1", startedAt: now)
        state.livenessChanged("e1", nil, at: start)
        try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: now + 3_600_000, loaded: $1) }
        let record = try #require(store.records["j-1"])
        #expect(record.state == .queued)
        #expect(record.attempt == 2)
        #expect(record.history.last?.failure == .lost)
    }

    func markRunning(_ state: inout LeaderState, _ executor: String, startedAt: Timestamp) throws {
        var executorState = try #require(state.executors[executor]?.state)
        for index in executorState.document.tasks.indices {
            executorState.document.tasks[index].state = .running
            executorState.document.tasks[index].startedAt = startedAt
        }
        executorState.version += 1
        state.assignmentsChanged(executor, executorState, bytes: 100)
    }

    @Test func theRetryDelayGrowsIsCappedAndItsJitterIsTheSameOnEveryLeader() {
        let policy = RetryPolicy(maxAttempts: 10, initialDelaySeconds: 1, maxDelaySeconds: 60, multiplier: 3, jitter: 0.5)
        let plain = RetryPolicy(maxAttempts: 10, initialDelaySeconds: 1, maxDelaySeconds: 60, multiplier: 3)
        #expect((2...6).map { plain.delayMilliseconds(beforeAttempt: $0, job: "j") } == [1_000, 3_000, 9_000, 27_000, 60_000])
        for attempt in 2...10 {
            let delay = policy.delayMilliseconds(beforeAttempt: attempt, job: "j")
            let full = plain.delayMilliseconds(beforeAttempt: attempt, job: "j")
            #expect(delay <= full && delay >= full / 2)
            #expect(delay == policy.delayMilliseconds(beforeAttempt: attempt, job: "j"))
        }
        // Different jobs draw different jitter (they do not retry in step).
        let draws = Set((0..<20).map { policy.delayMilliseconds(beforeAttempt: 2, job: "j-\($0)") })
        #expect(draws.count > 10)
    }

    @Test func aCronJobWaitsForItsNextMatchInItsTimeZoneAndRunsOnEachOne() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        let now: Timestamp = 1_774_699_200_000  // 2026-03-28T12:00Z; Berlin's clocks go forward the next night
        store.records["j-1"] = JobRecord(id: "j-1", spec: JobSpec(method: "m", kind: .infinite, schedule: Schedule(cron: "30 2 * * *", timeZone: "Europe/Berlin")), submittedAt: now)
        try run(&state, store) { $0.planQueueBatch([QueueOperation(.submit, job: "j-1")], unreadable: [], now: now, loaded: $1, placing: true) }
        // 02:30 does not exist on the 29th: due at the end of the gap, 03:00 CEST = 01:00 UTC.
        #expect(store.records["j-1"]?.nextRunAt == 1_774_746_000_000)
        try run(&state, store) { $0.planPlacement(now: 1_774_746_000_000, loaded: $1) }
        try finish(&state, store, "j-1", on: "e1", at: 1_774_746_060_000)
        #expect(store.records["j-1"]?.nextRunAt == 1_774_830_600_000)  // 02:30 CEST on the 30th
    }

    // MARK: Priorities

    @Test func higherPrioritiesArePlacedFirstAndEqualOnesInTheOrderTheyCame() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 1)
        try submit(&state, store, JobSpec(method: "m"), id: "j-running")
        for (id, priority) in [("j-low", 10), ("j-mid-1", 50), ("j-high", 90), ("j-mid-2", nil)] as [(String, Int?)] {
            try submit(&state, store, JobSpec(method: "m", priority: priority), id: id)
        }
        var order: [String] = []
        var running = "j-running"
        for _ in 0..<4 {
            try finish(&state, store, running, on: "e1")
            running = try #require(tasks(state, "e1").first?.job)
            order.append(running)
        }
        #expect(order == ["j-high", "j-mid-1", "j-mid-2", "j-low"])
    }

    @Test func aHighPriorityJobThatFitsNowhereDoesNotHoldBackOthers() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 1)
        try submit(&state, store, JobSpec(method: "m"), id: "j-running")
        try submit(&state, store, JobSpec(method: "m", resources: Resources(slots: 2), priority: 100), id: "j-big")
        try submit(&state, store, JobSpec(method: "m", priority: 1), id: "j-small")
        try finish(&state, store, "j-running", on: "e1")
        #expect(tasks(state, "e1").map(\.job) == ["j-small"])
        #expect(store.records["j-big"]?.state == .waiting)
    }

    @Test(arguments: [
        (JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 0)), "retry.maxAttempts"),
        (JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 2, initialDelaySeconds: -1)), "retry.initialDelaySeconds"),
        (JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 2, initialDelaySeconds: 10, maxDelaySeconds: 5)), "retry.maxDelaySeconds"),
        (JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 2, multiplier: .nan)), "retry.multiplier"),
        (JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 2, jitter: 2)), "retry.jitter"),
        (JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 2, on: [])), "retry.on"),
        (JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 2, on: [FailureKind(rawValue: "sometimes")])), "retry.on"),
        (JobSpec(method: "m", onFailure: .continue), "onFailure"),
        (JobSpec(method: "m", priority: 0), "priority"),
        (JobSpec(method: "m", priority: 101), "priority"),
    ])
    func badRetryPoliciesAndPrioritiesNameTheirField(spec: JobSpec, field: String) {
        #expect(throws: SpecError.self) { try spec.validate() }
        do {
            try spec.validate()
        } catch {
            #expect(error.field == field)
        }
    }
}
