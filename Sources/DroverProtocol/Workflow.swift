import Foundation

/// One step of a workflow: a method with its arguments, run after the steps it depends on.
///
/// ```json
/// {"id": "disk", "method": "shell", "arguments": {"command": ["make-disk", {"$from": "network.result.vlan"}]},
///  "after": ["network"], "onFailure": "continue", "retry": {"maxAttempts": 2}}
/// ```
public struct WorkflowStep: Codable, Sendable, Hashable {
    /// Unique within the workflow: letters, digits, `-` and `_`, at most 64.
    public var id: String
    public var method: String
    /// Passed to the handler once every reference (`{"$from": "<step>.result.<field>"}`) in them
    /// is replaced by what it names (``WorkflowReference``).
    public var arguments: JSONValue
    /// Absent: the workflow's own.
    public var resources: Resources?
    /// Absent: the workflow's own.
    public var constraints: [String: String]?
    /// The steps that must end first. Absent: the step before this one in the list (none for the
    /// first), so a plain list is a sequence; `[]`: none.
    public var after: [String]?
    /// What a failure of this step (its retries spent) does to the rest. Absent: `abort`.
    public var onFailure: StepFailureAction?
    /// Absent: the workflow's own `retry`.
    public var retry: RetryPolicy?

    public init(
        id: String, method: String, arguments: JSONValue = .object([:]), resources: Resources? = nil, constraints: [String: String]? = nil,
        after: [String]? = nil, onFailure: StepFailureAction? = nil, retry: RetryPolicy? = nil
    ) {
        self.id = id
        self.method = method
        self.arguments = arguments
        self.resources = resources
        self.constraints = constraints
        self.after = after
        self.onFailure = onFailure
        self.retry = retry
    }

    enum CodingKeys: String, CodingKey { case id, method, arguments, resources, constraints, after, onFailure, retry }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        method = try container.decode(String.self, forKey: .method)
        arguments = try container.decodeIfPresent(JSONValue.self, forKey: .arguments) ?? .object([:])
        resources = try container.decodeIfPresent(Resources.self, forKey: .resources)
        constraints = try container.decodeIfPresent([String: String].self, forKey: .constraints)
        after = try container.decodeIfPresent([String].self, forKey: .after)
        onFailure = try container.decodeIfPresent(StepFailureAction.self, forKey: .onFailure)
        retry = try container.decodeIfPresent(RetryPolicy.self, forKey: .retry)
    }

    /// The fields a step has (a job file naming any other is refused).
    static let fields: Set<String> = ["id", "method", "arguments", "resources", "constraints", "after", "onFailure", "retry"]
}

/// What a step that failed for good does to its workflow: `"abort"`, `"continue"`, or
/// `{"compensate": "<step>"}`.
public enum StepFailureAction: Codable, Sendable, Hashable {
    /// The workflow fails; steps not started never start.
    case abort
    /// The steps after it still run; its failure is visible to them (`{"$from": "<step>.error"}`).
    case `continue`
    /// The named clean-up step runs (a compensation step: it runs only so), then the workflow
    /// fails; the other steps not started never start.
    case compensate(String)

    public init(from decoder: any Decoder) throws {
        if let text = try? decoder.singleValueContainer().decode(String.self) {
            switch text {
            case "abort": self = .abort
            case "continue": self = .continue
            default:
                throw DecodingError.dataCorrupted(
                    .init(codingPath: decoder.codingPath, debugDescription: "\"\(text)\" is not a failure action (abort, continue, or {compensate: <step>})"))
            }
            return
        }
        let object = try decoder.singleValueContainer().decode([String: String].self)
        guard object.count == 1, let step = object["compensate"] else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "expected abort, continue, or {compensate: <step>}"))
        }
        self = .compensate(step)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .abort: try container.encode("abort")
        case .continue: try container.encode("continue")
        case .compensate(let step): try container.encode(["compensate": step])
        }
    }
}

/// Where a step stands.
public enum StepState: String, Codable, Sendable, Hashable {
    /// Waits for the steps it depends on.
    case pending
    /// Its run is placed, runs, or waits to be placed (again, after a retry's delay or a take-back).
    case running
    case succeeded
    case failed
    /// Never ran: the workflow was aborted or stopped first.
    case skipped
    /// Its run was stopped with the workflow.
    case stopped

    public var isFinished: Bool { self != .pending && self != .running }
}

/// A step's progress, kept in the workflow's record (``JobRecord/steps``), in the order of the spec's steps.
public struct StepProgress: Codable, Sendable, Hashable {
    public var id: String
    public var state: StepState
    /// The job's run that ran (or runs) the step: its output is that run's (`drover logs JOB --run N`).
    public var run: Int?
    /// Its attempt under its retry policy (absent: the first).
    public var attempt: Int?
    public var startedAt: Timestamp?
    public var endedAt: Timestamp?
    /// The step's result, kept only when a later step refers to it.
    public var result: JSONValue?
    /// Why it failed, or why it was skipped.
    public var error: String?
    /// Where its run is placed, while it is (`running` without one: waiting to be placed).
    public var executor: String?
    /// A retry's due time: the step is placed again no earlier.
    public var nextRunAt: Timestamp?
    /// Its run, taken back from an executor, resumes from here when it is placed again.
    public var resume: ResumePoint?
    /// The leader asked its run to stop (the workflow is stopped or aborted).
    public var stopRequested: Bool?
    /// Why it waits to be placed (no executor has room, …).
    public var waitingReason: String?
    /// A task of a job on the direct path that waits for an executor's claim: the leader does not
    /// place it (it adopts the claim) until it takes the task over.
    public var claimable: Bool?

    public init(id: String, state: StepState = .pending) {
        self.id = id
        self.state = state
    }
}

/// The shape of a workflow: its bounds, the check of its graph, and each step's dependencies.
public enum WorkflowGraph {
    /// Steps a workflow has at most.
    public static let maximumSteps = 1_000
    /// Encoded bytes of the results a workflow keeps for later steps, in all.
    public static let keptResultBytes = 64 * 1024

    /// Each step's dependencies by index, without the checks of ``check(_:)`` (for a spec that
    /// passed them): what the leader needs on every step's end, in one pass.
    public static func dependencies(of steps: [WorkflowStep]) -> [[Int]] {
        var index: [String: Int] = [:]
        for (position, step) in steps.enumerated() { index[step.id] = position }
        let compensations = compensationSteps(of: steps)
        var previous: Int?
        return steps.enumerated().map { position, step in
            // A compensation step runs only when a failure calls it: it depends on nothing, and
            // is not "the step before" the next one.
            if compensations.contains(step.id) { return [] }
            defer { previous = position }
            return step.after.map { $0.compactMap { index[$0] } } ?? previous.map { [$0] } ?? []
        }
    }

    /// The ids of the steps some step's `onFailure` names to compensate.
    public static func compensationSteps(of steps: [WorkflowStep]) -> Set<String> {
        Set(steps.compactMap { step in
            if case .compensate(let id)? = step.onFailure { return id }
            return nil
        })
    }

    /// Whether `arguments` hold a reference (`{"$from": …}`) anywhere.
    public static func hasReferences(_ arguments: JSONValue) -> Bool { !WorkflowReference.all(in: arguments).isEmpty }

    /// Whether any step's arguments refer to step `id`'s result.
    public static func resultIsReferred(_ id: String, in steps: [WorkflowStep]) -> Bool {
        steps.contains { step in
            WorkflowReference.all(in: step.arguments).contains { _, text in
                if case .step(id, .result, _)? = try? WorkflowReference(text) { return true }
                return false
            }
        }
    }

    /// Checks `steps`: ids, dependencies (known, no cycles), references (to the step's own
    /// dependencies, directly or not, or to the workflow's inputs).
    public static func check(_ steps: [WorkflowStep]) throws(SpecError) {
        guard !steps.isEmpty else { throw SpecError(field: "steps", reason: "a workflow needs at least one step") }
        guard steps.count <= Self.maximumSteps else {
            throw SpecError(field: "steps", reason: "\(steps.count) steps, over the limit of \(Self.maximumSteps)")
        }
        var index: [String: Int] = [:]
        for (position, step) in steps.enumerated() {
            guard !step.id.isEmpty, step.id.count <= 64, step.id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
            else {
                throw SpecError(field: "steps[\(position)].id", reason: "\"\(step.id)\" is not a step id (letters, digits, - and _; at most 64)")
            }
            guard step.id != "inputs" else {
                throw SpecError(field: "steps[\(position)].id", reason: "\"inputs\" names the workflow's inputs in references: choose another id")
            }
            guard index[step.id] == nil else { throw SpecError(field: "steps[\(position)].id", reason: "step \(step.id): the id is used twice") }
            index[step.id] = position
        }
        let compensations = compensationSteps(of: steps)
        for (position, step) in steps.enumerated() {
            if case .compensate(let id)? = step.onFailure {
                guard let other = index[id] else {
                    throw SpecError(field: "steps[\(position)].onFailure", reason: "step \(step.id) compensates with \"\(id)\", which is no step of this workflow")
                }
                guard other != position else { throw SpecError(field: "steps[\(position)].onFailure", reason: "step \(step.id) cannot compensate for itself") }
            }
            if compensations.contains(step.id) {
                if let after = step.after, !after.isEmpty {
                    throw SpecError(field: "steps[\(position)].after", reason: "step \(step.id) is a compensation step: it runs when a failure calls it, after nothing else")
                }
                if case .compensate? = step.onFailure {
                    throw SpecError(field: "steps[\(position)].onFailure", reason: "step \(step.id) is a compensation step: it cannot call another")
                }
            }
            for name in step.after ?? [] where compensations.contains(name) {
                throw SpecError(
                    field: "steps[\(position)].after", reason: "step \(step.id) runs after \(name), a compensation step (it runs only when a failure calls it)")
            }
        }
        var dependencies: [[Int]] = []
        let defaults = Self.dependencies(of: steps)
        for (position, step) in steps.enumerated() {
            guard let after = step.after else {
                dependencies.append(defaults[position])
                continue
            }
            var seen: Set<Int> = []
            for name in after {
                guard name != step.id else { throw SpecError(field: "steps[\(position)].after", reason: "step \(step.id) cannot run after itself") }
                guard let other = index[name] else {
                    throw SpecError(field: "steps[\(position)].after", reason: "step \(step.id) runs after \"\(name)\", which is no step of this workflow")
                }
                seen.insert(other)
            }
            dependencies.append(seen.sorted())
        }
        // Kahn's algorithm: what is left when no step is free has a cycle.
        var remaining = dependencies.map(\.count)
        var dependents = Array(repeating: [Int](), count: steps.count)
        for (step, before) in dependencies.enumerated() { for other in before { dependents[other].append(step) } }
        var free = remaining.indices.filter { remaining[$0] == 0 }
        var ordered = 0
        while let step = free.popLast() {
            ordered += 1
            for next in dependents[step] {
                remaining[next] -= 1
                if remaining[next] == 0 { free.append(next) }
            }
        }
        if ordered < steps.count {
            let inCycle = remaining.indices.filter { remaining[$0] > 0 }.map { steps[$0].id }
            throw SpecError(field: "steps", reason: "the steps' `after` lists make a cycle among \(inCycle.prefix(10).joined(separator: ", "))")
        }
        // Every step's ancestors, in an order where dependencies come first.
        var ancestors = Array(repeating: Set<Int>(), count: steps.count)
        var done = Array(repeating: false, count: steps.count)
        func collect(_ step: Int) {
            guard !done[step] else { return }
            for other in dependencies[step] {
                collect(other)
                ancestors[step].insert(other)
                ancestors[step].formUnion(ancestors[other])
            }
            done[step] = true
        }
        for step in steps.indices { collect(step) }
        for (position, step) in steps.enumerated() {
            for (path, reference) in WorkflowReference.all(in: step.arguments) {
                let field = "steps[\(position)].arguments\(path)"
                let parsed: WorkflowReference
                do {
                    parsed = try WorkflowReference(reference)
                } catch {
                    throw SpecError(field: field, reason: "step \(step.id): \(error.reason)")
                }
                guard case .step(let name, _, _) = parsed else { continue }
                guard let other = index[name] else {
                    throw SpecError(field: field, reason: "step \(step.id) refers to \"\(name)\", which is no step of this workflow")
                }
                guard ancestors[position].contains(other) || (compensations.contains(step.id) && !compensations.contains(name)) else {
                    throw SpecError(
                        field: field, reason: "step \(step.id) refers to step \(name), which it does not run after (add it to `after`)")
                }
            }
        }
    }
}

/// A reference in a step's arguments: an object with the single key `$from`, whose value names
/// what replaces it when the step is placed:
/// - `inputs` or `inputs.<field>…`: the workflow's own `arguments`, or a field of them;
/// - `<step>.result` or `<step>.result.<field>…`: a result of a step this one runs after;
/// - `<step>.state`: `"succeeded"` or `"failed"` (a failed step with `onFailure: continue`);
/// - `<step>.error`: why it failed, or `null`.
/// Fields are object keys, or array indexes (`addresses.0`).
public enum WorkflowReference: Sendable, Hashable {
    public enum Part: String, Sendable, Hashable { case result, state, error }
    case inputs(fields: [String])
    case step(String, Part, fields: [String])

    public init(_ text: String) throws(SpecError) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard let head = parts.first, !head.isEmpty, !parts.contains(where: \.isEmpty) else {
            throw SpecError(field: "$from", reason: "\"\(text)\" is not a reference (inputs.<field> or <step>.result.<field>)")
        }
        if head == "inputs" {
            self = .inputs(fields: Array(parts.dropFirst()))
            return
        }
        guard parts.count >= 2, let part = Part(rawValue: parts[1]) else {
            throw SpecError(field: "$from", reason: "\"\(text)\" is not a reference: after the step's id comes result, state or error")
        }
        guard part == .result || parts.count == 2 else {
            throw SpecError(field: "$from", reason: "\"\(text)\": \(part.rawValue) has no fields")
        }
        self = .step(head, part, fields: Array(parts.dropFirst(2)))
    }

    /// Every reference in `value`, with where it is (`.command[1]`), depth first.
    static func all(in value: JSONValue, at path: String = "") -> [(String, String)] {
        switch value {
        case .object(let members):
            if members.count == 1, let reference = members["$from"] {
                return [(path, reference.stringValue ?? "")]
            }
            return members.keys.sorted().flatMap { all(in: members[$0]!, at: path + "." + $0) }
        case .array(let values):
            return values.enumerated().flatMap { all(in: $1, at: path + "[\($0)]") }
        case .null, .bool, .number, .string:
            return []
        }
    }

    /// `value` with every reference replaced by what it names in `record`.
    /// - Throws: ``SpecError`` (field: where in the arguments) when a reference names nothing.
    static func resolve(_ value: JSONValue, in record: JobRecord, at path: String = "") throws(SpecError) -> JSONValue {
        switch value {
        case .object(let members):
            if members.count == 1, let text = members["$from"] {
                return try resolveOne(text.stringValue ?? "", in: record, at: path)
            }
            var resolved: [String: JSONValue] = [:]
            for (key, member) in members { resolved[key] = try resolve(member, in: record, at: path + "." + key) }
            return .object(resolved)
        case .array(let values):
            var resolved: [JSONValue] = []
            for (index, element) in values.enumerated() { resolved.append(try resolve(element, in: record, at: path + "[\(index)]")) }
            return .array(resolved)
        case .null, .bool, .number, .string:
            return value
        }
    }

    private static func resolveOne(_ text: String, in record: JobRecord, at path: String) throws(SpecError) -> JSONValue {
        let reference = try WorkflowReference(text)
        let base: JSONValue?
        let fields: [String]
        switch reference {
        case .inputs(let names):
            base = record.spec.arguments
            fields = names
        case .step(let id, let part, let names):
            guard let progress = record.steps?.first(where: { $0.id == id }) else {
                throw SpecError(field: "arguments" + path, reason: "\(text): no step \(id)")
            }
            fields = names
            switch part {
            case .state: base = .string(progress.state.rawValue)
            case .error: base = progress.error.map(JSONValue.string) ?? .null
            case .result:
                guard progress.state == .succeeded else {
                    throw SpecError(field: "arguments" + path, reason: "\(text): step \(id) \(progress.state.rawValue), it has no result")
                }
                base = progress.result
            }
        }
        var value = base
        var walked = text.hasPrefix("inputs") ? "inputs" : text.split(separator: ".").prefix(2).joined(separator: ".")
        for field in fields {
            switch value {
            case .object(let members)?: value = members[field]
            case .array(let elements)?: value = Int(field).flatMap { elements.indices.contains($0) ? elements[$0] : nil }
            default: value = nil
            }
            guard value != nil else {
                throw SpecError(field: "arguments" + path, reason: "\(text) resolves to nothing (\(walked) has no \"\(field)\")")
            }
            walked += "." + field
        }
        guard let value else { throw SpecError(field: "arguments" + path, reason: "\(text) resolves to nothing") }
        return value
    }
}

extension JobSpec {
    /// Whether this job is a workflow (it has steps).
    public var isWorkflow: Bool { steps != nil || taskCount != nil }

    /// The steps this job runs as: a workflow's, or a job of m tasks' (`task-0`…, each after
    /// nothing, its arguments with its `taskIndex`).
    public var workflowSteps: [WorkflowStep]? {
        if let steps { return steps }
        guard let tasks = taskCount, tasks >= 1 else { return nil }
        return (0..<min(tasks, WorkflowGraph.maximumSteps)).map(taskStep)
    }

    /// Step `index` of ``workflowSteps``, made alone (a job of many tasks makes its steps on demand).
    public func workflowStep(_ index: Int) -> WorkflowStep {
        steps.map { $0[index] } ?? taskStep(index)
    }

    private func taskStep(_ index: Int) -> WorkflowStep {
        var arguments = taskArguments?.indices.contains(index) == true ? taskArguments![index] : self.arguments
        if case .object(var members) = arguments {
            members["taskIndex"] = .number(Double(index))
            arguments = .object(members)
        }
        return WorkflowStep(id: "task-\(index)", method: method, arguments: arguments, after: [])
    }

    /// Step `index` as a job of its own: its method, arguments (unresolved), and the workflow's
    /// resources, constraints and retry policy where the step names none.
    public func stepSpec(_ index: Int) -> JobSpec {
        let step = workflowStep(index)
        return JobSpec(
            name: step.id, method: step.method, arguments: step.arguments, resources: step.resources ?? resources,
            constraints: step.constraints ?? constraints, retry: step.retry ?? retry, priority: priority)
    }
}

/// How a workflow goes on after a change: steps are current, or it ended.
public enum WorkflowAdvance: Sendable, Hashable {
    /// Some steps are current (placed, or to be placed): ``JobRecord/stepsToPlace(now:)`` says which wait for room.
    case running
    /// Every step ended (or the rest were skipped): the workflow is final in this state.
    case finished(JobState)
}

extension JobRecord {
    /// Current steps: placed, or waiting to be placed.
    public var currentSteps: [Int] { steps?.indices.filter { steps![$0].state == .running } ?? [] }

    /// The executors its runs are placed on while it runs: the job's one, or its placed steps'.
    public var executorsOfRuns: [String] {
        guard state == .running || state == .waiting else { return [] }
        if spec.isWorkflow { return placedSteps.compactMap { steps![$0].executor } }
        if let concurrentRuns { return concurrentRuns.compactMap(\.executor) }
        return state == .running ? executor.map { [$0] } ?? [] : []
    }

    /// Steps whose run is on an executor now.
    public var placedSteps: [Int] { steps?.indices.filter { steps![$0].state == .running && steps![$0].executor != nil } ?? [] }

    /// Current steps not on an executor that may be placed at `now` (not waiting for a retry's time),
    /// in the spec's order; none once the workflow is being stopped.
    public func stepsToPlace(now: Timestamp) -> [Int] {
        guard !stopRequested, !(steps?.contains { $0.stopRequested == true } ?? false) else { return [] }
        return steps?.indices.filter { index in
            let step = steps![index]
            return step.state == .running && step.executor == nil && step.claimable != true && (step.nextRunAt ?? 0) <= now
        } ?? []
    }

    /// The earliest retry time among current steps not placed.
    public var nextStepDue: Timestamp? {
        steps?.filter { $0.state == .running && $0.executor == nil }.compactMap(\.nextRunAt).min()
    }

    /// The step whose run `task` on `executor` is, if the record expects it there.
    public func step(runningAs task: TaskRecord, on executor: String) -> Int? {
        steps?.indices.first { steps![$0].state == .running && steps![$0].executor == executor && steps![$0].run == task.run }
    }

    /// Step `index` as its run runs it: its spec with its references resolved (nil when one names nothing).
    public func stepRunSpec(_ index: Int) -> JobSpec? {
        var step = spec.stepSpec(index)
        guard let arguments = try? WorkflowReference.resolve(step.arguments, in: self) else { return nil }
        step.arguments = arguments
        return step
    }

    /// What the job's next run runs: the spec itself, or the first workflow step waiting to be
    /// placed (the demand a workflow waits in line with).
    public var runSpec: JobSpec? {
        guard spec.isWorkflow else { return spec }
        let candidates = stepsToPlace(now: .max)
        guard let first = candidates.first(where: { steps![$0].nextRunAt == nil }) ?? candidates.first else { return nil }
        return stepRunSpec(first)
    }

    /// The retry policy of a job's runs: the job's, or step `index`'s.
    public func retryPolicy(ofStep index: Int?) -> RetryPolicy? {
        guard spec.isWorkflow, let index else { return spec.retry }
        return spec.workflowStep(index).retry ?? spec.retry
    }

    /// Makes every step whose dependencies all ended (succeeded, or failed with `continue`)
    /// current; a step whose references name nothing fails at once, with its failure action.
    /// When no step is current and none can be, the workflow is final: `stopped` if it was asked
    /// to stop, `failed` if any step failed, else `succeeded` (the record says so).
    public mutating func advanceWorkflow(now: Timestamp) -> WorkflowAdvance {
        guard let specSteps = spec.workflowSteps else { return .finished(state) }
        if steps == nil { steps = [] }
        // Steps injected since (or a record of an older shape): pending. Never more than the spec's.
        while steps!.count < specSteps.count { steps!.append(StepProgress(id: specSteps[steps!.count].id)) }
        if steps!.count > specSteps.count { steps = Array(steps!.prefix(specSteps.count)) }
        let stopping = stopRequested || steps!.contains { $0.stopRequested == true }
        if !stopping {
            let dependencies = WorkflowGraph.dependencies(of: specSteps)
            let compensations = WorkflowGraph.compensationSteps(of: specSteps)
            var changed = true
            while changed {
                changed = false
                for index in steps!.indices where steps![index].state == .pending && !compensations.contains(steps![index].id) {
                    guard dependencies[index].allSatisfy({ steps![$0].state == .succeeded || steps![$0].state == .failed }) else { continue }
                    if makeCurrent(index, now: now) == .ended { break }
                    changed = true
                }
                if steps!.contains(where: { $0.stopRequested == true }) || state.isFinal { break }
            }
        }
        if state.isFinal { return .finished(state) }
        guard currentSteps.isEmpty else { return .running }
        let compensations = WorkflowGraph.compensationSteps(of: specSteps)
        for index in steps!.indices where steps![index].state == .pending {
            steps![index].state = .skipped
            steps![index].error =
                compensations.contains(steps![index].id) ? "not needed: no failure called it"
                : stopping ? "skipped: the workflow \(stopRequested ? "was stopped" : "failed")" : "a step it depends on did not succeed"
        }
        let outcome: JobState = stopRequested ? .stopped : steps!.contains { $0.state == .failed } ? .failed : .succeeded
        state = outcome
        finishedAt = now
        return .finished(outcome)
    }

    private enum MakeCurrent { case current, failedGoOn, ended }

    /// Makes step `index` current when its references resolve; otherwise the step fails with the
    /// reason, and its failure action applies.
    private mutating func makeCurrent(_ index: Int, now: Timestamp) -> MakeCurrent {
        do throws(SpecError) {
            let resolved = try WorkflowReference.resolve(spec.workflowStep(index).arguments, in: self)
            // What the references bring in counts against the bound of a job's spec: a run's
            // arguments that would not fit an executor's state must fail here, with the reason.
            let size = (try? Codec.encode(resolved).count) ?? Int.max
            guard size <= JobSpec.maximumEncodedBytes else {
                throw SpecError(
                    field: "arguments",
                    reason: "with its references resolved they are \(size) bytes, over the limit of \(JobSpec.maximumEncodedBytes): pass references (paths, URLs), not the data")
            }
            steps![index].state = .running
            steps![index].executor = nil
            return .current
        } catch {
            steps![index].state = .failed
            steps![index].endedAt = now
            steps![index].error = Bounds.truncated("\(error.field): \(error.reason)", toBytes: Self.stepErrorBytes)
            runsFailed = (runsFailed ?? 0) + 1
            return afterFailure(of: index, now: now) ? .failedGoOn : .ended
        }
    }

    /// What step `index`'s failure does: true to go on (`continue`); false when it aborted the
    /// workflow (its other steps are stopped, the ones not started skipped) or made its
    /// compensation step current.
    private mutating func afterFailure(of index: Int, now: Timestamp) -> Bool {
        let specSteps = spec.workflowSteps!
        let compensations = WorkflowGraph.compensationSteps(of: specSteps)
        if compensations.contains(steps![index].id) {
            halt(reason: "skipped: the workflow failed", now: now)
            return false
        }
        switch specSteps[index].onFailure {
        case .continue?: return true
        case .abort?, nil:
            halt(reason: "skipped: the workflow was aborted by a failed step (\(steps![index].id))", now: now)
            return false
        case .compensate(let id)?:
            halt(reason: "skipped: step \(steps![index].id) failed and \(id) compensates", now: now, sparing: id)
            if let compensation = steps!.firstIndex(where: { $0.id == id }), steps![compensation].state == .pending {
                // A compensation that cannot resolve its references fails: the workflow ends all the same.
                if (try? WorkflowReference.resolve(specSteps[compensation].arguments, in: self)) != nil {
                    steps![compensation].state = .running
                    steps![compensation].executor = nil
                } else {
                    steps![compensation].state = .failed
                    steps![compensation].error = "its references name nothing"
                }
            }
            return false
        }
    }

    /// Stops the workflow going on: steps not started are skipped (but `sparing`), current steps
    /// not placed are stopped, and placed ones are asked to stop (``StepProgress/stopRequested``:
    /// the leader passes it to their runs).
    mutating func halt(reason: String, now: Timestamp, sparing: String? = nil) {
        for index in steps?.indices ?? 0..<0 where steps![index].id != sparing {
            switch steps![index].state {
            case .pending:
                steps![index].state = .skipped
                steps![index].error = reason
            case .running where steps![index].executor == nil:
                steps![index].state = .stopped
                steps![index].endedAt = now
            case .running:
                steps![index].stopRequested = true
            case .succeeded, .failed, .skipped, .stopped:
                break
            }
        }
    }

    /// Records how step `index`'s run ended (its retries, if any, spent) and what follows: its
    /// failure action, the steps it lets start, or the workflow's end.
    public mutating func workflowStepEnded(_ index: Int, _ run: RunRecord, now: Timestamp) -> WorkflowAdvance {
        steps![index].startedAt = run.startedAt
        steps![index].endedAt = run.endedAt
        steps![index].attempt = run.attempt
        steps![index].executor = nil
        steps![index].resume = nil
        steps![index].nextRunAt = nil
        steps![index].waitingReason = nil
        let askedToStop = steps![index].stopRequested == true
        steps![index].stopRequested = nil
        switch run.outcome {
        case .succeeded:
            steps![index].state = .succeeded
            steps![index].error = nil
            // (A job of many tasks has no references: its steps are made only when needed.)
            if let result = run.result, let specSteps = spec.steps, WorkflowGraph.resultIsReferred(steps![index].id, in: specSteps) {
                let kept = steps!.reduce(0) { $0 + ($1.result.flatMap { try? Codec.encode($0).count } ?? 0) }
                let size = (try? Codec.encode(result).count) ?? Int.max
                if kept + size > WorkflowGraph.keptResultBytes {
                    steps![index].state = .failed
                    steps![index].error =
                        "its result (\(size) bytes) is kept for later steps, and the workflow's kept results would pass \(WorkflowGraph.keptResultBytes) bytes: return a reference, not the data"
                    runsFailed = (runsFailed ?? 0) + 1
                } else {
                    steps![index].result = result
                }
            }
        case .failed where askedToStop || stopRequested, .stopped:
            steps![index].state = .stopped
        case .failed:
            steps![index].state = .failed
            steps![index].error = Bounds.truncated(run.error ?? "failed", toBytes: Self.stepErrorBytes)
        }
        if let specSteps = spec.steps, WorkflowGraph.compensationSteps(of: specSteps).contains(steps![index].id) {
            // The compensation ran (or failed): the workflow fails, as the step that called it did.
            halt(reason: "skipped: the workflow failed", now: now)
        } else if steps![index].state == .failed {
            _ = afterFailure(of: index, now: now)
        }
        return advanceWorkflow(now: now)
    }

    /// Asks a workflow to stop: its steps not started are skipped, its current steps not placed
    /// stopped, its placed runs asked to stop; it ends `stopped` once they have ended.
    public mutating func stopWorkflowRequested(now: Timestamp) -> WorkflowAdvance {
        stopRequested = true
        halt(reason: "skipped: the workflow was stopped", now: now)
        return advanceWorkflow(now: now)
    }

    /// An upper bound of the record's encoded size, without encoding it (every step's end asks,
    /// and encoding a large record costs more than the step): the fields' sizes as JSON, with
    /// each object's keys and punctuation counted generously.
    public var estimatedWorkflowBytes: Int {
        func text(_ value: String?) -> Int { value.map(JSONValue.encodedSize(of:)) ?? 0 }
        func json(_ value: JSONValue?) -> Int { value?.encodedSize ?? 0 }
        let specBytes =
            (spec.steps ?? []).reduce(0) { total, step in
                total + 96 + text(step.id) + text(step.method) + json(step.arguments)
                    + (step.after ?? []).reduce(0) { $0 + 1 + text($1) } + (step.retry == nil ? 0 : 220)
                    + (step.resources == nil ? 0 : 90) + (step.constraints ?? [:]).reduce(0) { $0 + 4 + text($1.key) + text($1.value) }
                    + (step.onFailure == nil ? 0 : 40 + 256)
            } + json(spec.arguments) + (spec.taskArguments ?? []).reduce(0) { $0 + 1 + json($1) } + 4_096
        let progressBytes = (steps ?? []).reduce(0) { total, step in
            total + 190 + text(step.id) + text(step.error) + json(step.result) + json(step.resume?.checkpoint) + text(step.waitingReason)
                + text(step.executor) + (step.resume?.inject == nil ? 0 : Bounds.injectedStepsBytes + 64)
        }
        let historyBytes = history.reduce(0) { $0 + 320 + text($1.executor) + json($1.result) + text($1.error) }
        return specBytes + progressBytes + historyBytes
    }

    /// A step's error as its progress keeps it (the whole error is in the run's history entry).
    public static let stepErrorBytes = 120

    /// The encoded size a workflow's record is kept under (``boundWorkflowRecord()``), below what
    /// any reader accepts (``JobRecord/maximumEncodedBytes``).
    public static let workflowRecordBytes = 448 * 1024

    /// Keeps a workflow's record under ``workflowRecordBytes``: old results out of the history
    /// first (``boundWorkflowHistory()``), then — a large workflow only — the oldest history
    /// entries, then the checkpoints and injected steps of steps waiting to be placed again
    /// (they start afresh).
    public mutating func boundWorkflowRecord() {
        boundWorkflowHistory()
        // Encoding a large record on every step's end would cost more than the step: only a
        // record whose generous estimate passes the bound is measured.
        guard estimatedWorkflowBytes > Self.workflowRecordBytes else { return }
        var size = (try? Codec.encode(self).count) ?? 0
        while size > Self.workflowRecordBytes, !history.isEmpty {
            history.removeFirst(max(1, history.count / 2))
            size = (try? Codec.encode(self).count) ?? 0
        }
        for index in steps?.indices ?? 0..<0 where size > Self.workflowRecordBytes && steps![index].resume != nil {
            // It starts afresh (and injects again).
            steps![index].resume?.checkpoint = nil
            steps![index].resume?.inject = nil
            size = (try? Codec.encode(self).count) ?? 0
        }
    }

    /// Encoded bytes a workflow's spec may grow to by injection: its bound at submit
    /// (``JobSpec/maximumWorkflowEncodedBytes``).
    public static let maximumInjectedSpecBytes = JobSpec.maximumWorkflowEncodedBytes

    /// Bytes of results and errors a workflow's history keeps at most: with its spec (≤ 128 KiB),
    /// the steps' progress (about 110 bytes a step) and the results kept for later steps
    /// (≤ 64 KiB), a workflow's record stays well under ``JobRecord/maximumEncodedBytes``.
    public static let workflowHistoryBytes = 128 * 1024

    /// Drops the results of the oldest runs in the history (a step's result a later step needs is
    /// kept in ``steps``) until the history's results and errors fit ``workflowHistoryBytes``.
    public mutating func boundWorkflowHistory() {
        func size(_ run: RunRecord) -> Int { (run.result?.encodedSizeAtMost ?? 0) + (run.error?.utf8.count ?? 0) }
        var total = history.reduce(0) { $0 + size($1) }
        var index = 0
        while total > Self.workflowHistoryBytes, index < history.count {
            total -= history[index].result?.encodedSizeAtMost ?? 0
            history[index].result = nil
            index += 1
        }
    }

    /// Adds steps to this workflow while it has not ended (a client's `inject`, or the handler of
    /// its step `by`). A first new step without `after` runs after `by` (after nothing, from a
    /// client); the rest as in a spec. The whole graph is checked again.
    /// - Throws: ``SpecError`` naming the step and the reason; nothing changed.
    public mutating func inject(_ new: [WorkflowStep], by injecting: String?) throws(SpecError) {
        guard let existing = spec.steps else { throw SpecError(field: "job", reason: "job \(id) is not a workflow: only a workflow takes steps") }
        guard !state.isFinal else { throw SpecError(field: "job", reason: "workflow \(id) has ended (\(state.rawValue)): nothing can be added to it") }
        guard !new.isEmpty else { throw SpecError(field: "steps", reason: "no steps to add") }
        guard !stopRequested, !(steps ?? []).contains(where: { $0.state == .skipped || $0.stopRequested == true }) else {
            throw SpecError(field: "job", reason: "workflow \(id) is being stopped or aborted: nothing can be added to it")
        }
        let existingIDs = Set(existing.map(\.id))
        for (position, step) in new.enumerated() {
            if case .compensate(let target)? = step.onFailure, existingIDs.contains(target) {
                throw SpecError(
                    field: "steps[\(position)].onFailure",
                    reason: "step \(step.id) compensates with \(target), a step the workflow has already: an added step compensates with an added one")
            }
        }
        var added = new
        if added[0].after == nil { added[0].after = injecting.map { [$0] } ?? [] }
        var combined = spec
        combined.steps = existing + added
        do {
            try combined.validateWorkflow(combined.steps!, asReader: false)
        } catch {
            // A new step is named by its place among the added ones (`steps[0]` is the first added).
            var field = error.field
            if field.hasPrefix("steps["), let close = field.firstIndex(of: "]"),
                let index = Int(field[field.index(field.startIndex, offsetBy: 6)..<close])
            {
                field = index >= existing.count ? "steps[\(index - existing.count)]" + field[close...].dropFirst() : "workflow's " + field
            }
            throw SpecError(field: field, reason: error.reason)
        }
        let size = (try? Codec.encode(combined).count) ?? Int.max
        guard size <= Self.maximumInjectedSpecBytes else {
            throw SpecError(
                field: "steps", reason: "with these steps the workflow's spec would be \(size) bytes, over the limit of \(Self.maximumInjectedSpecBytes)")
        }
        spec = combined
        if steps != nil { steps! += added.map { StepProgress(id: $0.id) } }
    }

    /// Ends the workflow in `final`; steps not ended are marked (the current one `stopped`, the
    /// rest `skipped`).
    public mutating func stopWorkflow(as final: JobState, now: Timestamp, reason: String = "skipped: the workflow was stopped") -> WorkflowAdvance {
        for index in steps?.indices ?? 0..<0 {
            switch steps![index].state {
            case .pending:
                steps![index].state = .skipped
                steps![index].error = reason
            case .running:
                steps![index].state = .stopped
                steps![index].endedAt = now
            case .succeeded, .failed, .skipped, .stopped:
                break
            }
        }
        state = final
        finishedAt = now
        return .finished(final)
    }
}
