import Foundation

/// What a client asks Drover to run. On the wire (see docs/PROTOCOL.md):
///
/// ```json
/// {"format": 1, "name": "nightly-report", "method": "shell",
///  "arguments": {"command": ["bash", "report.sh"]},
///  "resources": {"cpu": 0.5, "memoryMB": 256, "slots": 1},
///  "constraints": {"zone": "eu-1"},
///  "kind": "finite", "count": 3,
///  "schedule": {"reference": "2021-01-31T21:01:00Z", "intervalSeconds": 86400},
///  "retry": {"maxAttempts": 3, "initialDelaySeconds": 10}, "onFailure": "continue", "priority": 70}
/// ```
public struct JobSpec: Codable, Sendable, Hashable {
    /// The newest document format this Drover reads; it reads every older one too. A spec is
    /// written in the oldest format that holds it (``requiredFormat``): 1 unless it uses what
    /// format 2 added (`retry`, `onFailure`, `priority`, `notBefore`, `overlap`, `missedRuns`, a cron
    /// schedule), so a leader too old to
    /// honour those fails the job saying "upgrade Drover" instead of running it without them.
    public static let currentFormat = 5

    /// The oldest format that holds everything this spec asks for (3: `steps`, a workflow; 4:
    /// `overlap: allow` with `maxConcurrentRuns`; 5: a `placement` policy or `probeRatio`).
    public var requiredFormat: Int {
        if placement != nil || probeRatio != nil { return 5 }
        if overlap == .allow || maxConcurrentRuns != nil { return 4 }
        if steps != nil || tasks != nil { return 3 }
        return retry != nil || onFailure != nil || priority != nil || notBefore != nil || overlap != nil || missedRuns != nil || schedule?.cron != nil
            ? 2 : 1
    }

    public var format: Int
    /// A label for people; need not be unique.
    public var name: String?
    /// The registered method (handler) that runs the job, e.g. `shell`.
    public var method: String
    /// Passed to the handler as they are.
    public var arguments: JSONValue
    public var resources: Resources
    /// Labels an executor must carry, all of them, with these values.
    public var constraints: [String: String]
    public var kind: Kind
    /// For `finite` jobs: how many runs.
    public var count: Int?
    /// Absent: run now (immediate). Present: run on this grid.
    public var schedule: Schedule?
    /// When a run that ended badly is tried again. Absent: never (an infinite job restarts after the
    /// cluster's crash-loop back-off instead).
    public var retry: RetryPolicy?
    /// For finite jobs: what a run that failed for good does to the rest. Absent: `stop`.
    public var onFailure: FailurePolicy?
    /// Higher places first among waiting jobs (``Bounds/priority``); absent: ``defaultPriority``.
    public var priority: Int?
    /// The first run starts no earlier than this (milliseconds since 1970; ISO 8601 on the wire).
    public var notBefore: Timestamp?
    /// Scheduled jobs: what a time that comes while a run runs does. Absent: `forbid`.
    public var overlap: OverlapPolicy?
    /// Scheduled jobs with `overlap: allow`: runs at once at most (``Bounds/concurrentRuns``);
    /// absent: ``defaultMaxConcurrentRuns``.
    public var maxConcurrentRuns: Int?
    /// Scheduled jobs: what times that passed without a run do. Absent: `runOnce`.
    public var missedRuns: MissedRunPolicy?
    /// A workflow's steps (``WorkflowStep``): each runs as a run of this job once the steps it
    /// depends on ended; `arguments` are the workflow's inputs, and `method` is `workflow`.
    public var steps: [WorkflowStep]?
    /// A job of `tasks` tasks: the method runs that many times at once, each with `taskIndex`
    /// (0…tasks-1) added to its arguments (or with its own element of ``taskArguments``); the job
    /// ends when every task ended — `succeeded` if all did. Runs as a workflow of independent steps.
    public var tasks: Int?
    /// Per-task arguments (as many as ``tasks``), in place of ``arguments``.
    public var taskArguments: [JSONValue]?
    /// How its tasks find executors (``PlacementPolicy``); absent: `central`, the leader. A job
    /// on the direct path runs as a job of ``tasks`` tasks (1 when it names none).
    public var placement: PlacementPolicy?
    /// `batch` and `batchLateBinding`: executors probed (reservations made) per task, Sparrow's d
    /// (``PlacementPolicy/probeRatios``); absent: ``PlacementPolicy/defaultProbeRatio``.
    public var probeRatio: Double?

    /// ``placement``, or `central`.
    public var effectivePlacement: PlacementPolicy { placement ?? .central }
    /// The tasks of a job of many tasks: ``tasks``, or 1 for a job on the direct path that names none.
    public var taskCount: Int? { tasks ?? (effectivePlacement.isDirect && steps == nil ? 1 : nil) }

    /// The method of a workflow's own spec (its steps name theirs).
    public static let workflowMethod = "workflow"

    /// The runs at once of an `overlap: allow` job that names no `maxConcurrentRuns`.
    public static let defaultMaxConcurrentRuns = 2
    /// ``maxConcurrentRuns``, or the default.
    public var effectiveMaxConcurrentRuns: Int { maxConcurrentRuns ?? Self.defaultMaxConcurrentRuns }

    /// The priority of a job that names none.
    public static let defaultPriority = 50
    /// ``priority``, or the default.
    public var effectivePriority: Int { priority ?? Self.defaultPriority }

    public enum Kind: String, Codable, Sendable, Hashable, CaseIterable {
        /// Run once.
        case once
        /// Run, and run again when a run ends, until `count` runs are done.
        case finite
        /// Run, and run again when a run ends, until stopped.
        case infinite
    }

    public init(
        name: String? = nil, method: String, arguments: JSONValue = .object([:]), resources: Resources = Resources(),
        constraints: [String: String] = [:], kind: Kind = .once, count: Int? = nil, schedule: Schedule? = nil,
        retry: RetryPolicy? = nil, onFailure: FailurePolicy? = nil, priority: Int? = nil, notBefore: Timestamp? = nil,
        overlap: OverlapPolicy? = nil, missedRuns: MissedRunPolicy? = nil, steps: [WorkflowStep]? = nil, tasks: Int? = nil,
        taskArguments: [JSONValue]? = nil, maxConcurrentRuns: Int? = nil, placement: PlacementPolicy? = nil, probeRatio: Double? = nil
    ) {
        self.format = 1
        self.name = name
        self.method = method
        self.arguments = arguments
        self.resources = resources
        self.constraints = constraints
        self.kind = kind
        self.count = count
        self.schedule = schedule
        self.retry = retry
        self.onFailure = onFailure
        self.priority = priority
        self.notBefore = notBefore
        self.overlap = overlap
        self.missedRuns = missedRuns
        self.maxConcurrentRuns = maxConcurrentRuns
        self.steps = steps
        self.tasks = tasks
        self.taskArguments = taskArguments
        self.placement = placement
        self.probeRatio = probeRatio
        self.format = requiredFormat
    }

    /// A workflow of `steps`, with `inputs` its steps can refer to (`{"$from": "inputs.<field>"}`).
    public static func workflow(
        name: String? = nil, steps: [WorkflowStep], inputs: JSONValue = .object([:]), resources: Resources = Resources(),
        constraints: [String: String] = [:], retry: RetryPolicy? = nil, priority: Int? = nil
    ) -> JobSpec {
        JobSpec(
            name: name, method: workflowMethod, arguments: inputs, resources: resources, constraints: constraints, retry: retry,
            priority: priority, steps: steps)
    }

    enum CodingKeys: String, CodingKey {
        case format, name, method, arguments, resources, constraints, kind, count, schedule, retry, onFailure, priority, notBefore, overlap, missedRuns,
            steps, tasks, taskArguments, maxConcurrentRuns, placement, probeRatio
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decodeIfPresent(Int.self, forKey: .format) ?? 1
        name = try container.decodeIfPresent(String.self, forKey: .name)
        steps = try container.decodeIfPresent([WorkflowStep].self, forKey: .steps)
        // A workflow's method may be left out: its steps name theirs.
        method = try steps != nil ? container.decodeIfPresent(String.self, forKey: .method) ?? Self.workflowMethod : container.decode(String.self, forKey: .method)
        arguments = try container.decodeIfPresent(JSONValue.self, forKey: .arguments) ?? .object([:])
        resources = try container.decodeIfPresent(Resources.self, forKey: .resources) ?? Resources()
        constraints = try container.decodeIfPresent([String: String].self, forKey: .constraints) ?? [:]
        kind = try container.decodeIfPresent(Kind.self, forKey: .kind) ?? .once
        count = try container.decodeIfPresent(Int.self, forKey: .count)
        schedule = try container.decodeIfPresent(Schedule.self, forKey: .schedule)
        retry = try container.decodeIfPresent(RetryPolicy.self, forKey: .retry)
        onFailure = try container.decodeIfPresent(FailurePolicy.self, forKey: .onFailure)
        priority = try container.decodeIfPresent(Int.self, forKey: .priority)
        if let text = try container.decodeIfPresent(String.self, forKey: .notBefore) {
            guard let date = Schedule.parse(text),
                let milliseconds = Bounds.milliseconds(fromSeconds: date.timeIntervalSince1970, in: Bounds.timestampMilliseconds)
            else {
                throw DecodingError.dataCorruptedError(
                    forKey: .notBefore, in: container, debugDescription: "expected an ISO 8601 time between 1970 and 9999, got \"\(text)\"")
            }
            notBefore = milliseconds
        } else {
            notBefore = nil
        }
        overlap = try container.decodeIfPresent(OverlapPolicy.self, forKey: .overlap)
        missedRuns = try container.decodeIfPresent(MissedRunPolicy.self, forKey: .missedRuns)
        maxConcurrentRuns = try container.decodeIfPresent(Int.self, forKey: .maxConcurrentRuns)
        tasks = try container.decodeIfPresent(Int.self, forKey: .tasks)
        taskArguments = try container.decodeIfPresent([JSONValue].self, forKey: .taskArguments)
        if let name = try container.decodeIfPresent(String.self, forKey: .placement) {
            guard let policy = PlacementPolicy(rawValue: name) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .placement, in: container, debugDescription: "\"\(name)\" is not a placement policy (\(PlacementPolicy.names))")
            }
            placement = policy
        } else {
            placement = nil
        }
        probeRatio = try container.decodeIfPresent(Double.self, forKey: .probeRatio)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(max(format, requiredFormat), forKey: .format)
        try container.encodeIfPresent(name, forKey: .name)
        try container.encode(method, forKey: .method)
        try container.encode(arguments, forKey: .arguments)
        try container.encode(resources, forKey: .resources)
        try container.encode(constraints, forKey: .constraints)
        try container.encode(kind, forKey: .kind)
        try container.encodeIfPresent(count, forKey: .count)
        try container.encodeIfPresent(schedule, forKey: .schedule)
        try container.encodeIfPresent(retry, forKey: .retry)
        try container.encodeIfPresent(onFailure, forKey: .onFailure)
        try container.encodeIfPresent(priority, forKey: .priority)
        try container.encodeIfPresent(overlap, forKey: .overlap)
        try container.encodeIfPresent(missedRuns, forKey: .missedRuns)
        try container.encodeIfPresent(maxConcurrentRuns, forKey: .maxConcurrentRuns)
        try container.encodeIfPresent(steps, forKey: .steps)
        try container.encodeIfPresent(tasks, forKey: .tasks)
        try container.encodeIfPresent(taskArguments, forKey: .taskArguments)
        try container.encodeIfPresent(placement, forKey: .placement)
        try container.encodeIfPresent(probeRatio, forKey: .probeRatio)
        try container.encodeIfPresent(notBefore.map { Schedule.format(Date(timeIntervalSince1970: Double($0) / 1000)) }, forKey: .notBefore)
    }
}

/// What a task needs of an executor.
public struct Resources: Codable, Sendable, Hashable {
    /// CPU share in cores (0.5 = half a core).
    public var cpu: Double
    /// Memory in MiB.
    public var memoryMB: Int
    /// Task slots (an executor runs at most its slot count at once).
    public var slots: Int

    public init(cpu: Double = 0, memoryMB: Int = 0, slots: Int = 1) {
        self.cpu = cpu
        self.memoryMB = memoryMB
        self.slots = slots
    }

    public static let zero = Resources(cpu: 0, memoryMB: 0, slots: 0)

    /// True when `self` fits within `capacity`.
    public func fits(in capacity: Resources) -> Bool {
        cpu <= capacity.cpu + 1e-9 && memoryMB <= capacity.memoryMB && slots <= capacity.slots
    }

    public static func + (a: Resources, b: Resources) -> Resources {
        Resources(cpu: a.cpu + b.cpu, memoryMB: a.memoryMB + b.memoryMB, slots: a.slots + b.slots)
    }

    public static func - (a: Resources, b: Resources) -> Resources {
        Resources(cpu: a.cpu - b.cpu, memoryMB: a.memoryMB - b.memoryMB, slots: a.slots - b.slots)
    }

    enum CodingKeys: String, CodingKey { case cpu, memoryMB, slots }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        cpu = try container.decodeIfPresent(Double.self, forKey: .cpu) ?? 0
        memoryMB = try container.decodeIfPresent(Int.self, forKey: .memoryMB) ?? 0
        slots = try container.decodeIfPresent(Int.self, forKey: .slots) ?? 1
    }
}
