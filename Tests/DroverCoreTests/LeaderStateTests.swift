@testable import DroverManager
import DroverProtocol
import Foundation
import Testing
import ZooKeeper
import ZKRecipes

/// The leader's decisions without a server: a `LeaderState` driven by hand, with records "read"
/// from a dictionary and the clock passed in (issue 14, item 2). Milliseconds each.
@Suite("Leader decisions (no server)")
struct LeaderStateTests {
    static let layout = Layout()
    let start = ContinuousClock.now
    let now: Timestamp = 1_700_000_000_000

    /// The records in ZooKeeper, as far as these tests go: what a read returns.
    final class Store {
        var records: [String: JobRecord] = [:]
        var unusable: [String: String] = [:]
        /// Ids asked for, in order of asking.
        var reads: [Set<String>] = []
        /// Entries of the active-job index the leader's transactions created (true) or removed
        /// (false); a job not in it has the entry its record's state implies, as a complete index would.
        var activeEntries: [String: Bool] = [:]
        /// Executors' liveness nodes as ZooKeeper holds them, ahead of what the leader's watch told
        /// it (an executor not here has none), and the executors whose registration was looked at.
        var registrations: [String: ExecutorRegistration] = [:]
        var registrationLooks: [String] = []

        func hasActiveEntry(_ id: String) -> Bool { activeEntries[id] ?? (records[id]?.state.isActive ?? false) }

        /// Applies a transaction's index operations as ZooKeeper would, recording an issue for
        /// one that would fail the transaction (an entry created twice, or removed when missing).
        func applyIndexOperations(_ operations: [MultiOperation], layout: Layout) {
            for operation in operations {
                switch operation {
                case .create(let path, _, _, _):
                    guard let id = layout.jobID(ofActiveEntryAt: path) else { continue }
                    if hasActiveEntry(id) { Issue.record("the index entry of \(id) is created again") }
                    activeEntries[id] = true
                case .delete(let path, _):
                    guard let id = layout.jobID(ofActiveEntryAt: path) else { continue }
                    if !hasActiveEntry(id) { Issue.record("the index entry of \(id) is removed, but there is none") }
                    activeEntries[id] = false
                default: continue
                }
            }
        }

        func read(_ ids: Set<String>) -> [String: LoadedRecord] {
            reads.append(ids)
            var loaded: [String: LoadedRecord] = [:]
            for id in ids {
                if let record = records[id] {
                    loaded[id] = .record(record, version: 0)
                } else if let reason = unusable[id] {
                    loaded[id] = .unusable(version: 3, reason: reason, original: Array("garbage".utf8), isNote: false)
                } else {
                    loaded[id] = .absent
                }
            }
            return loaded
        }
    }

    /// A leader that keeps the active-job index: ``run(_:_:_:)`` checks every commit keeps it true.
    func makeState(grace: Duration = .seconds(10), history: Int = 20) -> LeaderState {
        var state = LeaderState(configuration: .init(gracePeriod: grace, historyLimit: history, batchSize: 100))
        state.maintainsActiveIndex = true
        return state
    }

    func register(
        _ state: inout LeaderState, _ id: String, slots: Int = 2, labels: [String: String] = [:], tasks: [TaskRecord] = [], draining: Bool = false
    ) {
        state.executorListed(id, at: start)
        state.livenessChanged(id, ExecutorRegistration(id: id, capacity: Resources(cpu: 4, memoryMB: 4096, slots: slots), labels: labels), at: start)
        state.assignmentsChanged(id, Versioned(document: ExecutorState(executor: id, draining: draining, tasks: tasks), version: 0), bytes: 100)
    }

    /// Plans with `planner`, answering its reads from `store`, and commits what it plans (as
    /// ZooKeeper would: every compare-and-set succeeds). Returns the committed transaction.
    @discardableResult
    func run(
        _ state: inout LeaderState, _ store: Store, _ planner: (inout LeaderState, [String: LoadedRecord]) -> LeaderState.Step
    ) throws -> Transaction? {
        var loaded: [String: LoadedRecord] = [:]
        for _ in 0..<10 {
            switch planner(&state, loaded) {
            case .read(let ids): loaded.merge(store.read(ids)) { _, new in new }
            case .confirmGone(let id):
                store.registrationLooks.append(id)
                if let registration = store.registrations[id] {
                    state.livenessChanged(id, registration, at: start)
                } else {
                    state.confirmedGone(id)
                }
            case .nothing: return nil
            case .commit(let transaction):
                let encoded = try state.encode(transaction, layout: Self.layout, acls: .open)
                store.applyIndexOperations(encoded.operations, layout: Self.layout)
                state.committed(transaction, encoded)
                for (id, entry) in transaction.records where transaction.changedJobs.contains(id) {
                    store.records[id] = entry.record
                    #expect(store.hasActiveEntry(id) == entry.record.state.isActive, "job \(id) is \(entry.record.state): its index entry must follow")
                }
                return transaction
            }
        }
        Issue.record("the planner asked for reads ten times")
        return nil
    }

    @discardableResult
    func submit(_ state: inout LeaderState, _ store: Store, _ spec: JobSpec, id: String = "j-1") throws -> Transaction? {
        store.records[id] = JobRecord(id: id, spec: spec, submittedAt: now)
        return try run(&state, store) { $0.planQueueBatch([QueueOperation(.submit, job: id)], unreadable: [], now: now, loaded: $1, placing: true) }
    }

    @discardableResult
    func operation(_ state: inout LeaderState, _ store: Store, _ kind: QueueOperation.Kind, _ id: String) throws -> Transaction? {
        try run(&state, store) { $0.planQueueBatch([QueueOperation(kind, job: id)], unreadable: [], now: now, loaded: $1, placing: true) }
    }

    /// Ends the executor's task of job `id` (as the executor would), then collects.
    @discardableResult
    func finish(
        _ state: inout LeaderState, _ store: Store, _ id: String, on executor: String, _ outcome: TaskState = .succeeded, at time: Timestamp? = nil,
        timedOut: Bool = false, result: JSONValue? = nil, error: String? = nil
    ) throws -> Transaction? {
        var executorState = try #require(state.executors[executor]?.state)
        let index = try #require(executorState.document.tasks.firstIndex { $0.job == id && !$0.state.isFinished })
        executorState.document.tasks[index].state = outcome
        executorState.document.tasks[index].result = result
        executorState.document.tasks[index].error = error
        executorState.document.tasks[index].attempts += 1
        executorState.document.tasks[index].endedAt = time ?? now
        if timedOut { executorState.document.tasks[index].timedOut = true }
        executorState.version += 1
        state.assignmentsChanged(executor, executorState, bytes: 100)
        let at = time ?? now
        return try run(&state, store) { $0.planCollection(now: at, loaded: $1) }
    }

    func tasks(_ state: LeaderState, _ executor: String) -> [TaskRecord] { state.executors[executor]?.state?.document.tasks ?? [] }

    // MARK: Placement

    @Test func aSubmitIsPlacedOnTheLeastUtilisedExecutor() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", tasks: [TaskRecord(job: "other", run: 1, method: "m", arguments: nil, resources: Resources())])
        register(&state, "e2")
        try submit(&state, store, JobSpec(method: "m"))
        #expect(store.records["j-1"]?.state == .running)
        #expect(store.records["j-1"]?.executor == "e2")
        #expect(store.records["j-1"]?.runsStarted == 1)
        #expect(tasks(state, "e2").map(\.id) == ["j-1#1"])
        #expect(tasks(state, "e2").first?.state == .assigned)
    }

    /// drover_submit_to_placement_seconds: a job's first placement after its submit, not a
    /// later run's, nor one that asked to start later.
    @Test func theWaitFromSubmitToFirstPlacementIsMeasured() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        store.records["j-1"] = JobRecord(id: "j-1", spec: JobSpec(method: "m", kind: .finite, count: 2), submittedAt: now - 1_500)
        let placed = try run(&state, store) { $0.planQueueBatch([QueueOperation(.submit, job: "j-1")], unreadable: [], now: now, loaded: $1, placing: true) }
        #expect(placed?.submitToPlacement == [1_500])
        try markRunning(&state, "e1", startedAt: now + 200)
        let secondRun = try finish(&state, store, "j-1", on: "e1")
        #expect(secondRun?.submitToStart == [1_700], "submit→start of the first run, when it ends")
        #expect(store.records["j-1"]?.runsStarted == 2)
        #expect(secondRun?.submitToPlacement == [])
        try markRunning(&state, "e1", startedAt: now + 300)
        #expect(try finish(&state, store, "j-1", on: "e1")?.submitToStart == [], "not a later run's")
        let later = try submit(&state, store, JobSpec(method: "m", notBefore: now - 100), id: "j-2")
        #expect(store.records["j-2"]?.state == .running)
        #expect(later?.submitToPlacement == [])
    }

    @Test func withNoExecutorAJobWaitsSaysWhyAndIsPlacedWhenOneRegisters() throws {
        var state = makeState()
        let store = Store()
        try submit(&state, store, JobSpec(method: "m"))
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(store.records["j-1"]?.waitingReason == "no executor is registered")
        #expect(state.waitingCount == 1)
        register(&state, "e1")
        try run(&state, store) { $0.planPlacement(now: now, loaded: $1) }
        #expect(store.records["j-1"]?.state == .running)
        #expect(state.waitingCount == 0)
        // Its record was known from the leader's own write: no read to place it.
        #expect(store.reads.count == 1)
    }

    /// Why the line waits, counted for operators (`drover_jobs_waiting_by_reason`, `drover jobs`):
    /// for room an alive executor will have, or for an executor that does not exist.
    @Test func theWaitingLineIsCountedByWhetherAnyExecutorCouldRunIt() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 1, labels: ["zone": "a"])
        try submit(&state, store, JobSpec(method: "m"), id: "j-runs")
        try submit(&state, store, JobSpec(method: "m"), id: "j-room")
        try submit(&state, store, JobSpec(method: "m"), id: "j-room-too")
        try submit(&state, store, JobSpec(method: "m", constraints: ["zone": "b"]), id: "j-zone-b")
        try submit(&state, store, JobSpec(method: "m", resources: Resources(slots: 4)), id: "j-big")
        #expect(store.records["j-runs"]?.state == .running)
        #expect(state.waitingCount == 4)
        #expect(state.waitingReasons() == (room: 2, noExecutor: 2))
        #expect(state.activeCounts.waitingForNoExecutor == 2)
        // Past the limit of demands looked at, the rest count as waiting for room.
        #expect(state.waitingReasons(demandLimit: 0) == (room: 4, noExecutor: 0))

        // An executor in zone b with four slots: every job could run somewhere now.
        register(&state, "e2", slots: 4, labels: ["zone": "b"])
        #expect(state.waitingReasons() == (room: 4, noExecutor: 0))
        try run(&state, store) { $0.planPlacement(now: now, loaded: $1) }
        #expect(state.waitingReasons() == (room: state.waitingCount, noExecutor: 0))
    }

    /// Every commit in these tests checks the index follows the record (``run(_:_:_:)``); this
    /// one walks a job through each state, and an entry another writer left is not created twice.
    @Test func theActiveIndexHasAnEntryWhileAJobWaitsOrRunsAndNoneOnceItEnds() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 1)
        try submit(&state, store, JobSpec(method: "m"), id: "j-1")
        #expect(store.records["j-1"]?.state == .running)
        #expect(store.activeEntries["j-1"] == true)
        try submit(&state, store, JobSpec(method: "m"), id: "j-2")
        #expect(store.records["j-2"]?.state == .waiting)
        #expect(store.activeEntries["j-2"] == true)
        try finish(&state, store, "j-1", on: "e1")
        #expect(store.records["j-1"]?.state == .succeeded)
        #expect(store.activeEntries["j-1"] == false)
        try run(&state, store) { $0.planPlacement(now: now, loaded: $1) }
        #expect(store.records["j-2"]?.state == .running)
        #expect(store.activeEntries["j-2"] == true)  // waiting to running: the entry stays, untouched
        try submit(&state, store, JobSpec(method: "m"), id: "j-room")
        try submit(&state, store, JobSpec(method: "m", notBefore: now + 60_000), id: "j-later")
        #expect(state.activeCounts == ActiveIndex.Counts(waiting: 1, scheduled: 1, running: 1, waitingForNoExecutor: 0))

        // j-3's entry is already there (another program made it): the transaction that creates it
        // fails on it, and the leader, told so, plans without the create.
        store.activeEntries["j-3"] = true
        store.records["j-3"] = JobRecord(id: "j-3", spec: JobSpec(method: "m"), submittedAt: now)
        var loaded = store.read(["j-3"])
        guard case .commit(let first) = state.planQueueBatch([QueueOperation(.submit, job: "j-3")], unreadable: [], now: now, loaded: loaded, placing: true)
        else {
            Issue.record("no transaction planned")
            return
        }
        let entry = Self.layout.activeEntry("j-3")
        #expect(try state.encode(first, layout: Self.layout, acls: .open).operations.contains(.create(path: entry, acl: ACL.openUnsafe)))
        state.activeEntryDisagreed(job: "j-3", exists: true)
        loaded = store.read(["j-3"])
        guard case .commit(let second) = state.planQueueBatch([QueueOperation(.submit, job: "j-3")], unreadable: [], now: now, loaded: loaded, placing: true)
        else {
            Issue.record("no transaction planned")
            return
        }
        let operations = try state.encode(second, layout: Self.layout, acls: .open).operations
        #expect(!operations.contains { if case .create(entry, _, _, _) = $0 { true } else { false } })
        store.applyIndexOperations(operations, layout: Self.layout)
        state.committed(second, try state.encode(second, layout: Self.layout, acls: .open))
        #expect(state.activeEntryExists["j-3"] == nil)  // settled by the commit
    }

    /// An executor restarted with other labels or more capacity registers again: the leader
    /// places by the new registration, jobs that waited for it included (issue 15).
    @Test func anExecutorRestartedWithNewLabelsAndCapacityIsPlacedByThem() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 1, labels: ["zone": "a"])
        try submit(&state, store, JobSpec(method: "m", resources: Resources(slots: 2)), id: "j-big")
        try submit(&state, store, JobSpec(method: "m", constraints: ["zone": "b"]), id: "j-zone-b")
        #expect(store.records["j-big"]?.state == .waiting)
        #expect(store.records["j-zone-b"]?.state == .waiting)
        // Killed and started again with --slots 2 and --label zone=b: gone, then registered anew.
        state.livenessChanged("e1", nil, at: start)
        state.livenessChanged(
            "e1", ExecutorRegistration(id: "e1", capacity: Resources(cpu: 4, memoryMB: 4096, slots: 3), labels: ["zone": "b"]), at: start)
        try run(&state, store) { $0.planPlacement(now: now, loaded: $1) }
        #expect(store.records["j-big"]?.state == .running)
        #expect(store.records["j-zone-b"]?.state == .running)
        #expect(Set(tasks(state, "e1").map(\.job)) == ["j-big", "j-zone-b"])
        // The old label no longer counts.
        try submit(&state, store, JobSpec(method: "m", constraints: ["zone": "a"]), id: "j-zone-a")
        #expect(store.records["j-zone-a"]?.waitingReason == "no executor has the labels zone=a")
    }

    @Test func labelsAndSizesThatNoExecutorHasAreImpossibleWithAReason() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", labels: ["zone": "a"])
        try submit(&state, store, JobSpec(method: "m", constraints: ["zone": "b"]), id: "j-label")
        #expect(store.records["j-label"]?.waitingReason == "no executor has the labels zone=b")
        try submit(&state, store, JobSpec(method: "m", resources: Resources(slots: 3)), id: "j-big")
        #expect(store.records["j-big"]?.waitingReason?.hasPrefix("needs cpu 0.0, memory 0 MB, 3 slot(s)") == true)
    }

    @Test func onlyExecutorsThatRunTheMethodAreOffered() throws {
        var state = makeState()
        let store = Store()
        state.executorListed("e1", at: start)
        state.livenessChanged("e1", ExecutorRegistration(id: "e1", capacity: Resources(slots: 2), methods: ["shell"]), at: start)
        state.assignmentsChanged("e1", Versioned(document: ExecutorState(executor: "e1"), version: 0), bytes: 100)
        try submit(&state, store, JobSpec(method: "resize"), id: "j-resize")
        #expect(store.records["j-resize"]?.state == .waiting)
        #expect(store.records["j-resize"]?.waitingReason == "no executor runs the method resize")
        try submit(&state, store, JobSpec(method: "shell"), id: "j-shell")
        #expect(store.records["j-shell"]?.executor == "e1")
    }

    @Test func aDrainedExecutorTakesNothingNewAndTheReasonSaysSo() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try operation(&state, store, .drain, "e1")
        #expect(state.executors["e1"]?.state?.document.draining == true)
        try submit(&state, store, JobSpec(method: "m"))
        #expect(store.records["j-1"]?.waitingReason == "every matching executor is draining (e1)")
        // Undrained, it takes the waiting job.
        try operation(&state, store, .undrain, "e1")
        #expect(state.executors["e1"]?.state?.document.draining == false)
        try run(&state, store) { $0.planPlacement(now: now, loaded: $1) }
        #expect(store.records["j-1"]?.state == .running)
    }

    /// A drain queued before the leader has read the executor's state (it has just registered)
    /// waits for the state and is applied then, instead of being lost.
    @Test func aDrainBeforeTheExecutorsStateIsReadIsAppliedOnceItIs() throws {
        var state = makeState()
        let store = Store()
        state.executorListed("e1", at: start)
        state.livenessChanged("e1", ExecutorRegistration(id: "e1", capacity: Resources(cpu: 4, memoryMB: 4096, slots: 2)), at: start)
        try operation(&state, store, .drain, "e1")
        #expect(state.pendingDrains["e1"] == true)
        state.assignmentsChanged("e1", Versioned(document: ExecutorState(executor: "e1"), version: 0), bytes: 100)
        let applied = try run(&state, store) { $0.planCollection(now: now, loaded: $1) }
        #expect(applied?.changedStates["e1"]?.draining == true)
        #expect(state.executors["e1"]?.state?.document.draining == true)
        #expect(state.pendingDrains.isEmpty)
        try submit(&state, store, JobSpec(method: "m"))
        #expect(store.records["j-1"]?.waitingReason == "every matching executor is draining (e1)")
    }

    @Test func aFullExecutorMakesJobsWaitInOrderAndFreedRoomGoesToTheFirst() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 1)
        for id in ["j-a", "j-b", "j-c"] { try submit(&state, store, JobSpec(method: "m"), id: id) }
        #expect(store.records["j-a"]?.state == .running)
        #expect(store.records["j-b"]?.waitingReason == "every matching executor is full (1 busy)")
        #expect(state.waitingCount == 2)
        // The run ends: the same transaction collects it and places the first in line.
        let transaction = try #require(try finish(&state, store, "j-a", on: "e1"))
        #expect(transaction.changedJobs == ["j-a", "j-b"])
        #expect(store.records["j-a"]?.state == .succeeded)
        #expect(store.records["j-b"]?.state == .running)
        #expect(store.records["j-c"]?.state == .waiting)
    }

    @Test func anExecutorWhoseStateWouldPassItsSizeLimitCountsAsFull() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 10)
        register(&state, "e2", slots: 10)
        state.assignmentsChanged(
            "e1", Versioned(document: ExecutorState(executor: "e1"), version: 1), bytes: ExecutorState.maximumEncodedBytes - 100)
        try submit(&state, store, JobSpec(method: "m"))
        #expect(store.records["j-1"]?.executor == "e2")
    }

    // MARK: The next run of each kind

    @Test(arguments: [TaskState.succeeded, .failed])
    func aOnceJobEndsAsItsRunEnded(outcome: TaskState) throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m"))
        try finish(&state, store, "j-1", on: "e1", outcome)
        #expect(store.records["j-1"]?.state == (outcome == .succeeded ? .succeeded : .failed))
        #expect(store.records["j-1"]?.history.map(\.run) == [1])
        #expect(tasks(state, "e1").isEmpty)
    }

    @Test func aFiniteJobRunsItsCountOneAfterAnother() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .finite, count: 3))
        for run in 1...3 {
            #expect(tasks(state, "e1").map(\.run) == [run])
            try finish(&state, store, "j-1", on: "e1")
        }
        #expect(store.records["j-1"]?.state == .succeeded)
        #expect(store.records["j-1"]?.runsEnded == 3)
        #expect(tasks(state, "e1").isEmpty)
    }

    @Test func anInfiniteJobRunsAgainUntilStopped() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .infinite))
        try finish(&state, store, "j-1", on: "e1")
        try finish(&state, store, "j-1", on: "e1")
        #expect(tasks(state, "e1").map(\.run) == [3])
        try operation(&state, store, .stop, "j-1")
        #expect(tasks(state, "e1").first?.stopRequested == true)
        #expect(store.records["j-1"]?.state == .running)
        try finish(&state, store, "j-1", on: "e1", .failed)
        #expect(store.records["j-1"]?.state == .stopped)
        #expect(store.records["j-1"]?.history.last?.outcome == .stopped)
    }

    @Test func aFiniteJobEndsAtItsFirstFailedRun() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .finite, count: 3))
        try finish(&state, store, "j-1", on: "e1", .failed)
        #expect(store.records["j-1"]?.state == .failed)
        #expect(tasks(state, "e1").isEmpty)
    }

    /// A command that fails at once must not spin: each failure in a row doubles the wait before
    /// the next run (one write per step), a success starts over.
    @Test func aFailingInfiniteJobRestartsWithABackOff() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .infinite))
        var at = now
        for (failure, wait) in [(1, 1_000), (2, 2_000), (3, 4_000)] as [(Int, Int64)] {
            try finish(&state, store, "j-1", on: "e1", .failed, at: at)
            #expect(store.records["j-1"]?.state == .waiting)
            #expect(store.records["j-1"]?.nextRunAt == at + wait, "after failure \(failure)")
            #expect(store.records["j-1"]?.waitingReason == "restarting after \(failure) failed run(s) in a row")
            // Not before its time, then placed.
            #expect(try run(&state, store) { $0.planPlacement(now: at + wait - 1, loaded: $1) } == nil)
            at += wait
            try run(&state, store) { $0.planPlacement(now: at, loaded: $1) }
            #expect(store.records["j-1"]?.state == .running)
        }
        // A success starts the count again: the next failure waits the first step.
        try finish(&state, store, "j-1", on: "e1", .succeeded, at: at)
        #expect(store.records["j-1"]?.state == .running)
        try finish(&state, store, "j-1", on: "e1", .failed, at: at)
        #expect(store.records["j-1"]?.nextRunAt == at + 1_000)
        // Capped: many failures in a row wait the maximum.
        var history = (0..<20).map { run -> RunRecord in
            var task = TaskRecord(job: "j", run: run, method: "m", arguments: nil, resources: Resources())
            task.startedAt = 0
            task.endedAt = 10
            return RunRecord(task: task, executor: "e1", outcome: .failed)
        }
        #expect(state.restartDelay(after: history) == 300_000)
        // A failed run that lasted a minute or more starts the count again too.
        history[19].startedAt = 0
        history[19].endedAt = 60_000
        #expect(state.restartDelay(after: history) == nil)
    }

    @Test func aScheduledJobWaitsForItsGridPointAndNeverOverlaps() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        let schedule = Schedule(referenceMilliseconds: now - 500, intervalMilliseconds: 60_000)
        try submit(&state, store, JobSpec(method: "m", kind: .infinite, schedule: schedule))
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(store.records["j-1"]?.nextRunAt == now + 59_500)
        // Not due yet: nothing to do.
        #expect(try run(&state, store) { $0.planPlacement(now: now + 59_499, loaded: $1) } == nil)
        try run(&state, store) { $0.planPlacement(now: now + 59_500, loaded: $1) }
        #expect(store.records["j-1"]?.state == .running)
        // The run takes 2.5 intervals: the next is the first grid point after it ended.
        try finish(&state, store, "j-1", on: "e1", at: now + 59_500 + 150_000)
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(store.records["j-1"]?.nextRunAt == now - 500 + 4 * 60_000)
    }

    @Test func runsMissedWhileNoLeaderRanAreNotABurst() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        var record = JobRecord(id: "j-1", spec: JobSpec(method: "m", kind: .infinite, schedule: Schedule(referenceMilliseconds: 0, intervalMilliseconds: 1_000)))
        record.state = .waiting
        record.nextRunAt = now - 3_600_000  // an hour of windows missed
        store.records["j-1"] = record
        state.loaded(waitingJobs: [record])
        let transaction = try #require(try run(&state, store) { $0.planPlacement(now: now, loaded: $1) })
        #expect(transaction.changedJobs == ["j-1"])
        #expect(tasks(state, "e1").count == 1)
        #expect(try run(&state, store) { $0.planPlacement(now: now, loaded: $1) } == nil)
    }

    @Test func aNewLeaderAdoptsWaitingAndScheduledJobs() throws {
        var state = makeState()
        let store = Store()
        var waiting = JobRecord(id: "j-w", spec: JobSpec(method: "m"))
        waiting.state = .waiting
        var scheduled = JobRecord(id: "j-s", spec: JobSpec(method: "m", kind: .infinite, schedule: Schedule(referenceMilliseconds: 0, intervalMilliseconds: 1_000)))
        scheduled.state = .waiting
        scheduled.nextRunAt = now + 10_000
        store.records = ["j-w": waiting, "j-s": scheduled]
        state.loaded(waitingJobs: [waiting, scheduled])
        #expect(state.waitingCount == 1)
        #expect(state.scheduledCount == 1)
        register(&state, "e1")
        try run(&state, store) { $0.planPlacement(now: now, loaded: $1) }
        #expect(store.records["j-w"]?.state == .running)
        #expect(store.records["j-s"]?.state == .waiting)
    }

    @Test func historyKeepsTheLatestRuns() throws {
        var state = makeState(history: 2)
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .finite, count: 4))
        for _ in 1...4 { try finish(&state, store, "j-1", on: "e1") }
        #expect(store.records["j-1"]?.history.map(\.run) == [3, 4])
    }

    // MARK: Stop and cancel in every state

    @Test func cancelDropsOnlyJobsThatHaveNotStarted() throws {
        var state = makeState()
        let store = Store()
        try submit(&state, store, JobSpec(method: "m"), id: "j-waiting")
        try operation(&state, store, .cancel, "j-waiting")
        #expect(store.records["j-waiting"]?.state == .cancelled)
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m"), id: "j-running")
        let transaction = try operation(&state, store, .cancel, "j-running")
        #expect(transaction?.changedJobs.isEmpty == true)
        #expect(store.records["j-running"]?.state == .running)
    }

    @Test func stopEndsAWaitingOrScheduledJobAtOnce() throws {
        var state = makeState()
        let store = Store()
        try submit(&state, store, JobSpec(method: "m"), id: "j-waiting")
        try submit(&state, store, JobSpec(method: "m", kind: .infinite, schedule: Schedule(referenceMilliseconds: now, intervalMilliseconds: 1_000)), id: "j-sched")
        try operation(&state, store, .stop, "j-waiting")
        try operation(&state, store, .stop, "j-sched")
        #expect(store.records["j-waiting"]?.state == .stopped)
        #expect(store.records["j-sched"]?.state == .stopped)
        #expect(store.records["j-sched"]?.nextRunAt == nil)
        #expect(state.waitingCount == 0)
        #expect(state.scheduledCount == 0)
        // Stopping a final job changes nothing.
        let again = try operation(&state, store, .stop, "j-waiting")
        #expect(again?.changedJobs.isEmpty == true)
    }

    // MARK: Bad records and queue items

    @Test func aRecordThatCannotBeUsedFailsItsJobAndAMissingOneIsSetAside() throws {
        var state = makeState()
        let store = Store()
        store.unusable["j-bad"] = "spec.kind: no such kind"
        let failed = try #require(try operation(&state, store, .submit, "j-bad"))
        #expect(failed.failedUnusable["j-bad"]?.note.unusable == "spec.kind: no such kind")
        #expect(failed.failedUnusable["j-bad"]?.version == 3)
        let missing = try #require(try operation(&state, store, .cancel, "j-gone"))
        #expect(missing.setAsides.map(\.code) == [.noJob])
    }

    @Test func anUnreadableQueueItemIsSetAsideWithItsCode() {
        #expect(LeaderState.content(of: Array("garbage".utf8)).unreadable.map(\.code) == [.unreadableItem])
        #expect(LeaderState.content(of: Array(#"{"format":2,"operations":[]}"#.utf8)).unreadable.map(\.code) == [.emptyBatch])
        let mixed = LeaderState.content(of: QueueItemContent.batchItem([Array(#"{"format":1,"op":"submit","job":"j-1"}"#.utf8), Array("7".utf8)]))
        #expect(mixed.operations.map(\.job) == ["j-1"])
        #expect(mixed.unreadable.map(\.code) == [.unreadableOperation])
    }

    @Test func aCarriedRecordIsUsedWithoutAReadUntilItsWriteConflicts() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        let record = JobRecord(id: "j-1", spec: JobSpec(method: "m"), submittedAt: now)
        let operation = QueueOperation(.submit, job: "j-1", record: record)
        try run(&state, store) { $0.planQueueBatch([operation], unreadable: [], now: now, loaded: $1, placing: true) }
        #expect(store.reads.isEmpty)
        #expect(tasks(state, "e1").count == 1)
        // Another program changed such a record: after the conflict it is read, not trusted.
        #expect(state.conflicted(on: Self.layout.job("j-2"), layout: Self.layout) == .everyExecutorState)
        store.records["j-2"] = JobRecord(id: "j-2", spec: JobSpec(method: "m"), submittedAt: now)
        let carried = QueueOperation(.submit, job: "j-2", record: JobRecord(id: "j-2", spec: JobSpec(method: "m"), submittedAt: now))
        try run(&state, store) { $0.planQueueBatch([carried], unreadable: [], now: now, loaded: $1, placing: true) }
        #expect(store.reads == [["j-2"]])
        // A carried record that breaks the rules is never trusted either.
        let bad = QueueOperation(.submit, job: "j-3", record: JobRecord(id: "j-3", spec: JobSpec(method: "m", kind: .finite), submittedAt: now))
        store.unusable["j-3"] = "spec.count: a finite job needs a count of runs"
        let failed = try run(&state, store) { $0.planQueueBatch([bad], unreadable: [], now: now, loaded: $1, placing: true) }
        #expect(failed?.failedUnusable["j-3"] != nil)
    }

    // MARK: Conflicts and budgets

    @Test func aConflictNamesWhatToReadAgain() {
        var state = makeState()
        register(&state, "e1")
        #expect(state.conflicted(on: Self.layout.executorAssignments("e1"), layout: Self.layout) == .executorState("e1"))
        #expect(state.conflicted(on: Self.layout.executorProgress("e1"), layout: Self.layout) == .executorState("e1"))
        #expect(state.conflicted(on: nil, layout: Self.layout) == .everyExecutorState)
        #expect(state.known.isEmpty)
    }

    @Test func overTheBudgetTheJobLimitHalvesDownToOne() {
        var state = makeState()
        #expect(state.jobLimit == LeaderState.transactionJobLimit)
        var again = state.overBudget(.init(bytes: 2_000_000, jobs: 100))
        #expect(again)
        #expect(state.jobLimit == 50)
        while state.jobLimit > 1 {
            again = state.overBudget(.init(bytes: 2_000_000, jobs: state.jobLimit))
            #expect(again)
        }
        again = state.overBudget(.init(bytes: 2_000_000, jobs: 1))
        #expect(!again)
    }

    @Test func aTransactionOverTheByteBudgetIsRefusedBeforeItIsSent() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 100)
        let big = JSONValue.string(String(repeating: "x", count: 60_000))
        var operations: [QueueOperation] = []
        for index in 0..<20 {
            store.records["j-\(index)"] = JobRecord(id: "j-\(index)", spec: JobSpec(method: "m", arguments: big), submittedAt: now)
            operations.append(QueueOperation(.submit, job: "j-\(index)"))
        }
        var loaded: [String: LoadedRecord] = [:]
        var step = state.planQueueBatch(operations, unreadable: [], now: now, loaded: loaded, placing: false)
        if case .read(let ids) = step { loaded = store.read(ids) }
        step = state.planQueueBatch(operations, unreadable: [], now: now, loaded: loaded, placing: false)
        guard case .commit(let transaction) = step else {
            Issue.record("expected a transaction, got \(step)")
            return
        }
        #expect(throws: Transaction.OverBudget.self) { try state.encode(transaction, layout: Self.layout, acls: .open) }
    }

    @Test func theExecutorLimitKeepsATransactionToSixteenStates() throws {
        var state = makeState()
        let store = Store()
        for index in 0..<20 { register(&state, String(format: "e%02d", index), slots: 1) }
        var operations: [QueueOperation] = []
        for index in 0..<20 {
            store.records["j-\(index)"] = JobRecord(id: "j-\(index)", spec: JobSpec(method: "m"), submittedAt: now)
            operations.append(QueueOperation(.submit, job: "j-\(index)"))
        }
        let transaction = try #require(try run(&state, store) { $0.planQueueBatch(operations, unreadable: [], now: now, loaded: $1, placing: true) })
        #expect(transaction.changedStates.count == Transaction.executorLimit)
        #expect(store.records.values.filter { $0.state == .running }.count == Transaction.executorLimit)
        #expect(store.records["j-19"]?.waitingReason == "waiting for the next placement round")
        // The next transaction places the rest.
        try run(&state, store) { $0.planPlacement(now: now, loaded: $1) }
        #expect(store.records.values.allSatisfy { $0.state == .running })
    }

    // MARK: Take-back after the grace period

    @Test func aDeadExecutorsRunsGoBackToTheQueueAfterTheGracePeriodWithTheirCheckpoints() throws {
        var state = makeState(grace: .seconds(10))
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .finite, count: 5))
        try finish(&state, store, "j-1", on: "e1")
        // Run 2 started, saved a checkpoint; then the executor died.
        var executorState = try #require(state.executors["e1"]?.state)
        executorState.document.tasks[0].state = .running
        executorState.document.tasks[0].attempts = 1
        executorState.document.tasks[0].checkpoint = ["done": 7]
        executorState.version += 1
        state.assignmentsChanged("e1", executorState, bytes: 100)
        state.livenessChanged("e1", nil, at: start + .seconds(1))
        #expect(try run(&state, store) { $0.planReclaim(at: start + .seconds(10), wallClock: 0, loaded: $1) } == nil)
        let transaction = try #require(try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: 0, loaded: $1) })
        #expect(transaction.queueItems.count == 1)
        #expect(transaction.tookBack?.dead == true)
        #expect(tasks(state, "e1").isEmpty)
        let record = try #require(store.records["j-1"])
        #expect(record.state == .queued)
        #expect(record.runsStarted == 1)
        #expect(record.resume == ResumePoint(attempts: 1, checkpoint: ["done": 7]))
        // Queued again, it resumes elsewhere as run 2 with its checkpoint.
        register(&state, "e2")
        try operation(&state, store, .submit, "j-1")
        #expect(tasks(state, "e2").first?.run == 2)
        #expect(tasks(state, "e2").first?.checkpoint == ["done": 7])
        #expect(tasks(state, "e2").first?.attempts == 1)
    }

    /// A dead executor's tasks are taken back only after a look at its registration made after
    /// the leader's last look at its progress: the registration's watch may lag behind an
    /// executor that registered again (found by a chaos run: a task ran on two executors).
    @Test func aDeadExecutorsTasksAreTakenBackOnlyAfterItsRegistrationIsLookedAtAgain() throws {
        var state = makeState(grace: .seconds(10))
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .infinite))
        state.progressChanged("e1", Versioned(document: ExecutorProgress(executor: "e1"), version: 0), bytes: 10)
        state.livenessChanged("e1", nil, at: start)

        // Registered again, and the watch has not said so: the look finds it, and nothing moves.
        store.registrations["e1"] = ExecutorRegistration(id: "e1", capacity: Resources(cpu: 4, memoryMB: 4096, slots: 2))
        #expect(try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: 0, loaded: $1) } == nil)
        #expect(store.registrationLooks == ["e1"])
        #expect(!state.isDead("e1", at: start + .seconds(11)))
        #expect(tasks(state, "e1").count == 1)

        // Gone again: confirmed by a look, but a newer progress read after it asks for another.
        store.registrations["e1"] = nil
        state.livenessChanged("e1", nil, at: start + .seconds(20))
        guard case .confirmGone("e1") = state.planReclaim(at: start + .seconds(31), wallClock: 0, loaded: [:]) else {
            Issue.record("a dead executor's take-back must look at its registration first")
            return
        }
        state.confirmedGone("e1")
        state.progressChanged("e1", Versioned(document: ExecutorProgress(executor: "e1"), version: 1), bytes: 10)
        guard case .confirmGone("e1") = state.planReclaim(at: start + .seconds(31), wallClock: 0, loaded: [:]) else {
            Issue.record("a look at the progress after the registration's must ask for the registration again")
            return
        }
        let transaction = try #require(try run(&state, store) { $0.planReclaim(at: start + .seconds(31), wallClock: 0, loaded: $1) })
        #expect(transaction.tookBack?.dead == true)
        #expect(store.registrationLooks == ["e1", "e1"])
        #expect(tasks(state, "e1").isEmpty)
        // The next take-back, if any, looks again (a progress made since would have no version here).
        #expect(state.executors["e1"]?.goneConfirmed == false)
        #expect(store.records["j-1"]?.state == .queued)
    }

    /// Found by `make chaos SEED=8675`: a job stopped while its executor was dead was queued again
    /// by the take-back and then stayed `queued` for ever.
    @Test func aJobStoppedWhileItsExecutorWasDeadEndsStoppedAfterTheTakeBack() throws {
        var state = makeState(grace: .seconds(10))
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .infinite))
        state.livenessChanged("e1", nil, at: start)
        try operation(&state, store, .stop, "j-1")
        #expect(store.records["j-1"]?.stopRequested == true)
        try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: 0, loaded: $1) }
        #expect(store.records["j-1"]?.state == .queued)
        try operation(&state, store, .submit, "j-1")
        #expect(store.records["j-1"]?.state == .stopped)
    }

    @Test func anExecutorBackWithinTheGracePeriodKeepsItsRuns() throws {
        var state = makeState(grace: .seconds(10))
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m"))
        state.livenessChanged("e1", nil, at: start + .seconds(1))
        state.livenessChanged("e1", ExecutorRegistration(id: "e1", capacity: Resources(slots: 2)), at: start + .seconds(5))
        #expect(try run(&state, store) { $0.planReclaim(at: start + .seconds(60), wallClock: 0, loaded: $1) } == nil)
        #expect(tasks(state, "e1").count == 1)
    }

    /// A state restored from an older copy (an executor writing back the last state it saw after
    /// another program garbled it) may lack a run the leader placed since: nothing would end that
    /// run, so the job goes back on the queue.
    @Test func aRunMissingFromARestoredStateIsTakenBack() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m"), id: "j-kept")
        var older = try #require(state.executors["e1"]?.state)
        try submit(&state, store, JobSpec(method: "m"), id: "j-lost")
        #expect(try run(&state, store) { $0.planReclaim(at: start, wallClock: 0, loaded: $1) } == nil)  // nothing lost yet
        // The state comes back as it was before the second placement, at a newer version.
        older.version = (state.executors["e1"]?.state?.version ?? 0) + 2
        state.assignmentsChanged("e1", older, bytes: 100)
        let transaction = try #require(try run(&state, store) { $0.planReclaim(at: start, wallClock: 0, loaded: $1) })
        #expect(transaction.queueItems.count == 1)
        #expect(transaction.tookBack?.tasks == ["j-lost#1"])
        #expect(store.records["j-lost"]?.state == .queued)
        #expect(store.records["j-lost"]?.runsStarted == 0)
        #expect(store.records["j-kept"]?.state == .running)
        // Queued again, it is placed again as run 1.
        try operation(&state, store, .submit, "j-lost")
        #expect(tasks(state, "e1").map(\.id).sorted() == ["j-kept#1", "j-lost#1"])
        #expect(try run(&state, store) { $0.planReclaim(at: start, wallClock: 0, loaded: $1) } == nil)
    }

    /// Found by `make chaos-long SEED=8`: an executor's state garbled and restored from its older
    /// copy dropped runs a leader had just placed, and the leader was killed before it looked; the
    /// next leader did not check the running jobs it found, so seven jobs stayed `running` for good.
    @Test func aNewLeaderTakesBackRunsItFoundRunningThatNoStateHolds() throws {
        let store = Store()
        var first = makeState()
        register(&first, "e1")
        try submit(&first, store, JobSpec(method: "m"), id: "j-kept")
        try submit(&first, store, JobSpec(method: "m"), id: "j-lost")
        // A new leader: it finds both running on e1, whose state (restored) holds only one.
        var state = makeState()
        state.adoptRunning([try #require(store.records["j-kept"]), try #require(store.records["j-lost"])])
        register(&state, "e1", tasks: (first.executors["e1"]?.state?.document.tasks ?? []).filter { $0.job == "j-kept" })
        let transaction = try #require(try run(&state, store) { $0.planReclaim(at: start, wallClock: 0, loaded: $1) })
        #expect(transaction.tookBack?.tasks == ["j-lost#1"])
        #expect(store.records["j-lost"]?.state == .queued)
        #expect(store.records["j-kept"]?.state == .running)
        #expect(try run(&state, store) { $0.planReclaim(at: start, wallClock: 0, loaded: $1) } == nil, "nothing more")
    }

    /// A state restored from an older copy can bring back runs the leader already collected or
    /// moved: they are removed, and the jobs are not run or rewound again.
    @Test func staleRunsInARestoredStateAreRemovedWithoutTouchingTheirJobs() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m", kind: .finite, count: 1))
        let withRun = try #require(state.executors["e1"]?.state)
        try finish(&state, store, "j-1", on: "e1")
        #expect(store.records["j-1"]?.state == .succeeded)
        // The old copy comes back, its run finished again; then unfinished (as if moved elsewhere).
        var stale = withRun
        stale.version = (state.executors["e1"]?.state?.version ?? 0) + 2
        stale.document.tasks[0].state = .succeeded
        state.assignmentsChanged("e1", stale, bytes: 100)
        let collected = try #require(try run(&state, store) { $0.planCollection(now: now, loaded: $1) })
        #expect(collected.changedJobs.isEmpty)
        #expect(store.records["j-1"]?.runsEnded == 1)
        #expect(tasks(state, "e1").isEmpty)
        stale.version += 5
        stale.document.tasks[0].state = .running
        stale.document.tasks[0].handedBack = true
        state.assignmentsChanged("e1", stale, bytes: 100)
        let reclaimed = try #require(try run(&state, store) { $0.planReclaim(at: start, wallClock: 0, loaded: $1) })
        #expect(reclaimed.queueItems.isEmpty)
        #expect(store.records["j-1"]?.state == .succeeded)
        #expect(tasks(state, "e1").isEmpty)
    }

    @Test func handedBackRunsMoveAtOnce() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m"))
        var executorState = try #require(state.executors["e1"]?.state)
        executorState.document.tasks[0].handedBack = true
        executorState.version += 1
        state.assignmentsChanged("e1", executorState, bytes: 100)
        let transaction = try #require(try run(&state, store) { $0.planReclaim(at: start, wallClock: 0, loaded: $1) })
        #expect(transaction.tookBack?.dead == false)
        #expect(store.records["j-1"]?.state == .queued)
    }

    // MARK: Reads

    @Test func collectionReadsEveryFinishedRunsRecordAtOnceAndOldNewsIsIgnored() throws {
        var state = makeState()
        let store = Store()
        var finished: [TaskRecord] = []
        for index in 0..<3 {
            var task = TaskRecord(job: "j-\(index)", run: 1, method: "m", arguments: nil, resources: Resources())
            task.state = .succeeded
            finished.append(task)
            var record = JobRecord(id: "j-\(index)", spec: JobSpec(method: "m"), submittedAt: now)
            record.state = .running
            record.runsStarted = 1
            record.executor = "e1"
            store.records["j-\(index)"] = record
        }
        register(&state, "e1", slots: 4, tasks: finished)
        // A notification older than what the leader holds changes nothing.
        let changed = state.assignmentsChanged("e1", Versioned(document: ExecutorState(executor: "e1"), version: -1), bytes: 0)
        #expect(!changed)
        try run(&state, store) { $0.planCollection(now: now, loaded: $1) }
        #expect(store.reads == [["j-0", "j-1", "j-2"]])
        #expect(store.records.values.allSatisfy { $0.state == .succeeded })
    }
}
