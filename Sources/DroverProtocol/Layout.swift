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

    public func executor(_ id: String) -> String { executors + "/" + id }
    public func executorAlive(_ id: String) -> String { executor(id) + "/alive" }
    public func executorState(_ id: String) -> String { executor(id) + "/state" }

    public func jobShard(_ shard: Int) -> String { jobs + "/" + Self.jobShardName(shard) }
    public func job(_ id: String) -> String { jobShard(Self.shard(of: id)) + "/" + id }

    /// A stable shard for a job id (FNV-1a, so every language computes the same).
    public static func shard(of id: String) -> Int {
        var hash: UInt32 = 2_166_136_261
        for byte in id.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        return Int(hash % UInt32(jobShards))
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
