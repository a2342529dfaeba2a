import Foundation

/// Milliseconds since 1970-01-01T00:00:00Z: how every document records time.
public typealias Timestamp = Int64

extension Timestamp {
    public static func now() -> Timestamp { Timestamp((Date().timeIntervalSince1970 * 1000).rounded(.down)) }
}

/// An executor's registration: `executors/<id>/alive`, EPHEMERAL, written by the executor.
/// Its presence is the executor's liveness.
public struct ExecutorRegistration: Codable, Sendable, Hashable {
    public var format: Int = 1
    public var id: String
    public var capacity: Resources
    public var labels: [String: String]
    /// Where the executor serves task output (`http://host:port`), if it does.
    public var address: String?
    /// The methods it runs: placement offers it only their tasks. Absent in registrations of
    /// executors older than this field: they are offered every method.
    public var methods: [String]?
    public var startedAt: Timestamp
    /// The process that registered: `<host>/<boot id>/<pid namespace>/<pid>/<process start ticks>`. A starting executor that
    /// finds its id registered by another session tells from it whether that process still runs
    /// (then it refuses to start: two executors must not share an id) or is an earlier incarnation
    /// of its own that was killed (then it takes over at once). Absent in older executors' registrations.
    public var instance: String?
    /// The ZooKeeper session timeout this executor asked for, in milliseconds: how long its
    /// registration can outlive it. A newcomer on another machine waits that long, and a half, at most.
    public var sessionTimeoutMilliseconds: Int64?

    public init(
        id: String, capacity: Resources, labels: [String: String] = [:], address: String? = nil, methods: [String]? = nil,
        startedAt: Timestamp = .now()
    ) {
        self.id = id
        self.capacity = capacity
        self.labels = labels
        self.address = address
        self.methods = methods
        self.startedAt = startedAt
    }
}

/// The state of one task on an executor.
public enum TaskState: String, Codable, Sendable, Hashable {
    /// Placed by the manager; not started yet.
    case assigned
    /// The executor started it (after an executor restart it is run again).
    case running
    /// The handler returned a result.
    case succeeded
    /// The handler threw, or the task was stopped.
    case failed

    public var isFinished: Bool { self == .succeeded || self == .failed }
}

/// One run of a job, placed on an executor.
public struct TaskRecord: Codable, Sendable, Hashable, Identifiable {
    /// `<job id>#<run>`.
    public var id: String { "\(job)#\(run)" }
    public var job: String
    /// 1 for the first run of the job.
    public var run: Int
    public var method: String
    public var arguments: JSONValue
    public var resources: Resources
    public var state: TaskState
    public var assignedAt: Timestamp
    public var startedAt: Timestamp?
    public var endedAt: Timestamp?
    /// How many times an executor started this run (more than 1 after a crash or restart).
    public var attempts: Int
    /// The last checkpoint the handler saved: a restarted run resumes from it.
    public var checkpoint: JSONValue?
    /// The handler's result (succeeded) — small; large outputs never go into ZooKeeper.
    public var result: JSONValue?
    /// What went wrong (failed).
    public var error: String?
    /// Set by the executor when the run failed because it passed its timeout (retry policies
    /// tell `timedOut` from `failed` by it).
    public var timedOut: Bool?
    /// Set by the manager to ask the executor to stop the run.
    public var stopRequested: Bool
    /// Set by an executor that stops without finishing its runs: the manager moves the run
    /// to another executor at once (without waiting for the grace period).
    public var handedBack: Bool?
    /// Steps the handler of a workflow's step adds to its workflow (`TaskContext.inject`): the
    /// leader adds them when it collects the run.
    public var inject: [WorkflowStep]?
    /// Set by the leader on a workflow step's run: the step's id (its handler may use the
    /// workflow's shared data).
    public var step: String?
    /// Set by the leader: this placement of the run, unique among all placements. The
    /// executor's progress names it, so progress left from an earlier placement of the same run
    /// on the same executor (taken back, then placed here again) is never taken for this one's.
    public var placement: String?
    /// Set by an executor on a task it claimed on the direct path, until the leader adopts it
    /// into its assignments (which never carry it).
    public var claimed: ClaimedTask?

    /// The task's key in an executor's assignments and progress: its id and its placement.
    public var placementKey: String { placement.map { "\(id)@\($0)" } ?? id }

    public init(job: String, run: Int, method: String, arguments: JSONValue, resources: Resources, assignedAt: Timestamp = .now()) {
        self.job = job
        self.run = run
        self.method = method
        self.arguments = arguments
        self.resources = resources
        self.state = .assigned
        self.assignedAt = assignedAt
        self.attempts = 0
        self.stopRequested = false
    }
}

/// An executor's tasks as one view: the leader's assignments (`assignments/<id>`) with the
/// executor's progress (`executors/<id>/progress`) laid over them (``merging(_:)``). Every
/// reader works on this view; each half is written by one party only (docs/PROTOCOL.md).
///
/// As a document it is the assignments: the leader writes each task as placed (`state`
/// `assigned`, the attempts and checkpoint it resumes from) and changes only `stopRequested`,
/// `draining` and which tasks there are.
public struct ExecutorState: Codable, Sendable, Hashable {
    /// The largest encoded assignments document (and progress document) the leader plans for:
    /// placement stops adding tasks to an executor whose two documents together would pass it.
    public static let maximumEncodedBytes = 256 * 1024

    public var format: Int = 1
    public var executor: String
    /// No new tasks are placed on a draining executor; running ones finish.
    public var draining: Bool
    /// Tasks in the order they were placed.
    public var tasks: [TaskRecord]
    /// Tasks this executor claimed on the direct path that the leader has collected (or refused)
    /// since, by key, while the executor's progress still names them: the executor forgets them.
    /// (It may never see them among ``tasks``: adopted and collected between two of its reads.)
    public var collectedClaims: [String]?

    public init(executor: String, draining: Bool = false, tasks: [TaskRecord] = []) {
        self.executor = executor
        self.draining = draining
        self.tasks = tasks
    }

    /// The resources held by tasks that have not finished.
    public var used: Resources {
        tasks.filter { !$0.state.isFinished }.reduce(.zero) { $0 + $1.resources }
    }

    /// The resources placement counts as taken: every task in the state, finished ones too
    /// until the manager has collected them. Placing against this keeps the document bounded
    /// by the executor's capacity, however far collection falls behind.
    public var held: Resources {
        tasks.reduce(.zero) { $0 + $1.resources }
    }

    /// These assignments with the executor's progress laid over them: each task takes the
    /// progress entry of its own placement (same run, same `placement`); entries of tasks no
    /// longer assigned, or of an earlier placement, are ignored.
    public func merging(_ progress: ExecutorProgress?) -> ExecutorState {
        guard let progress, !progress.tasks.isEmpty else { return self }
        let entries = Dictionary(progress.tasks.map { ($0.placementKey, $0) }, uniquingKeysWith: { _, last in last })
        var merged = self
        for index in merged.tasks.indices {
            if let entry = entries[merged.tasks[index].placementKey] { entry.apply(to: &merged.tasks[index]) }
        }
        return merged
    }

    /// The keys of claims these assignments answer: adopted (a task holds them) or collected. A
    /// claim in an executor's progress not among them waits for the leader.
    public var answeredClaims: Set<String> { Set(tasks.map(\.placementKey)).union(collectedClaims ?? []) }

    /// ``merging(_:)``, and the tasks the executor claimed on the direct path that its progress
    /// names and the assignments neither hold nor name as collected — what it runs before the
    /// leader adopts them (the view people read: `drover executors`, the API).
    public func mergingClaims(_ progress: ExecutorProgress?) -> ExecutorState {
        var merged = merging(progress)
        guard let progress else { return merged }
        let held = answeredClaims
        for entry in progress.tasks where !held.contains(entry.placementKey) {
            guard let claimed = entry.claimed else { continue }
            var task = TaskRecord(job: entry.job, run: entry.run, method: claimed.method, arguments: claimed.arguments, resources: claimed.resources, assignedAt: entry.startedAt ?? 0)
            task.step = ClaimedTask.stepID(claimed.index)
            task.placement = entry.placement
            task.claimed = claimed
            entry.apply(to: &task)
            merged.tasks.append(task)
        }
        return merged
    }

    /// The assignments document the leader writes for this view: each task as `placed` (the
    /// assignments it was read from) holds it, with the leader's own change (`stopRequested`);
    /// a task placed since, as it is.
    public func assignments(placedAs placed: ExecutorState?) -> ExecutorState {
        let earlier = Dictionary((placed?.tasks ?? []).map { ($0.placementKey, $0) }, uniquingKeysWith: { first, _ in first })
        var written = self
        written.tasks = tasks.map { task in
            guard var assigned = earlier[task.placementKey] else { return task }
            assigned.stopRequested = task.stopRequested
            return assigned
        }
        return written
    }
}

/// An executor's progress on its tasks: `executors/<id>/progress`, PERSISTENT, written only by
/// the executor (compare-and-set on its own version), read by the leader.
public struct ExecutorProgress: Codable, Sendable, Hashable {
    public var format: Int = 1
    public var executor: String
    /// One entry per task this executor started or handed back, while it is assigned.
    public var tasks: [TaskProgress]

    public init(executor: String, tasks: [TaskProgress] = []) {
        self.executor = executor
        self.tasks = tasks
    }
}

extension ExecutorState {
    /// The newest format of the assignments document this Drover reads and writes.
    public static let currentFormat = 1

    /// Refuses a format this Drover does not know, so that a newer (or garbled) document is
    /// treated as unreadable rather than read as one with no tasks.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decodeFormat(upTo: Self.currentFormat, forKey: .format)
        executor = try container.decode(String.self, forKey: .executor)
        draining = try container.decode(Bool.self, forKey: .draining)
        tasks = try container.decode([TaskRecord].self, forKey: .tasks)
        collectedClaims = try container.decodeIfPresent([String].self, forKey: .collectedClaims)
    }
}

extension ExecutorProgress {
    /// The newest format of the progress document this Drover reads and writes.
    public static let currentFormat = 1

    /// Refuses a format this Drover does not know, so that a newer (or garbled) document is
    /// treated as unreadable (kept aside by its executor) rather than read as no progress.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decodeFormat(upTo: Self.currentFormat, forKey: .format)
        executor = try container.decode(String.self, forKey: .executor)
        tasks = try container.decode([TaskProgress].self, forKey: .tasks)
    }
}


/// What an executor reports about one placement of a run: everything in a ``TaskRecord`` that
/// the executor, not the leader, decides.
public struct TaskProgress: Codable, Sendable, Hashable {
    public var job: String
    public var run: Int
    public var placement: String?
    public var state: TaskState
    public var startedAt: Timestamp?
    public var endedAt: Timestamp?
    public var attempts: Int
    public var checkpoint: JSONValue?
    public var result: JSONValue?
    public var error: String?
    public var timedOut: Bool?
    public var handedBack: Bool?
    public var inject: [WorkflowStep]?
    /// A task this executor claimed on the direct path, not (yet) in its assignments: what it
    /// runs, so the leader can adopt it and the executor resume it after a restart.
    public var claimed: ClaimedTask?

    /// The executor's half of `task`.
    public init(of task: TaskRecord) {
        job = task.job
        run = task.run
        placement = task.placement
        state = task.state
        startedAt = task.startedAt
        endedAt = task.endedAt
        attempts = task.attempts
        checkpoint = task.checkpoint
        result = task.result
        error = task.error
        timedOut = task.timedOut
        handedBack = task.handedBack
        inject = task.inject
        claimed = task.claimed
    }

    /// The key of the task it reports on (``TaskRecord/placementKey``).
    public var placementKey: String { placement.map { "\(job)#\(run)@\($0)" } ?? "\(job)#\(run)" }

    /// Lays this progress over the task's assignment.
    public func apply(to task: inout TaskRecord) {
        task.state = state
        task.startedAt = startedAt
        task.endedAt = endedAt
        task.attempts = attempts
        task.checkpoint = checkpoint
        task.result = result
        task.error = error
        task.timedOut = timedOut
        task.handedBack = handedBack
        task.inject = inject
    }
}

/// The outcome of one run, kept in the job's history.
public struct RunRecord: Codable, Sendable, Hashable {
    public enum Outcome: String, Codable, Sendable, Hashable {
        case succeeded, failed, stopped
    }
    public var run: Int
    public var executor: String
    public var startedAt: Timestamp?
    public var endedAt: Timestamp
    public var outcome: Outcome
    /// How many times an executor started this run (more than 1 after an executor restart).
    public var attempts: Int
    public var result: JSONValue?
    public var error: String?
    /// For a failed run: how it failed (`failed`, `timedOut`, or `lost` with its executor).
    public var failure: FailureKind?
    /// Which attempt of the job's run this was under its retry policy (absent: the first).
    public var attempt: Int?

    public init(task: TaskRecord, executor: String, outcome: Outcome, attempt: Int = 1, failure: FailureKind? = nil) {
        run = task.run
        self.executor = executor
        startedAt = task.startedAt
        endedAt = task.endedAt ?? .now()
        self.outcome = outcome
        self.failure = outcome == .failed ? (failure ?? (task.timedOut == true ? .timedOut : .failed)) : nil
        self.attempt = attempt > 1 ? attempt : nil
        attempts = task.attempts
        result = task.result
        error = task.error.map { Bounds.truncated($0, toBytes: Bounds.errorBytes) }
        // An executor of another program may report more than Drover's own would: the history
        // keeps the job's record within what one transaction can carry.
        if let result = task.result, result.encodedSizeAtMost > Bounds.resultBytes, let size = try? JSONEncoder().encode(result).count,
            size > Bounds.resultBytes
        {
            self.result = nil
            self.outcome = .failed
            self.failure = .failed
            error = "the result is \(size) bytes, over the limit of \(Bounds.resultBytes): return a reference, not the data"
        }
    }
}

/// Where a job stands.
public enum JobState: String, Codable, Sendable, Hashable, CaseIterable {
    /// Accepted; the operation is in the queue.
    case queued
    /// Waiting to be placed: no executor fits now (see `waitingReason`), or the next scheduled
    /// run is not due yet (see `nextRunAt`).
    case waiting
    /// A run is placed on an executor.
    case running
    /// Every run is done and the last succeeded.
    case succeeded
    /// The last run failed (once and finite jobs end at a failure; infinite ones restart after a back-off).
    case failed
    /// Cancelled before it ran.
    case cancelled
    /// Stopped by a client.
    case stopped

    public var isFinal: Bool {
        switch self {
        case .succeeded, .failed, .cancelled, .stopped: true
        case .queued, .waiting, .running: false
        }
    }

    /// Waiting or running: the job has an entry in the active-job index (``ActiveIndex``) while
    /// its record says so. A queued job is found through the queue instead.
    public var isActive: Bool { self == .waiting || self == .running }
}

/// A job and its history: `jobs/<shard>/<id>`, PERSISTENT. Created by the client on submit,
/// then written only by the leading manager (compare-and-set).
public struct JobRecord: Codable, Sendable, Hashable {
    public var format: Int = 1
    public var id: String
    public var spec: JobSpec
    public var state: JobState
    public var submittedAt: Timestamp
    /// Runs placed so far (the number of the latest run).
    public var runsStarted: Int
    /// Runs that ended, all outcomes.
    public var runsEnded: Int
    /// The executor running the current run.
    public var executor: String?
    /// For scheduled jobs: when the next run is due.
    public var nextRunAt: Timestamp?
    /// Why the job is waiting to be placed.
    public var waitingReason: String?
    /// The latest runs, newest last (bounded; older ones are dropped).
    public var history: [RunRecord]
    /// A client asked to stop the job.
    public var stopRequested: Bool
    /// A run taken back from an executor that waits to be placed again: it resumes from here.
    public var resume: ResumePoint?
    /// Suspended by a client: no new run is placed until it is resumed.
    public var suspended: Bool?
    /// Scheduled jobs: the time of the schedule the waiting (or current) run stands for.
    public var scheduledFor: Timestamp?
    /// Scheduled jobs with `missedRuns: catchUp`: runs of passed times made in a row.
    public var caughtUp: Int?
    /// Scheduled jobs with `overlap: replace`: the current run was asked to stop for the next time.
    public var replacing: Bool?
    /// Triggered while suspended and waiting for room: placed when room comes, then suspended again.
    public var triggered: Bool?
    /// When the job became final (set by the leader; absent in records of older leaders).
    public var finishedAt: Timestamp?
    /// Which attempt of the current run this is, under the job's retry policy (absent: the first).
    public var attempt: Int?
    /// Ended runs that were tried again (they do not count towards a finite job's `count`).
    public var runsRetried: Int?
    /// Runs that failed for good (a finite job with `onFailure: continue` goes on after them).
    public var runsFailed: Int?
    /// A workflow's steps, as far as they got, in the spec's order (set by the leader when the
    /// workflow starts; see ``WorkflowStep``). A repeating workflow starts them afresh each time.
    public var steps: [StepProgress]?
    /// A repeating workflow (finite, infinite or scheduled): times its whole graph ran, and of
    /// those the ones that failed (in all, and in a row).
    public var iterations: Int?
    public var iterationsFailed: Int?
    public var iterationsFailedInARow: Int?
    /// A job with `overlap: allow`: its runs in flight, each for its time — placed, or waiting to
    /// be (set by the leader; such a job's ``executor`` stays absent).
    public var concurrentRuns: [ConcurrentRun]?
    /// A job on the direct path (``JobSpec/placement``): the executor of each of its reservations,
    /// in order (reservation k is `inbox/<reservedOn[k]>/<job>~<k>`). Set by the client that
    /// submitted it; the leader and the executors that claim its tasks read it.
    public var reservedOn: [String]?

    /// Runs that count as done: ended, and not tried again.
    public var runsDone: Int { runsEnded - (runsRetried ?? 0) }
    /// ``attempt``, 1 when absent.
    public var currentAttempt: Int { attempt ?? 1 }

    public init(id: String, spec: JobSpec, submittedAt: Timestamp = .now()) {
        self.id = id
        self.spec = spec
        self.state = .queued
        self.submittedAt = submittedAt
        runsStarted = 0
        runsEnded = 0
        history = []
        stopRequested = false
    }
}

/// One run in flight of a job whose overlap policy is `allow` (several run at once).
public struct ConcurrentRun: Codable, Sendable, Hashable {
    /// Its number once placed (a run taken back keeps it); absent while a new run waits for room.
    public var run: Int?
    /// The time of the schedule it stands for (absent: a `trigger`'s run).
    public var scheduledFor: Timestamp?
    /// Where it runs; absent while it waits to be placed.
    public var executor: String?
    /// A run taken back from an executor resumes from here when placed again.
    public var resume: ResumePoint?
    /// The leader asked it to stop (the job is stopped).
    public var stopRequested: Bool?
    /// Why it waits to be placed.
    public var waitingReason: String?

    public init(scheduledFor: Timestamp?) {
        self.scheduledFor = scheduledFor
    }
}

/// Where a run taken back from an executor picks up again.
public struct ResumePoint: Codable, Sendable, Hashable {
    /// Starts of the run so far.
    public var attempts: Int
    /// The run's last checkpoint.
    public var checkpoint: JSONValue?
    /// Steps a workflow step's handler had injected (they go with the run to its next executor).
    public var inject: [WorkflowStep]?

    public init(attempts: Int, checkpoint: JSONValue?, inject: [WorkflowStep]? = nil) {
        self.attempts = attempts
        self.checkpoint = checkpoint
        self.inject = inject
    }
}

/// What a client puts on the operation queue.
public struct QueueOperation: Codable, Sendable, Hashable {
    public enum Kind: String, Codable, Sendable, Hashable {
        /// Place the job (its record already exists, state `queued`).
        case submit
        /// Drop a job that has not started.
        case cancel
        /// Stop a running, infinite or scheduled job.
        case stop
        /// Stop placing tasks on an executor (`executor`; `job` holds its id too, for leaders
        /// older than the `executor` field).
        case drain
        /// Place tasks on a drained executor again (`executor`, and `job` as for `drain`). A leader
        /// older than this operation sets it aside ("not a Drover queue item").
        case undrain
        /// Place no new run of the job until it is resumed; a running run finishes.
        case suspend
        /// Undo `suspend`: a scheduled job continues at its next time (missed times are skipped).
        case resume
        /// Run the job once now, outside its schedule (refused while a run is running).
        case trigger
        /// Add `steps` to a workflow that has not ended. A leader older than this operation sets
        /// it aside ("not a Drover queue item").
        case inject
    }
    public var format: Int = 1
    public var op: Kind
    public var job: String
    /// For `drain`: the executor.
    public var executor: String?
    /// For a client's `submit`: the job's record as the same transaction created it (version 0),
    /// so the leader need not read it back — one round trip less between submit and start.
    /// Absent when the record is large (``carriedRecordBytes``) or the job was queued again.
    public var record: JobRecord?
    /// For `inject`: the steps to add.
    public var steps: [WorkflowStep]?

    /// Records up to this size (encoded) ride along in their submit operation.
    public static let carriedRecordBytes = 4 * 1024

    public init(_ op: Kind, job: String, record: JobRecord? = nil) {
        self.op = op
        self.job = job
        self.record = record
    }

    /// Stop placing tasks on the executor.
    public static func drain(executor id: String) -> QueueOperation {
        var operation = QueueOperation(.drain, job: id)
        operation.executor = id
        return operation
    }

    /// Place tasks on the drained executor again.
    public static func undrain(executor id: String) -> QueueOperation {
        var operation = QueueOperation(.undrain, job: id)
        operation.executor = id
        return operation
    }

    /// Whether the operation names an executor (drain, undrain) rather than a job.
    public var namesExecutor: Bool { op == .drain || op == .undrain }

    /// The executor a `drain` or `undrain` names.
    public var drainedExecutor: String { executor ?? job }

    enum CodingKeys: String, CodingKey { case format, op, job, executor, record, steps }

    /// A carried record that does not decode is dropped, not the operation: the leader then
    /// reads the record from its znode, and the submit still counts.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decode(Int.self, forKey: .format)
        op = try container.decode(Kind.self, forKey: .op)
        job = try container.decode(String.self, forKey: .job)
        executor = try container.decodeIfPresent(String.self, forKey: .executor)
        record = try? container.decodeIfPresent(JobRecord.self, forKey: .record)
        steps = try container.decodeIfPresent([WorkflowStep].self, forKey: .steps)
    }
}

/// What one queue item holds: one operation (format 1, ``QueueOperation``), or the operations of
/// one bulk submit (format 2: `{"format": 2, "operations": [<operation>, …]}`), so that the leader
/// reads one item for a hundred jobs instead of a hundred items.
public enum QueueItemContent: Decodable, Sendable, Hashable {
    case operation(QueueOperation)
    /// The batch's operations in order, and the elements that are not operations this version
    /// reads (another program's garbage, or a newer format), as they were: the operations still
    /// count, and those are set aside on their own.
    case batch([QueueOperation], unreadable: [JSONValue])

    /// The newest item format this version reads.
    public static let newestFormat = 2
    /// Operations one batch item carries at most (a bulk submit's batch).
    public static let maximumOperations = 100

    /// The operations, in queue order.
    public var operations: [QueueOperation] {
        switch self {
        case .operation(let operation): [operation]
        case .batch(let operations, _): operations
        }
    }

    /// Encodes operations, each already encoded as a JSON object, as one format-2 item (without
    /// encoding them again).
    public static func batchItem(_ encodedOperations: [[UInt8]]) -> [UInt8] {
        var item = Array(#"{"format":2,"operations":["#.utf8)
        for (index, operation) in encodedOperations.enumerated() {
            if index > 0 { item.append(UInt8(ascii: ",")) }
            item += operation
        }
        item += Array("]}".utf8)
        return item
    }

    enum CodingKeys: String, CodingKey { case format, operations }

    /// An element that always decodes, so that one bad operation does not hide the rest.
    private enum Lossy: Decodable {
        case operation(QueueOperation)
        case unreadable(JSONValue)
        init(from decoder: any Decoder) throws {
            if let operation = try? QueueOperation(from: decoder), operation.format <= 1 {
                self = .operation(operation)
            } else {
                self = .unreadable((try? JSONValue(from: decoder)) ?? .null)
            }
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        switch try container.decode(Int.self, forKey: .format) {
        case ...1: self = .operation(try QueueOperation(from: decoder))
        case 2:
            var operations: [QueueOperation] = []
            var unreadable: [JSONValue] = []
            for element in try container.decode([Lossy].self, forKey: .operations) {
                switch element {
                case .operation(let operation): operations.append(operation)
                case .unreadable(let value): unreadable.append(value)
                }
            }
            self = .batch(operations, unreadable: unreadable)
        case let format:
            throw DecodingError.dataCorruptedError(
                forKey: .format, in: container, debugDescription: "queue item format \(format) is newer than this version reads (\(Self.newestFormat))")
        }
    }
}

/// The data of `setaside` itself: how many of the oldest items the leader dropped to keep the
/// directory bounded (absent data: none).
public struct SetAsideDirectory: Codable, Sendable, Hashable {
    public var format: Int = 1
    public var dropped: Int

    public init(dropped: Int) { self.dropped = dropped }
}

/// A queue item the manager set aside: `setaside/item-<seq>`, PERSISTENT, written by the leader
/// in the same transaction that takes the item off the queue.
public struct SetAsideItem: Codable, Sendable, Hashable {
    /// Why an item was set aside, for programs (the reason is for people, and may change).
    public struct Code: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Not a queue item of a format this leader reads (garbage, or a newer format).
        public static let unreadableItem = Code(rawValue: "unreadableItem")
        /// A batch (format 2) with no operations.
        public static let emptyBatch = Code(rawValue: "emptyBatch")
        /// One element of a batch that is not an operation; the rest of the batch was applied.
        public static let unreadableOperation = Code(rawValue: "unreadableOperation")
        /// The operation names a job whose record does not exist.
        public static let noJob = Code(rawValue: "noJob")
        /// The operation cannot be applied to its job as it is now (steps injected into a workflow
        /// that ended, or that would break its graph): the reason says why.
        public static let refused = Code(rawValue: "refused")
    }

    /// Why the manager could not apply it; absent in documents of older leaders.
    public var code: Code?
    /// Why, in words.
    public var reason: String
    /// The item (or the element of a batch) as it was, as text: its first
    /// ``Bounds/setAsideDataBytes`` bytes, so the document stays small whatever the item was.
    public var data: String
    /// The item's size in bytes, when `data` holds only its start; absent when it holds all of it.
    public var bytes: Int?
    public var at: Timestamp

    public init(code: Code, reason: String, data: [UInt8], at: Timestamp = .now()) {
        self.code = code
        self.reason = reason
        let kept = data.prefix(Bounds.setAsideDataBytes)
        self.data = String(decoding: kept, as: UTF8.self)
        self.bytes = kept.count < data.count ? data.count : nil
        self.at = at
    }
}
