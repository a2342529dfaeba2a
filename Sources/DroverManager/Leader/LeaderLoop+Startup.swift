import DroverProtocol
import DroverStore
import ZKRecipes
import ZooKeeper

/// What a leader does before it handles events: the tree it needs, batches older leaders set
/// aside, and the jobs that wait.
extension LeaderLoop {

    /// Creates the job and claims shard directories that are missing, a few transactions for each. A
    /// submit into a missing shard costs the client two more writes (a failed `multi`, the
    /// directory, then the `multi` again), which would fall on the first submits of every new
    /// deployment — on the direct path, on about the first 256 jobs (a millisecond or more each).
    func createShardDirectories() async throws {
        try await createShards(under: layout.jobs, path: layout.jobShard, acl: access.acl(for: .jobShard))
        try await createShards(under: layout.claims, path: layout.claimsShard, acl: access.acl(for: .claimsShard))
    }

    /// Creates the shard directories missing under `directory`; returns whether it made any.
    @discardableResult
    private func createShards(under directory: String, path: (Int) -> String, acl: [ACL]) async throws -> Bool {
        var made = false
        while true {
            let existing = Set(try await client.children(directory).names)
            let missing = (0..<Layout.jobShards).filter { !existing.contains(Layout.jobShardName($0)) }
            guard !missing.isEmpty else { return made }
            do {
                // In transactions of 32: a secured deployment's ACL names every executor that may
                // read the directory, and 256 of them in one request could pass ZooKeeper's limit.
                for start in stride(from: 0, to: missing.count, by: 32) {
                    try await client.multi(missing[start..<min(start + 32, missing.count)].map { .create(path: path($0), acl: acl) })
                    made = true
                }
                return true
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

    /// Finds the jobs that wait for a placement or a scheduled time: from the active-job index
    /// when it is complete (a read per waiting or running job, however many finished ones are
    /// kept), else from every record — building the index on the way when this leader may.
    func loadJobs() async throws {
        let store = JobStore(zookeeper: client, layout: layout)
        let records: [JobRecord]
        let started = clock.now
        if let index = try await prepareActiveIndex() {
            activeIndex = index
            state.maintainsActiveIndex = true
            let found = try await store.activeListing()
            try await removeActiveEntries(found.ended, why: "its job no longer waits or runs")
            reportMissingRecords(found.missing)
            records = found.records
            logger.info(
                "read the waiting and running jobs from the active-job index",
                metadata: [
                    "jobs": "\(records.count)", "staleEntries": "\(found.ended.count)", "missingRecords": "\(found.missing.count)",
                    "took": "\(started.duration(to: clock.now))",
                ])
        } else {
            records = try await store.listing(states: [.waiting, .running]).records
        }
        // A running workflow may have steps waiting for room or a retry's time beside those that run.
        state.loaded(waitingJobs: records.filter { $0.state == .waiting || $0.nextRunAt != nil || $0.spec.isWorkflow || $0.concurrentRuns != nil })
        // Running jobs: their runs are checked against the executors' states once those are read.
        state.adoptRunning(records.filter { $0.state == .running || $0.spec.isWorkflow })
        logger.info("leader ready", metadata: ["waiting": "\(state.waitingCount)", "scheduled": "\(state.scheduledCount)"])
    }

    /// Entries of a complete index whose records the server this leader reads from does not have
    /// are kept, not removed as stale: a record and its entry are written in one transaction, so
    /// the record exists on the servers that applied it. Removing the entry would leave the job
    /// waiting for good, unseen by every later leader (a chaos run with ZooKeeper 3.8.0 lost 200 jobs
    /// so: one server of three had lost their records, and "digest mismatch" was in its log). This
    /// leader cannot run them; one that reads from another server will.
    private func reportMissingRecords(_ ids: [String]) {
        guard let first = ids.first else { return }
        logger.error(
            "the active-job index names jobs whose records the ZooKeeper server this manager reads from does not have: their entries are kept and this leader does not run them. A record and its entry are written together, so ZooKeeper's servers disagree: look for \"digest mismatch\" in their logs. A leader reading from another server runs them; if the records were removed by hand, `drover manager --rebuild-index` once removes the entries",
            metadata: ["jobs": "\(ids.count)", "first": "\(first)"])
    }

    /// Makes the active-job index usable: its directory and shards, and its entries built from
    /// every record when the index does not say it is complete (a deployment older than it), when a
    /// shard directory had to be made again (entries were lost with it), or with `--rebuild-index`.
    /// Nil when this leader may not create it (a deployment secured before the index existed): it
    /// then reads every record and keeps no index, and says what to run.
    private func prepareActiveIndex() async throws -> ActiveIndex? {
        let marker: [UInt8]
        do {
            marker = try await client.getData(layout.active).data
        } catch let error as ZooKeeperError where error.code == .noNode {
            do {
                try await client.multi([leadership.fence, .create(path: layout.active, acl: access.acl(for: .active))])
            } catch let error as ZooKeeperError where error.code == .noAuth {
                logger.error(
                    "the active-job index is missing and this manager may not create \(layout.active): a new leader reads every job's record until `drover init --credentials <admin file>` runs once to add it")
                return nil
            } catch let error as ZooKeeperError where error.code == .nodeExists && error.failedOperationIndex == 1 {}
            marker = []
        }
        let recreated = try await createShards(under: layout.active, path: layout.activeShard, acl: access.acl(for: .activeShard))
        guard let index = ActiveIndex.read(marker) else { return try await buildActiveIndex() }
        if recreated {
            logger.error("a directory of the active-job index was missing: building the index again from every record")
        } else if !rebuildActiveIndex {
            return index
        }
        return try await buildActiveIndex()
    }

    /// Makes the index's entries match the records (every record is read once, not through the
    /// index), then marks the index complete. The mark is cleared first, so a leader that stops
    /// half-way leaves the index marked incomplete. The leader is the only writer of waiting and
    /// running records, so nothing moves under it meanwhile.
    private func buildActiveIndex() async throws -> ActiveIndex {
        let started = clock.now
        logger.notice("building the active-job index from every job's record (once per deployment, or asked by --rebuild-index)")
        try await client.multi([leadership.fence, .setData(path: layout.active, data: [])])
        let store = JobStore(zookeeper: client, layout: layout)
        let active = Set(try await store.listing(states: [.waiting, .running], throughIndex: false).records.map(\.id))
        let entries = Set(try await store.activeEntryIDs())
        let missing = active.subtracting(entries).sorted()
        try await removeActiveEntries(entries.subtracting(active).sorted(), why: "its job does not wait or run")
        let acl = access.acl(for: .activeEntry)
        try await applyInBatches(missing.map { .create(path: layout.activeEntry($0), acl: acl) }, tolerating: .nodeExists)
        let index = ActiveIndex(builtAt: .now())
        try await client.multi([leadership.fence, .setData(path: layout.active, data: try Codec.encode(index))])
        logger.notice(
            "built the active-job index",
            metadata: ["jobs": "\(active.count)", "created": "\(missing.count)", "took": "\(started.duration(to: clock.now))"])
        return index
    }

    /// Removes index entries whose jobs no longer wait or run (left by a leader that could not
    /// keep the index, or by a record another program overwrote).
    private func removeActiveEntries(_ ids: [String], why: String) async throws {
        guard !ids.isEmpty else { return }
        try await applyInBatches(ids.map { .delete(path: layout.activeEntry($0)) }, tolerating: .noNode)
        logger.notice("removed stale entries of the active-job index", metadata: ["entries": "\(ids.count)", "why": "\(why)"])
    }

    /// Index entries per transaction at most when the index is built or cleaned.
    static let indexBatch = 1_000

    /// Sends `operations` fenced, in transactions of at most ``indexBatch`` operations and half the
    /// leader's byte budget (each create carries its ACL). A transaction that fails on one
    /// operation with `tolerated` (an entry made or removed meanwhile) is sent again one operation
    /// at a time, that code ignored.
    private func applyInBatches(_ operations: [MultiOperation], tolerating tolerated: ZooKeeperError.Code) async throws {
        var batch: [MultiOperation] = []
        var bytes = 0
        func send() async throws {
            defer { (batch, bytes) = ([], 0) }
            guard !batch.isEmpty else { return }
            do {
                try await client.multi([leadership.fence] + batch)
            } catch let error as ZooKeeperError where error.code == tolerated && (error.failedOperationIndex ?? 0) > 0 {
                for operation in batch {
                    do {
                        try await client.multi([leadership.fence, operation])
                    } catch let error as ZooKeeperError where error.code == tolerated && error.failedOperationIndex == 1 {}
                }
            }
        }
        for operation in operations {
            if batch.count >= Self.indexBatch || bytes + operation.encodedSize > Transaction.byteBudget / 2 { try await send() }
            batch.append(operation)
            bytes += operation.encodedSize
        }
        try await send()
    }
}
