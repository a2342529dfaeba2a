import CSpawn
import Foundation

/// A program started in the background (a daemon of a local cluster), its output in a log file,
/// so that its starter can signal it, kill it like a crash would, and read what it printed.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    public let logPath: String

    private init(pid: pid_t, logPath: String) {
        self.pid = pid
        self.logPath = logPath
    }

    /// Starts `executable` with `arguments` and this process's environment plus `environment`,
    /// its output going to a log file named after `name`.
    public static func launch(
        _ executable: String, _ arguments: [String], name: String, environment extra: [String: String] = [:]
    ) throws -> ChildProcess {
        let logPath = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(8)).log").path
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fileActions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&fileActions, 1, 2)
        // Nothing else of this process: NIO's sockets are not close-on-exec, and a child holding
        // one keeps a connection open after this process closed it.
        drover_spawn_addclosefrom(&fileActions, 3)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let environment = ProcessInfo.processInfo.environment.merging(extra) { _, new in new }
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        let rc = posix_spawn(&pid, executable, &fileActions, nil, argv, envp)
        guard rc == 0 else { throw LocalEnsembleError("cannot start \(executable): \(String(cString: strerror(rc)))") }
        return ChildProcess(pid: pid, logPath: logPath)
    }

    /// The program `name` built next to the running one (or `$<NAME>_EXECUTABLE`, e.g.
    /// `DROVER_EXECUTABLE` for `drover`).
    public static func siblingExecutable(_ name: String) -> String {
        let variable = name.uppercased().replacingOccurrences(of: "-", with: "_") + "_EXECUTABLE"
        if let path = ProcessInfo.processInfo.environment[variable] { return path }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // A test binary may be inside a .xctest bundle directory.
        if directory.pathExtension == "xctest" { directory = directory.deletingLastPathComponent() }
        return directory.appendingPathComponent(name).path
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
