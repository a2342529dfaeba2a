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

    /// Reads every executor's state again, all at once (one round trip, not one per executor).
    func refreshExecutorStates() async throws {
        let states = try await withThrowingTaskGroup(of: (String, Versioned<ExecutorState>?, Int).self) { group in
            for id in state.executors.keys {
                group.addTask { [client, layout, logger] in
                    let (executorState, bytes) = try await Self.readExecutorState(id, client: client, layout: layout, logger: logger)
                    return (id, executorState, bytes)
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = ($1.1, $1.2) }
        }
        for (id, (executorState, bytes)) in states { state.executorStateRead(id, executorState, bytes: bytes) }
    }

    /// The executor's state and its encoded size; nil (and 0) when missing or not a valid document
    /// (logged). A failed read is an error, never "missing".
    static func readExecutorState(
        _ id: String, client: ZooKeeperClient, layout: Layout, logger: Logger
    ) async throws -> (Versioned<ExecutorState>?, Int) {
        let node: NodeData
        do {
            node = try await client.getData(layout.executorState(id))
        } catch let error as ZooKeeperError where error.code == .noNode {
            return (nil, 0)
        }
        return executorState(of: id, from: node, logger: logger)
    }

    /// An executor state znode's document, at its version, and its encoded size; nil (and 0),
    /// logged with the version, when it is not a valid document — the executor is left out of
    /// placement until its state reads again.
    static func executorState(of id: String, from node: NodeData, logger: Logger) -> (Versioned<ExecutorState>?, Int) {
        do {
            return (Versioned(document: try Codec.decode(ExecutorState.self, node.data), version: node.stat.version), node.data.count)
        } catch {
            logger.warning(
                "executor state is not a valid document: leaving the executor out",
                metadata: ["executor": "\(id)", "version": "\(node.stat.version)", "error": "\(error)"])
            return (nil, 0)
        }
    }
}
