import DroverProtocol
import DroverStore
import ZKRecipes
import ZooKeeper

/// What a leader does before it handles events: the tree it needs, batches older leaders set
/// aside, and the jobs that wait.
extension LeaderLoop {

    /// Creates the job shard directories that are missing, in one transaction. A submit into a
    /// missing shard costs the client two more writes (a failed `multi`, the directory, then the
    /// `multi` again), which would fall on the first submits of every new deployment.
    func createJobShards() async throws {
        while true {
            let existing = Set(try await client.children(layout.jobs).names)
            let missing = (0..<Layout.jobShards).filter { !existing.contains(Layout.jobShardName($0)) }
            guard !missing.isEmpty else { return }
            do {
                try await client.multi(missing.map { .create(path: layout.jobShard($0), acl: access.acl(for: .jobShard)) })
                return
            } catch let error as ZooKeeperError where error.code == .nodeExists {
                continue  // a client made one meanwhile: list again
            }
        }
    }

    /// The reason a leader older than queue format 2 gave when it set an item aside.
    static let olderLeadersReason = "not a Drover queue operation (format 1)"

    /// Puts back on the queue the bulk submits (format-2 items) that a leader older than this one
    /// set aside because it could not read them — their jobs would otherwise stay `queued` for
    /// good. Each goes back at the tail, in one transaction with the removal of its set-aside node.
    func requeueBatchesSetAsideByOlderLeaders() async throws {
        let names = try await client.children(layout.setAside).names
        guard !names.isEmpty else { return }
        let batches = try await withThrowingTaskGroup(of: (String, [UInt8])?.self) { [client, layout] group in
            for name in names {
                group.addTask {
                    let path = layout.setAsideItem(name)
                    guard let node = try? await client.getData(path),
                        let item = try? Codec.decode(SetAsideItem.self, node.data), item.reason == Self.olderLeadersReason,
                        case .batch? = try? Codec.decode(QueueItemContent.self, Array(item.data.utf8))
                    else { return nil }
                    return (path, Array(item.data.utf8))
                }
            }
            var found: [(String, [UInt8])] = []
            for try await case let batch? in group { found.append(batch) }
            return found.sorted { $0.0 < $1.0 }
        }
        for (path, data) in batches {
            do {
                try await queue.put([data], alongWith: [leadership.fence, .delete(path: path)])
                logger.notice("queued again a bulk submit an older leader had set aside", metadata: ["node": "\(path)"])
            } catch let error as ZooKeeperError where error.code == .noNode && error.failedOperationIndex == 1 {
                continue  // gone meanwhile (an operator removed it)
            }
        }
    }

    /// Finds the jobs that wait for a placement or a scheduled time.
    func loadJobs() async throws {
        let records = try await JobStore(zookeeper: client, layout: layout).listing(states: [.waiting, .running]).records
        state.loaded(waitingJobs: records.filter { $0.state == .waiting || $0.nextRunAt != nil })
        logger.info("leader ready", metadata: ["waiting": "\(state.waitingCount)", "scheduled": "\(state.scheduledCount)"])
    }
}
