import DroverProtocol
import Logging
import ZooKeeper

/// Removes the records of jobs finished longer ago than the retention period, while this manager
/// leads: one job shard at a time, round and round, each removal fenced by the election node and
/// by the version the record was read at (a record that changed since is left for the next pass).
///
/// It reads only records whose ids say they may be due (submitted before the period began), and
/// paces itself — a pass over every shard takes ``passDuration`` at least, and removals are held
/// to ``removalsPerSecond`` — so the leader's placement never waits on it. It touches nothing of
/// the leader's view: final jobs are not in it.
struct RetentionSweep {
    let client: ZooKeeperClient
    let layout: Layout
    let rule: RetentionRule
    let fence: MultiOperation
    /// The retention document's ACL.
    let acl: [ACL]
    let logger: Logger
    let clock = ContinuousClock()

    /// Records removed per `multi`.
    static let batch = 100
    /// Record reads in flight at once.
    static let readWindow = 64
    /// At most this many removals a second, whatever the backlog (a first pass over a cluster
    /// that kept everything for months must not crowd out placement). Above the rate jobs finish
    /// at, or records pile up: at 1,000/s, 1,100 jobs/s finishing grew the znodes 1.42× in 3
    /// minutes; at 4,000/s they stayed within 1.18× and placement kept its rate (PERFORMANCE.md).
    static let removalsPerSecond = 4_000

    /// The shortest time a pass over all shards takes: a tenth of the period, from 2 seconds to 10 minutes.
    var passDuration: Duration {
        .milliseconds(min(max(rule.periodMilliseconds / 10, 2_000), 600_000))
    }

    func run() async throws {
        try await publish()
        var removedInPass = 0
        while true {
            for shard in 0..<Layout.jobShards {
                let started = clock.now
                let removed: Int
                do {
                    removed = try await sweep(shard: shard)
                } catch let error as ZooKeeperError where !(error.code == .noNode && error.failedOperationIndex == 0) && error.code != .sessionExpired {
                    // A hiccup of the connection: the leader goes on placing; this shard is tried
                    // again on the next pass. (A failed fence — no longer the leader — ends the term.)
                    logger.warning("retention sweep: a shard was left for the next pass", metadata: ["shard": "\(shard)", "error": "\(error)"])
                    try await Task.sleep(for: passDuration / Layout.jobShards)
                    continue
                }
                removedInPass += removed
                let pause = max(passDuration / Layout.jobShards, .milliseconds(removed * 1_000 / Self.removalsPerSecond))
                try await Task.sleep(until: started + pause)
            }
            if removedInPass > 0 {
                logger.info("removed finished jobs past the retention period", metadata: ["jobs": "\(removedInPass)"])
            }
            removedInPass = 0
        }
    }

    /// Writes the rule where clients read it.
    func publish() async throws {
        let data = try Codec.encode(rule)
        do {
            try await client.multi([fence, .setData(path: layout.retention, data: data)])
        } catch let error as ZooKeeperError where error.code == .noNode && error.failedOperationIndex == 1 {
            try await client.multi([fence, .create(path: layout.retention, data: data, acl: acl)])
        }
    }

    /// Removes the due records of one shard; returns how many.
    func sweep(shard: Int) async throws -> Int {
        let names: [String]
        do {
            names = try await client.children(layout.jobShard(shard)).names
        } catch let error as ZooKeeperError where error.code == .noNode {
            return 0
        }
        let now = Timestamp.now()
        let candidates = names.filter { Layout.isValidID($0) && rule.mayBeDue(id: $0, now: now) }
        var due: [(path: String, version: Int32)] = []
        // Workflows among them: their shared data goes with their records.
        var workflows: Set<String> = []
        var start = 0
        while start < candidates.count {
            let window = candidates[start..<min(start + Self.readWindow, candidates.count)]
            start += window.count
            let found = try await withThrowingTaskGroup(of: (String, Int32, String?)?.self) { group in
                for id in window {
                    group.addTask { [client, layout, rule] in
                        let path = layout.job(id)
                        guard let node = try? await client.getData(path) else { return nil }  // gone meanwhile
                        guard Self.isDue(node.data, id: id, rule: rule, now: now) else { return nil }
                        let isWorkflow = (try? JobRecord.read(node.data, job: id))?.spec.isWorkflow == true
                        return (path, node.stat.version, isWorkflow ? id : nil)
                    }
                }
                var found: [(String, Int32, String?)] = []
                for try await case let entry? in group { found.append(entry) }
                return found
            }
            due += found.map { ($0.0, $0.1) }
            workflows.formUnion(found.compactMap(\.2))
        }
        var removed = 0
        for batchStart in stride(from: 0, to: due.count, by: Self.batch) {
            let batch = due[batchStart..<min(batchStart + Self.batch, due.count)]
            // Paced within a shard too: a first pass over months of jobs must not come as a burst.
            if batchStart > 0 { try await Task.sleep(for: .milliseconds(Self.batch * 1_000 / Self.removalsPerSecond)) }
            do {
                try await client.multi([fence] + batch.map { .delete(path: $0.path, version: $0.version) })
                removed += batch.count
            } catch let error as ZooKeeperError where (error.code == .badVersion || error.code == .noNode) && error.failedOperationIndex != 0 {
                // One changed or went since it was read: the others one by one.
                for entry in batch {
                    do {
                        try await client.multi([fence, .delete(path: entry.path, version: entry.version)])
                        removed += 1
                    } catch let error as ZooKeeperError where (error.code == .badVersion || error.code == .noNode) && error.failedOperationIndex == 1 {
                        continue
                    }
                }
            }
        }
        // Shared data whose record is gone: of the workflows removed now, and any left behind (a
        // leader stopped between the two deletions, another program's node).
        let listed = Set(names)
        var shared: [String] = []
        do {
            shared = try await client.children(layout.sharedShard(shard)).names.filter { Layout.isValidID($0) && !listed.contains($0) }
        } catch let error as ZooKeeperError where error.code == .noNode {}
        for id in Set(shared).union(workflows).sorted() {
            guard try await client.exists(layout.job(id)) == nil else { continue }  // made since the listing
            do {
                try await client.multi([fence, .delete(path: layout.sharedDocument(id), version: -1)])
            } catch let error as ZooKeeperError where error.code == .noNode && error.failedOperationIndex == 1 {}
        }
        // A direct job's claims directory whose record is gone (the leader that saw it end, and
        // would have cleared it, was replaced first).
        var claims: [String] = []
        do {
            claims = try await client.children(layout.claimsShard(shard)).names.filter { Layout.isValidID($0) && !listed.contains($0) }
        } catch let error as ZooKeeperError where error.code == .noNode {}
        for id in claims.sorted() {
            guard try await client.exists(layout.job(id)) == nil else { continue }  // made since the listing
            try? await client.deleteRecursively(layout.jobClaims(id))
        }
        return removed
    }

    /// Whether a record's data (a job record, or the leader's note over one it could not use) is
    /// due for removal. Anything else — a record that cannot be used and has no note yet — stays:
    /// the leader fails its job first, saying why.
    static func isDue(_ data: [UInt8], id: String, rule: RetentionRule, now: Timestamp) -> Bool {
        do {
            return rule.isDue(try JobRecord.read(data, job: id), now: now)
        } catch {
            guard error.isLeadersNote, let note = try? Codec.decode(UnusableJobRecord.self, data) else { return false }
            return rule.isDue(note, now: now)
        }
    }
}
