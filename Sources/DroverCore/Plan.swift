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
    private var setAsides: [(data: [UInt8], reason: String)] = []

    init(loop: LeaderLoop) { self.loop = loop }

    /// Forgets everything planned (a queue batch is planned again after a lost race).
    func reset() {
        changedStates = [:]
        records = [:]
        changedJobs = []
        setAsides = []
    }

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

    func update(_ record: JobRecord) {
        guard let entry = records[record.id] else { return }
        records[record.id] = (record, entry.version, entry.original)
        changedJobs.insert(record.id)
    }

    func unchanged(_ record: JobRecord) -> Bool { records[record.id]?.original == record }

    func forget(_ id: String) { changedJobs.remove(id) }

    /// Moves a malformed queue item aside, with the reason, in the same transaction.
    func setAside(_ data: [UInt8], reason: String) { setAsides.append((data, reason)) }

    /// Executors as placement sees them, with this plan's placements counted.
    func views() -> [ExecutorView] {
        loop.executors.compactMap { id, entry -> ExecutorView? in
            guard let registration = entry.registration, let state = executorState(id) else { return nil }
            return ExecutorView(
                id: id, capacity: registration.capacity, labels: registration.labels, used: state.used, alive: true,
                draining: state.draining)
        }.sorted { $0.id < $1.id }
    }

    func operations() throws -> [MultiOperation] {
        var operations: [MultiOperation] = []
        for (id, state) in changedStates.sorted(by: { $0.key < $1.key }) {
            guard let version = loop.executors[id]?.state?.version else { continue }
            operations.append(.setData(path: loop.layout.executorState(id), data: try Codec.encode(state), version: version))
        }
        for id in changedJobs.sorted() {
            guard let entry = records[id] else { continue }
            operations.append(.setData(path: loop.layout.job(id), data: try Codec.encode(entry.record), version: entry.version))
        }
        for item in setAsides {
            let document: JSONValue = [
                "reason": .string(item.reason), "data": .string(String(decoding: item.data, as: UTF8.self)),
                "at": .number(Double(Timestamp.now())),
            ]
            operations.append(.create(path: loop.layout.setAside + "/item-", data: try Codec.encode(document), mode: .persistentSequential))
        }
        return operations
    }
}
