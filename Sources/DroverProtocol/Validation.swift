import Foundation

/// A job spec that cannot be accepted: which field, and why. Nothing has been written.
public struct SpecError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The offending field, as a JSON path (`count`, `resources.cpu`, `schedule.intervalSeconds`).
    public let field: String
    public let reason: String

    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }

    public var description: String { "invalid job: \(field): \(reason)" }
}

extension JobSpec {
    /// The largest encoded spec accepted, in bytes. Keeps every znode that carries a spec small.
    public static let maximumEncodedBytes = 64 * 1024
    /// The largest encoded workflow spec accepted (a thousand small steps fit).
    public static let maximumWorkflowEncodedBytes = 128 * 1024

    /// Checks everything that can be checked without the cluster; throws the first problem.
    /// `checkingSize: false` leaves out the encoded size (it costs an encoding; a reader of a record
    /// has bounded the record's size already). `asReader: true` (the leader reading a record) lets
    /// pass what a newer Drover may write within a format this one reads: kinds of failure in
    /// `retry.on` it does not know (they are never retried by this version).
    public func validate(checkingSize: Bool = true, asReader: Bool = false) throws(SpecError) {
        guard format >= 1, format <= Self.currentFormat else {
            throw SpecError(field: "format", reason: "format \(format) is not one this Drover reads (1...\(Self.currentFormat)) — upgrade Drover")
        }
        guard !method.isEmpty, method.count <= 128,
            method.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-:".contains($0)) })
        else {
            throw SpecError(field: "method", reason: "\"\(method)\" is not a method name (letters, digits, . _ - : ; at most 128)")
        }
        if let name, name.count > 256 { throw SpecError(field: "name", reason: "longer than 256 characters") }
        switch kind {
        case .once, .infinite:
            if let count { throw SpecError(field: "count", reason: "only finite jobs have a count (got \(count) for a \(kind.rawValue) job)") }
        case .finite:
            guard let count else { throw SpecError(field: "count", reason: "a finite job needs a count of runs") }
            guard Bounds.count.contains(count) else {
                throw SpecError(field: "count", reason: "must be between \(Bounds.count.lowerBound) and \(Bounds.count.upperBound) (got \(count))")
            }
        }
        guard resources.cpu.isFinite, Bounds.cpu.contains(resources.cpu) else {
            throw SpecError(field: "resources.cpu", reason: "must be a number of cores between 0 and \(Int(Bounds.cpu.upperBound)) (got \(resources.cpu))")
        }
        guard Bounds.memoryMB.contains(resources.memoryMB) else {
            throw SpecError(field: "resources.memoryMB", reason: "must be between 0 and \(Bounds.memoryMB.upperBound) (got \(resources.memoryMB))")
        }
        guard Bounds.slots.contains(resources.slots) else {
            throw SpecError(
                field: "resources.slots", reason: "a task takes between \(Bounds.slots.lowerBound) and \(Bounds.slots.upperBound) slots (got \(resources.slots))")
        }
        for (label, value) in constraints where label.isEmpty || value.count > 256 {
            throw SpecError(field: "constraints", reason: "labels must be non-empty and values at most 256 characters")
        }
        if let problem = schedule?.problem { throw problem }
        if let problem = retry?.problem(allowingUnknownKinds: asReader) { throw problem }
        if onFailure != nil && kind != .finite {
            throw SpecError(field: "onFailure", reason: "only finite jobs have a failure policy (got one for a \(kind.rawValue) job)")
        }
        if schedule == nil {
            if overlap != nil { throw SpecError(field: "overlap", reason: "only scheduled jobs have an overlap policy") }
            if missedRuns != nil { throw SpecError(field: "missedRuns", reason: "only scheduled jobs have a policy for missed runs") }
        }
        if let problem = missedRuns?.problem { throw problem }
        if let maxConcurrentRuns {
            guard overlap == .allow else {
                throw SpecError(field: "maxConcurrentRuns", reason: "only jobs with overlap allow run more than one run at once")
            }
            guard Bounds.concurrentRuns.contains(maxConcurrentRuns) else {
                throw SpecError(
                    field: "maxConcurrentRuns",
                    reason: "must be between \(Bounds.concurrentRuns.lowerBound) and \(Bounds.concurrentRuns.upperBound) (got \(maxConcurrentRuns))")
            }
        }
        if overlap == .allow {
            // Each time's run is one run: the next time is its next try, and a retry or a
            // catch-up beside runs of later times would be a second run of one time.
            guard kind != .once else { throw SpecError(field: "overlap", reason: "allow is for repeating jobs (finite or infinite): a once job has one run") }
            if retry != nil { throw SpecError(field: "retry", reason: "not with overlap allow: each time's run is tried once, the next time is the next try") }
            if missedRuns?.policy == .catchUp {
                throw SpecError(field: "missedRuns.policy", reason: "catchUp is not for overlap allow (yet): use runOnce or skip")
            }
        }
        if let notBefore, !Bounds.timestampMilliseconds.contains(notBefore) {
            throw SpecError(field: "notBefore", reason: "must be between 1970 and the end of 9999")
        }
        if let priority, !Bounds.priority.contains(priority) {
            throw SpecError(
                field: "priority", reason: "must be between \(Bounds.priority.lowerBound) and \(Bounds.priority.upperBound), higher first (got \(priority))")
        }
        if let steps { try validateWorkflow(steps, asReader: asReader) }
        if let tasks {
            guard steps == nil else { throw SpecError(field: "tasks", reason: "a job has steps or tasks, not both") }
            guard (1...WorkflowGraph.maximumSteps).contains(tasks) else {
                throw SpecError(field: "tasks", reason: "must be between 1 and \(WorkflowGraph.maximumSteps) (got \(tasks))")
            }
            if let taskArguments, taskArguments.count != tasks {
                throw SpecError(field: "taskArguments", reason: "\(taskArguments.count) elements for \(tasks) tasks: one per task")
            }
            guard overlap == nil, missedRuns == nil else {
                throw SpecError(field: overlap != nil ? "overlap" : "missedRuns", reason: "not for jobs of many tasks (yet): a time that comes while the tasks run waits for them to end")
            }
            if let path = taskArguments.flatMap({ JSONValue.array($0).pathOfNonFiniteNumber() }) {
                throw SpecError(field: "taskArguments" + path, reason: "not a finite number (JSON has no NaN or infinity)")
            }
            // Each task as the executor will run it (a shell task's timeout, its method).
            for index in 0..<(taskArguments == nil ? 1 : tasks) {
                var alone = stepSpec(index)
                alone.name = nil
                do {
                    try alone.validate(checkingSize: false, asReader: asReader)
                } catch {
                    let field = taskArguments != nil && error.field.hasPrefix("arguments") ? "taskArguments[\(index)]" + error.field.dropFirst("arguments".count) : error.field
                    throw SpecError(field: field, reason: error.reason)
                }
            }
        } else if taskArguments != nil {
            throw SpecError(field: "taskArguments", reason: "only a job of many tasks (`tasks`) has per-task arguments")
        }
        try validatePlacement()
        if let path = arguments.pathOfNonFiniteNumber() {
            throw SpecError(field: "arguments" + path, reason: "not a finite number (JSON has no NaN or infinity)")
        }
        if method == "shell", let timeout = arguments["timeoutSeconds"] {
            guard let seconds = timeout.numberValue, Bounds.timeoutSeconds.contains(seconds) else {
                throw SpecError(
                    field: "arguments.timeoutSeconds",
                    reason: "must be a number of seconds between \(Bounds.timeoutSeconds.lowerBound) and \(Int(Bounds.timeoutSeconds.upperBound))")
            }
        }
        guard checkingSize else { return }
        let size: Int
        do {
            size = try JSONEncoder().encode(self).count
        } catch {
            throw SpecError(field: "arguments", reason: "cannot be written as JSON: \(error)")
        }
        let limit = steps == nil && taskArguments == nil ? Self.maximumEncodedBytes : Self.maximumWorkflowEncodedBytes
        guard size <= limit else {
            throw SpecError(
                field: steps == nil ? "arguments" : "steps",
                reason: "the \(steps == nil ? "job" : "workflow") is \(size) bytes encoded, over the limit of \(limit) — pass large inputs by reference (a path or URL)")
        }
    }
}

extension JobSpec {
    /// The rules of a workflow: its own spec runs once, now or at `notBefore` (repetition of the
    /// whole graph is not built yet), and its method is `workflow`; each step is valid as a job
    /// of its own; the graph is sound (``WorkflowGraph``).
    /// The direct path takes one-off jobs of tasks now: it has no leader to wait for a time.
    func validatePlacement() throws(SpecError) {
        if let probeRatio {
            guard placement == .batch || placement == .batchLateBinding else {
                throw SpecError(field: "probeRatio", reason: "only the policies batch and batchLateBinding probe several executors per task")
            }
            guard probeRatio.isFinite, PlacementPolicy.probeRatios.contains(probeRatio) else {
                throw SpecError(
                    field: "probeRatio",
                    reason: "must be between \(Int(PlacementPolicy.probeRatios.lowerBound)) and \(Int(PlacementPolicy.probeRatios.upperBound)) executors per task (got \(probeRatio))")
            }
        }
        guard effectivePlacement.isDirect else { return }
        let policy = effectivePlacement.rawValue
        guard kind == .once, schedule == nil, notBefore == nil else {
            throw SpecError(
                field: "placement", reason: "\(policy) is for one-off jobs that start now (kind once, no schedule, no notBefore): use central for the others")
        }
        guard steps == nil else { throw SpecError(field: "placement", reason: "\(policy) is for jobs of tasks, not workflows of steps: use central") }
    }

    func validateWorkflow(_ steps: [WorkflowStep], asReader: Bool) throws(SpecError) {
        guard method == Self.workflowMethod else {
            throw SpecError(field: "method", reason: "a workflow's steps name their methods: leave `method` out (or make it \"workflow\")")
        }
        // A workflow may repeat (its whole graph runs again); the schedule policies are for jobs.
        guard overlap == nil, missedRuns == nil else {
            throw SpecError(field: overlap != nil ? "overlap" : "missedRuns", reason: "not for workflows (yet): a time that comes while the graph runs waits for it to end")
        }
        for (index, step) in steps.enumerated() {
            var alone = stepSpec(index)
            alone.steps = nil
            do {
                try alone.validate(checkingSize: false, asReader: asReader)
            } catch {
                throw SpecError(field: "steps[\(index)].\(error.field)", reason: "step \(step.id): \(error.reason)")
            }
        }
        try WorkflowGraph.check(steps)
    }

    /// The fields a job spec has, and those of its parts. A file that names any other is refused
    /// (a typo such as `constraint:` would otherwise vanish without a word).
    static let fields: Set<String> = [
        "format", "name", "method", "arguments", "resources", "constraints", "kind", "count", "schedule", "retry", "onFailure", "priority",
        "notBefore", "overlap", "missedRuns", "steps", "tasks", "taskArguments", "maxConcurrentRuns", "placement", "probeRatio",
    ]
    static let resourceFields: Set<String> = ["cpu", "memoryMB", "slots"]
    static let scheduleFields: Set<String> = ["reference", "intervalSeconds", "cron", "timeZone"]

    /// The first field of `document` (a spec as read from a file) that a job spec does not have,
    /// as a path (`constraint`, `resources.gpus`), or nil. Arguments are the method's own.
    public static func unknownField(in document: JSONValue) -> String? {
        guard case .object(let top) = document else { return nil }
        if let key = top.keys.sorted().first(where: { !fields.contains($0) }) { return key }
        if case .object(let resources)? = top["resources"], let key = resources.keys.sorted().first(where: { !resourceFields.contains($0) }) {
            return "resources." + key
        }
        if case .object(let schedule)? = top["schedule"], let key = schedule.keys.sorted().first(where: { !scheduleFields.contains($0) }) {
            return "schedule." + key
        }
        if case .object(let missed)? = top["missedRuns"], let key = missed.keys.sorted().first(where: { !MissedRunPolicy.fields.contains($0) }) {
            return "missedRuns." + key
        }
        if case .object(let retry)? = top["retry"], let key = retry.keys.sorted().first(where: { !RetryPolicy.fields.contains($0) }) {
            return "retry." + key
        }
        if case .array(let steps)? = top["steps"] {
            for (index, step) in steps.enumerated() {
                guard case .object(let fields) = step else { continue }
                if let key = fields.keys.sorted().first(where: { !WorkflowStep.fields.contains($0) }) { return "steps[\(index)].\(key)" }
                if case .object(let resources)? = fields["resources"], let key = resources.keys.sorted().first(where: { !resourceFields.contains($0) }) {
                    return "steps[\(index)].resources.\(key)"
                }
                if case .object(let retry)? = fields["retry"], let key = retry.keys.sorted().first(where: { !RetryPolicy.fields.contains($0) }) {
                    return "steps[\(index)].retry.\(key)"
                }
            }
        }
        return nil
    }
}
