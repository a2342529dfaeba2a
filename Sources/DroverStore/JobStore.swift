import DroverProtocol
import ZooKeeper

/// Job records in ZooKeeper, read the one way every reader reads them — the client, the CLI and
/// a leader that starts — so they agree on what a record says and on which cannot be used.
public struct JobStore: Sendable {
    public let zookeeper: ZooKeeperClient
    public let layout: Layout

    public init(zookeeper: ZooKeeperClient, layout: Layout = Layout()) {
        self.zookeeper = zookeeper
        self.layout = layout
    }

    /// The job's record, read as every reader reads it (``JobRecord/read(_:job:)``).
    /// - Throws: ``DroverError`` `.unknownJob`, or `.unusableRecord` saying what is wrong with it.
    public func record(_ id: String) async throws -> JobRecord {
        guard Layout.isValidID(id) else { throw DroverError(.unknownJob, "\"\(id)\" is not a job id") }
        do {
            return try JobRecord.read(try await zookeeper.getData(layout.job(id)).data, job: id)
        } catch let error as ZooKeeperError where error.code == .noNode {
            if let rule = try? await retentionRule(), rule.mayBeDue(id: id, now: .now()), let submitted = Layout.submissionTime(ofJobID: id) {
                throw DroverError(
                    .unknownJob,
                    "no job \(id): it was submitted \(Self.describe(milliseconds: .now() - submitted)) ago, and the manager removes jobs "
                        + "\(Self.describe(milliseconds: rule.periodMilliseconds)) after they finish (drover manager --retention)")
            }
            throw DroverError(.unknownJob, "no job \(id) — check the id (drover jobs lists them)")
        } catch let error as UnusableRecordError {
            throw DroverError(.unusableRecord, "\(error) — the job has failed (or fails once a manager reads it)", cause: error)
        }
    }

    /// Every job, optionally only those in one of `states`, oldest first; and the jobs whose
    /// records cannot be used, with why (they count as `failed`).
    public func listing(states: Set<JobState>? = nil) async throws -> (records: [JobRecord], unusable: [UnusableRecordError]) {
        // Every read is issued at once (the shards), then up to `listWindow` at a time (the
        // records): ZooKeeper answers pipelined reads far faster than one round trip each.
        let names: [String] = try await withThrowingTaskGroup(of: [String].self) { group in
            for shard in 0..<Layout.jobShards {
                group.addTask {
                    do {
                        return try await zookeeper.children(layout.jobShard(shard)).names
                    } catch let error as ZooKeeperError where error.code == .noNode {
                        return []
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        var records: [JobRecord] = []
        var unusable: [UnusableRecordError] = []
        let includesFailed = states?.contains(.failed) ?? true
        func add(_ result: Result<JobRecord, UnusableRecordError>?) {
            switch result {
            case .success(let record)?: if states?.contains(record.state) ?? true { records.append(record) }
            case .failure(let error)?: if includesFailed { unusable.append(error) }
            case nil: break
            }
        }
        try await withThrowingTaskGroup(of: Result<JobRecord, UnusableRecordError>?.self) { group in
            var inFlight = 0
            for name in names {
                if inFlight >= Self.listWindow, let result = try await group.next() {
                    inFlight -= 1
                    add(result)
                }
                group.addTask {
                    // Deleted since it was listed: not an error. Anything else is reported (the
                    // leader builds its view from this list: a record silently left out would never run).
                    do {
                        return .success(try JobRecord.read(try await zookeeper.getData(layout.job(name)).data, job: name))
                    } catch let error as ZooKeeperError where error.code == .noNode {
                        return nil
                    } catch let error as UnusableRecordError {
                        return .failure(error)
                    }
                }
                inFlight += 1
            }
            for try await result in group { add(result) }
        }
        return (records.sorted { ($0.submittedAt, $0.id) < ($1.submittedAt, $1.id) }, unusable.sorted { $0.job < $1.job })
    }

    /// The leader's retention rule, nil when finished jobs are kept for ever (or no leader said).
    public func retentionRule() async throws -> RetentionRule? {
        do {
            return try Codec.decode(RetentionRule.self, try await zookeeper.getData(layout.retention).data)
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil
        }
    }

    /// "7d", "3h", "20m", "45s".
    static func describe(milliseconds: Int64) -> String {
        let seconds = milliseconds / 1000
        if seconds >= 86_400 && seconds % 86_400 == 0 || seconds >= 10 * 86_400 { return "\(seconds / 86_400)d" }
        if seconds >= 3_600 { return "\(seconds / 3_600)h" }
        if seconds >= 60 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }

    /// Record reads ``listing(states:)`` keeps in flight.
    public static let listWindow = 256
}
