import DroverProtocol
import Foundation
import Testing

/// A workflow's spec is refused at submit with the step and the reason (issue 18, bad input).
@Suite struct WorkflowTests {
    func problem(_ steps: [WorkflowStep]) -> String? {
        do {
            try JobSpec.workflow(steps: steps).validate()
            return nil
        } catch {
            return error.description
        }
    }

    @Test func aSoundGraphIsAccepted() {
        #expect(
            problem([
                WorkflowStep(id: "network", method: "m"),
                WorkflowStep(id: "disk", method: "m", after: ["network"]),
                WorkflowStep(id: "machine", method: "m", arguments: ["ip": ["$from": "network.result.ip"]], after: ["disk"]),
            ]) == nil, "a reference to a step it runs after indirectly is fine")
    }

    @Test func badGraphsAreRefusedWithTheStepAndTheReason() {
        #expect(problem([]) == "invalid job: steps: a workflow needs at least one step")
        #expect(
            problem([WorkflowStep(id: "a", method: "m"), WorkflowStep(id: "a", method: "m")])
                == "invalid job: steps[1].id: step a: the id is used twice")
        #expect(problem([WorkflowStep(id: "a", method: "m", after: ["a"])]) == "invalid job: steps[0].after: step a cannot run after itself")
        #expect(
            problem([WorkflowStep(id: "a", method: "m", after: ["b"])])
                == #"invalid job: steps[0].after: step a runs after "b", which is no step of this workflow"#)
        #expect(
            problem([WorkflowStep(id: "a", method: "m", after: ["b"]), WorkflowStep(id: "b", method: "m", after: ["a"])])
                == "invalid job: steps: the steps' `after` lists make a cycle among a, b")
        #expect(problem([WorkflowStep(id: "a b", method: "m")])?.hasPrefix(#"invalid job: steps[0].id: "a b" is not a step id"#) == true)
        #expect(problem([WorkflowStep(id: "a", method: "")])?.hasPrefix("invalid job: steps[0].method: step a:") == true)
        let tooMany = (0...WorkflowGraph.maximumSteps).map { WorkflowStep(id: "s\($0)", method: "m", after: []) }
        #expect(problem(tooMany) == "invalid job: steps: 1001 steps, over the limit of 1000")
    }

    @Test func referencesMustNameADependencyAndAPart() {
        #expect(
            problem([
                WorkflowStep(id: "a", method: "m", after: []),
                WorkflowStep(id: "b", method: "m", arguments: ["x": ["$from": "a.result"]], after: []),
            ]) == "invalid job: steps[1].arguments.x: step b refers to step a, which it does not run after (add it to `after`)")
        #expect(
            problem([WorkflowStep(id: "a", method: "m", arguments: ["x": ["$from": "ghost.result"]])])
                == #"invalid job: steps[0].arguments.x: step a refers to "ghost", which is no step of this workflow"#)
        #expect(
            problem([WorkflowStep(id: "a", method: "m"), WorkflowStep(id: "b", method: "m", arguments: [["$from": "a.output"]])])
                == #"invalid job: steps[1].arguments[0]: step b: "a.output" is not a reference: after the step's id comes result, state or error"#)
        #expect(
            problem([WorkflowStep(id: "a", method: "m"), WorkflowStep(id: "b", method: "m", arguments: ["x": ["$from": "a.state.x"]])])
                == #"invalid job: steps[1].arguments.x: step b: "a.state.x": state has no fields"#)
    }

    @Test func aWorkflowMayRepeatWithoutTheSchedulePoliciesAndNamesNoMethodOfItsOwn() throws {
        var repeating = JobSpec.workflow(steps: [WorkflowStep(id: "a", method: "m")])
        repeating.kind = .infinite
        repeating.schedule = Schedule(referenceMilliseconds: 0, intervalMilliseconds: 60_000)
        try repeating.validate()
        repeating.overlap = .replace
        #expect(throws: SpecError.self) { try repeating.validate() }
        var named = JobSpec.workflow(steps: [WorkflowStep(id: "a", method: "m")])
        named.method = "shell"
        #expect(throws: SpecError.self) { try named.validate() }
    }

    @Test func aWorkflowIsWrittenInFormat3AndReadWithoutAMethod() throws {
        let spec = JobSpec.workflow(steps: [WorkflowStep(id: "a", method: "m")])
        #expect(spec.format == 3)
        let decoded = try JSONDecoder().decode(JobSpec.self, from: Data(#"{"steps": [{"id": "a", "method": "shell"}]}"#.utf8))
        #expect(decoded.method == JobSpec.workflowMethod)
        #expect(decoded.steps?.first?.arguments == .object([:]))
        #expect(JobSpec.unknownField(in: ["steps": [["id": "a", "method": "m", "depends": ["b"]]]]) == "steps[0].depends")
    }
}

extension WorkflowTests {
    @Test func compensationStepsAreCheckedAndReadFromFiles() throws {
        #expect(
            problem([WorkflowStep(id: "a", method: "m", onFailure: .compensate("ghost"))])
                == #"invalid job: steps[0].onFailure: step a compensates with "ghost", which is no step of this workflow"#)
        #expect(
            problem([WorkflowStep(id: "a", method: "m", onFailure: .compensate("c")), WorkflowStep(id: "c", method: "m", after: ["a"])])
                == "invalid job: steps[1].after: step c is a compensation step: it runs when a failure calls it, after nothing else")
        #expect(
            problem([
                WorkflowStep(id: "a", method: "m", onFailure: .compensate("c")), WorkflowStep(id: "c", method: "m"),
                WorkflowStep(id: "b", method: "m", after: ["c"]),
            ]) == "invalid job: steps[2].after: step b runs after c, a compensation step (it runs only when a failure calls it)")
        let decoded = try JSONDecoder().decode(WorkflowStep.self, from: Data(#"{"id": "a", "method": "m", "onFailure": {"compensate": "c"}}"#.utf8))
        #expect(decoded.onFailure == .compensate("c"))
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(WorkflowStep.self, from: Data(#"{"id": "a", "method": "m", "onFailure": "retry"}"#.utf8))
        }
    }

    @Test func injectedStepsAreCheckedWithTheWholeGraph() throws {
        var record = JobRecord(id: "j-1", spec: .workflow(steps: [WorkflowStep(id: "a", method: "m")]))
        record.state = .running
        #expect(throws: SpecError(field: "steps[1].id", reason: "step a: the id is used twice")) {
            var copy = record
            try copy.inject([WorkflowStep(id: "b", method: "m"), WorkflowStep(id: "a", method: "m")], by: nil)
        }
        #expect(throws: SpecError(field: "steps[0].arguments.x", reason: "step b refers to step a, which it does not run after (add it to `after`)")) {
            var copy = record
            try copy.inject([WorkflowStep(id: "b", method: "m", arguments: ["x": ["$from": "a.result"]])], by: nil)
        }
        try record.inject([WorkflowStep(id: "b", method: "m", arguments: ["x": ["$from": "a.result"]])], by: "a")
        #expect(record.spec.steps?.last?.after == ["a"])
        record.state = .succeeded
        #expect(throws: SpecError.self) { try record.inject([WorkflowStep(id: "c", method: "m")], by: nil) }
    }
}

extension WorkflowTests {
    @Test func injectionNeitherRewiresExistingStepsNorAddsToAHaltedWorkflow() throws {
        var record = JobRecord(id: "j-1", spec: .workflow(steps: [WorkflowStep(id: "a", method: "m"), WorkflowStep(id: "b", method: "m")]))
        record.state = .running
        #expect(throws: SpecError.self) {
            var copy = record
            try copy.inject([WorkflowStep(id: "c", method: "m", onFailure: .compensate("b"))], by: nil)
        }
        record.steps = [StepProgress(id: "a", state: .failed), StepProgress(id: "b", state: .skipped)]
        #expect(throws: SpecError(field: "job", reason: "workflow j-1 is being stopped or aborted: nothing can be added to it")) {
            try record.inject([WorkflowStep(id: "c", method: "m")], by: nil)
        }
    }

    @Test func aRecordWhoseProgressDoesNotMatchItsStepsCannotBeUsed() throws {
        var record = JobRecord(id: "j-1", spec: .workflow(steps: [WorkflowStep(id: "a", method: "m")]))
        record.steps = [StepProgress(id: "a"), StepProgress(id: "ghost")]
        #expect(record.problem(asJob: "j-1")?.reason == "steps: the progress does not match the spec's steps")
        record.steps = [StepProgress(id: "a")]
        #expect(record.problem(asJob: "j-1") == nil)
    }
}

extension WorkflowTests {
    @Test func aJobOfManyTasksIsCheckedAndRunsAsIndependentSteps() throws {
        func problem(_ spec: JobSpec) -> String? {
            do {
                try spec.validate()
                return nil
            } catch { return error.description }
        }
        #expect(problem(JobSpec(method: "m", tasks: 0)) == "invalid job: tasks: must be between 1 and 1000 (got 0)")
        #expect(problem(JobSpec(method: "m", tasks: 2, taskArguments: [["a": 1]])) == "invalid job: taskArguments: 1 elements for 2 tasks: one per task")
        #expect(problem(JobSpec(method: "m", taskArguments: [["a": 1]])) == "invalid job: taskArguments: only a job of many tasks (`tasks`) has per-task arguments")
        #expect(problem(JobSpec(method: "m", kind: .infinite, tasks: 2)) == nil, "the tasks run again and again")
        #expect(problem(JobSpec(method: "m", schedule: Schedule(referenceMilliseconds: 0, intervalMilliseconds: 1_000), missedRuns: MissedRunPolicy(policy: .skip), tasks: 2))?.contains("not for jobs of many tasks") == true)
        let spec = JobSpec(method: "m", tasks: 2, taskArguments: [["file": "a"], "b"])
        #expect(problem(spec) == nil)
        #expect(spec.format == 3)
        #expect(spec.workflowSteps?.map(\.arguments) == [["file": "a", "taskIndex": 0], "b"])
        #expect(spec.workflowSteps?.allSatisfy { $0.after == [] && $0.method == "m" } == true)
    }
}
