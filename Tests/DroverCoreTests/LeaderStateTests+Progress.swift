@testable import DroverManager
import DroverProtocol
import Testing
import ZKRecipes
import ZooKeeper

/// The executor's state in two documents (issue 16): the leader's assignments, which it alone
/// writes, and the executor's progress, which it only reads — decided without a server.
extension LeaderStateTests {
    /// The executor's progress after it ended `task` (as the executor writes it), at `version`.
    func progress(_ executor: String, ending task: TaskRecord, _ outcome: TaskState = .succeeded, version: Int32) -> Versioned<ExecutorProgress> {
        var ended = task
        ended.state = outcome
        ended.attempts += 1
        ended.startedAt = now
        ended.endedAt = now + 1_000
        ended.result = "done"
        return Versioned(document: ExecutorProgress(executor: executor, tasks: [TaskProgress(of: ended)]), version: version)
    }

    @Test func theLeaderWritesOnlyItsHalfAndCollectsWhatTheProgressReports() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        let placed = try #require(try submit(&state, store, JobSpec(method: "m", arguments: ["n": 1])))
        // The placement went to the assignments document, with an id of its own.
        let encoded = try state.encode(placed, layout: Self.layout, acls: .open)
        #expect(encoded.operations.contains { operation in
            if case .setData(let path, _, _) = operation { return path == Self.layout.executorAssignments("e1") }
            return false
        })
        let task = try #require(tasks(state, "e1").first)
        let placement = try #require(task.placement)
        #expect(encoded.assignments["e1"]?.tasks.map(\.placement) == [placement])

        // The executor reports the run's end in its progress: the leader collects it, and the
        // assignments it writes drop the task — with nothing of the progress in them.
        state.progressChanged("e1", progress("e1", ending: task, version: 1), bytes: 200)
        #expect(tasks(state, "e1").first?.state == .succeeded)
        let collected = try #require(try run(&state, store) { $0.planCollection(now: now, loaded: $1) })
        #expect(store.records["j-1"]?.state == .succeeded)
        #expect(store.records["j-1"]?.history.first?.result == "done")
        #expect(collected.changedStates["e1"]?.tasks.isEmpty == true)
        #expect(state.executors["e1"]?.assignments?.document.tasks.isEmpty == true)
    }

    @Test func progressOfAnotherPlacementOfTheSameRunIsNotTakenForThisOnes() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m"))
        let first = try #require(tasks(state, "e1").first)
        // The executor is gone past the grace period: the run is taken back and placed again —
        // on the same executor, which comes back with its old progress still saying "succeeded".
        state.livenessChanged("e1", nil, at: start)
        let reclaimed = try #require(try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: now, loaded: $1) })
        #expect(reclaimed.tookBack?.tasks == ["j-1#1"])
        register(&state, "e1")
        state.assignmentsChanged("e1", state.executors["e1"]?.assignments, bytes: 100)
        try operation(&state, store, .submit, "j-1")
        let second = try #require(tasks(state, "e1").first)
        #expect(second.run == first.run && second.placement != first.placement)
        state.progressChanged("e1", progress("e1", ending: first, version: 7), bytes: 200)
        #expect(tasks(state, "e1").first?.state == .assigned, "the old placement's end is not this one's")
        #expect(try run(&state, store) { $0.planCollection(now: now, loaded: $1) } == nil)
        #expect(store.records["j-1"]?.state == .running)
        // This placement's own end is collected.
        state.progressChanged("e1", progress("e1", ending: second, version: 8), bytes: 200)
        try run(&state, store) { $0.planCollection(now: now, loaded: $1) }
        #expect(store.records["j-1"]?.state == .succeeded)
    }

    /// A run taken back as unfinished must not have ended meanwhile: the take-back holds only if
    /// the executor's progress is still the version the leader decided on.
    @Test func aTakeBackChecksTheProgressItWasDecidedOn() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m"))
        var running = try #require(tasks(state, "e1").first)
        running.state = .running
        running.attempts = 1
        state.progressChanged(
            "e1", Versioned(document: ExecutorProgress(executor: "e1", tasks: [TaskProgress(of: running)]), version: 3), bytes: 200)
        state.livenessChanged("e1", nil, at: start)
        let transaction = try #require(try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: now, loaded: $1) })
        let encoded = try state.encode(transaction, layout: Self.layout, acls: .open)
        #expect(encoded.operations.contains { operation in
            if case .check(let path, let version) = operation { return path == Self.layout.executorProgress("e1") && version == 3 }
            return false
        })
    }

    /// Progress the leader cannot read may hold ends: a dead executor's runs are not taken back
    /// (and run again) until it reads again.
    @Test func nothingIsTakenBackWhileTheProgressCannotBeRead() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec(method: "m"))
        state.progressChanged("e1", nil, bytes: 40, unreadable: true)
        state.livenessChanged("e1", nil, at: start)
        #expect(try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: now, loaded: $1) } == nil)
        #expect(store.records["j-1"]?.state == .running)
        // Read again (repaired): the run that had not ended goes back on the queue.
        state.progressChanged("e1", Versioned(document: ExecutorProgress(executor: "e1"), version: 2), bytes: 40)
        let transaction = try #require(try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: now, loaded: $1) })
        #expect(transaction.tookBack?.tasks == ["j-1#1"])
    }

    @Test func mergingTakesEachTasksOwnProgressAndTheAssignmentsKeepTheLeadersHalf() {
        var placed = TaskRecord(job: "j-1", run: 2, method: "m", arguments: ["a": 1], resources: Resources())
        placed.placement = "5.1.1"
        placed.checkpoint = ["resume": 1]
        placed.attempts = 1
        var other = TaskRecord(job: "j-2", run: 1, method: "m", arguments: nil, resources: Resources())
        other.placement = "5.1.2"
        let assignments = ExecutorState(executor: "e1", tasks: [placed, other])
        var progressed = placed
        progressed.state = .running
        progressed.attempts = 2
        progressed.checkpoint = ["resume": 9]
        var stale = other
        stale.placement = "4.9.1"
        stale.state = .failed
        var gone = TaskRecord(job: "j-3", run: 1, method: "m", arguments: nil, resources: Resources())
        gone.placement = "5.0.1"
        gone.state = .succeeded
        let merged = assignments.merging(
            ExecutorProgress(executor: "e1", tasks: [TaskProgress(of: progressed), TaskProgress(of: stale), TaskProgress(of: gone)]))
        #expect(merged.tasks.map(\.id) == ["j-1#2", "j-2#1"], "progress of a task not assigned adds nothing")
        #expect(merged.tasks[0].state == .running && merged.tasks[0].attempts == 2 && merged.tasks[0].checkpoint == ["resume": 9])
        #expect(merged.tasks[1].state == .assigned, "progress of another placement is ignored")

        // The leader asks j-1 to stop and collects nothing: what it writes is each task as placed.
        var changed = merged
        changed.tasks[0].stopRequested = true
        let written = changed.assignments(placedAs: assignments)
        #expect(written.tasks[0].state == .assigned && written.tasks[0].attempts == 1 && written.tasks[0].checkpoint == ["resume": 1])
        #expect(written.tasks[0].stopRequested)
        #expect(written.tasks[1] == other)
    }
}
