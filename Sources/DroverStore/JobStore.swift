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
            return try JobRecord.read(try await readCaughtUp(layout.job(id)).data, job: id)
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

    /// The node's data; when it is missing, read again after a `sync`. A session sees its own
    /// writes, but another process's (the job another command just submitted) may not have reached
    /// the server this session talks to yet: "no job" must not come from a lagging server.
    private func readCaughtUp(_ path: String) async throws -> NodeData {
        do {
            return try await zookeeper.getData(path)
        } catch let error as ZooKeeperError where error.code == .noNode {
            try await zookeeper.sync(path)
            return try await zookeeper.getData(path)
        }
    }

    /// One page of a listing: the records shown, the unusable records met, and where the next
    /// page starts (nil when there is none).
    public struct Page: Sendable {
        public var records: [JobRecord]
        public var unusable: [UnusableRecordError]
        /// Pass as `after` for the next page.
        public var next: String?
        /// Records read to fill the page.
        public var read: Int
    }

    /// The jobs after `after` (an id) in submission order, at most `limit`, optionally only those
    /// in one of `states` or named `name`. Lists the shards (names only), then reads records in
    /// that order until the page is full: a page costs the reads it shows (and, with a filter, the
    /// ones it passes over), not a read of every record.
    /// With `newestFirst`, the order is reversed (and `after` names the last job of the previous page in that order).
    public func page(
        states: Set<JobState>? = nil, name: String? = nil, after: String? = nil, limit: Int, newestFirst: Bool = false
    ) async throws -> Page {
        var names = try await jobIDs(in: states)
        let order: (String, String) -> Bool = { a, b in newestFirst ? Self.submissionOrder(b, a) : Self.submissionOrder(a, b) }
        names.sort(by: order)
        if let after { names = Array(names.drop { !order(after, $0) }) }
        var page = Page(records: [], unusable: [], next: nil, read: 0)
        let includesFailed = states?.contains(.failed) ?? true
        var start = 0
        while start < names.count && page.records.count + page.unusable.count < limit {
            let room = limit - page.records.count - page.unusable.count
            // Read about as many as the page still needs (more when a filter passes some over).
            let window = names[start..<min(start + max(room, states == nil && name == nil ? room : Self.listWindow), names.count)]
            let results = try await withThrowingTaskGroup(of: (Int, Result<JobRecord, UnusableRecordError>?).self) { group in
                for (offset, id) in window.enumerated() {
                    group.addTask { [zookeeper, layout] in
                        do {
                            return (offset, .success(try JobRecord.read(try await zookeeper.getData(layout.job(id)).data, job: id)))
                        } catch let error as ZooKeeperError where error.code == .noNode {
                            return (offset, nil)
                        } catch let error as UnusableRecordError {
                            return (offset, .failure(error))
                        }
                    }
                }
                var results = [Result<JobRecord, UnusableRecordError>?](repeating: nil, count: window.count)
                for try await (offset, result) in group { results[offset] = result }
                return results
            }
            page.read += window.count
            for (offset, result) in results.enumerated() {
                guard page.records.count + page.unusable.count < limit else { break }
                start = window.startIndex + offset + 1
                switch result {
                case .success(let record)?:
                    if states?.contains(record.state) ?? true, name == nil || record.spec.name == name { page.records.append(record) }
                case .failure(let error)?:
                    if includesFailed && name == nil { page.unusable.append(error) }
                case nil:
                    break
                }
            }
        }
        if start < names.count, let last = names[..<start].last { page.next = last }
        return page
    }

    /// Submission order of job ids: by the time an id from ``Layout/newJobID()`` carries, then by id.
    static func submissionOrder(_ a: String, _ b: String) -> Bool {
        (Layout.submissionTime(ofJobID: a) ?? 0, a) < (Layout.submissionTime(ofJobID: b) ?? 0, b)
    }

    /// Every job id (the shards' children; names only).
    func allJobIDs() async throws -> [String] {
        try await children { [layout] in layout.jobShard($0) }
    }

    /// The children of every shard directory (`shard(0)` … `shard(255)`), listed at once.
    private func children(_ shard: @escaping @Sendable (Int) -> String) async throws -> [String] {
        try await withThrowingTaskGroup(of: [String].self) { [zookeeper] group in
            for index in 0..<Layout.jobShards {
                group.addTask {
                    do {
                        return try await zookeeper.children(shard(index)).names
                    } catch let error as ZooKeeperError where error.code == .noNode {
                        return []
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
    }

    /// Every job, optionally only those in one of `states`, oldest first; and the jobs whose
    /// records cannot be used, with why (they count as `failed`). Waiting and running jobs are
    /// found through the active-job index when it is complete: a read per job shown (unless
    /// `throughIndex` is false: the leader building the index reads every record).
    public func listing(states: Set<JobState>? = nil, throughIndex: Bool = true) async throws -> (records: [JobRecord], unusable: [UnusableRecordError]) {
        let names = throughIndex ? try await jobIDs(in: states) : try await allJobIDs()
        var records: [JobRecord] = []
        var unusable: [UnusableRecordError] = []
        let includesFailed = states?.contains(.failed) ?? true
        for (_, result) in try await readRecords(names) {
            switch result {
            case .success(let record)?: if states?.contains(record.state) ?? true { records.append(record) }
            case .failure(let error)?: if includesFailed { unusable.append(error) }
            case nil: break
            }
        }
        return (Self.inSubmissionOrder(records), unusable.sorted { $0.job < $1.job })
    }

    /// The ids a listing of `states` must read: the active-job index's entries when only waiting
    /// or running jobs are asked for and the index is complete, else every job's.
    func jobIDs(in states: Set<JobState>?) async throws -> [String] {
        if let states, !states.isEmpty, states.allSatisfy(\.isActive), try await activeIndexIsComplete() {
            return try await activeEntryIDs()
        }
        return try await allJobIDs()
    }

    static func inSubmissionOrder(_ records: [JobRecord]) -> [JobRecord] {
        records.sorted { ($0.submittedAt, $0.id) < ($1.submittedAt, $1.id) }
    }

    /// Whether the active-job index says its entries are complete (``ActiveIndex``).
    public func activeIndexIsComplete() async throws -> Bool { try await activeIndex() != nil }

    /// The active-job index's document, or nil when the index is not complete.
    public func activeIndex() async throws -> ActiveIndex? {
        do {
            return ActiveIndex.read(try await zookeeper.getData(layout.active).data)
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil
        }
    }

    /// Every entry of the active-job index (names only).
    public func activeEntryIDs() async throws -> [String] {
        try await children { [layout] in layout.activeShard($0) }
    }

    /// What the active-job index's entries lead to, read through the index (``activeListing()``).
    public struct ActiveListing: Sendable {
        /// The records of the jobs that wait or run, in submission order.
        public var records: [JobRecord]
        /// Entries whose jobs no longer wait or run: the record is in another state or cannot be
        /// used.
        public var ended: [String]
        /// Entries whose records the ZooKeeper server read from does not have. A record and its
        /// entry are written in one transaction, so with a complete index this means the servers
        /// disagree (or the record was removed by hand).
        public var missing: [String]
    }

    /// The records of the jobs the active-job index lists, its entries whose jobs no longer wait or
    /// run, and its entries whose records this server does not have.
    public func activeListing() async throws -> ActiveListing {
        var listing = ActiveListing(records: [], ended: [], missing: [])
        for (id, result) in try await readRecords(try await activeEntryIDs()) {
            switch result {
            case .success(let record)? where record.state.isActive: listing.records.append(record)
            case .success?, .failure?: listing.ended.append(id)
            case nil: listing.missing.append(id)
            }
        }
        listing.records = Self.inSubmissionOrder(listing.records)
        listing.ended.sort()
        listing.missing.sort()
        return listing
    }

    /// The records of `names`, read up to ``listWindow`` at a time (ZooKeeper answers pipelined
    /// reads far faster than one round trip each): nil for a record deleted since it was listed.
    /// Anything else is reported — the leader builds its view from this: a record silently left
    /// out would never run.
    private func readRecords(_ names: [String]) async throws -> [(String, Result<JobRecord, UnusableRecordError>?)] {
        try await withThrowingTaskGroup(of: (String, Result<JobRecord, UnusableRecordError>?).self) { [zookeeper, layout] group in
            var results: [(String, Result<JobRecord, UnusableRecordError>?)] = []
            results.reserveCapacity(names.count)
            var inFlight = 0
            for name in names {
                if inFlight >= Self.listWindow, let result = try await group.next() {
                    inFlight -= 1
                    results.append(result)
                }
                group.addTask {
                    do {
                        return (name, .success(try JobRecord.read(try await zookeeper.getData(layout.job(name)).data, job: name)))
                    } catch let error as ZooKeeperError where error.code == .noNode {
                        return (name, nil)
                    } catch let error as UnusableRecordError {
                        return (name, .failure(error))
                    }
                }
                inFlight += 1
            }
            for try await result in group { results.append(result) }
            return results
        }
    }

    /// The leader's retention rule, nil when finished jobs are kept for ever (or no leader said).
    public func retentionRule() async throws -> RetentionRule? {
        do {
            let data = try await zookeeper.getData(layout.retention).data
            // Empty: retention is off (a secured deployment keeps the node; only the admin may delete it).
            return data.isEmpty ? nil : try Codec.decode(RetentionRule.self, data)
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
