import DroverProtocol
import ZooKeeper

/// Puts a deployment under its access policy: creates the tree (what is missing), writes the
/// policy to `<root>/access`, and gives every node under the root the ACL of the role table —
/// in place, so an open deployment is secured without losing a job. Safe to run again (to add
/// executors, or after a crash half-way): it only creates what is missing and sets ACLs.
///
/// The ZooKeeper client must be authenticated as the policy's admin before the walk, or the
/// first ACL it sets would lock it out. The root and the policy get theirs last: a run that fails
/// half-way leaves a deployment the next run can read and finish (with the admin file written).
public struct AccessSetup: Sendable {
    public let zookeeper: ZooKeeperClient
    public let layout: Layout

    public init(zookeeper: ZooKeeperClient, layout: Layout = Layout()) {
        self.zookeeper = zookeeper
        self.layout = layout
    }

    /// Setting ACLs in flight at once.
    static let window = 256

    /// Applies `policy`; `progress` is told how many nodes have their ACL so far. Returns that count.
    @discardableResult
    public func apply(_ policy: AccessPolicy, progress: @Sendable (Int) -> Void = { _ in }) async throws -> Int {
        precondition(layout.root != "/", "a deployment at the ZooKeeper root cannot be secured")
        let access = Access.secured(policy)
        // What is missing is made open, and secured by the walk.
        try await zookeeper.createPath(layout.root)
        let document = try Codec.encode(policy)
        do {
            _ = try await zookeeper.create(layout.access, data: document)
        } catch let error as ZooKeeperError where error.code == .nodeExists {
            try await zookeeper.setData(layout.access, data: document)
        }
        // The retention and admission documents too (empty: off until a leader writes its rule),
        // and the active-job index (empty: built by the next leader), as a manager may not create
        // nodes at the root.
        let skeleton = [
            layout.queue, layout.jobs, layout.executors, layout.assignments, layout.election, layout.setAside, layout.retention, layout.admission, layout.active,
            layout.shared, layout.specs, layout.unitCounts, layout.inbox, layout.claims,
        ]
            + (0..<Layout.jobShards).map(layout.jobShard) + (0..<Layout.jobShards).map(layout.sharedShard)
            + (0..<Layout.jobShards).map(layout.claimsShard)
        for path in skeleton { try await createIfMissing(path) }
        // Each executor's assignments before its directory: a leader makes them only once the
        // directory exists, and one made by a leader on the policy it read before this one would
        // shut the new executor out (the walk below sets these ACLs; a manager cannot).
        for id in policy.executorIDs {
            try await createIfMissing(layout.executorAssignments(id), data: try Codec.encode(ExecutorState(executor: id)))
            try await createIfMissing(layout.executor(id))
            try await createIfMissing(layout.executorInbox(id))
        }

        // Breadth first: a level's ACLs are set while the next level is listed.
        var done = 0
        var level = try await zookeeper.children(layout.root).names.map { layout.root + "/" + $0 }.filter { $0 != layout.access }
        while !level.isEmpty {
            var next: [String] = []
            for start in stride(from: 0, to: level.count, by: Self.window) {
                let slice = level[start..<min(start + Self.window, level.count)]
                next += try await withThrowingTaskGroup(of: [String].self) { group in
                    for path in slice {
                        group.addTask { [zookeeper, layout] in
                            do {
                                try await zookeeper.setACL(path, acl: access.acl(at: path, in: layout))
                                return try await zookeeper.children(path).names.map { path + "/" + $0 }
                            } catch let error as ZooKeeperError where error.code == .noNode {
                                return []  // removed meanwhile (a queue item consumed, a job retired)
                            }
                        }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                done += slice.count
                progress(done)
            }
            level = next
        }
        try await zookeeper.setACL(layout.access, acl: access.acl(for: .access))
        try await zookeeper.setACL(layout.root, acl: access.acl(for: .root))
        done += 2
        progress(done)
        return done
    }

    private func createIfMissing(_ path: String, data: [UInt8] = []) async throws {
        do {
            _ = try await zookeeper.create(path, data: data)
        } catch let error as ZooKeeperError where error.code == .nodeExists {}
    }

    /// Whether managers or executors are running now (election nodes, liveness nodes): they were
    /// started without credentials and would be locked out half-way through their work.
    public func runningDaemons() async throws -> [String] {
        var running: [String] = []
        do {
            running += try await zookeeper.children(layout.election).names.map { "manager (election node \($0))" }
        } catch let error as ZooKeeperError where error.code == .noNode {}
        let executors: [String]
        do {
            executors = try await zookeeper.children(layout.executors).names.filter(Layout.isValidID)
        } catch let error as ZooKeeperError where error.code == .noNode {
            executors = []
        }
        for id in executors where try await zookeeper.exists(layout.executorAlive(id)) != nil { running.append("executor \(id)") }
        return running
    }
}
