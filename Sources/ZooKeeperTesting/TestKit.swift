import Foundation
import Synchronization
import ZooKeeper
import ZooKeeperServers

// The test kit: what tests (and the benchmark and chaos tools) add to the servers module — a
// shared server per test process, chroots, and running Drover's own executables.

extension LocalEnsemble {
    /// The standalone server shared by every test of this process (started on first use).
    /// Give each test its own chroot with ``makeChroot(_:)``.
    public static func shared() async throws -> LocalEnsemble {
        try await SharedServer.instance.ensemble()
    }

}

/// The standalone server shared by the tests of one process.
actor SharedServer {
    static let instance = SharedServer()
    private var starting: Task<LocalEnsemble, any Error>?

    func ensemble() async throws -> LocalEnsemble {
        if let starting { return try await starting.value }
        let task = Task { try await LocalEnsemble.start(nodes: 1) }
        starting = task
        return try await task.value
    }
}

extension LocalEnsemble {
    /// Starts an ensemble of its own for one test, runs `body` with it, and stops it whether
    /// `body` threw or not.
    public static func with<T>(
        nodes: Int = 1, tls: Bool = false, hosts: [String] = [], _ body: (LocalEnsemble) async throws -> T
    ) async throws -> T {
        let ensemble = try await start(nodes: nodes, tls: tls, hosts: hosts)
        do {
            let result = try await body(ensemble)
            await ensemble.stop()
            return result
        } catch {
            await ensemble.stop()
            throw error
        }
    }

    /// Runs `body` with a client rooted in a new chroot, and closes the client afterwards.
    public func withClient<T>(
        chroot name: String = "test", sessionTimeout: Duration = .seconds(4),
        _ body: (ZooKeeperClient) async throws -> T
    ) async throws -> T {
        let client = try await client(chroot: name, sessionTimeout: sessionTimeout)
        return try await closing(client) { try await body(client) }
    }

    /// Runs `body` with two clients (two sessions) rooted in one new chroot — a writer and a
    /// watcher, an owner and a stranger — and closes both afterwards.
    public func withTwoClients<T>(chroot name: String, _ body: (ZooKeeperClient, ZooKeeperClient) async throws -> T) async throws -> T {
        let root = try await makeChroot(name)
        let first = try await ZooKeeperClient.connect(to: root)
        let second = try await ZooKeeperClient.connect(to: root)
        return try await closing(first, second) { try await body(first, second) }
    }
}

/// Runs `body`, then closes the clients whether it threw or not.
@discardableResult
public func closing<T>(_ clients: ZooKeeperClient..., body: () async throws -> T) async throws -> T {
    do {
        let result = try await body()
        for client in clients { await client.close() }
        return result
    } catch {
        for client in clients { await client.close() }
        throw error
    }
}

/// `body`'s answer, or an error naming `what` when it takes longer than `seconds`: a test that
/// would otherwise wait for ever on an event that never comes fails, and says which.
/// `body` must end when cancelled.
public func within<T: Sendable>(_ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw LocalEnsembleError("\(what): not seen within \(seconds) s")
        }
        return value
    }
}

/// A value shared between the tasks of a test.
public final class LockedValue<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    public var value: Value { mutex.withLock { $0 } }
    @discardableResult
    public func update<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}


extension ChildProcess {
    /// The `drover` executable built next to this binary (or `$DROVER_EXECUTABLE`).
    public static var droverExecutable: String { siblingExecutable("drover") }

    /// Starts a Drover daemon that exits when this process is gone (see `drover`'s
    /// exitWithParentIfAsked), so a crashed test or tool leaks none.
    public static func launchDaemon(_ executable: String, _ arguments: [String], name: String) throws -> ChildProcess {
        try launch(executable, arguments, name: "drover-" + name, environment: ["DROVER_EXIT_WITH_PARENT": "1", "DROVER_PARENT_PID": String(getpid())])
    }

    /// Runs `drover` with `arguments` to completion: its exit status, standard output and
    /// standard error. A command still running after `timeLimit` is killed (status 137, and
    /// standard error says so): a hung command fails its test instead of hanging it.
    public static func runDrover(
        _ arguments: [String], environment: [String: String] = [:], timeLimit: Duration = .seconds(120)
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("drover-run-\(UUID().uuidString.prefix(8))").path
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        // `env` applies the extra variables for the child alone.
        let command = ["/usr/bin/env"] + environment.map { "\($0.key)=\($0.value)" } + [droverExecutable] + arguments
        let started = ContinuousClock.now
        let status = try await runAndWait(command[0], Array(command.dropFirst()), stdout: base + ".out", stderr: base + ".err", timeLimit: timeLimit)
        let stdout = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
        var stderr = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
        if status == 137, ContinuousClock.now - started >= timeLimit {
            stderr += "\n(drover \(arguments.first ?? "") was still running after \(timeLimit) and was killed)"
        }
        return (status, stdout, stderr)
    }
}
