import CZooKeeper
import Foundation

/// One operation of a ``ZooKeeperClient/multi(_:)`` transaction.
public enum MultiOperation: Sendable, Hashable {
    case create(path: String, data: [UInt8] = [], mode: CreateMode = .persistent, acl: [ACL] = ACL.openUnsafe)
    case delete(path: String, version: Int32 = anyVersion)
    case setData(path: String, data: [UInt8], version: Int32 = anyVersion)
    /// Succeeds only if the node exists at `version` (or at all, with ``anyVersion``). Writes
    /// nothing: it makes the rest of the transaction conditional (fencing tokens use it).
    case check(path: String, version: Int32 = anyVersion)

    public var path: String {
        switch self {
        case .create(let path, _, _, _), .delete(let path, _), .setData(let path, _, _), .check(let path, _): path
        }
    }

    /// The operation's name, as errors give it: `create`, `delete`, `setData` or `check`.
    public var name: String {
        switch self {
        case .create: "create"
        case .delete: "delete"
        case .setData: "setData"
        case .check: "check"
        }
    }

    /// An upper bound of the bytes this operation adds to a request.
    public var encodedSize: Int {
        switch self {
        case .create(let path, let data, _, let acl): 24 + path.utf8.count + data.count + acl.encodedSize
        case .delete(let path, _), .check(let path, _): 16 + path.utf8.count
        case .setData(let path, let data, _): 20 + path.utf8.count + data.count
        }
    }
}

/// What one operation of a successful ``ZooKeeperClient/multi(_:)`` did.
public enum MultiResult: Sendable, Hashable {
    /// The path of the created node (with its sequence number, for sequential modes).
    case created(path: String)
    case deleted
    case dataSet(Stat)
    case checked
}

extension ZooKeeperClient {
    /// Applies all operations atomically: either every one succeeds, or none is applied.
    ///
    /// A transaction costs the server about as much as a single write, so batching many changes
    /// into one `multi` is the main lever for throughput. Its total size must stay under
    /// `jute.maxbuffer` (about 1 MB): check ``MultiOperation/encodedSize``.
    ///
    /// - Throws: a ``ZooKeeperError`` whose `code` is the first failing operation's and whose
    ///   `failedOperationIndex` says which one; `.requestTooLarge` before sending anything.
    @discardableResult
    public func multi(_ operations: [MultiOperation]) async throws -> [MultiResult] {
        guard !operations.isEmpty else { return [] }
        // Every path is checked here: the C client mishandles a multi whose later operation
        // it rejects (it frees a path twice).
        for (index, operation) in operations.enumerated() {
            if let problem = pathProblem(operation.path) {
                throw ZooKeeperError(
                    .badArguments, operation: "multi", path: operation.path, failedOperationIndex: index,
                    message: "operation #\(index) of the multi: invalid path \"\(operation.path)\": \(problem)")
            }
        }
        let size = operations.reduce(16) { $0 + $1.encodedSize }
        try checkSize("multi", path: operations.first?.path, bytes: size)
        let request = MultiRequest(operations)
        let results: [MultiResult] = try await core.request("multi", path: operations.first?.path, attachment: request) { handle, context, _ in
            request.send(handle: handle, context: context)
        }
        for observer in multiObservers.withLock({ $0 }) { observer(operations, results) }
        return results
    }

    /// Calls `observer` with every `multi` this client gets applied, with its results (the
    /// stats of `setData` carry the transaction's zxid). For audits: the chaos harness checks
    /// with it that no deposed leader's write ever commits.
    public func observeCommittedMultis(_ observer: @escaping @Sendable ([MultiOperation], [MultiResult]) -> Void) {
        multiObservers.withLock { $0.append(observer) }
    }
}

/// The buffers of one `multi` in flight. The C client writes each operation's result, created
/// path and stat into them when the answer arrives, so they live until the completion.
final class MultiRequest: @unchecked Sendable {
    // Safe to send: the buffers are written by the C client before the completion runs and read
    // only by that completion, on the C client's completion thread.
    let operations: [MultiOperation]
    let results: UnsafeMutablePointer<zoo_op_result_t>
    let pathBuffers: [UnsafeMutablePointer<CChar>?]
    let pathBufferLength: Int32
    let stats: [UnsafeMutablePointer<CZooKeeper.Stat>?]

    init(_ operations: [MultiOperation]) {
        self.operations = operations
        results = .allocate(capacity: operations.count)
        results.initialize(repeating: zoo_op_result_t(), count: operations.count)
        let longestPath = operations.map(\.path.utf8.count).max() ?? 0
        pathBufferLength = Int32(longestPath + 16)  // room for the 10-digit sequence suffix
        pathBuffers = operations.map { operation in
            guard case .create = operation else { return nil }
            return .allocate(capacity: Int(longestPath + 16))
        }
        stats = operations.map { operation in
            guard case .setData = operation else { return nil }
            return .allocate(capacity: 1)
        }
    }

    deinit {
        results.deallocate()
        pathBuffers.forEach { $0?.deallocate() }
        stats.forEach { $0?.deallocate() }
    }

    /// Builds the C operations and sends them; the strings, data and ACLs only need to live
    /// during `zoo_amulti`, which serializes the request before it returns.
    func send(handle: OpaquePointer, context: UnsafeMutableRawPointer) -> Int32 {
        var ops = [zoo_op_t](repeating: zoo_op_t(), count: operations.count)
        var strings: [UnsafeMutablePointer<CChar>] = []
        var buffers: [UnsafeMutableRawPointer] = []
        var vectors: [(UnsafeMutablePointer<ACL_vector>, UnsafeMutablePointer<CZooKeeper.ACL>)] = []
        defer {
            strings.forEach { free($0) }
            buffers.forEach { $0.deallocate() }
            for (vector, entries) in vectors {
                vector.deallocate()
                entries.deallocate()
            }
        }
        func cString(_ string: String) -> UnsafeMutablePointer<CChar> {
            let pointer = strdup(string)!
            strings.append(pointer)
            return pointer
        }
        func cData(_ data: [UInt8]) -> UnsafePointer<CChar>? {
            guard !data.isEmpty else { return nil }
            let pointer = UnsafeMutableRawPointer.allocate(byteCount: data.count, alignment: 1)
            pointer.copyMemory(from: data, byteCount: data.count)
            buffers.append(pointer)
            return UnsafePointer(pointer.assumingMemoryBound(to: CChar.self))
        }
        func cACL(_ acl: [ACL]) -> UnsafeMutablePointer<ACL_vector> {
            let entries = UnsafeMutablePointer<CZooKeeper.ACL>.allocate(capacity: max(acl.count, 1))
            for (index, entry) in acl.enumerated() {
                entries[index] = CZooKeeper.ACL(
                    perms: entry.permissions.rawValue, id: Id(scheme: cString(entry.scheme), id: cString(entry.id)))
            }
            let vector = UnsafeMutablePointer<ACL_vector>.allocate(capacity: 1)
            vector.initialize(to: ACL_vector(count: Int32(acl.count), data: entries))
            vectors.append((vector, entries))
            return vector
        }
        for (index, operation) in operations.enumerated() {
            switch operation {
            case .create(let path, let data, let mode, let acl):
                zoo_create_op_init(
                    &ops[index], cString(path), cData(data), data.isEmpty ? -1 : Int32(data.count), cACL(acl),
                    mode.flags, pathBuffers[index], pathBufferLength)
            case .delete(let path, let version):
                zoo_delete_op_init(&ops[index], cString(path), version)
            case .setData(let path, let data, let version):
                zoo_set_op_init(
                    &ops[index], cString(path), cData(data), data.isEmpty ? -1 : Int32(data.count), version, stats[index])
            case .check(let path, let version):
                zoo_check_op_init(&ops[index], cString(path), version)
            }
        }
        return zoo_amulti(handle, Int32(operations.count), &ops, results, multiCompletion, context)
    }

    func complete(_ rc: Int32, reply: PendingReply<[MultiResult]>) {
        guard rc == ZOK.rawValue else {
            // The failing operation carries the real code; the others are marked as rolled back.
            for index in operations.indices {
                let code = results[index].err
                if code != ZOK.rawValue && code != ZRUNTIMEINCONSISTENCY.rawValue {
                    return reply.resume(
                        .failure(
                            ZooKeeperError(
                                .init(rawValue: code), operation: "multi \(operations[index].name)", path: operations[index].path,
                                failedOperationIndex: index)))
                }
            }
            return reply.resume(.failure(ZooKeeperError(.init(rawValue: rc), operation: "multi", path: operations.first?.path)))
        }
        let values = operations.indices.map { index -> MultiResult in
            switch operations[index] {
            case .create: .created(path: pathBuffers[index].map { String(cString: $0) } ?? "")
            case .delete: .deleted
            case .setData: .dataSet(stats[index].map { Stat($0.pointee) } ?? Stat(CZooKeeper.Stat()))
            case .check: .checked
            }
        }
        reply.succeed(values)
    }
}

func multiCompletion(_ rc: Int32, _ data: UnsafeRawPointer?) {
    let reply = PendingReply<[MultiResult]>.takeContext(data)
    guard let request = reply.attachment as? MultiRequest else { return reply.fail(.unexpectedResponse) }
    request.complete(rc, reply: reply)
}
