@testable import DroverManager
import DroverProtocol
import Testing
import ZKRecipes

/// Workflows (issue 18), decided without a server: each step runs as a run of the workflow's job,
/// after the steps it depends on, with references resolved when it is placed.
extension LeaderStateTests {
    /// The virtual-machine example: network, then disk and address (both after network), then
    /// the machine after both; the machine's arguments come from the others' results.
    static let virtualMachine = JobSpec.workflow(
        name: "vm",
        steps: [
            WorkflowStep(id: "network", method: "net", arguments: ["zone": ["$from": "inputs.zone"]]),
            WorkflowStep(id: "disk", method: "disk", arguments: ["sizeGB": 20], after: ["network"]),
            WorkflowStep(id: "address", method: "ip", arguments: ["vlan": ["$from": "network.result.vlan"]], after: ["network"]),
            WorkflowStep(
                id: "machine", method: "vm",
                arguments: ["disk": ["$from": "disk.result.path"], "ip": ["$from": "address.result.ips.0"]], after: ["disk", "address"]),
        ],
        inputs: ["zone": "eu-1"])

    @Test func aWorkflowRunsEachStepAfterItsDependenciesWithTheirResultsPassedOn() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, Self.virtualMachine)
        // Only the first step runs: the others depend on it.
        #expect(tasks(state, "e1").map(\.method) == ["net"])
        #expect(tasks(state, "e1").first?.arguments == ["zone": "eu-1"], "inputs are resolved")
        #expect(store.records["j-1"]?.steps?.map(\.state) == [.running, .pending, .pending, .pending])
        try finish(&state, store, "j-1", on: "e1", .succeeded, result: ["vlan": 42])
        // disk and address both run after network: at once.
        #expect(tasks(state, "e1").map(\.method) == ["disk", "ip"])
        #expect(tasks(state, "e1").last?.arguments == ["vlan": 42])
        try finish(&state, store, "j-1", on: "e1", .succeeded, result: ["path": "/dev/vd1"])
        #expect(tasks(state, "e1").map(\.method) == ["ip"], "the machine waits for both")
        try finish(&state, store, "j-1", on: "e1", .succeeded, result: ["ips": ["10.0.0.7"]])
        #expect(tasks(state, "e1").first?.arguments == ["disk": "/dev/vd1", "ip": "10.0.0.7"])
        #expect(tasks(state, "e1").first?.run == 4)
        try finish(&state, store, "j-1", on: "e1", .succeeded, result: ["id": "vm-1"])
        let record = try #require(store.records["j-1"])
        #expect(record.state == .succeeded)
        #expect(record.steps?.map(\.state) == [.succeeded, .succeeded, .succeeded, .succeeded])
        #expect(record.steps?.map(\.run) == [1, 2, 3, 4])
        // Only results a later step refers to are kept in the record.
        #expect(record.steps?.map { $0.result != nil } == [true, true, true, false])
        #expect(tasks(state, "e1").isEmpty)
    }

    @Test func aFailedStepAbortsTheWorkflowAndTheStepsAfterItNeverStart() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, Self.virtualMachine)
        try finish(&state, store, "j-1", on: "e1", .failed, error: "no VLAN left")
        let record = try #require(store.records["j-1"])
        #expect(record.state == .failed)
        #expect(record.steps?.map(\.state) == [.failed, .skipped, .skipped, .skipped])
        #expect(record.steps?.first?.error == "no VLAN left")
        #expect(tasks(state, "e1").isEmpty)
    }

    @Test func aStepThatContinuesLetsItsDependentsRunWithItsFailureVisible() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        let spec = JobSpec.workflow(steps: [
            WorkflowStep(id: "probe", method: "m", onFailure: .continue),
            WorkflowStep(id: "report", method: "m", arguments: ["state": ["$from": "probe.state"], "why": ["$from": "probe.error"]]),
        ])
        try submit(&state, store, spec)
        try finish(&state, store, "j-1", on: "e1", .failed, error: "exited with status 3")
        #expect(tasks(state, "e1").first?.arguments == ["state": "failed", "why": "exited with status 3"])
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        let record = try #require(store.records["j-1"])
        #expect(record.steps?.map(\.state) == [.failed, .succeeded])
        #expect(record.state == .failed, "a workflow with a failed step ends failed, even when it went on")
    }

    @Test func aReferenceThatResolvesToNothingFailsItsStepWithTheReason() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        let spec = JobSpec.workflow(steps: [
            WorkflowStep(id: "a", method: "m"),
            WorkflowStep(id: "b", method: "m", arguments: ["ip": ["$from": "a.result.ip"]]),
        ])
        try submit(&state, store, spec)
        try finish(&state, store, "j-1", on: "e1", .succeeded, result: ["address": "10.0.0.1"])
        let record = try #require(store.records["j-1"])
        #expect(record.state == .failed)
        #expect(record.steps?[1].state == .failed)
        #expect(record.steps?[1].error == #"arguments.ip: a.result.ip resolves to nothing (a.result has no "ip")"#)
        #expect(tasks(state, "e1").isEmpty)
    }

    @Test func aStepIsRetriedByItsOwnPolicyAsANewRunOfTheSameStep() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        let spec = JobSpec.workflow(steps: [
            WorkflowStep(id: "flaky", method: "m", retry: RetryPolicy(maxAttempts: 2, initialDelaySeconds: 1)),
            WorkflowStep(id: "next", method: "n"),
        ])
        try submit(&state, store, spec)
        try finish(&state, store, "j-1", on: "e1", .failed)
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(store.records["j-1"]?.steps?.map(\.state) == [.running, .pending])
        try run(&state, store) { $0.planPlacement(now: now + 1_000, loaded: $1) }
        #expect(tasks(state, "e1").map(\.method) == ["m"])
        #expect(store.records["j-1"]?.steps?.first?.run == 2)
        #expect(store.records["j-1"]?.steps?.first?.attempt == 2)
        try finish(&state, store, "j-1", on: "e1", .succeeded, at: now + 1_000)
        #expect(tasks(state, "e1").map(\.method) == ["n"])
    }

    @Test func stoppingAWorkflowStopsItsStepAndSkipsTheRest() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, Self.virtualMachine)
        try operation(&state, store, .stop, "j-1")
        #expect(tasks(state, "e1").first?.stopRequested == true)
        try finish(&state, store, "j-1", on: "e1", .failed)
        let record = try #require(store.records["j-1"])
        #expect(record.state == .stopped)
        #expect(record.steps?.map(\.state) == [.stopped, .skipped, .skipped, .skipped])
    }

    @Test func aStepWaitsForAnExecutorWithItsOwnDemand() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", labels: ["gpu": "no"])
        let spec = JobSpec.workflow(steps: [
            WorkflowStep(id: "prepare", method: "m"),
            WorkflowStep(id: "train", method: "m", constraints: ["gpu": "yes"]),
        ])
        try submit(&state, store, spec)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(store.records["j-1"]?.waitingReason?.contains("gpu") == true)
        register(&state, "e2", labels: ["gpu": "yes"])
        try run(&state, store) { $0.planPlacement(now: now, loaded: $1) }
        #expect(tasks(state, "e2").map(\.job) == ["j-1"])
    }

    @Test func aWorkflowOfAThousandStepsKeepsItsRecordSmall() throws {
        // Fan-out from s0 to 998 steps, then fan-in: run through the record's own rules (the
        // leader's transactions around them are tested above).
        let steps = (0..<WorkflowGraph.maximumSteps).map { index in
            WorkflowStep(id: "s\(index)", method: "m", after: index == 0 ? [] : index < 999 ? ["s0"] : (1..<999).map { "s\($0)" })
        }
        try JobSpec.workflow(steps: steps).validate()  // within the workflow's spec bound
        var record = JobRecord(id: "j-1", spec: JobSpec.workflow(steps: steps), submittedAt: now)
        var runs = 0
        while case .running = record.advanceWorkflow(now: now) {
            for index in record.stepsToPlace(now: now) {
                runs += 1
                record.steps![index].run = runs
                record.steps![index].executor = "e1"
            }
            for index in record.placedSteps {
                var task = TaskRecord(job: "j-1", run: record.steps![index].run!, method: "m", arguments: [:], resources: Resources())
                task.state = .succeeded
                task.startedAt = now
                task.endedAt = now + 1
                task.result = ["exitCode": 0]
                let run = RunRecord(task: task, executor: "e1", outcome: .succeeded)
                record.appendHistory(run, limit: 20)
                _ = record.workflowStepEnded(index, run, now: now + 1)
            }
        }
        #expect(runs == 1_000)
        #expect(record.state == .succeeded)
        let bytes = try Codec.encode(record).count
        #expect(bytes < 256 * 1024, "a 1,000-step workflow's record is \(bytes) bytes")
        // The estimate that spares the leader an encoding per step's end is above the truth and,
        // for such a workflow, well under the bound (so no step's end encodes it).
        #expect(record.estimatedWorkflowBytes >= bytes)
        #expect(record.estimatedWorkflowBytes < JobRecord.workflowRecordBytes, "estimated \(record.estimatedWorkflowBytes)")
    }
}

/// Compensation and injection.
extension LeaderStateTests {
    static let withCleanup = JobSpec.workflow(steps: [
        WorkflowStep(id: "network", method: "net", onFailure: .compensate("cleanup")),
        WorkflowStep(id: "disk", method: "disk"),
        WorkflowStep(id: "cleanup", method: "clean", arguments: ["why": ["$from": "network.error"]]),
        WorkflowStep(id: "machine", method: "vm"),
    ])

    @Test func aFailureThatCompensatesRunsTheCleanUpThenFails() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, Self.withCleanup)
        try finish(&state, store, "j-1", on: "e1", .failed, error: "no VLAN")
        #expect(tasks(state, "e1").map(\.method) == ["clean"])
        #expect(tasks(state, "e1").first?.arguments == ["why": "no VLAN"])
        #expect(store.records["j-1"]?.state == .running)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        let record = try #require(store.records["j-1"])
        #expect(record.state == .failed)
        #expect(record.steps?.map(\.state) == [.failed, .skipped, .succeeded, .skipped])
    }

    @Test func aCompensationStepDoesNotRunWithoutAFailure() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, Self.withCleanup)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        // "machine" follows "disk": the compensation step between them is not "the step before".
        #expect(tasks(state, "e1").map(\.method) == ["disk"])
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        #expect(tasks(state, "e1").map(\.method) == ["vm"])
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        let record = try #require(store.records["j-1"])
        #expect(record.state == .succeeded)
        #expect(record.steps?.map(\.state) == [.succeeded, .succeeded, .skipped, .succeeded])
        #expect(record.steps?[2].error == "not needed: no failure called it")
    }

    @Test func aWorkflowsHistoryDropsOldResultsToStayBounded() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        let steps = (0..<30).map { WorkflowStep(id: "s\($0)", method: "m") }
        try submit(&state, store, JobSpec.workflow(steps: steps))
        let large = JSONValue.string(String(repeating: "x", count: 15_000))
        for _ in steps { try finish(&state, store, "j-1", on: "e1", .succeeded, result: ["blob": large]) }
        let record = try #require(store.records["j-1"])
        #expect(record.state == .succeeded)
        #expect(record.history.count == 20)
        #expect(record.history.first?.result == nil, "the oldest runs' results went")
        #expect(record.history.last?.result == ["blob": large], "the newest stay")
        #expect(try Codec.encode(record).count < 256 * 1024)
    }

    @Test func aClientInjectsStepsIntoARunningWorkflowAndNotIntoAnEndedOne() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec.workflow(steps: [WorkflowStep(id: "a", method: "m")]))
        var operation = QueueOperation(.inject, job: "j-1")
        operation.steps = [WorkflowStep(id: "b", method: "n", arguments: ["from": ["$from": "a.result.x"]], after: ["a"])]
        try run(&state, store) { $0.planQueueBatch([operation], unreadable: [], now: now, loaded: $1, placing: true) }
        #expect(store.records["j-1"]?.spec.steps?.map(\.id) == ["a", "b"])
        try finish(&state, store, "j-1", on: "e1", .succeeded, result: ["x": 7])
        #expect(tasks(state, "e1").map(\.arguments) == [["from": 7]])
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        #expect(store.records["j-1"]?.state == .succeeded)
        // Ended: the operation is set aside with the reason.
        operation.steps = [WorkflowStep(id: "c", method: "m")]
        let refused = try #require(try run(&state, store) { $0.planQueueBatch([operation], unreadable: [], now: now, loaded: $1, placing: true) })
        #expect(refused.setAsides.first?.code == .refused)
        #expect(refused.setAsides.first?.reason == "steps not added to j-1: job: workflow j-1 has ended (succeeded): nothing can be added to it")
    }

    @Test func aHandlerInjectsStepsThatRunAfterItsOwn() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec.workflow(steps: [WorkflowStep(id: "plan", method: "m"), WorkflowStep(id: "report", method: "r", after: ["plan"])]))
        // The handler of "plan" adds two steps; the first runs after "plan" (no `after` given).
        var executorState = try #require(state.executors["e1"]?.state)
        executorState.document.tasks[0].inject = [WorkflowStep(id: "part-1", method: "p"), WorkflowStep(id: "part-2", method: "p")]
        state.assignmentsChanged("e1", executorState, bytes: 100)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        let record = try #require(store.records["j-1"])
        #expect(record.spec.steps?.map(\.id) == ["plan", "report", "part-1", "part-2"])
        #expect(record.spec.steps?[2].after == ["plan"])
        #expect(tasks(state, "e1").map(\.method) == ["r", "p"], "report and part-1 both run after plan")
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        #expect(store.records["j-1"]?.state == .succeeded)
        #expect(store.records["j-1"]?.steps?.map(\.run) == [1, 2, 3, 4])
    }

    @Test func stepsAHandlerInjectsThatBreakTheGraphFailItsRun() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec.workflow(steps: [WorkflowStep(id: "plan", method: "m")]))
        var executorState = try #require(state.executors["e1"]?.state)
        executorState.document.tasks[0].inject = [WorkflowStep(id: "plan", method: "p")]
        state.assignmentsChanged("e1", executorState, bytes: 100)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        let record = try #require(store.records["j-1"])
        #expect(record.state == .failed)
        #expect(record.steps?.first?.error == "the steps it injected were refused: steps[0].id: step plan: the id is used twice")
    }
}

/// Steps at once: fan-out over executors, abort and stop with several steps running, take-back.
extension LeaderStateTests {
    static let fanOut = JobSpec.workflow(steps: [
        WorkflowStep(id: "a", method: "m"),
        WorkflowStep(id: "b", method: "m", after: ["a"]), WorkflowStep(id: "c", method: "m", after: ["a"]),
        WorkflowStep(id: "d", method: "m", after: ["a"]),
        WorkflowStep(id: "z", method: "m", after: ["b", "c", "d"]),
    ])

    @Test func stepsThatCanRunAtOnceArePlacedAtOnceAcrossExecutors() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 1)
        register(&state, "e2", slots: 1)
        try submit(&state, store, Self.fanOut)
        let first = try #require(tasks(state, "e1").first ?? tasks(state, "e2").first)
        let firstExecutor = tasks(state, "e1").isEmpty ? "e2" : "e1"
        #expect(first.run == 1)
        try finish(&state, store, "j-1", on: firstExecutor, .succeeded)
        // Two of the three fan-out steps fit (a slot each); the third waits for room.
        #expect(tasks(state, "e1").count == 1 && tasks(state, "e2").count == 1)
        var record = try #require(store.records["j-1"])
        #expect(record.state == .running)
        #expect(record.steps?.map(\.state) == [.succeeded, .running, .running, .running, .pending])
        #expect(record.placedSteps.count == 2)
        #expect(record.steps?[3].waitingReason != nil, "d says why it waits")
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        record = try #require(store.records["j-1"])
        #expect(record.placedSteps.count == 2, "d took the freed slot in the same transaction")
        try finish(&state, store, "j-1", on: "e2", .succeeded)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        // z after all three.
        let z = try #require((tasks(state, "e1") + tasks(state, "e2")).first)
        #expect(z.run == 5)
        try finish(&state, store, "j-1", on: tasks(state, "e1").isEmpty ? "e2" : "e1", .succeeded)
        #expect(store.records["j-1"]?.state == .succeeded)
        #expect(store.records["j-1"]?.runsEnded == 5)
    }

    @Test func anAbortStopsTheStepsStillRunningAndTheWorkflowFailsOnceTheyEnded() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 4)
        try submit(&state, store, Self.fanOut)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        #expect(tasks(state, "e1").count == 3)
        try finish(&state, store, "j-1", on: "e1", .failed, error: "b broke")
        // c and d are asked to stop; z never starts.
        #expect(tasks(state, "e1").map(\.stopRequested) == [true, true])
        var record = try #require(store.records["j-1"])
        #expect(record.state == .running)
        #expect(record.steps?.map(\.state) == [.succeeded, .failed, .running, .running, .skipped])
        try finish(&state, store, "j-1", on: "e1", .failed)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        record = try #require(store.records["j-1"])
        #expect(record.state == .failed)
        #expect(record.steps?.map(\.state) == [.succeeded, .failed, .stopped, .succeeded, .skipped])
    }

    @Test func stoppingAWorkflowStopsEveryRunningStep() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 4)
        try submit(&state, store, Self.fanOut)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        try operation(&state, store, .stop, "j-1")
        #expect(tasks(state, "e1").map(\.stopRequested) == [true, true, true])
        for _ in 0..<3 { try finish(&state, store, "j-1", on: "e1", .failed) }
        let record = try #require(store.records["j-1"])
        #expect(record.state == .stopped)
        #expect(record.steps?.map(\.state) == [.succeeded, .stopped, .stopped, .stopped, .skipped])
    }

    @Test func aStepOnADeadExecutorMovesWithItsNumberWhileItsSiblingRunsOn() throws {
        var state = makeState(grace: .seconds(10))
        let store = Store()
        register(&state, "e1", slots: 1)
        register(&state, "e2", slots: 1)
        try submit(&state, store, JobSpec.workflow(steps: [WorkflowStep(id: "x", method: "m", after: []), WorkflowStep(id: "y", method: "m", after: [])]))
        #expect(tasks(state, "e1").count == 1 && tasks(state, "e2").count == 1)
        let moved = try #require(tasks(state, "e2").first)
        state.livenessChanged("e2", nil, at: start)
        try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: now + 11_000, loaded: $1) }
        var record = try #require(store.records["j-1"])
        #expect(record.state == .running, "x still runs on e1")
        let step = try #require(record.steps?.first { $0.run == moved.run })
        #expect(step.executor == nil && step.resume != nil)
        // e1's step ends; the moved one takes its slot, with its number.
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        #expect(tasks(state, "e1").map(\.run) == [moved.run])
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        record = try #require(store.records["j-1"])
        #expect(record.state == .succeeded)
        #expect(record.runsStarted == 2)
    }
}

/// Found in review: each of these hung a workflow, wedged placement or lost steps.
extension LeaderStateTests {
    @Test func aStepAskedToStopThenTakenBackEndsStoppedAndTheWorkflowEnds() throws {
        var state = makeState(grace: .seconds(10))
        let store = Store()
        register(&state, "e1", slots: 1)
        register(&state, "e2", slots: 1)
        try submit(&state, store, JobSpec.workflow(steps: [WorkflowStep(id: "b", method: "m", after: []), WorkflowStep(id: "c", method: "m", after: [])]))
        #expect(tasks(state, "e1").count == 1 && tasks(state, "e2").count == 1)
        // b fails (abort): c, on e2, is asked to stop; then e2 dies before it ends c.
        try finish(&state, store, "j-1", on: "e1", .failed)
        #expect(tasks(state, "e2").first?.stopRequested == true)
        state.livenessChanged("e2", nil, at: start)
        try run(&state, store) { $0.planReclaim(at: start + .seconds(11), wallClock: now + 11_000, loaded: $1) }
        let record = try #require(store.records["j-1"])
        #expect(record.state == .failed, "it ends instead of waiting for ever")
        #expect(record.steps?.map(\.state) == [.failed, .stopped])
    }

    @Test func aWorkflowThatStartsLaterStartsAtItsTime() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        var spec = JobSpec.workflow(steps: [WorkflowStep(id: "a", method: "m")])
        spec.notBefore = now + 5_000
        try submit(&state, store, spec)
        #expect(store.records["j-1"]?.state == .waiting)
        #expect(tasks(state, "e1").isEmpty)
        #expect(try run(&state, store) { $0.planPlacement(now: now + 4_999, loaded: $1) } == nil)
        try run(&state, store) { $0.planPlacement(now: now + 5_000, loaded: $1) }
        #expect(tasks(state, "e1").map(\.method) == ["m"])
    }

    @Test func referencesThatResolveToTooMuchFailTheirStep() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        let big = JSONValue.string(String(repeating: "x", count: 30_000))
        let spec = JobSpec.workflow(
            steps: [WorkflowStep(id: "a", method: "m", arguments: ["x": ["$from": "inputs.big"], "y": ["$from": "inputs.big"], "z": ["$from": "inputs.big"]])],
            inputs: ["big": big])
        try submit(&state, store, spec)
        let record = try #require(store.records["j-1"])
        #expect(record.state == .failed)
        #expect(record.steps?.first?.error?.contains("with its references resolved they are") == true, "\(record.steps?.first?.error ?? "")")
        #expect(tasks(state, "e1").isEmpty)
    }

    @Test func aRetryDueWithoutRoomWaitsInLineNotOnEveryTick() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 1)
        try submit(&state, store, JobSpec.workflow(steps: [WorkflowStep(id: "a", method: "m", retry: RetryPolicy(maxAttempts: 2, initialDelaySeconds: 1))]))
        try finish(&state, store, "j-1", on: "e1", .failed)
        // Another job takes the only slot before the retry comes due.
        try submit(&state, store, JobSpec(method: "other"), id: "j-2")
        #expect(tasks(state, "e1").map(\.job) == ["j-2"])
        try run(&state, store) { $0.planPlacement(now: now + 1_000, loaded: $1) }
        #expect(state.scheduledCount == 0, "no longer among the due times")
        #expect(state.waitingCount == 1, "it waits in the line")
        #expect(try run(&state, store) { $0.planPlacement(now: now + 1_100, loaded: $1) } == nil, "no write per tick")
        try finish(&state, store, "j-2", on: "e1", .succeeded, at: now + 1_200)
        #expect(tasks(state, "e1").map(\.job) == ["j-1"], "placed when room came")
    }

    @Test func aNewLeaderFilesTheStepsOfARunningWorkflowThatWait() throws {
        var record = JobRecord(id: "j-1", spec: Self.fanOut, submittedAt: now)
        _ = record.advanceWorkflow(now: now)
        record.steps![0].state = .succeeded
        _ = record.advanceWorkflow(now: now)
        record.steps![1].executor = "e1"
        record.steps![1].run = 2
        record.state = .running
        var state = makeState()
        state.loaded(waitingJobs: [record])
        #expect(state.waitingCount == 1, "c and d wait for room though the workflow runs")
    }

    @Test func stepsInjectedByARunThatFailedAreNotAdded() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        try submit(&state, store, JobSpec.workflow(steps: [WorkflowStep(id: "plan", method: "m", retry: RetryPolicy(maxAttempts: 2, initialDelaySeconds: 1))]))
        var executorState = try #require(state.executors["e1"]?.state)
        executorState.document.tasks[0].inject = [WorkflowStep(id: "part", method: "p")]
        state.assignmentsChanged("e1", executorState, bytes: 100)
        try finish(&state, store, "j-1", on: "e1", .failed)
        #expect(store.records["j-1"]?.spec.steps?.count == 1, "a failed run's injections are dropped")
        try run(&state, store) { $0.planPlacement(now: now + 1_000, loaded: $1) }
        executorState = try #require(state.executors["e1"]?.state)
        executorState.document.tasks[0].inject = [WorkflowStep(id: "part", method: "p")]
        state.assignmentsChanged("e1", executorState, bytes: 100)
        try finish(&state, store, "j-1", on: "e1", .succeeded, at: now + 1_000)
        #expect(store.records["j-1"]?.spec.steps?.map(\.id) == ["plan", "part"], "the retry's are added, once")
    }
}

/// Jobs of many tasks (issue 20): the method runs m times at once, the job ends when all have.
extension LeaderStateTests {
    @Test func aJobOfManyTasksPlacesThemAtOnceAndEndsWhenAllHave() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1", slots: 2)
        try submit(&state, store, JobSpec(method: "m", arguments: ["size": 10], tasks: 3))
        #expect(tasks(state, "e1").map(\.arguments) == [["size": 10, "taskIndex": 0], ["size": 10, "taskIndex": 1]])
        #expect(store.records["j-1"]?.state == .running)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        #expect(tasks(state, "e1").map(\.arguments).last == ["size": 10, "taskIndex": 2], "the third took the freed slot")
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        #expect(store.records["j-1"]?.state == .running)
        try finish(&state, store, "j-1", on: "e1", .failed)
        let record = try #require(store.records["j-1"])
        #expect(record.state == .failed, "a task failed: the job failed")
        #expect(record.runsEnded == 3)
    }
}

/// Repeating workflows: the whole graph runs again.
extension LeaderStateTests {
    @Test func aFiniteWorkflowRunsItsGraphCountTimes() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        var spec = JobSpec.workflow(steps: [WorkflowStep(id: "a", method: "m"), WorkflowStep(id: "b", method: "n")])
        spec.kind = .finite
        spec.count = 2
        try submit(&state, store, spec)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        // The graph again, from its first step, with fresh progress.
        #expect(tasks(state, "e1").map(\.method) == ["m"])
        #expect(store.records["j-1"]?.iterations == 1)
        #expect(store.records["j-1"]?.steps?.map(\.state) == [.running, .pending])
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        let record = try #require(store.records["j-1"])
        #expect(record.state == .succeeded)
        #expect(record.iterations == 2)
        #expect(record.history.map(\.run) == [1, 2, 3, 4])
    }

    @Test func aScheduledWorkflowRunsAtEachTimeAndAnInfiniteOneUntilStopped() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        var spec = JobSpec.workflow(steps: [WorkflowStep(id: "a", method: "m")])
        spec.kind = .infinite
        spec.schedule = Schedule(referenceMilliseconds: now, intervalMilliseconds: 10_000)
        try submit(&state, store, spec)
        #expect(store.records["j-1"]?.nextRunAt == now + 10_000)
        try run(&state, store) { $0.planPlacement(now: now + 10_000, loaded: $1) }
        try finish(&state, store, "j-1", on: "e1", .succeeded, at: now + 10_500)
        let waiting = try #require(store.records["j-1"])
        #expect(waiting.state == .waiting && waiting.nextRunAt == now + 20_000 && waiting.iterations == 1)
        try operation(&state, store, .stop, "j-1")
        #expect(store.records["j-1"]?.state == .stopped)
        // A failing infinite workflow waits a back-off before its graph runs again.
        var failing = JobSpec.workflow(steps: [WorkflowStep(id: "a", method: "m")])
        failing.kind = .infinite
        try submit(&state, store, failing, id: "j-2")
        try finish(&state, store, "j-2", on: "e1", .failed)
        let backingOff = try #require(store.records["j-2"])
        #expect(backingOff.state == .waiting && backingOff.nextRunAt != nil && backingOff.iterationsFailedInARow == 1, "\(backingOff)")
    }

    /// A workflow's time (one pass through its graph) is to `suspend`, `resume` and `trigger` what
    /// a run is to a job: the time under way finishes its steps, no next one starts until resumed,
    /// and a trigger starts one now — never beside one under way.
    @Test func aWorkflowIsSuspendedBetweenItsTimesResumedAndTriggered() throws {
        var state = makeState()
        let store = Store()
        register(&state, "e1")
        var spec = JobSpec.workflow(steps: [WorkflowStep(id: "a", method: "m"), WorkflowStep(id: "b", method: "n")])
        spec.kind = .infinite
        try submit(&state, store, spec)
        try operation(&state, store, .suspend, "j-1")
        // Under way: its steps go on to the end of this time.
        #expect(store.records["j-1"]?.suspended == true && store.records["j-1"]?.state == .running)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        #expect(tasks(state, "e1").filter { !$0.state.isFinished }.map(\.method) == ["n"])
        // A trigger while a time is under way adds nothing.
        try operation(&state, store, .trigger, "j-1")
        #expect(tasks(state, "e1").filter { !$0.state.isFinished }.count == 1)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        var parked = try #require(store.records["j-1"])
        #expect(parked.state == .waiting && parked.steps == nil && parked.nextRunAt == nil && parked.iterations == 1)
        #expect(parked.waitingReason == "suspended (drover resume continues it)")
        #expect(tasks(state, "e1").filter { !$0.state.isFinished }.isEmpty)
        #expect(state.waitingCount == 0 && state.scheduledCount == 0)

        // Triggered while suspended: one time now, then parked again.
        try operation(&state, store, .trigger, "j-1")
        #expect(tasks(state, "e1").filter { !$0.state.isFinished }.map(\.method) == ["m"])
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        try finish(&state, store, "j-1", on: "e1", .succeeded)
        parked = try #require(store.records["j-1"])
        #expect(parked.state == .waiting && parked.steps == nil && parked.iterations == 2 && parked.triggered == nil)

        // Resumed: the next time starts at once (no schedule).
        try operation(&state, store, .resume, "j-1")
        #expect(store.records["j-1"]?.suspended == nil && store.records["j-1"]?.state == .running)
        #expect(tasks(state, "e1").filter { !$0.state.isFinished }.map(\.method) == ["m"])

        // A scheduled workflow suspended between times skips them; resumed, it waits for the next.
        var scheduled = JobSpec.workflow(steps: [WorkflowStep(id: "a", method: "m")])
        scheduled.kind = .infinite
        scheduled.schedule = Schedule(referenceMilliseconds: now, intervalMilliseconds: 10_000)
        try submit(&state, store, scheduled, id: "j-2")
        try operation(&state, store, .suspend, "j-2")
        #expect(store.records["j-2"]?.nextRunAt == nil)
        #expect(try run(&state, store) { $0.planPlacement(now: now + 30_000, loaded: $1) } == nil, "no time of a suspended workflow is due")
        try run(&state, store) { $0.planQueueBatch([QueueOperation(.resume, job: "j-2")], unreadable: [], now: now + 35_000, loaded: $1, placing: true) }
        #expect(store.records["j-2"]?.nextRunAt == now + 40_000)
        #expect(store.records["j-2"]?.state == .waiting)
    }
}
