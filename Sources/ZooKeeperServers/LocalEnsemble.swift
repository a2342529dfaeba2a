import CSpawn
import Foundation
import ZooKeeper
import ZooKeeperTLS

/// Real ZooKeeper servers on this machine: a standalone server or an N-node ensemble on
/// 127.0.0.1, on free ports, in a temporary directory, started as plain `java` processes by
/// `Deploy/zk-ensemble` (the same script people use by hand) — for local clusters, tests,
/// benchmarks and chaos runs.
///
/// Servers are tied to the process that started them (`--owner`): if it dies, they die with it.
/// Call ``stop()`` when done.
public final class LocalEnsemble: Sendable {
    /// The connection string of all nodes, without chroot (their TLS ports for a TLS-only ensemble).
    public let connectionString: String
    /// The servers' TLS ports (``connectionString`` unless the ensemble serves plain TCP too).
    public let secureConnectionString: String
    /// The state directory (node configs, data and server logs).
    public let directory: URL
    /// The number of servers.
    public let nodes: Int
    /// For an ensemble that serves only TLS: the run's CA and a client certificate
    /// (CN=drover-client), which Drover's processes take as `--zk-ca`, `--zk-cert`, `--zk-key`.
    public let tls: TLSBridgeConfiguration?
    /// This process's own way in to a TLS ensemble.
    private let bridge: TLSBridge?

    private init(
        connectionString: String, secureConnectionString: String? = nil, directory: URL, nodes: Int, tls: TLSBridgeConfiguration?,
        bridge: TLSBridge?
    ) {
        self.connectionString = connectionString
        self.secureConnectionString = secureConnectionString ?? connectionString
        self.directory = directory
        self.nodes = nodes
        self.tls = tls
        self.bridge = bridge
    }

    /// `connectionString` (servers and chroot) as a client in this process reaches it: the same,
    /// or for a TLS ensemble, the ports of this process's bridge with the same chroot.
    public func reachable(_ connectionString: String) -> String {
        guard let bridge else { return connectionString }
        return bridge.connectionString + Self.chroot(of: connectionString)
    }

    /// `connectionString`'s chroot on the servers' TLS ports: what a `drover` process given
    /// ``droverFlags`` connects to.
    public func secure(_ connectionString: String) -> String {
        secureConnectionString + Self.chroot(of: connectionString)
    }

    /// The chroot of a connection string (`/tests/x` of `host:port,host:port/tests/x`; "" without).
    public static func chroot(of connectionString: String) -> String {
        connectionString.firstIndex(of: "/").map { String(connectionString[$0...]) } ?? ""
    }

    /// The flags that give a `drover` process this ensemble's TLS settings (none without TLS).
    public var droverFlags: [String] {
        guard let tls else { return [] }
        return ["--zk-ca", tls.certificateAuthorityFile] + (tls.certificateFile.map { ["--zk-cert", $0] } ?? [])
            + (tls.privateKeyFile.map { ["--zk-key", $0] } ?? [])
    }

    /// Starts a new standalone server (`nodes: 1`) or ensemble and waits until every node serves.
    ///
    /// Short ticks (500 ms) by default, so sessions can be as short as 1 s and a hung leader is
    /// replaced within seconds.
    /// `heap` is each server's Java heap (`-Xmx`, e.g. `"256m"`, `"3g"`).
    /// With `tls`, the servers serve clients only over TLS (and speak TLS to each other); clients
    /// in this process reach them through ``reachable(_:)``. With `plainToo` as well, they also
    /// serve plain TCP on ``connectionString`` (TLS on ``secureConnectionString``): a benchmark
    /// compares both on the same servers.
    /// With `hosts` (one per node, made by ``SimulatedHosts``), node i runs on host i, bound to
    /// its address: cutting that host's link splits the ensemble.
    public static func start(
        nodes: Int = 1, tickMilliseconds: Int = 500, heap: String = "256m", tls: Bool = false, plainToo: Bool = false,
        hosts: [String] = []
    ) async throws -> LocalEnsemble {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("zk-ensemble-\(UUID().uuidString.prefix(8))", isDirectory: true)
        let output = try await runScript(
            [
                "start", "--nodes", "\(nodes)", "--dir", directory.path, "--port", "auto", "--tick", "\(tickMilliseconds)",
                "--owner", "\(ProcessInfo.processInfo.processIdentifier)", "--fast", "--timeout", "60", "--heap", heap,
            ] + (tls ? [plainToo ? "--tls-and-plain" : "--tls"] : [])
                + (hosts.isEmpty ? [] : ["--on-hosts", hosts.joined(separator: ",")]))
        guard let connectionString = output.split(separator: "\n").last.map(String.init), connectionString.contains(":")
        else {
            throw LocalEnsembleError("zk-ensemble start printed no connection string: \(output)")
        }
        guard tls else {
            return LocalEnsemble(connectionString: connectionString, directory: directory, nodes: nodes, tls: nil, bridge: nil)
        }
        let files = directory.appendingPathComponent("tls").path
        let configuration = TLSBridgeConfiguration(
            certificateAuthorityFile: files + "/ca.pem", certificateFile: files + "/client.pem", privateKeyFile: files + "/client.key")
        // zk-ensemble's TLS ports with --tls-and-plain: 300 above the plain ones.
        let secure =
            plainToo
            ? connectionString.split(separator: ",").map { server in
                let parts = server.split(separator: ":")
                return "\(parts[0]):\(Int(parts[1])! + 300)"
            }.joined(separator: ",") : connectionString
        let bridge = try await TLSBridge.start(connectionString: secure, configuration: configuration)
        return LocalEnsemble(
            connectionString: connectionString, secureConnectionString: secure, directory: directory, nodes: nodes, tls: configuration,
            bridge: bridge)
    }

    /// Issues another client certificate from a TLS ensemble's CA (`CN=name`): its files.
    public func issueCertificate(_ name: String) async throws -> TLSBridgeConfiguration {
        guard let tls else { throw LocalEnsembleError("the ensemble in \(directory.path) does not serve TLS") }
        _ = try await Self.runScript(["cert", name, "--dir", directory.path])
        let files = directory.appendingPathComponent("tls").path
        return TLSBridgeConfiguration(
            certificateAuthorityFile: tls.certificateAuthorityFile, certificateFile: "\(files)/\(name).pem", privateKeyFile: "\(files)/\(name).key")
    }

    /// Stops every node and deletes the directory.
    public func stop() async {
        await bridge?.shutdown()
        _ = try? await Self.runScript(["stop", "--dir", directory.path, "--clean"])
    }

    /// SIGKILLs node `node` (1-based).
    public func kill(node: Int) async throws {
        _ = try await Self.runScript(["kill", "\(node)", "--dir", directory.path])
    }

    /// Starts node `node` again with its data and waits until it serves.
    public func restart(node: Int) async throws {
        _ = try await Self.runScript([
            "restart", "\(node)", "--dir", directory.path, "--owner", "\(ProcessInfo.processInfo.processIdentifier)",
            "--timeout", "60",
        ])
    }

    /// SIGSTOPs node `node`.
    public func pause(node: Int) async throws {
        _ = try await Self.runScript(["pause", "\(node)", "--dir", directory.path])
    }

    /// SIGCONTs node `node`.
    public func resume(node: Int) async throws {
        _ = try await Self.runScript(["resume", "\(node)", "--dir", directory.path])
    }

    /// The 1-based number of the node that is the ensemble's leader (or the standalone server).
    public func leader() async throws -> Int? {
        let output = try await Self.runScript(["status", "--dir", directory.path], allowFailure: true)
        for line in output.split(separator: "\n") {
            let fields = line.split(whereSeparator: \.isWhitespace)
            // "node 3  port 29553  pid 27188  running  leader"
            guard fields.count > 1, fields[0] == "node", let node = Int(fields[1]) else { continue }
            if fields.contains(where: { $0 == "leader" || $0 == "standalone" }) { return node }
        }
        return nil
    }

    /// The connection string of a single node.
    public func connectionString(node: Int) -> String {
        String(connectionString.split(separator: ",")[node - 1])
    }

    /// Creates a fresh, uniquely named chroot for one test and returns the connection string
    /// that is rooted in it.
    public func makeChroot(_ name: String = "test") async throws -> String {
        let root = "/tests/\(name.filter { $0.isLetter || $0.isNumber || $0 == "-" })-\(UUID().uuidString.prefix(8))"
        let admin = try await ZooKeeperClient.connect(to: reachable(connectionString))
        do {
            // A loaded machine (every suite starting its servers at once) can stall the ensemble
            // past the client's patience; creating a path again is harmless, so wait for the
            // connection and go on rather than fail the test before it began.
            while true {
                do {
                    try await admin.createPath(root)
                    break
                } catch let error as ZooKeeperError where error.isRetryable {
                    try await admin.waitUntilConnected(timeout: admin.sessionTimeout * 2)
                }
            }
        } catch {
            await admin.close()
            throw error
        }
        await admin.close()
        return connectionString + root
    }

    /// Connects a client rooted in a new chroot.
    public func client(
        chroot name: String = "test", sessionTimeout: Duration = .seconds(4)
    ) async throws -> ZooKeeperClient {
        try await ZooKeeperClient.connect(to: reachable(makeChroot(name)), sessionTimeout: sessionTimeout)
    }

    // MARK: Running the script

    /// `Deploy/zk-ensemble` in this repository (or `$ZK_ENSEMBLE_SCRIPT`).
    public static var scriptPath: String {
        if let path = ProcessInfo.processInfo.environment["ZK_ENSEMBLE_SCRIPT"] { return path }
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Deploy/zk-ensemble").path
    }

    /// Runs the script and returns its standard output. Output goes through files, not pipes:
    /// the servers the script starts outlive it and would hold a pipe open.
    @discardableResult
    static func runScript(_ arguments: [String], allowFailure: Bool = false) async throws -> String {
        try await runBashScript(scriptPath, arguments, allowFailure: allowFailure)
    }
}

/// Runs one of the project's bash scripts (`Deploy/zk-ensemble`, `Deploy/sim-hosts`) and returns
/// its standard output; fails with its output when it exits non-zero (unless `allowFailure`).
func runBashScript(_ path: String, _ arguments: [String], allowFailure: Bool = false) async throws -> String {
    let name = URL(fileURLWithPath: path).lastPathComponent
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)")
    let stdoutURL = scratch.appendingPathExtension("out")
    let stderrURL = scratch.appendingPathExtension("err")
    _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
    defer {
        try? FileManager.default.removeItem(at: stdoutURL)
        try? FileManager.default.removeItem(at: stderrURL)
    }
    let status = try await runAndWait("/bin/bash", [path] + arguments, stdout: stdoutURL.path, stderr: stderrURL.path)
    let output = (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? ""
    if status != 0 && !allowFailure {
        let errors = (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
        throw LocalEnsembleError("\(name) \(arguments.joined(separator: " ")) exited \(status):\n\(errors)\(output)")
    }
    return output
}

/// A failure to start, stop or control the servers (not of the code that uses them).
public struct LocalEnsembleError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Runs a program to completion, its output sent to files, and returns its exit status.
///
/// `posix_spawn` and `waitpid` on a thread of its own: Foundation's `Process` did not reap the
/// child here (it stayed a zombie and the termination handler never ran). With `timeLimit`, a
/// program still running after it is killed (SIGKILL: status 137), so that a hung program fails
/// its caller instead of hanging it.
public func runAndWait(
    _ executable: String, _ arguments: [String], stdout: String, stderr: String, timeLimit: Duration? = nil
) async throws -> Int32 {
    var fileActions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fileActions)
    defer { posix_spawn_file_actions_destroy(&fileActions) }
    posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&fileActions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&fileActions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    // The servers the script starts must not hold this process's sockets (NIO's are not
    // close-on-exec): a bridge's closed connection would stay open in them, unseen by its client.
    drover_spawn_addclosefrom(&fileActions, 3)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, executable, &fileActions, nil, argv, environ)
    guard rc == 0 else { throw LocalEnsembleError("cannot run \(executable): \(String(cString: strerror(rc)))") }
    guard let timeLimit else { return await waitForExit(pid) }
    let child = pid
    let killer = Task {
        try await Task.sleep(for: timeLimit)
        kill(child, SIGKILL)  // not yet reaped (waitForExit reaps it), so the pid is still this child's
    }
    let status = await waitForExit(child)
    killer.cancel()
    return status
}

/// Waits, on a thread of its own (waitpid blocks), for a child to exit; returns its exit status,
/// or 128 + the signal that killed it.
public func waitForExit(_ pid: pid_t) async -> Int32 {
    await withCheckedContinuation { continuation in
        Thread {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
            // WIFEXITED / WEXITSTATUS, which Swift does not import.
            continuation.resume(returning: status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f))
        }.start()
    }
}
