import DroverChaos
import DroverProtocol
import Foundation
import ZKRecipes
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// The processes of a chaos run: a 3-node ZooKeeper ensemble, managers and executors, each a
/// separate `drover` process the harness can kill, restart, pause and resume — on loopback, each
/// daemon reaching ZooKeeper through a link of its own, or on simulated hosts whose network the
/// harness cuts.
actor Cluster {
    enum Role: String { case manager, executor }

    let ensemble: LocalEnsemble
    let root: String
    let directory: URL
    let sessionTimeout: Double
    let grace: Double
    /// Credentials files by process id (a secured run), given to each daemon.
    let credentialsFiles: [String: String]
    private var processes: [String: ChildProcess] = [:]
    /// Each daemon's link to ZooKeeper, which a partition cuts (kept across restarts).
    private var links: [String: LinkProxy] = [:]
    private var roles: [String: Role] = [:]
    /// Processes a fault is acting on now, so two faults never take the same one.
    private var busy: Set<String> = []
    private var zookeeperBusy = false
    /// On simulated hosts: the hosts, and the host each daemon runs on (ZooKeeper node i on host i).
    let hosts: SimulatedHosts?
    private let placement: [String: String]

    init(
        ensemble: LocalEnsemble, root: String, directory: URL, sessionTimeout: Double, grace: Double, credentialsFiles: [String: String] = [:],
        hosts: SimulatedHosts? = nil, placement: [String: String] = [:]
    ) {
        self.hosts = hosts
        self.placement = placement
        self.credentialsFiles = credentialsFiles
        self.ensemble = ensemble
        self.root = root
        self.directory = directory
        self.sessionTimeout = sessionTimeout
        self.grace = grace
    }

    func ledgerFile(_ executor: String) -> String { directory.appendingPathComponent("ledger-\(executor).log").path }
    func auditFile(_ manager: String) -> String { directory.appendingPathComponent("audit-\(manager).log").path }

    /// The daemon's connection string: the servers' own on simulated hosts; on loopback through
    /// its own link, so it can be cut off alone.
    private func connectionString(for id: String) throws -> String {
        if hosts != nil { return ensemble.connectionString + LocalEnsemble.chroot(of: root) }
        let link = try links[id] ?? LinkProxy(servers: ensemble.connectionString.split(separator: ",").map(String.init))
        links[id] = link
        let chroot = LocalEnsemble.chroot(of: root)
        return link.connectionString(chroot: chroot)
    }

    /// A network partition between the daemon and every ZooKeeper server (the process goes on).
    func cut(_ id: String) { links[id]?.cut() }
    func heal(_ id: String) { links[id]?.heal() }
    func setLatency(_ id: String, _ latency: Duration) { links[id]?.setLatency(latency) }

    func start(_ id: String, as role: Role) throws {
        let drover = ChildProcess.droverExecutable
        let zk = try connectionString(for: id)
        let host = placement[id]
        let address = host.flatMap { hosts?.addresses[$0] } ?? "127.0.0.1"
        let arguments: [String] =
            switch role {
            case .manager:
                [
                    "DROVER_AUDIT_FILE=\(auditFile(id))", drover, "manager", "--zk", zk, "--id", id,
                    "--session-timeout", "\(sessionTimeout)", "--grace", "\(grace)",
                ]
            case .executor:
                [
                    "DROVER_LEDGER_FILE=\(ledgerFile(id))", drover, "executor", "--zk", zk, "--id", id, "--slots", "8", "--unit-slots", "4",
                    "--session-timeout", "\(sessionTimeout)", "--http", "\(address):0",
                    "--output-dir", directory.appendingPathComponent("output-\(id)").path,
                ]
            }
        // `env` sets the process's own variables and execs drover: the pid stays the daemon's.
        let credentials = credentialsFiles[id].map { ["--credentials", $0] } ?? []
        // With TLS, the daemon's bridge speaks TLS through its link (the link only carries bytes).
        // On a simulated host, `ip netns exec` execs in turn: the pid is still the daemon's.
        let command = (host.map(SimulatedHosts.command(on:)) ?? []) + ["/usr/bin/env"] + arguments + credentials + ensemble.droverFlags
        processes[id] = try ChildProcess.launchDaemon(command[0], Array(command.dropFirst()), name: "chaos-\(id)")
        roles[id] = role
    }

    func ids(_ role: Role) -> [String] { roles.filter { $0.value == role }.map(\.key).sorted() }

    /// Claims a process for a fault, or nil when every candidate is taken. At least one
    /// executor and one manager are always left alone, so the system can make progress.
    func claim(_ role: Role, preferring preferred: String? = nil, using random: inout SeededRandom) -> String? {
        let all = ids(role)
        let free = all.filter { !busy.contains($0) }
        guard free.count >= 2 else { return nil }
        let chosen = preferred.flatMap { free.contains($0) ? $0 : nil } ?? free.randomElement(using: &random)
        if let chosen { busy.insert(chosen) }
        return chosen
    }

    func release(_ id: String) { busy.remove(id) }

    func claimZooKeeper() -> Bool {
        guard !zookeeperBusy else { return false }
        zookeeperBusy = true
        return true
    }

    func releaseZooKeeper() { zookeeperBusy = false }

    func crash(_ id: String) async {
        await processes[id]?.crash()
    }

    func signal(_ id: String, _ signal: Int32) {
        processes[id]?.signal(signal)
    }

    /// Whether the executor process running now has registered (its liveness node names its
    /// pid; an earlier process's may linger until its session ends).
    func isRegistered(_ id: String, _ zookeeper: ZooKeeperClient) async -> Bool {
        guard let pid = processes[id]?.pid, let node = try? await zookeeper.getData(Layout().executorAlive(id)),
            let registration = try? Codec.decode(ExecutorRegistration.self, node.data),
            let instance = registration.instance?.split(separator: "/"), instance.count == 5
        else { return false }
        return instance[3] == "\(pid)"
    }

    func restart(_ id: String) throws {
        guard let role = roles[id] else { return }
        try start(id, as: role)
    }

    /// What runs on a simulated host: its daemons and its ZooKeeper node (if any).
    struct HostClaim {
        let host: String
        let processes: [String]
        let zookeeperNode: Int?
        /// The fault records' targets: the daemons and `zk<n>`.
        var targets: [String] { processes + (zookeeperNode.map { ["zk\($0)"] } ?? []) }
        var contents: String { targets.joined(separator: ", ") }
    }

    /// Claims a simulated host and everything on it for a network fault, or nil when none can
    /// be: every daemon on it must be free, at least one manager and one executor must be left
    /// elsewhere, and at most one ZooKeeper node is faulted at a time (a majority stays). With
    /// `only`, that host or none.
    func claimHost(only: String? = nil, using random: inout SeededRandom) -> HostClaim? {
        guard let hosts else { return nil }
        func claimable(_ host: String) -> Bool {
            let here = placement.filter { $0.value == host }.map(\.key)
            if here.contains(where: busy.contains) { return false }
            for role in [Role.manager, .executor] {
                let elsewhere = ids(role).filter { placement[$0] != host && !busy.contains($0) }
                if elsewhere.isEmpty { return false }
            }
            return zookeeperNode(on: host) == nil || !zookeeperBusy
        }
        let candidates = (only.map { [$0] } ?? hosts.names).filter(claimable)
        guard let host = candidates.randomElement(using: &random) else { return nil }
        let processes = placement.filter { $0.value == host }.map(\.key).sorted()
        busy.formUnion(processes)
        let node = zookeeperNode(on: host)
        if node != nil { zookeeperBusy = true }
        return HostClaim(host: host, processes: processes, zookeeperNode: node)
    }

    func release(_ claim: HostClaim) {
        busy.subtract(claim.processes)
        if claim.zookeeperNode != nil { zookeeperBusy = false }
    }

    /// The host a daemon runs on.
    func host(of id: String) -> String? { placement[id] }

    /// The host of ZooKeeper node `node`.
    func host(ofZooKeeperNode node: Int) -> String? { hosts == nil ? nil : "h\(node)" }

    private func zookeeperNode(on host: String) -> Int? {
        guard hosts != nil, let number = Int(host.dropFirst()), number <= ensemble.nodes else { return nil }
        return number
    }

    /// The participant id of the leading manager.
    func leadingManager(_ zookeeper: ZooKeeperClient) async -> String? {
        try? await LeaderElection(client: zookeeper, path: Layout().election, participantID: "drover-chaos").currentLeader()
    }

    func stopAll() async {
        for link in links.values {
            link.heal()
            link.setLatency(.zero)
        }
        for host in hosts?.names ?? [] {
            try? await hosts?.heal(host)
            try? await hosts?.clear(host)
        }
        for process in processes.values { process.signal(SIGCONT) }
        for process in processes.values { await process.crash() }
    }
}
