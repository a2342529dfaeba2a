import Foundation

/// A program started by a test (a Drover daemon), so the test can kill it like a crash would.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    public let logPath: String

    private init(pid: pid_t, logPath: String) {
        self.pid = pid
        self.logPath = logPath
    }

    /// Starts `executable` with `arguments`, its output going to a log file.
    public static func launch(_ executable: String, _ arguments: [String], name: String) throws -> ChildProcess {
        let logPath = FileManager.default.temporaryDirectory.appendingPathComponent("drover-\(name)-\(UUID().uuidString.prefix(8)).log").path
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fileActions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&fileActions, 1, 2)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        // Daemons started by a test exit when the test process is gone (see `drover` runUntilSignalled).
        var environment = ProcessInfo.processInfo.environment
        environment["DROVER_EXIT_WITH_PARENT"] = "1"
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        let rc = posix_spawn(&pid, executable, &fileActions, nil, argv, envp)
        guard rc == 0 else { throw TestEnsembleError("cannot start \(executable): \(String(cString: strerror(rc)))") }
        return ChildProcess(pid: pid, logPath: logPath)
    }

    /// The `drover` executable built next to this test binary.
    public static var droverExecutable: String {
        if let path = ProcessInfo.processInfo.environment["DROVER_EXECUTABLE"] { return path }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // The test binary may be inside a .xctest bundle directory.
        if directory.pathExtension == "xctest" { directory = directory.deletingLastPathComponent() }
        return directory.appendingPathComponent("drover").path
    }

    /// Sends a signal (SIGKILL to crash it, SIGTERM to stop it gracefully).
    public func signal(_ signal: Int32) { Glibc.kill(pid, signal) }

    /// Waits for the process to exit and returns its exit status.
    @discardableResult
    public func wait() async -> Int32 { await waitForExit(pid) }

    /// Kills it with SIGKILL and reaps it.
    public func crash() async {
        signal(SIGKILL)
        await wait()
    }

    /// Whether it has exited (a zombie not reaped yet counts as exited).
    public var hasExited: Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let afterName = stat.lastIndex(of: ")")
        else { return true }
        return stat[stat.index(after: afterName)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    /// What it printed so far.
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

extension ChildProcess {
    /// Runs `drover` with `arguments` to completion: its exit status, standard output and
    /// standard error.
    public static func runDrover(_ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("drover-run-\(UUID().uuidString.prefix(8))").path
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        // `env` applies the extra variables for the child alone.
        let command = ["/usr/bin/env"] + environment.map { "\($0.key)=\($0.value)" } + [droverExecutable] + arguments
        let status = try await runAndWait(command[0], Array(command.dropFirst()), stdout: base + ".out", stderr: base + ".err")
        let stdout = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
        return (status, stdout, stderr)
    }
}
