import DroverChaos
import DroverProtocol
import Foundation
import ZKRecipes
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// The processes of a chaos run: a 3-node ZooKeeper ensemble, managers and executors, each a
/// separate `drover` process the harness can kill, restart, pause and resume.
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

    init(ensemble: LocalEnsemble, root: String, directory: URL, sessionTimeout: Double, grace: Double, credentialsFiles: [String: String] = [:]) {
        self.credentialsFiles = credentialsFiles
        self.ensemble = ensemble
        self.root = root
        self.directory = directory
        self.sessionTimeout = sessionTimeout
        self.grace = grace
    }

    func ledgerFile(_ executor: String) -> String { directory.appendingPathComponent("ledger-\(executor).log").path }
    func auditFile(_ manager: String) -> String { directory.appendingPathComponent("audit-\(manager).log").path }

    /// The daemon's connection string: through its own link, so it can be cut off alone.
    private func connectionString(for id: String) throws -> String {
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
        let arguments: [String] =
            switch role {
            case .manager:
                [
                    "DROVER_AUDIT_FILE=\(auditFile(id))", drover, "manager", "--zk", zk, "--id", id,
                    "--session-timeout", "\(sessionTimeout)", "--grace", "\(grace)",
                ]
            case .executor:
                [
                    "DROVER_LEDGER_FILE=\(ledgerFile(id))", drover, "executor", "--zk", zk, "--id", id, "--slots", "8",
                    "--session-timeout", "\(sessionTimeout)", "--http", "127.0.0.1:0",
                    "--output-dir", directory.appendingPathComponent("output-\(id)").path,
                ]
            }
        // `env` sets the process's own variables and execs drover: the pid stays the daemon's.
        let credentials = credentialsFiles[id].map { ["--credentials", $0] } ?? []
        // With TLS, the daemon's bridge speaks TLS through its link (the link only carries bytes).
        processes[id] = try ChildProcess.launchDaemon("/usr/bin/env", arguments + credentials + ensemble.droverFlags, name: "chaos-\(id)")
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

    func restart(_ id: String) throws {
        guard let role = roles[id] else { return }
        try start(id, as: role)
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
        for process in processes.values { process.signal(SIGCONT) }
        for process in processes.values { await process.crash() }
    }
}
