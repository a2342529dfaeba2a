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
    private var setAsides: [(data: [UInt8], reason: String)] = []
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

    var hasChanges: Bool { !changedStates.isEmpty || !changedJobs.isEmpty || !setAsides.isEmpty }

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
        guard Layout.isValidID(id) else { return nil }
        do {
            let node = try await loop.client.getData(loop.layout.job(id))
            guard let record = try? Codec.decode(JobRecord.self, node.data) else { return nil }
            records[id] = (record, node.stat.version, record)
            return record
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil
        }
    }

    /// Takes a job's record as its submit operation carried it: as the client created it, at
    /// version 0, so it is not read back. (Were it changed since, the transaction's
    /// compare-and-set fails and the leader reads it next time.)
    func created(_ record: JobRecord, carriedBy operation: QueueOperation) {
        guard record.id == operation.job, record.state == .queued, records[record.id] == nil, loop.knownRecords[record.id] == nil,
            Layout.isValidID(record.id)
        else { return }
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
        let fetched = try await withThrowingTaskGroup(of: (String, JobRecord, Int32)?.self) { [client = loop.client, layout = loop.layout] group in
            for id in wanted {
                group.addTask {
                    do {
                        let node = try await client.getData(layout.job(id))
                        guard let record = try? Codec.decode(JobRecord.self, node.data) else { return nil }
                        return (id, record, node.stat.version)
                    } catch let error as ZooKeeperError where error.code == .noNode {
                        return nil
                    }
                }
            }
            var found: [(String, JobRecord, Int32)] = []
            for try await case let result? in group { found.append(result) }
            return found
        }
        for (id, record, version) in fetched { records[id] = (record, version, record) }
    }

    func update(_ record: JobRecord) {
        guard let entry = records[record.id] else { return }
        records[record.id] = (record, entry.version, entry.original)
        if changedJobs.insert(record.id).inserted { changeOrder[record.id] = changeOrder.count }
    }

    func unchanged(_ record: JobRecord) -> Bool { records[record.id]?.original == record }

    func forget(_ id: String) { changedJobs.remove(id) }

    /// Moves a malformed queue item aside, with the reason, in the same transaction.
    func setAside(_ data: [UInt8], reason: String) { setAsides.append((data, reason)) }

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
        for item in setAsides {
            let document = SetAsideItem(reason: item.reason, data: item.data)
            operations.append(.create(path: loop.layout.setAside + "/item-", data: try Codec.encode(document), mode: .persistentSequential))
        }
        let bytes = operations.reduce(0) { $0 + $1.encodedSize }
        guard bytes <= Self.byteBudget else { throw OverBudget(bytes: bytes, jobs: changedJobs.count) }
        return operations
    }
}
