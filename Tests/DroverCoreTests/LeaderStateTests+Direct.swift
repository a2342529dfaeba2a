@testable import DroverManager
import DroverProtocol
import Testing
import ZooKeeper
import ZKRecipes

/// The leader's side of the direct path without a server: adoption of claims, take-over, and
/// claims it does not expect.
extension LeaderStateTests {
    /// The executor's progress naming a task it claimed (as its `StateWriter` writes it).
    func claim(_ state: inout LeaderState, _ record: JobRecord, task index: Int, on executor: String, _ taskState: TaskState = .running, version: Int32 = 1) {
        var task = ClaimedTask.task(index, of: record.id, spec: record.spec, claimedAt: now)!
        task.state = taskState
        task.attempts = 1
        task.startedAt = now
        if taskState.isFinished { task.endedAt = now + 5 }
        var progress = state.executors[executor]?.progress?.document ?? ExecutorProgress(executor: executor)
        progress.tasks.removeAll { $0.placementKey == task.placementKey }
        progress.tasks.append(TaskProgress(of: task))
        _ = state.progressChanged(executor, Versioned(document: progress, version: version), bytes: 100)
    }

    func directSubmit(
        _ state: inout LeaderState, _ store: Store, tasks: Int, reservedOn: [String], id: String = "j-d", placement: PlacementPolicy = .batchLateBinding
    ) throws {
        var record = JobRecord(id: id, spec: JobSpec(method: "work", tasks: tasks, placement: placement), submittedAt: now)
        record.reservedOn = reservedOn
        store.records[id] = record
        try run(&state, store) { $0.planQueueBatch([QueueOperation(.submit, job: id)], unreadable: [], now: now, loaded: $1, placing: true) }
    }

    @Test func aDirectJobWaitsForClaimsAndTheLeaderAdoptsThemUnderTheExecutorsOwnKey() throws {
        var state = makeState()
        let store = Store()
        register(&state, "a")
        register(&state, "b")
        try directSubmit(&state, store, tasks: 2, reservedOn: ["a", "b", "a", "b"])
        var record = try #require(store.records["j-d"])
        // Nothing placed by the leader: both tasks wait for claims, and it says so.
        #expect(record.state == .waiting)
        #expect(record.claimableTasks == [0, 1])
        #expect(record.waitingReason?.contains("reserved on 2 executors") == true, "\(String(describing: record.waitingReason))")
        #expect(tasks(state, "a").isEmpty && tasks(state, "b").isEmpty)
        #expect(state.directJobs["j-d"] != nil)

        // a claims task 1, b task 0 (the order their claims were made in).
        claim(&state, record, task: 1, on: "a")
        claim(&state, record, task: 0, on: "b")
        let adoption = try run(&state, store) { $0.planAdoption(now: now, loaded: $1) ?? .nothing }
        #expect(adoption != nil)
        record = try #require(store.records["j-d"])
        #expect(record.state == .running)
        #expect(record.steps?.map(\.executor) == ["b", "a"])
        #expect(record.steps?.map(\.run) == [1, 2])
        #expect(record.claimableTasks.isEmpty)
        #expect(state.directJobs["j-d"] == nil)
        // The assignments hold each task under the key the executor chose, so its progress lays over it.
        #expect(tasks(state, "a").map(\.placementKey) == ["j-d#2@claim-1"])
        #expect(tasks(state, "a").first?.state == .running)
        #expect(tasks(state, "a").first?.claimed == nil)
        // Nothing more to adopt.
        #expect(try run(&state, store) { $0.planAdoption(now: now, loaded: $1) ?? .nothing } == nil)

        // The executors write the ends in their progress, as they wrote the starts.
        claim(&state, record, task: 1, on: "a", .succeeded, version: 2)
        claim(&state, record, task: 0, on: "b", .succeeded, version: 2)
        try run(&state, store) { $0.planCollection(now: now, loaded: $1) }
        record = try #require(store.records["j-d"])
        #expect(record.state == .succeeded)
        // Collected: the executors are told to forget the claims (they may never have seen them adopted).
        #expect(state.executors["a"]?.assignments?.document.collectedClaims == ["j-d#2@claim-1"])
        #expect(state.executors["b"]?.assignments?.document.collectedClaims == ["j-d#1@claim-0"])
        #expect(state.unadoptedClaims.isEmpty)
        #expect(state.directEnded["j-d"]?.executors == ["a", "b", "a", "b"])
        #expect(state.directEnded["j-d"]?.reusable == true)  // its reservations and claims are cleared next
        #expect(state.directEnded["j-d"]?.exactClaims == nil)  // late binding's may be left: read before they are deleted
    }

    @Test func aClaimThatEndedBeforeTheLeaderLookedIsAdoptedAndCollectedInOneTransaction() throws {
        var state = makeState()
        let store = Store()
        register(&state, "a")
        try directSubmit(&state, store, tasks: 1, reservedOn: ["a"])
        let record = try #require(store.records["j-d"])
        claim(&state, record, task: 0, on: "a", .succeeded)
        let transaction = try #require(try run(&state, store) { $0.planAdoption(now: now, loaded: $1) ?? .nothing })
        #expect(transaction.changedJobs == ["j-d"])
        let ended = try #require(store.records["j-d"])
        #expect(ended.state == .succeeded, "\(ended)")
        #expect(ended.history.map(\.executor) == ["a"])
        // Never in the assignments; the executor is told to forget it.
        #expect(tasks(state, "a").isEmpty)
        #expect(state.executors["a"]?.assignments?.document.collectedClaims == ["j-d#1@claim-0"])
        #expect(state.unadoptedClaims.isEmpty)
    }

    /// Found by a chaos run over TLS: a new leader took over, 3 s after it began to lead, claims
    /// whose tasks had run and ended — it had not read those executors yet, and took "unknown" for
    /// "gone".
    @Test func aJobWhoseTasksAllRanAsTheirClaimsLeavesExactlyItsClaims() throws {
        var state = makeState()
        let store = Store()
        register(&state, "a")
        register(&state, "b")
        try directSubmit(&state, store, tasks: 2, reservedOn: ["a", "b"], placement: .random)
        let record = try #require(store.records["j-d"])
        claim(&state, record, task: 0, on: "b", .succeeded)
        claim(&state, record, task: 1, on: "a", .succeeded)
        try run(&state, store) { $0.planAdoption(now: now, loaded: $1) ?? .nothing }
        #expect(try #require(store.records["j-d"]).state == .succeeded)
        // Each claim used up a reservation of its own: none left, and the claims are t-0 and t-1.
        #expect(state.directEnded["j-d"] == LeaderState.DirectLeftovers(executors: ["a", "b"], reusable: false, exactClaims: 2))
        #expect(Layout().claim(1, of: "j-d") == Layout().jobClaims("j-d") + "/t-0000000001")

        // A task the leader took over (its run numbered after the claims'): what is left is read first.
        try directSubmit(&state, store, tasks: 1, reservedOn: ["b"], id: "j-e", placement: .random)
        state.livenessChanged("b", nil, at: start)
        try run(&state, store) { $0.planTakeOver("j-e", tasks: [0], now: now, loaded: $1) }
        var taken = try #require(store.records["j-e"])
        #expect(taken.steps?.first?.run == 2)
        taken.state = .succeeded
        state.trackDirect(taken)
        #expect(state.directEnded["j-e"]?.exactClaims == nil)
    }

    @Test func aNewLeaderTakesOverNothingOfExecutorsItHasNotReadYet() throws {
        var state = makeState(grace: .seconds(5))
        let store = Store()
        try directSubmit(&state, store, tasks: 1, reservedOn: ["b"])
        let record = try #require(store.records["j-d"])
        let late = start + .seconds(60)
        func mayTake(age: Duration = .zero, instance: String? = "p1") -> Bool {
            state.mayTakeOverClaim(of: "b", instance: instance, job: "j-d", task: 0, age: age, claimTimeout: .seconds(30), at: late)
        }
        // The executors not listed yet: nothing is known, nothing taken over.
        #expect(state.directTakeOvers(now: now, claimTimeout: .seconds(30)).isEmpty)
        #expect(!mayTake())
        // The listing read without b: b is unknown — reachable while the job is younger than the
        // grace period (b may have registered a moment ago), gone after.
        state.executorListed("a", at: start)
        #expect(state.directTakeOvers(now: now + 4_000, claimTimeout: .seconds(30)).isEmpty)
        #expect(state.directTakeOvers(now: now + 5_000, claimTimeout: .seconds(30)).map(\.job) == ["j-d"])
        // Listed, its liveness and progress not read, long past the grace period: still nothing.
        state.executorListed("b", at: start)
        #expect(state.directTakeOvers(now: now, claimTimeout: .seconds(30)).isEmpty)
        #expect(!mayTake(age: .seconds(60)))
        #expect(!state.isDead("b", at: late))
        // Registered by the process that claimed; its progress read and naming the claim: adopted, never taken over.
        var registration = ExecutorRegistration(id: "b", capacity: Resources(cpu: 4, memoryMB: 4096, slots: 2))
        registration.instance = "p1"
        state.livenessChanged("b", registration, at: start)
        state.assignmentsChanged("b", Versioned(document: ExecutorState(executor: "b"), version: 0), bytes: 100)
        #expect(!mayTake())
        claim(&state, record, task: 0, on: "b", .succeeded)
        #expect(!mayTake(age: .seconds(60)))
        // Its progress names nothing: the claim is taken over past the claim timeout, or once another process registered.
        _ = state.progressChanged("b", Versioned(document: ExecutorProgress(executor: "b"), version: 2), bytes: 10)
        #expect(!mayTake(age: .seconds(10)))
        #expect(mayTake(age: .seconds(30)))
        #expect(mayTake(instance: "p0"))
        // Gone (its liveness read and missing) for the grace period: taken over.
        state.livenessChanged("b", nil, at: start)
        #expect(mayTake())
        #expect(state.isDead("b", at: late))
        // An executor the listing does not hold is gone — once its claim is older than the grace
        // period (one that registered a moment ago may not be listed yet).
        #expect(!state.mayTakeOverClaim(of: "nobody", instance: nil, job: "j-d", task: 0, age: .seconds(1), claimTimeout: .seconds(30), at: start))
        #expect(state.mayTakeOverClaim(of: "nobody", instance: nil, job: "j-d", task: 0, age: .seconds(5), claimTimeout: .seconds(30), at: start))
    }

    @Test func anUnlistedExecutorsClaimIsTakenOverNoSoonerThanItCouldStartAloneWhateverTheGracePeriod() throws {
        // --grace 0.1 s: an executor that registered a moment ago may still start its claimed task
        // by itself up to 2 s after the claim, so its claim is not taken over before 5 s.
        var state = makeState(grace: .milliseconds(100))
        let store = Store()
        try directSubmit(&state, store, tasks: 1, reservedOn: ["b"])
        state.executorListed("a", at: start)  // the listing read, without "new"
        #expect(!state.mayTakeOverClaim(of: "new", instance: nil, job: "j-d", task: 0, age: .seconds(2), claimTimeout: .seconds(30), at: start))
        #expect(!state.mayTakeOverClaim(of: "new", instance: nil, job: "j-d", task: 0, age: .milliseconds(4_999), claimTimeout: .seconds(30), at: start))
        #expect(state.mayTakeOverClaim(of: "new", instance: nil, job: "j-d", task: 0, age: .seconds(5), claimTimeout: .seconds(30), at: start))
    }

    /// A process that restarted and claimed before this leader read its new registration holds a
    /// live claim: only claims made before the registration the leader knows are lost.
    @Test func aClaimByAProcessNewerThanTheKnownRegistrationIsNotLost() {
        var state = makeState()
        var registration = ExecutorRegistration(id: "b", capacity: Resources(cpu: 4, memoryMB: 4096, slots: 2))
        registration.instance = "p1"
        state.executorListed("b", at: start)
        state.livenessChanged("b", registration, at: start, registeredAt: 10_000)
        #expect(state.lostClaims(of: "b", instance: "p0", claimedAt: 9_000, at: start))
        #expect(!state.lostClaims(of: "b", instance: "p2", claimedAt: 11_000, at: start))
        #expect(!state.lostClaims(of: "b", instance: "p1", claimedAt: 9_000, at: start))
    }

    @Test func reservationsOnGoneExecutorsAreTakenOverAndALateClaimIsStoppedNotRun() throws {
        var state = makeState(grace: .seconds(5))
        let store = Store()
        register(&state, "a")
        register(&state, "b")
        try directSubmit(&state, store, tasks: 1, reservedOn: ["b"])
        // While b is registered and the timeout has not passed, the tasks wait for b.
        #expect(state.directTakeOvers(now: now, claimTimeout: .seconds(30)).isEmpty)
        // The timeout passed: taken over.
        #expect(state.directTakeOvers(now: now + 30_000, claimTimeout: .seconds(30)).map(\.job) == ["j-d"])
        // b is gone: taken over at once.
        state.livenessChanged("b", nil, at: start)
        let takeOvers = state.directTakeOvers(now: now, claimTimeout: .seconds(30))
        #expect(takeOvers == [LeaderState.TakeOver(job: "j-d", tasks: 1, claimable: [0])])
        // Its claims say whose they are: a gone executor's are lost after the grace period only.
        #expect(!state.lostClaims(of: "b", instance: nil, at: start + .seconds(1)))
        #expect(state.lostClaims(of: "b", instance: nil, at: start + .seconds(5)))
        #expect(state.lostClaims(of: "nobody", instance: nil, at: start))

        // The leader holds task 0's claim: it places it itself, on a, as a run after the claims' numbers.
        try run(&state, store) { $0.planTakeOver("j-d", tasks: [0], now: now, loaded: $1) }
        var record = try #require(store.records["j-d"])
        #expect(record.state == .running)
        #expect(record.steps?.first?.executor == "a")
        #expect(record.steps?.first?.run == 2)
        #expect(tasks(state, "a").map(\.run) == [2])
        // Taking over again changes nothing.
        #expect(try run(&state, store) { $0.planTakeOver("j-d", tasks: [0], now: now, loaded: $1) } == nil)

        // b comes back and, with its old reservation, claims task 0 (it could not know): the leader
        // enters it asked to stop and leaves the record as it is.
        register(&state, "b")
        claim(&state, record, task: 0, on: "b")
        try run(&state, store) { $0.planAdoption(now: now, loaded: $1) ?? .nothing }
        let entered = try #require(tasks(state, "b").first)
        #expect(entered.stopRequested)
        #expect(try #require(store.records["j-d"]).steps?.first?.executor == "a")
        // Its end is collected as a run the record does not expect, and it is not adopted again.
        claim(&state, record, task: 0, on: "b", .failed, version: 2)
        try run(&state, store) { $0.planCollection(now: now, loaded: $1) }
        #expect(tasks(state, "b").isEmpty)
        #expect(state.unadoptedClaims.isEmpty)
        record = try #require(store.records["j-d"])
        #expect(record.state == .running && record.steps?.first?.executor == "a")
        try finish(&state, store, "j-d", on: "a")
        #expect(try #require(store.records["j-d"]).state == .succeeded)
    }

    @Test func aTakeOverOfAnExecutorsClaimHoldsToTheProgressItWasDecidedOn() throws {
        var state = makeState(grace: .seconds(5))
        let store = Store()
        register(&state, "a")
        register(&state, "b")
        try directSubmit(&state, store, tasks: 2, reservedOn: ["b"])
        _ = state.progressChanged("b", Versioned(document: ExecutorProgress(executor: "b"), version: 3), bytes: 100)
        // b's claim of task 0 is taken over (its answer was lost, say), task 1 was unclaimed: the
        // commit holds only if b's progress is still the version that named no claim.
        let transaction = try #require(try run(&state, store) { $0.planTakeOver("j-d", tasks: [0, 1], claimedBy: [0: "b"], now: now, loaded: $1) })
        #expect(transaction.progressChecked == ["b"])
        #expect(try #require(store.records["j-d"]).claimableTasks.isEmpty)

        // Had the leader read b's progress naming its claim first, the claim stays b's (adopted).
        try directSubmit(&state, store, tasks: 1, reservedOn: ["b"], id: "j-e")
        claim(&state, try #require(store.records["j-e"]), task: 0, on: "b", version: 4)
        #expect(try run(&state, store) { $0.planTakeOver("j-e", tasks: [0], claimedBy: [0: "b"], now: now, loaded: $1) } == nil)
        #expect(try #require(store.records["j-e"]).claimableTasks == [0])
    }
}
