import DroverProtocol
import Foundation
import ZooKeeper

/// A job's record as the leader read it (or learnt that it cannot use it).
enum LoadedRecord: Sendable {
    case record(JobRecord, version: Int32)
    /// The record exists but cannot be used (``JobRecord/read(_:job:)``); `isNote` when it already
    /// is the leader's note saying so.
    case unusable(version: Int32, reason: String, original: [UInt8], isNote: Bool)
    /// No such znode.
    case absent

    /// Decodes a job znode as read (`nil`: it does not exist).
    init(id: String, node: NodeData?) {
        guard let node else {
            self = .absent
            return
        }
        do {
            self = .record(try JobRecord.read(node.data, job: id), version: node.stat.version)
        } catch {
            self = .unusable(version: node.stat.version, reason: error.reason, original: error.isLeadersNote ? [] : node.data, isNote: error.isLeadersNote)
        }
    }
}

/// The changes one leader transaction will make — executor states and job records as they will
/// be written, each with the version it was read at (compare-and-set) — and the records it
/// still needs read before it can be decided. A value: the ``LeaderState`` builds it, the
/// ``LeaderLoop`` sends it.
///
/// It is planned on the leader's view (executor states with versions and sizes, records the
/// leader knows from its own writes), which its functions take as `view` rather than keep: a
/// transaction holding a copy would make the leader copy its whole view (every known record) the
/// first time it changes it after a commit.
struct Transaction {
    /// Records read for this transaction.
    private let loaded: [String: LoadedRecord]

    private(set) var changedStates: [String: ExecutorState] = [:]
    private(set) var records: [String: (record: JobRecord, version: Int32)] = [:]
    /// Each record's state as stored when the transaction took it up: whether the job has an
    /// entry in the active-job index to keep or remove.
    private var storedStates: [String: JobState] = [:]
    private(set) var changedJobs: Set<String> = []
    /// The order in which jobs were first changed: queue order for a queue batch.
    private(set) var changeOrder: [String: Int] = [:]
    private(set) var setAsides: [SetAsideItem] = []
    /// Jobs whose records cannot be used, failed by this transaction: the note written over each.
    private(set) var failedUnusable: [String: (version: Int32, note: UnusableJobRecord)] = [:]
    /// Queue items put in the same transaction (runs taken back from executors).
    private(set) var queueItems: [[UInt8]] = []
    /// Runs this transaction records as ended (for the metrics).
    private(set) var endedRuns: [RunRecord] = []
    /// For each job placed for the first time since it was submitted (no schedule, no start
    /// time, not a run taken back): milliseconds from its submit to this placement.
    var submitToPlacement: [Int64] = []
    /// For each job whose first run ended in this transaction (same jobs as above, its first
    /// attempt): milliseconds from its submit to that run's start (as its executor recorded it).
    var submitToStart: [Int64] = []
    mutating func ended(_ run: RunRecord) { endedRuns.append(run) }
    /// Drains (true) and undrains (false) of executors whose state the leader has not read yet:
    /// kept by the leader and applied once it has (a drain right after an executor registered).
    var deferredDrains: [String: Bool] = [:]
    /// Executors whose drain or undrain this transaction applies: any deferred one is settled.
    var settledDrains: Set<String> = []
    /// For the log: the executor whose runs this transaction takes back, whether it is dead, and the runs.
    var tookBack: (executor: String, dead: Bool, tasks: [String])?
    /// Records the planner asked for that were not read: the transaction cannot be sent until
    /// they are read and it is planned again.
    private(set) var unread: Set<String> = []
    /// Bytes this transaction adds to executor states (estimated), and executors it found too
    /// full of them.
    private var addedStateBytes: [String: Int] = [:]
    private var fullByBytes: Set<String> = []
    /// What this transaction does to the leader's "room changed" signal once it is final.
    enum CapacitySignal { case untouched, consumed, roomLeft }
    private(set) var capacitySignal = CapacitySignal.untouched
    /// The waiting line was looked at with the room there is.
    mutating func consumeCapacitySignal() { if capacitySignal == .untouched { capacitySignal = .consumed } }
    /// A limit stopped the look at the waiting line: the next transaction goes on with it.
    mutating func leaveRoomSignal() { capacitySignal = .roomLeft }

    /// Jobs are filed as waiting, none placed (a queue item too large to place within the byte
    /// budget: its records are written alone, and placed from the waiting line after).
    let placesNothing: Bool

    /// Placement ids begin with it: the leader's term and how many transactions it committed
    /// before this one (only one transaction planned on that count can commit).
    private let placementPrefix: String
    private var placementsMade = 0

    init(loaded: [String: LoadedRecord], placesNothing: Bool = false, placementPrefix: String = "0.0") {
        self.loaded = loaded
        self.placesNothing = placesNothing
        self.placementPrefix = placementPrefix
    }

    /// A placement id no other placement has (``TaskRecord/placement``): the executor's progress
    /// names it, so progress of an earlier placement of the same run is never taken for this one's.
    mutating func newPlacement() -> String {
        placementsMade += 1
        return "\(placementPrefix).\(placementsMade)"
    }

    var hasChanges: Bool {
        !changedStates.isEmpty || !changedJobs.isEmpty || !setAsides.isEmpty || !failedUnusable.isEmpty || !queueItems.isEmpty
    }

    // MARK: Executor states

    func executorState(_ id: String, in view: LeaderState) -> ExecutorState? {
        changedStates[id] ?? view.executors[id]?.state?.document
    }

    mutating func update(_ state: ExecutorState, of id: String) { changedStates[id] = state }
    /// It starts a job on the direct path: claims made before it are adopted next.
    var opensClaims = false

    /// Executors whose progress this transaction's decisions rest on (runs taken back as not
    /// ended): it commits only if their progress is still the version the leader read.
    private(set) var progressChecked: Set<String> = []

    /// This transaction holds only while the executor's progress is unchanged.
    mutating func checkProgress(of id: String) { progressChecked.insert(id) }

    /// What a task for `spec` adds to an executor's state, generously: its arguments and the
    /// fields around them (ids, method, resources, times, a small result).
    static func estimatedBytes(ofTaskFor spec: JobSpec) -> Int {
        ((try? Codec.encode(spec.arguments).count) ?? JobSpec.maximumEncodedBytes) + spec.method.utf8.count + 512
    }

    /// The executor's state size as last seen or written, plus what this transaction adds.
    func stateBytes(of id: String, in view: LeaderState) -> Int { (view.executors[id]?.stateBytes ?? 0) + addedStateBytes[id, default: 0] }

    mutating func addStateBytes(_ bytes: Int, to id: String) { addedStateBytes[id, default: 0] += bytes }

    /// The executor takes no more tasks in this transaction: its state would pass its size limit.
    mutating func markFullByBytes(_ id: String) { fullByBytes.insert(id) }

    /// Executors' assignments one transaction changes at most. Only the leader writes them, but
    /// each is one more document to carry and one more watch to fire, and a take-back also checks
    /// an executor's progress (a chance of a conflict that sends the whole transaction back): a
    /// transaction touching hundreds of executors would be large and slow to commit.
    static let executorLimit = 16

    /// True once the transaction changes ``executorLimit`` executor states: placement then only
    /// offers those executors, and the rest wait for the next transaction.
    var atExecutorLimit: Bool { changedStates.count >= Self.executorLimit }

    /// Executors as placement sees them, with this transaction's placements counted (only the
    /// ones already changed, once it is ``atExecutorLimit``).
    func views(in view: LeaderState) -> [ExecutorView] {
        let touchedOnly = atExecutorLimit
        return view.executors.compactMap { id, entry -> ExecutorView? in
            guard let registration = entry.registration, let state = changedStates[id] ?? entry.state?.document, !touchedOnly || changedStates[id] != nil
            else { return nil }
            // An executor whose state is full of bytes looks full of everything.
            let used = fullByBytes.contains(id) ? registration.capacity : state.held
            return ExecutorView(
                id: id, capacity: registration.capacity, labels: registration.labels, methods: entry.methods, used: used, alive: true,
                draining: state.draining)
        }.sorted { $0.id < $1.id }
    }

    // MARK: Job records

    enum Lookup {
        case found(JobRecord)
        /// The record exists but cannot be used: the reason.
        case unusable(String)
        case absent
        /// Not read yet: the transaction asks for it (``unread``).
        case unread
    }

    /// The job's record as planned so far: changed by this transaction, else as the leader last
    /// wrote it, else as read for this transaction. A record not read yet is noted in ``unread``.
    mutating func job(_ id: String, in view: LeaderState) -> Lookup {
        if let entry = records[id] { return .found(entry.record) }
        if let entry = view.known[id] {
            records[id] = (entry.record, entry.version)
            storedStates[id] = entry.record.state
            return .found(entry.record)
        }
        guard Layout.isValidID(id) else { return .absent }
        switch loaded[id] {
        case .record(let record, let version)?:
            records[id] = (record, version)
            storedStates[id] = record.state
            return .found(record)
        case .unusable(_, let reason, _, _)?: return .unusable(reason)
        case .absent?: return .absent
        case nil:
            unread.insert(id)
            return .unread
        }
    }

    /// The record when it is found; nil otherwise (absent, unusable or not read yet).
    mutating func record(_ id: String, in view: LeaderState) -> JobRecord? {
        if case .found(let record) = job(id, in: view) { return record }
        return nil
    }

    /// Whether the job's record would need a read (neither planned, known nor loaded).
    func needsRead(_ id: String, in view: LeaderState) -> Bool {
        records[id] == nil && view.known[id] == nil && loaded[id] == nil && Layout.isValidID(id)
    }

    /// Takes a job's record as its submit operation carried it: as the client created it, at
    /// version 0, so it is not read back. (Were it changed since, the transaction's
    /// compare-and-set fails and the leader reads it next time.)
    mutating func created(_ record: JobRecord, carriedBy operation: QueueOperation, in view: LeaderState) {
        guard record.id == operation.job, record.state == .queued, records[record.id] == nil, view.known[record.id] == nil,
            Layout.isValidID(record.id), record.problem(asJob: record.id) == nil
        else { return }  // read from its znode instead, where an unusable one is found and reported
        records[record.id] = (record, 0)
        storedStates[record.id] = record.state
    }

    mutating func update(_ record: JobRecord) {
        guard let entry = records[record.id] else { return }
        records[record.id] = (record, entry.version)
        if changedJobs.insert(record.id).inserted { changeOrder[record.id] = changeOrder.count }
    }

    /// Ends the job whose record cannot be used: `failed`, the record replaced by a note saying
    /// why (once: a record that already is such a note stays as it is).
    mutating func failUnusable(_ id: String) {
        guard case .unusable(let version, let reason, let original, let isNote)? = loaded[id], !isNote else { return }
        failedUnusable[id] = (version, UnusableJobRecord(id: id, reason: reason, original: original))
    }

    /// Moves a malformed queue item aside, with the reason, in the same transaction.
    mutating func setAside(_ data: [UInt8], code: SetAsideItem.Code, reason: String) {
        setAsides.append(SetAsideItem(code: code, reason: reason, data: data))
    }

    /// Puts a queue item in the same transaction.
    mutating func enqueue(_ item: [UInt8]) { queueItems.append(item) }

    // MARK: Encoding

    /// Bytes of data and paths one leader transaction may carry: ZooKeeper drops a request
    /// over `jute.maxbuffer` (1 MB by default); the rest is headroom for the fence, queue
    /// deletions and framing. One job's transaction always fits: a record at its bound
    /// (`JobRecord.maximumEncodedBytes`, 512 KiB) with an executor state at its bound (256 KiB).
    static let byteBudget = 896 * 1024

    /// A planned transaction too large to send; nothing was written.
    struct OverBudget: Error, CustomStringConvertible {
        let bytes: Int
        let jobs: Int
        var description: String {
            "a transaction changing \(jobs) job(s) would be \(bytes) bytes, over the budget of \(Transaction.byteBudget): "
                + "a job's spec, results or an executor's tasks are too large for one ZooKeeper request"
        }
    }

    /// The transaction encoded: its operations (without the fence) and the encoded sizes of the
    /// states and records it writes, which the leader keeps once it commits.
    struct Encoded {
        var operations: [MultiOperation]
        /// The assignments documents written, by executor, and their encoded sizes.
        var assignments: [String: ExecutorState] = [:]
        var stateBytes: [String: Int]
        var recordBytes: [String: Int]
    }

    /// The transaction's operations.
    /// - Throws: ``OverBudget`` when they would pass ``byteBudget``.
    func encoded(layout: Layout, in view: LeaderState, acls: LeaderState.ACLs) throws -> Encoded {
        var encoded = Encoded(operations: [], stateBytes: [:], recordBytes: [:])
        for (id, state) in changedStates.sorted(by: { $0.key < $1.key }) {
            guard let placed = view.executors[id]?.assignments else { continue }
            // Only the leader's half is written; the progress it was decided on is the executor's.
            let written = state.assignments(placedAs: placed.document)
            let data = try Codec.encode(written)
            encoded.assignments[id] = written
            encoded.stateBytes[id] = data.count
            encoded.operations.append(.setData(path: layout.executorAssignments(id), data: data, version: placed.version))
        }
        for id in progressChecked.sorted() {
            // A decision that a run has not ended holds only if the executor recorded no end since.
            guard let version = view.executors[id]?.progress?.version else { continue }
            encoded.operations.append(.check(path: layout.executorProgress(id), version: version))
        }
        for id in changedJobs.sorted() {
            guard let entry = records[id] else { continue }
            let data = try Codec.encode(entry.record)
            encoded.recordBytes[id] = data.count
            encoded.operations.append(.setData(path: layout.job(id), data: data, version: entry.version))
            if view.maintainsActiveIndex {
                let hasEntry = view.activeEntryExists[id] ?? (storedStates[id]?.isActive ?? false)
                switch (hasEntry, entry.record.state.isActive) {
                case (false, true): encoded.operations.append(.create(path: layout.activeEntry(id), acl: acls.activeEntry))
                case (true, false): encoded.operations.append(.delete(path: layout.activeEntry(id)))
                default: break
                }
            }
        }
        for (id, entry) in failedUnusable.sorted(by: { $0.key < $1.key }) {
            encoded.operations.append(.setData(path: layout.job(id), data: try Codec.encode(entry.note), version: entry.version))
        }
        for document in setAsides {
            encoded.operations.append(.create(path: layout.setAsideItemPrefix, data: try Codec.encode(document), mode: .persistentSequential, acl: acls.setAsideItem))
        }
        let bytes = encoded.operations.reduce(0) { $0 + $1.encodedSize } + queueItems.reduce(0) { $0 + $1.count + 64 }
        guard bytes <= Self.byteBudget else { throw OverBudget(bytes: bytes, jobs: changedJobs.count) }
        return encoded
    }
}
