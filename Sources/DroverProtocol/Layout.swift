/// Where everything lives in ZooKeeper, relative to the deployment's root (docs/PROTOCOL.md).
public struct Layout: Sendable, Hashable {
    /// The root of this Drover deployment, e.g. `/drover`.
    public let root: String
    /// Job records are spread over this many shard directories, so none grows too large.
    public static let jobShards = 256

    public init(root: String = "/drover") {
        self.root = root.hasSuffix("/") && root != "/" ? String(root.dropLast()) : root
    }

    private var prefix: String { root == "/" ? "" : root }

    public var queue: String { prefix + "/queue" }
    public var election: String { prefix + "/election" }
    public var executors: String { prefix + "/executors" }
    public var jobs: String { prefix + "/jobs" }
    public var setAside: String { prefix + "/setaside" }
    /// The deployment's access policy (digest ids by role), when `drover init` secured it.
    public var access: String { prefix + "/access" }
    /// The leader's ``RetentionRule``, for clients.
    public var retention: String { prefix + "/retention" }
    /// Every work spec's unit counts as the leader last summed them (``SpecCounts``): one read.
    public var unitCounts: String { prefix + "/unit-counts" }
    /// The leader's admission rule (``Admission``): whether clients may submit now.
    public var admission: String { prefix + "/admission" }

    /// The active-job index (``ActiveIndex``): a node per job that waits or runs, so a new leader
    /// and a listing of those states read them, not every record ever kept.
    public var active: String { prefix + "/active" }

    /// Workflows' shared data: one document per job, `shared/<shard>/<job>`, written by the steps'
    /// handlers with compare-and-set (``SharedDocument``).
    public var shared: String { prefix + "/shared" }
    public func sharedShard(_ shard: Int) -> String { shared + "/" + Self.jobShardName(shard) }
    public func sharedDocument(_ id: String) -> String { sharedShard(Self.shard(of: id)) + "/" + id }
    public func activeShard(_ shard: Int) -> String { active + "/" + Self.jobShardName(shard) }
    /// The job's entry in the active-job index, in the same shard as its record.
    public func activeEntry(_ id: String) -> String { activeShard(Self.shard(of: id)) + "/" + id }

    /// The job whose active-index entry is at `path`, or nil when `path` is not such an entry.
    public func jobID(ofActiveEntryAt path: String) -> String? {
        guard path.hasPrefix(active + "/"), let id = path.split(separator: "/").last.map(String.init), Self.isValidID(id),
            activeEntry(id) == path
        else { return nil }
        return id
    }

    public func executor(_ id: String) -> String { executors + "/" + id }
    public func executorAlive(_ id: String) -> String { executor(id) + "/alive" }
    /// The leader's assignments to executors: `assignments/<id>`, one document each, which only
    /// the leader writes (outside the executor's directory, so an executor cannot replace it).
    public var assignments: String { prefix + "/assignments" }
    public func executorAssignments(_ id: String) -> String { assignments + "/" + id }
    /// The executor's progress on its tasks, which only it writes.
    public func executorProgress(_ id: String) -> String { executor(id) + "/progress" }
    /// Where executors before the split kept assignments and progress in one document.
    public func legacyExecutorState(_ id: String) -> String { executor(id) + "/state" }
    /// Where an executor keeps, for inspection, the last progress document it found unreadable.
    public func executorUnreadableProgress(_ id: String) -> String { executor(id) + "/unreadable-progress" }

    /// Work specs (``WorkSpec``): `specs/<spec>`, its buckets' indexes `specs/<spec>/<bucket>`
    /// (two hex digits) and their unit segments `specs/<spec>/<bucket>/s<n>`.
    public var specs: String { prefix + "/specs" }
    public func spec(_ name: String) -> String { specs + "/" + name }
    public func specBucket(_ name: String, _ bucket: Int) -> String { spec(name) + "/" + Self.jobShardName(bucket) }
    public func specSegment(_ name: String, _ bucket: Int, _ segment: String) -> String { specBucket(name, bucket) + "/" + segment }

    public func jobShard(_ shard: Int) -> String { jobs + "/" + Self.jobShardName(shard) }
    public func job(_ id: String) -> String { jobShard(Self.shard(of: id)) + "/" + id }
    /// The prefix of a new set-aside item (a sequential node).
    public var setAsideItemPrefix: String { setAside + "/item-" }
    public func setAsideItem(_ name: String) -> String { setAside + "/" + name }

    /// The job whose record is at `path`, or nil when `path` is not a job record's.
    public func jobID(ofRecordAt path: String) -> String? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2, let id = parts.last.map(String.init), Self.isValidID(id), job(id) == path else { return nil }
        return id
    }

    /// The executor whose assignments or progress is at `path`, or nil when `path` is neither.
    public func executorID(ofTasksAt path: String) -> String? {
        if path.hasPrefix(assignments + "/") {
            let id = String(path.dropFirst(assignments.count + 1))
            return Self.isValidID(id) ? id : nil
        }
        guard path.hasPrefix(executors + "/"), path.hasSuffix("/progress") else { return nil }
        let id = String(path.dropFirst(executors.count + 1).dropLast("/progress".count))
        return Self.isValidID(id) ? id : nil
    }

    /// A stable shard for a job id (FNV-1a, so every language computes the same).
    public static func shard(of id: String) -> Int { Int(fnv1a(id) % UInt32(jobShards)) }

    /// FNV-1a, 32 bits (offset 2166136261, prime 16777619), of the text's UTF-8 bytes: the
    /// hash every language computes the same, for job shards and work units' buckets.
    public static func fnv1a(_ text: String) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in text.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        return hash
    }

    /// A shard directory's name: two lowercase hex digits.
    public static func jobShardName(_ shard: Int) -> String {
        let digits = String(shard, radix: 16)
        return digits.count == 1 ? "0" + digits : digits
    }

    /// A new job id: sortable by submission time, unique without coordination.
    public static func newJobID() -> String {
        let milliseconds = String(Timestamp.now(), radix: 36)
        let random = String(UInt64.random(in: 0..<(1 << 40)), radix: 36)
        return "j-\(milliseconds)-\(random)"
    }

    /// Executor ids and job ids become znode names: keep them to a safe alphabet.
    public static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.count <= 128 && id != "." && id != ".."
            && id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }
}
