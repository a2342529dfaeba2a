import CSpawn
import DroverExecutor
import DroverProtocol
import Foundation
import Synchronization

/// The stock executor's `shell` method: runs a command or a script with any interpreter.
///
/// Arguments (JSON):
/// ```json
/// {"command": ["bash", "scripts/count.sh", "10"], "env": {"NAME": "value"},
///  "workingDirectory": "/srv/jobs", "timeoutSeconds": 600}
/// ```
/// The command runs in its own process group; stopping the job (or its timeout) sends SIGTERM
/// to the whole group, then SIGKILL after five seconds. Exit status 0 succeeds with
/// `{"exitCode": 0}`, or with the JSON the command wrote to the file named by `$DROVER_RESULT`
/// (at most ``Bounds/resultBytes``: a workflow's later steps can use it); anything else fails the run. Output (stdout and stderr, interleaved, each
/// line with a timestamp) goes to a file under the output directory — never into ZooKeeper —
/// bounded in size and kept across executor restarts.
public struct ShellMethod: Sendable {
    /// Where task output files are written: `<outputDirectory>/<job>/<run>.log`.
    public let outputDirectory: URL
    /// Output beyond this many bytes per run is dropped (the file says so).
    public let maximumOutputBytes: Int
    private let activeRuns = ActiveRuns()

    public init(outputDirectory: URL, maximumOutputBytes: Int = 10 * 1024 * 1024) {
        self.outputDirectory = outputDirectory
        self.maximumOutputBytes = maximumOutputBytes
    }

    /// The file a run's output goes to.
    public func outputFile(job: String, run: Int) -> URL {
        outputDirectory.appendingPathComponent(job, isDirectory: true).appendingPathComponent("\(run).log")
    }

    /// Where a work unit's output is kept: `<spec>.units/<hash of the key>.log`.
    public func unitOutputFile(spec: String, key: String) -> URL {
        var hash: UInt64 = 14_695_981_039_346_656_037
        for byte in key.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 1_099_511_628_211
        }
        return outputDirectory.appendingPathComponent(spec + ".units", isDirectory: true).appendingPathComponent(String(hash, radix: 16) + ".log")
    }

    /// Whether a run's command is running here now, so its output file may still grow.
    public func isRunning(job: String, run: Int) -> Bool {
        activeRuns.contains("\(job)#\(run)")
    }

    public var handler: TaskHandler {
        { context in try await run(context) }
    }

    struct Invocation {
        var command: [String]
        var environment: [String: String]
        var workingDirectory: String?
        var timeout: Double?
    }

    /// Checks a job's arguments as the executor will when it runs them (the CLI checks job files
    /// with this before submitting). - Throws: ``DroverError`` `.invalidSpec` naming the argument.
    public static func check(_ arguments: JSONValue) throws { _ = try parse(arguments) }

    static func parse(_ arguments: JSONValue) throws -> Invocation {
        let command: [String]
        switch arguments["command"] {
        case .array(let parts):
            command = try parts.map { part in
                guard let text = part.stringValue else { throw DroverError(.invalidSpec, "shell: every part of \"command\" must be a string") }
                return text
            }
        case .string(let line):
            command = ["/bin/sh", "-c", line]
        default:
            throw DroverError(.invalidSpec, "shell: \"command\" must be an array of strings (or a string for /bin/sh -c)")
        }
        guard let program = command.first, !program.isEmpty else { throw DroverError(.invalidSpec, "shell: \"command\" is empty") }
        var environment: [String: String] = [:]
        if case .object(let values) = arguments["env"] {
            for (key, value) in values {
                guard let text = value.stringValue else { throw DroverError(.invalidSpec, "shell: env \(key) must be a string") }
                environment[key] = text
            }
        }
        var timeout: Double?
        if let value = arguments["timeoutSeconds"], value != .null {
            // The same range the client checks: a value written into ZooKeeper by another program
            // fails the run with a reason, it does not trap the executor.
            guard let seconds = value.numberValue, Bounds.timeoutSeconds.contains(seconds) else {
                throw DroverError(
                    .invalidSpec,
                    "shell: \"timeoutSeconds\" must be a number of seconds between \(Bounds.timeoutSeconds.lowerBound) and \(Int(Bounds.timeoutSeconds.upperBound))")
            }
            timeout = seconds
        }
        return Invocation(
            command: command, environment: environment, workingDirectory: arguments["workingDirectory"]?.stringValue, timeout: timeout)
    }

    func run(_ context: TaskContext) async throws -> JSONValue? {
        var invocation = try Self.parse(context.arguments)
        // A work unit's output goes beside its spec's, one file per unit (keys may hold any
        // character: the file is named by the key's hash).
        let file = context.unit.map { unitOutputFile(spec: context.job, key: $0.key) } ?? outputFile(job: context.job, run: context.run)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        let output = try OutputFile(url: file, limit: maximumOutputBytes)
        let runKey = "\(context.job)#\(context.run)"
        activeRuns.insert(runKey)
        // Removed only after the file is closed: a reader that sees the run inactive has seen all of it.
        defer { activeRuns.remove(runKey) }
        output.note("attempt \(context.attempt): \(invocation.command.joined(separator: " "))")
        // Where the command may leave its result; one from an earlier attempt is not this one's.
        let resultFile = file.deletingPathExtension().appendingPathExtension("result.json")
        try? FileManager.default.removeItem(at: resultFile)
        invocation.environment["DROVER_RESULT"] = resultFile.path
        // A task of a job of many tasks: which one.
        if let index = context.arguments["taskIndex"]?.numberValue.flatMap({ Int(exactly: $0) }) { invocation.environment["DROVER_TASK_INDEX"] = String(index) }
        // A work unit: its key and data.
        if let unit = context.unit {
            invocation.environment["DROVER_UNIT_KEY"] = unit.key
            invocation.environment["DROVER_UNIT_DATA"] = unit.data.map { String(decoding: (try? Codec.encode($0)) ?? [], as: UTF8.self) } ?? "null"
        }
        let child = try ChildGroup.spawn(invocation, output: output)
        let timedOut = Flag()
        let status: Int32 = await withTaskCancellationHandler {
            await withTaskGroup(of: Int32?.self) { group in
                group.addTask { await child.wait() }
                if let timeout = invocation.timeout {
                    group.addTask {
                        do {
                            try await Task.sleep(for: .milliseconds(Int(timeout * 1000)))
                        } catch {
                            return nil  // the command ended first
                        }
                        timedOut.set()
                        output.note("timed out after \(timeout) s: stopping the process group")
                        child.stop()
                        return nil
                    }
                }
                var exitStatus: Int32 = -1
                for await result in group {
                    if let result {
                        exitStatus = result
                        group.cancelAll()
                    }
                }
                return exitStatus
            }
        } onCancel: {
            output.note("stopped: terminating the process group")
            child.stop()
        }
        defer { output.close() }
        if timedOut.isSet {
            throw DroverError(.timedOut, "timed out after \(invocation.timeout ?? 0) seconds")
        }
        try Task.checkCancellation()
        output.note("exited with status \(status)")
        guard status == 0 else { throw DroverError(.jobFailed, "exited with status \(status)") }
        return try Self.readResult(resultFile)
    }

    /// The JSON a command wrote to `$DROVER_RESULT`, or `{"exitCode": 0}` when it wrote none.
    static func readResult(_ file: URL) throws -> JSONValue {
        guard let data = FileManager.default.contents(atPath: file.path) else { return ["exitCode": 0] }
        try? FileManager.default.removeItem(at: file)
        guard data.count <= Bounds.resultBytes else {
            throw DroverError(.jobFailed, "the result written to $DROVER_RESULT is \(data.count) bytes, over the limit of \(Bounds.resultBytes): return a reference, not the data")
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw DroverError(.jobFailed, "the result written to $DROVER_RESULT is not JSON: \(String(decoding: data.prefix(200), as: UTF8.self))")
        }
    }
}

/// A run's output file: lines from stdout and stderr, each with a timestamp and its stream.
final class OutputFile: Sendable {
    private struct State {
        var handle: FileHandle?
        var written: Int
        var truncated = false
    }
    private let state: Mutex<State>
    private let limit: Int

    init(url: URL, limit: Int) throws {
        if !FileManager.default.fileExists(atPath: url.path) { _ = FileManager.default.createFile(atPath: url.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: url)
        let size = Int(try handle.seekToEnd())
        state = Mutex(State(handle: handle, written: size))
        self.limit = limit
    }

    func line(_ stream: String, _ text: Substring) { append("\(Self.timestamp()) \(stream)| \(text)\n") }
    func note(_ text: String) { append("\(Self.timestamp()) drover| \(text)\n") }

    private func append(_ text: String) {
        state.withLock { state in
            guard let handle = state.handle, !state.truncated else { return }
            let bytes = Data(text.utf8)
            if state.written + bytes.count > limit {
                state.truncated = true
                try? handle.write(contentsOf: Data("\(Self.timestamp()) drover| output limit of \(limit) bytes reached: the rest is dropped\n".utf8))
                return
            }
            try? handle.write(contentsOf: bytes)
            state.written += bytes.count
        }
    }

    func close() {
        state.withLock { state in
            try? state.handle?.close()
            state.handle = nil
        }
    }

    static func timestamp() -> String {
        Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}

/// A child process in its own process group, its output copied line by line to a file.
struct ChildGroup: Sendable {
    let pid: pid_t
    let output: OutputFile
    /// Signalled by each of the two output readers when its pipe reaches end of file.
    let readersDone: DispatchSemaphore

    static func spawn(_ invocation: ShellMethod.Invocation, output: OutputFile) throws -> ChildGroup {
        var outPipe: [Int32] = [0, 0]
        var errPipe: [Int32] = [0, 0]
        guard pipe(&outPipe) == 0, pipe(&errPipe) == 0 else { throw DroverError(.jobFailed, "cannot create pipes: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        // Nothing else of the executor's goes to the command: an inherited listening socket or
        // client connection would outlive a crashed executor in the orphaned command, and its
        // clients would hang on it.
        guard drover_spawn_addclosefrom(&actions, 3) == 0 else {
            throw DroverError(.jobFailed, "cannot prepare the command's descriptors: \(String(cString: strerror(errno)))")
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        var environment = ProcessInfo.processInfo.environment
        for (key, value) in invocation.environment { environment[key] = value }
        // Swift does not see glibc's posix_spawn_file_actions_addchdir_np: GNU env changes
        // the directory and then execs the command.
        var command = invocation.command
        if let directory = invocation.workingDirectory {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw DroverError(.jobFailed, "the working directory \(directory) does not exist on this executor")
            }
            command = ["/usr/bin/env", "-C", directory, "--"] + command
        }
        let argv = command.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, command[0], &actions, &attributes, argv, envp)
        close(outPipe[1])
        close(errPipe[1])
        guard rc == 0 else {
            close(outPipe[0])
            close(errPipe[0])
            throw DroverError(.jobFailed, "cannot run \(invocation.command[0]): \(String(cString: strerror(rc)))")
        }
        let readersDone = DispatchSemaphore(value: 0)
        for (descriptor, stream) in [(outPipe[0], "stdout"), (errPipe[0], "stderr")] {
            Thread {
                copyLines(from: descriptor, stream: stream, to: output)
                readersDone.signal()
            }.start()
        }
        return ChildGroup(pid: pid, output: output, readersDone: readersDone)
    }

    /// Reads a pipe until the process group closes it, one line at a time.
    private static func copyLines(from descriptor: Int32, stream: String, to output: OutputFile) {
        var pending = Data()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(descriptor, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            pending.append(contentsOf: buffer[0..<count])
            while let newline = pending.firstIndex(of: 0x0A) {
                output.line(stream, Substring(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)))
                pending.removeSubrange(pending.startIndex...newline)
            }
        }
        if !pending.isEmpty { output.line(stream, Substring(String(decoding: pending, as: UTF8.self))) }
        close(descriptor)
    }

    /// Waits for the process and its last output, and returns its exit status (128 + signal
    /// if killed). Output is awaited for at most a second after the exit: a background process
    /// the command left behind may hold the pipes open for much longer.
    func wait() async -> Int32 {
        let pid = self.pid
        let readersDone = self.readersDone
        return await withCheckedContinuation { continuation in
            Thread {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                let deadline = DispatchTime.now() + .seconds(1)
                _ = readersDone.wait(timeout: deadline)
                _ = readersDone.wait(timeout: deadline)
                continuation.resume(returning: status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f))
            }.start()
        }
    }

    /// SIGTERM to the whole group, SIGKILL five seconds later if anything is left.
    func stop() {
        let group = -pid
        kill(group, SIGTERM)
        Thread {
            sleep(5)
            kill(group, SIGKILL)
        }.start()
    }
}

/// The runs whose commands are running now.
final class ActiveRuns: Sendable {
    private let keys = Mutex<Set<String>>([])
    func insert(_ key: String) { keys.withLock { _ = $0.insert(key) } }
    func remove(_ key: String) { keys.withLock { _ = $0.remove(key) } }
    func contains(_ key: String) -> Bool { keys.withLock { $0.contains(key) } }
}

/// A flag one task sets and another reads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
}
