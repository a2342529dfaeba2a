import DroverProtocol
import Foundation
import ZooKeeper

/// The changes one leader transaction will make: executor states and job records as they
/// will be written, each with the version it was read at (compare-and-set).
final class Plan {
    unowned let loop: LeaderLoop
    private(set) var changedStates: [String: ExecutorState] = [:]
    private(set) var records: [String: (record: JobRecord, version: Int32, original: JobRecord)] = [:]
    private(set) var changedJobs: Set<String> = []
    /// The order in which jobs were first changed: queue order for a queue batch.
    private(set) var changeOrder: [String: Int] = [:]
    private var setAsides: [SetAsideItem] = []
    /// Bytes this plan adds to executor states (estimated), and executors it found too full of them.
    private var addedStateBytes: [String: Int] = [:]
    private var fullByBytes: Set<String> = []
    /// The encoded size of each changed state, once ``operations()`` encoded it.
    private(set) var encodedStateBytes: [String: Int] = [:]
    /// The encoded size of each changed job record, once ``operations()`` encoded it.
    private(set) var encodedRecordBytes: [String: Int] = [:]

    /// Jobs are filed as waiting, none placed (a queue item too large to place within the byte
    /// budget: its records are written alone, and placed from the waiting line after).
    var placesNothing = false

    init(loop: LeaderLoop) { self.loop = loop }

    /// Forgets everything planned (a queue batch is planned again after a lost race).
    func reset() {
        changedStates = [:]
        records = [:]
        changedJobs = []
        changeOrder = [:]
        setAsides = []
        unusable = [:]
        addedStateBytes = [:]
        fullByBytes = []
        encodedStateBytes = [:]
        encodedRecordBytes = [:]
    }

    /// What a task for `spec` adds to an executor's state, generously: its arguments and the
    /// fields around them (ids, method, resources, times, a small result).
    static func estimatedBytes(ofTaskFor spec: JobSpec) -> Int {
        ((try? Codec.encode(spec.arguments).count) ?? JobSpec.maximumEncodedBytes) + spec.method.utf8.count + 512
    }

    /// The executor's state size as last seen or written, plus what this plan adds.
    func stateBytes(of id: String) -> Int { (loop.executors[id]?.stateBytes ?? 0) + addedStateBytes[id, default: 0] }

    func addStateBytes(_ bytes: Int, to id: String) { addedStateBytes[id, default: 0] += bytes }

    /// The executor takes no more tasks in this plan: its state would pass its size limit.
    func markFullByBytes(_ id: String) { fullByBytes.insert(id) }

    var hasChanges: Bool { !changedStates.isEmpty || !changedJobs.isEmpty || !setAsides.isEmpty || unusable.values.contains(where: \.rewrite) }

    func executorState(_ id: String) -> ExecutorState? {
        changedStates[id] ?? loop.executors[id]?.state?.document
    }

    func update(_ state: ExecutorState, of id: String) { changedStates[id] = state }

    /// The job's record as planned so far (read from ZooKeeper the first time, unless the
    /// leader knows it from its own last write).
    func job(_ id: String) async throws -> JobRecord? {
        if let entry = records[id] { return entry.record }
        if let known = loop.knownRecords[id] {
            records[id] = (known.record, known.version, known.record)
            return known.record
        }
        guard Layout.isValidID(id), unusable[id] == nil else { return nil }
        do {
            let node = try await loop.client.getData(loop.layout.job(id))
            adoptRead(id, node)
            return records[id]?.record
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil
        }
    }

    /// A record as read: usable, or noted as unusable with its version and reason.
    private func adoptRead(_ id: String, _ node: NodeData) {
        do {
            let record = try JobRecord.read(node.data, job: id)
            records[id] = (record, node.stat.version, record)
        } catch {
            let isStub = (try? Codec.decode(UnusableJobRecord.self, node.data)) != nil
            unusable[id] = (node.stat.version, UnusableJobRecord(id: id, reason: error.reason, original: node.data), rewrite: false, isStub: isStub)
        }
    }

    /// Jobs whose record exists but cannot be used (``JobRecord/read(_:job:)``), at the version read.
    private(set) var unusable: [String: (version: Int32, stub: UnusableJobRecord, rewrite: Bool, isStub: Bool)] = [:]

    /// The reason job `id`'s record cannot be used, when it was read and found so.
    func unusableReason(_ id: String) -> String? { unusable[id]?.stub.unusable }

    /// Ends the job whose record cannot be used: `failed`, the record replaced by an
    /// ``UnusableJobRecord`` saying why (once: a record that already is one stays as it is).
    func failUnusable(_ id: String) {
        guard let entry = unusable[id], !entry.isStub else { return }
        unusable[id]?.rewrite = true
    }

    /// Takes a job's record as its submit operation carried it: as the client created it, at
    /// version 0, so it is not read back. (Were it changed since, the transaction's
    /// compare-and-set fails and the leader reads it next time.)
    func created(_ record: JobRecord, carriedBy operation: QueueOperation) {
        guard record.id == operation.job, record.state == .queued, records[record.id] == nil, loop.knownRecords[record.id] == nil,
            Layout.isValidID(record.id), record.problem(asJob: record.id) == nil
        else { return }  // read from its znode instead, where an unusable one is found and reported
        records[record.id] = (record, 0, record)
    }

    /// Reads, all at once, the records of `ids` that ``job(_:)`` would have to read one round trip
    /// at a time — ZooKeeper answers pipelined reads far faster than reads in series. Records
    /// already planned or known are not read again; missing or garbled ones are left for
    /// ``job(_:)`` to report.
    func prefetch(_ ids: some Sequence<String>) async throws {
        var wanted: [String] = []
        var seen: Set<String> = []
        for id in ids where records[id] == nil && loop.knownRecords[id] == nil && Layout.isValidID(id) && seen.insert(id).inserted {
            wanted.append(id)
        }
        guard wanted.count > 1 else { return }  // one read is no faster here than in job(_:)
        // Decoded in the reading tasks too: that spreads the JSON work over the cores.
        let fetched = try await withThrowingTaskGroup(of: (String, NodeData)?.self) { [client = loop.client, layout = loop.layout] group in
            for id in wanted {
                group.addTask {
                    do {
                        return (id, try await client.getData(layout.job(id)))
                    } catch let error as ZooKeeperError where error.code == .noNode {
                        return nil
                    }
                }
            }
            var found: [(String, NodeData)] = []
            for try await case let result? in group { found.append(result) }
            return found
        }
        for (id, node) in fetched { adoptRead(id, node) }
    }

    func update(_ record: JobRecord) {
        guard let entry = records[record.id] else { return }
        records[record.id] = (record, entry.version, entry.original)
        if changedJobs.insert(record.id).inserted { changeOrder[record.id] = changeOrder.count }
    }

    func unchanged(_ record: JobRecord) -> Bool { records[record.id]?.original == record }

    func forget(_ id: String) { changedJobs.remove(id) }

    /// Moves a malformed queue item aside, with the reason, in the same transaction.
    func setAside(_ data: [UInt8], code: SetAsideItem.Code, reason: String) {
        setAsides.append(SetAsideItem(code: code, reason: reason, data: data))
    }

    /// Executor states one transaction changes at most. Executors write their own states all
    /// the time, so every state in a transaction is a chance of a compare-and-set conflict that
    /// sends the whole transaction back: with hundreds of executors, a transaction touching all
    /// of them would hardly ever commit.
    static let executorLimit = 16

    /// True once the plan changes ``executorLimit`` executor states: placement then only offers
    /// those executors, and the rest wait for the next transaction.
    var atExecutorLimit: Bool { changedStates.count >= Self.executorLimit }

    /// Executors as placement sees them, with this plan's placements counted (only the ones
    /// already changed, once the plan is ``atExecutorLimit``).
    func views() -> [ExecutorView] {
        let touchedOnly = atExecutorLimit
        return loop.executors.compactMap { id, entry -> ExecutorView? in
            guard let registration = entry.registration, let state = executorState(id), !touchedOnly || changedStates[id] != nil else { return nil }
            // An executor whose state is full of bytes looks full of everything.
            let used = fullByBytes.contains(id) ? registration.capacity : state.held
            return ExecutorView(
                id: id, capacity: registration.capacity, labels: registration.labels, used: used, alive: true,
                draining: state.draining)
        }.sorted { $0.id < $1.id }
    }

    /// Bytes of data and paths one leader transaction may carry: ZooKeeper drops a request
    /// over `jute.maxbuffer` (1 MB by default); the rest is headroom for the fence, queue
    /// deletions and framing.
    static let byteBudget = 768 * 1024

    /// A planned transaction too large to send; nothing was written.
    struct OverBudget: Error, CustomStringConvertible {
        let bytes: Int
        let jobs: Int
        var description: String {
            "a transaction changing \(jobs) job(s) would be \(bytes) bytes, over the budget of \(Plan.byteBudget): "
                + "a job's spec, results or an executor's tasks are too large for one ZooKeeper request"
        }
    }

    /// The transaction's operations.
    /// - Throws: ``OverBudget`` when they would pass ``byteBudget``.
    func operations() throws -> [MultiOperation] {
        var operations: [MultiOperation] = []
        for (id, state) in changedStates.sorted(by: { $0.key < $1.key }) {
            guard let version = loop.executors[id]?.state?.version else { continue }
            let data = try Codec.encode(state)
            encodedStateBytes[id] = data.count
            operations.append(.setData(path: loop.layout.executorState(id), data: data, version: version))
        }
        for id in changedJobs.sorted() {
            guard let entry = records[id] else { continue }
            let data = try Codec.encode(entry.record)
            encodedRecordBytes[id] = data.count
            operations.append(.setData(path: loop.layout.job(id), data: data, version: entry.version))
        }
        for (id, entry) in unusable.sorted(by: { $0.key < $1.key }) where entry.rewrite {
            operations.append(.setData(path: loop.layout.job(id), data: try Codec.encode(entry.stub), version: entry.version))
        }
        for document in setAsides {
            operations.append(.create(path: loop.layout.setAside + "/item-", data: try Codec.encode(document), mode: .persistentSequential))
        }
        let bytes = operations.reduce(0) { $0 + $1.encodedSize }
        guard bytes <= Self.byteBudget else { throw OverBudget(bytes: bytes, jobs: changedJobs.count) }
        return operations
    }
}
