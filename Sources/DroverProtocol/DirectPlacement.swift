/// How a job's tasks find executors (docs/PLACEMENT.md).
///
/// `central` is the elected leader's placement: a submit reaches the leader through the queue and
/// the leader writes each task into an executor's assignments. The other four are the direct path
/// (Sparrow's designs): the client that submits samples executors from the load they publish and
/// writes *reservations* into their inboxes in the same transaction that creates the job; an
/// executor with a free slot takes a reservation and *claims* one of the job's tasks by creating
/// a sequential node under the job's claims directory — the n-th claim made holds task n, so no
/// task is claimed twice and no claim waits for another. The leader is not on that path: it
/// adopts claimed tasks into its records afterwards, and places what executors did not claim.
public enum PlacementPolicy: String, Codable, Sendable, Hashable, CaseIterable {
    /// The leader places every task (the default).
    case central
    /// One reservation per task, each on an executor chosen at random.
    case random
    /// Per task, two executors sampled; the reservation goes to the less loaded.
    case powerOfTwo
    /// `probeRatio` × tasks executors sampled; one reservation per task on the least loaded of them.
    case batch
    /// Reservations on `probeRatio` × tasks sampled executors (all of them when there are fewer);
    /// each executor claims a task whenever a slot frees, again and again, until none is left
    /// (late binding); the last claim cancels the rest.
    case batchLateBinding

    /// Whether an executor claims with one reservation until the job has no task left.
    public var reservationsAreReusable: Bool { self == .batchLateBinding }

    /// Whether tasks go the direct path (reservations and claims) rather than through the leader.
    public var isDirect: Bool { self != .central }

    /// Sparrow's d: executors probed per task by `batch` and `batchLateBinding` when a job names none.
    public static let defaultProbeRatio = 2.0
    /// The probe ratios a job may ask for.
    public static let probeRatios: ClosedRange<Double> = 1...10

    /// The names, for errors and `--help`.
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// An executor as the direct path samples it: what it can run, and how loaded it is.
public struct LoadSample: Sendable, Hashable {
    public var executor: String
    /// Its slots.
    public var slots: Int
    /// Tasks running or waiting there, and reservations queued for it.
    public var load: Int

    public init(executor: String, slots: Int, load: Int) {
        self.executor = executor
        self.slots = slots
        self.load = load
    }

    /// Load per slot: the measure the sampling policies compare.
    var pressure: Double { Double(load) / Double(max(1, slots)) }
}

/// An executor's load as it publishes it: `executors/<id>/load`, EPHEMERAL, written by the
/// executor when its load changes (at most a few times a second), read by submitting clients.
public struct ExecutorLoad: Codable, Sendable, Hashable {
    public var format: Int = 1
    /// Task slots it has.
    public var slots: Int
    /// Tasks it runs (placed by the leader, or claimed).
    public var running: Int
    /// Reservations in its inbox not taken yet.
    public var reserved: Int
    /// It takes no new tasks (drained by an operator, or stopping).
    public var draining: Bool

    public init(slots: Int, running: Int, reserved: Int, draining: Bool) {
        self.slots = slots
        self.running = running
        self.reserved = reserved
        self.draining = draining
    }
}

/// The sampling rules of the direct path: pure, so tested without a cluster.
public enum DirectSampling {
    /// Where the reservations of a job of `tasks` tasks go under `policy`: one executor per
    /// reservation (an executor may appear more than once when there are few). Empty when
    /// `candidates` is: the job cannot be reserved anywhere now.
    public static func reservations(
        for policy: PlacementPolicy, tasks: Int, probeRatio: Double = PlacementPolicy.defaultProbeRatio, among candidates: [LoadSample],
        using random: inout some RandomNumberGenerator
    ) -> [String] {
        guard !candidates.isEmpty, tasks > 0 else { return [] }
        // Tasks put on an executor while choosing count as load on it for the next choice.
        var added: [String: Int] = [:]
        func pressure(_ sample: LoadSample) -> Double { Double(sample.load + added[sample.executor, default: 0]) / Double(max(1, sample.slots)) }
        switch policy {
        case .central:
            return []
        case .random:
            return (0..<tasks).map { _ in candidates.randomElement(using: &random)!.executor }
        case .powerOfTwo:
            return (0..<tasks).map { _ in
                let pair = sample(2, of: candidates, using: &random)
                let chosen = pair.min { pressure($0) < pressure($1) }!
                added[chosen.executor, default: 0] += 1
                return chosen.executor
            }
        case .batch:
            let probed = sample(probes(tasks: tasks, ratio: probeRatio), of: candidates, using: &random)
            return (0..<tasks).map { _ in
                let chosen = probed.min { pressure($0) < pressure($1) }!
                added[chosen.executor, default: 0] += 1
                return chosen.executor
            }
        case .batchLateBinding:
            // Distinct executors, each reservation reusable (an executor claims with it again after
            // each task it got): with fewer executors than probes, each of them once.
            return sample(probes(tasks: tasks, ratio: probeRatio), of: candidates, using: &random).map(\.executor)
        }
    }

    /// Reservations (or probes) for a job of `tasks` tasks at probe ratio `ratio`: ⌈ratio × tasks⌉,
    /// at most ``maximumReservations`` (and never fewer than one per task).
    public static func probes(tasks: Int, ratio: Double) -> Int {
        max(tasks, min(maximumReservations, Int((Double(tasks) * ratio).rounded(.up))))
    }

    /// Reservations one job makes at most (beyond one per task): they are listed in its record
    /// and its claims document, which stay well under their bounds.
    public static let maximumReservations = 2_000

    /// `count` distinct elements at random (all of them, shuffled, when there are fewer).
    static func sample(_ count: Int, of candidates: [LoadSample], using random: inout some RandomNumberGenerator) -> [LoadSample] {
        guard count < candidates.count else { return candidates.shuffled(using: &random) }
        var picked: Set<Int> = []
        var result: [LoadSample] = []
        while result.count < count {
            let index = Int.random(in: 0..<candidates.count, using: &random)
            if picked.insert(index).inserted { result.append(candidates[index]) }
        }
        return result
    }
}

/// Names on the direct path.
extension Layout {
    /// Reservations for executors: `inbox/<executor>/<job>~<k>` (the job's k-th reservation), made
    /// by the submitting client, deleted by the executor that takes it (or by the claim of the
    /// job's last task, or by the leader).
    public var inbox: String { prefixForDirect + "/inbox" }
    public func executorInbox(_ executor: String) -> String { inbox + "/" + executor }
    /// A late-binding reservation (`reusable`) ends in `r`: its executor claims with it again
    /// after each task it got, until the job has none left.
    public func reservation(job: String, index: Int, on executor: String, reusable: Bool = false) -> String {
        executorInbox(executor) + "/" + job + "~" + String(index) + (reusable ? "r" : "")
    }

    /// Every reservation of a direct job whose reservations are on `reservedOn` (its record's
    /// ``JobRecord/reservedOn``, in order).
    public func reservations(of job: String, on reservedOn: [String], reusable: Bool) -> [String] {
        reservedOn.enumerated().map { reservation(job: job, index: $0.offset, on: $0.element, reusable: reusable) }
    }

    /// A direct job's claims: `claims/<shard>/<job>`, made with the record; its children `t-<seq>`
    /// are claims (sequential), the n-th made holding task n; their data names the claimant.
    public var claims: String { prefixForDirect + "/claims" }
    public func claimsShard(_ shard: Int) -> String { claims + "/" + Self.jobShardName(shard) }
    public func jobClaims(_ id: String) -> String { claimsShard(Self.shard(of: id)) + "/" + id }
    /// The prefix a claim is created with (ZooKeeper appends the sequence).
    public func claimPrefix(_ id: String) -> String { jobClaims(id) + "/t-" }
    /// The claim of task `index` of job `id` (ZooKeeper's sequence suffix: 10 digits).
    public func claim(_ index: Int, of id: String) -> String {
        let digits = String(index)
        return claimPrefix(id) + String(repeating: "0", count: max(0, 10 - digits.count)) + digits
    }
    /// An executor's published load (``ExecutorLoad``).
    public func executorLoad(_ id: String) -> String { executor(id) + "/load" }

    /// The job, reservation index and reusability a reservation's name stands for, or nil when it
    /// is not one.
    public static func reservation(named name: String) -> (job: String, index: Int, reusable: Bool)? {
        guard let tilde = name.lastIndex(of: "~") else { return nil }
        var digits = name[name.index(after: tilde)...]
        let reusable = digits.hasSuffix("r")
        if reusable { digits = digits.dropLast() }
        guard let index = Int(digits), index >= 0 else { return nil }
        let job = String(name[..<tilde])
        return isValidID(job) ? (job, index, reusable) : nil
    }

    /// The task a claim's node name holds: its sequence number.
    public static func claimIndex(named name: String) -> Int? {
        guard name.hasPrefix("t-") else { return nil }
        return Int(name.dropFirst(2))
    }

    private var prefixForDirect: String { root == "/" ? "" : root }
}

/// A direct job's claims directory's document: `claims/<shard>/<job>`, written by the client that
/// submits it, read by the executors that claim its tasks (they may not read job records).
public struct DirectJobDocument: Codable, Sendable, Hashable {
    public var format: Int = 1
    /// The tasks' spec (the job's).
    public var spec: JobSpec
    /// The executor of each reservation, as in the record's ``JobRecord/reservedOn``.
    public var reservedOn: [String]

    public init(spec: JobSpec, reservedOn: [String]) {
        self.spec = spec
        self.reservedOn = reservedOn
    }
}

/// What a claim node holds: who claimed, and which process of it.
public struct ClaimNote: Codable, Sendable, Hashable {
    public var executor: String
    /// The claimant's process (``ExecutorRegistration/instance``): a claim whose executor is
    /// registered by another process now was made by an earlier one (restarted since), which
    /// cannot run it any more.
    public var instance: String?

    public init(executor: String, instance: String?) {
        self.executor = executor
        self.instance = instance
    }
}

/// A task an executor claimed on the direct path, as its progress describes it until the leader
/// adopts it: enough to run it again after a restart, and for the leader to check the claim.
public struct ClaimedTask: Codable, Sendable, Hashable {
    /// The task's index in its job (its claim's sequence number).
    public var index: Int
    public var method: String
    public var arguments: JSONValue
    public var resources: Resources

    public init(index: Int, method: String, arguments: JSONValue, resources: Resources) {
        self.index = index
        self.method = method
        self.arguments = arguments
        self.resources = resources
    }

    /// The step id of task `index` of a job of tasks.
    public static func stepID(_ index: Int) -> String { "task-\(index)" }
    /// A claimed task's run: run numbers 1…tasks are kept for the first run of each task (the
    /// executor that claims it knows its number without asking the leader); retries take the next.
    public static func run(ofTask index: Int) -> Int { index + 1 }
    /// The placement of a claimed task: its claim, so no placement by a leader shares it.
    public static func placement(ofTask index: Int) -> String { placementPrefix + String(index) }
    /// How the placement of every claimed task begins.
    public static let placementPrefix = "claim-"

    /// The task as its executor runs it: task `index` of `job`, whose spec is `spec` (nil when it
    /// has no such task).
    public static func task(_ index: Int, of job: String, spec: JobSpec, claimedAt: Timestamp) -> TaskRecord? {
        guard let count = spec.taskCount, (0..<count).contains(index) else { return nil }
        let step = spec.stepSpec(index)
        var task = TaskRecord(job: job, run: run(ofTask: index), method: step.method, arguments: step.arguments, resources: step.resources, assignedAt: claimedAt)
        task.step = stepID(index)
        task.placement = placement(ofTask: index)
        task.claimed = ClaimedTask(index: index, method: step.method, arguments: step.arguments, resources: step.resources)
        return task
    }

    /// The method a claimed task whose job's document could not be read is recorded with (it
    /// fails at once, saying why).
    public static let unreadableMethod = "drover.unreadable-claim"

    /// Task `index` of `job`, claimed though its job's document could not be read.
    public static func unreadable(_ index: Int, of job: String, claimedAt: Timestamp) -> TaskRecord {
        var task = TaskRecord(job: job, run: run(ofTask: index), method: unreadableMethod, arguments: .object([:]), resources: Resources(slots: 0), assignedAt: claimedAt)
        task.step = stepID(index)
        task.placement = placement(ofTask: index)
        task.claimed = ClaimedTask(index: index, method: unreadableMethod, arguments: task.arguments, resources: task.resources)
        return task
    }
}

/// The record's side of the direct path: which tasks wait for a claim, adopting a claim, taking
/// tasks over. Used by the leader alone (the record is still its to write).
extension JobRecord {
    /// Whether the job's tasks go the direct path.
    public var isDirect: Bool { spec.effectivePlacement.isDirect && spec.taskCount != nil }

    /// Tasks that wait for an executor's claim (neither adopted nor taken over by the leader).
    public var claimableTasks: [Int] { steps?.indices.filter { steps![$0].claimable == true } ?? [] }

    /// Makes the current tasks of a direct job that has not started claimable, once: run numbers
    /// 1…tasks are kept for the claims (``ClaimedTask/run(ofTask:)``), later runs number after them.
    /// Returns whether it did (the first time the leader sees the job).
    public mutating func openClaims() -> Bool {
        guard isDirect, runsStarted == 0, let count = spec.taskCount, steps != nil else { return false }
        for index in steps!.indices where steps![index].state == .running && steps![index].run == nil && steps![index].executor == nil {
            steps![index].claimable = true
        }
        runsStarted = count
        return true
    }

    /// Adopts the claim of task `index` by `executor`, whose run is `run`: the step runs there from
    /// now on, as if the leader had placed it. False when the record does not expect that claim — the
    /// task was taken over, or the job stops or ended — and then the record is unchanged.
    public mutating func adoptClaim(_ index: Int, run: Int, on executor: String) -> Bool {
        guard !state.isFinal, state != .queued, !stopRequested, let steps, steps.indices.contains(index), steps[index].claimable == true,
            steps[index].state == .running, run == ClaimedTask.run(ofTask: index)
        else { return false }
        self.steps![index].claimable = nil
        self.steps![index].executor = executor
        self.steps![index].run = run
        self.steps![index].waitingReason = nil
        state = .running
        waitingReason = nil
        return true
    }

    /// The leader takes tasks `indices` over (it holds their claims): it places them itself.
    public mutating func takeOver(_ indices: [Int]) {
        for index in indices where steps?.indices.contains(index) == true && steps![index].claimable == true {
            steps![index].claimable = nil
        }
    }
}
