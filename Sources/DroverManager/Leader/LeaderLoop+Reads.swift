import DroverProtocol
import Logging
import ZKRecipes
import ZooKeeper

/// The leader's reads: job records and executor states, each round of them at once.
extension LeaderLoop {

    /// Job records, all at once (ZooKeeper answers pipelined reads far faster than reads in
    /// series), decoded in the reading tasks (that spreads the JSON work over the cores).
    func readRecords(_ ids: Set<String>) async throws -> [String: LoadedRecord] {
        try await withThrowingTaskGroup(of: (String, LoadedRecord).self) { [client, layout] group in
            for id in ids {
                group.addTask {
                    do {
                        return (id, LoadedRecord(id: id, node: try await client.getData(layout.job(id))))
                    } catch let error as ZooKeeperError where error.code == .noNode {
                        return (id, .absent)
                    }
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
    }

    /// Reads every executor's assignments and progress again, all at once (one round trip, not
    /// one per executor).
    func refreshExecutorStates() async throws {
        let read = try await withThrowingTaskGroup(of: (String, ExecutorDocuments).self) { group in
            for id in state.executors.keys {
                group.addTask { [client, layout, logger] in
                    (id, try await Self.readExecutorDocuments(id, client: client, layout: layout, logger: logger))
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        for (id, documents) in read { apply(documents, of: id) }
    }

    /// An executor's two documents as read, and their encoded sizes.
    struct ExecutorDocuments: Sendable {
        var assignments: Versioned<ExecutorState>?
        var assignmentsBytes: Int
        var progress: Versioned<ExecutorProgress>?
        var progressBytes: Int
        var progressUnreadable: Bool
    }

    /// Takes what a read after a conflict found as it is (not as a watch's news, which may be older).
    func apply(_ documents: ExecutorDocuments, of id: String) {
        state.progressRead(id, documents.progress, bytes: documents.progressBytes, unreadable: documents.progressUnreadable)
        state.assignmentsRead(id, documents.assignments, bytes: documents.assignmentsBytes)
    }

    /// The executor's assignments and progress, read at once. A failed read is an error, never
    /// "missing".
    static func readExecutorDocuments(_ id: String, client: ZooKeeperClient, layout: Layout, logger: Logger) async throws -> ExecutorDocuments {
        async let assignments = read(ExecutorState.self, at: layout.executorAssignments(id), of: id, client: client, logger: logger)
        async let progress = read(ExecutorProgress.self, at: layout.executorProgress(id), of: id, client: client, logger: logger)
        let (a, p) = try await (assignments, progress)
        return ExecutorDocuments(
            assignments: a.document, assignmentsBytes: a.bytes, progress: p.document, progressBytes: p.bytes, progressUnreadable: p.unreadable)
    }

    /// A document of an executor's as read: the document (nil when missing or unreadable), its
    /// encoded size, and whether it is there but cannot be read.
    struct DocumentRead<Document: Sendable>: Sendable {
        var document: Versioned<Document>?
        var bytes = 0
        var unreadable = false
        static var missing: Self { Self(document: nil) }
    }

    private static func read<Document: Decodable & Sendable>(
        _ type: Document.Type, at path: String, of id: String, client: ZooKeeperClient, logger: Logger
    ) async throws -> DocumentRead<Document> {
        do {
            return decode(type, from: try await client.getData(path), of: id, logger: logger)
        } catch let error as ZooKeeperError where error.code == .noNode {
            return .missing
        } catch let error as ZooKeeperError where error.code == .noAuth {
            return unreadable(path, of: id, error, logger: logger)
        }
    }

    /// A document the leader may not read: an executor made its own with an ACL that keeps the
    /// manager out. Logged; the executor's tasks stay where they are until an operator repairs it.
    static func unreadable<Document>(_ path: String, of id: String, _ error: ZooKeeperError, logger: Logger) -> DocumentRead<Document> {
        logger.error(
            "the manager may not read an executor's document (its ACL was changed): nothing is taken back from that executor until an admin repairs it — `drover init --credentials admin.json` sets every ACL again",
            metadata: ["executor": "\(id)", "path": "\(path)", "error": "\(error)"])
        return DocumentRead(document: nil, unreadable: true)
    }

    /// A document of an executor's (assignments or progress) at its version, and its encoded size;
    /// unreadable, logged with the path and version, when it is not a valid document — unreadable
    /// assignments leave the executor out of placement, unreadable progress shows its tasks as
    /// placed and takes none back.
    static func decode<Document: Decodable & Sendable>(_ type: Document.Type, from node: NodeData, of id: String, logger: Logger) -> DocumentRead<Document> {
        do {
            return DocumentRead(document: Versioned(document: try Codec.decode(type, node.data), version: node.stat.version), bytes: node.data.count)
        } catch {
            logger.warning(
                "an executor's document is not valid: left out until it reads again",
                metadata: ["executor": "\(id)", "document": "\(type)", "version": "\(node.stat.version)", "error": "\(error)"])
            return DocumentRead(document: nil, bytes: node.data.count, unreadable: true)
        }
    }
}
