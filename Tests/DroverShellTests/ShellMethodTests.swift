import DroverExecutor
import DroverProtocol
import DroverShell
import Foundation
import Testing

@Suite("The shell method (real processes, no server)", .timeLimit(.minutes(1)))
struct ShellMethodTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("drover-shell-\(UUID().uuidString.prefix(8))")
    var shell: ShellMethod { ShellMethod(outputDirectory: directory) }

    func run(_ arguments: JSONValue, job: String = "j-test") async throws -> JSONValue? {
        try await shell.handler(TaskContext(job: job, run: 1, arguments: arguments))
    }

    func output(job: String = "j-test") throws -> String {
        try String(contentsOf: shell.outputFile(job: job, run: 1), encoding: .utf8)
    }

    @Test func runsACommandAndKeepsItsOutputWithTimestamps() async throws {
        let result = try await run(["command": ["bash", "-c", "echo out; echo err >&2; echo \"$GREETING from $(pwd)\""],
                                    "env": ["GREETING": "hello"], "workingDirectory": "/tmp"])
        #expect(result == ["exitCode": 0])
        let text = try output()
        #expect(text.contains("stdout| out"))
        #expect(text.contains("stderr| err"))
        #expect(text.contains("stdout| hello from /tmp"))
        #expect(text.contains("drover| exited with status 0"))
        // Every line starts with an ISO 8601 time.
        for line in text.split(separator: "\n") { #expect(line.hasPrefix("20"), "\(line)") }
    }

    @Test func theCommandInheritsNoDescriptorOfTheExecutor() async throws {
        // Something the executor holds open, as its sockets are: the command must not get it.
        // Above ls's own descriptors, so the check cannot be fooled by ls reusing the number.
        let opened = open("/dev/null", O_RDONLY)
        let held = fcntl(opened, F_DUPFD, 100)
        close(opened)
        defer { close(held) }
        #expect(held >= 100)
        // ls lists its own descriptors: 0, 1, 2 and the one it reads the directory with.
        _ = try await run(["command": ["ls", "/proc/self/fd"]])
        let descriptors = try output().split(separator: "\n").compactMap { line in
            line.split(separator: "stdout| ").last.flatMap { Int32($0) }
        }
        #expect(Set(descriptors).isSubset(of: [0, 1, 2, 3]), "\(descriptors)")
        #expect(!descriptors.contains(held))
    }

    @Test func aNonZeroExitFailsTheRun() async throws {
        let error = await #expect(throws: DroverError.self) { try await run(["command": "exit 3"]) }
        #expect(error?.message == "exited with status 3")
    }

    @Test func aTimeoutKillsTheWholeProcessGroup() async throws {
        let pidFile = directory.appendingPathComponent("grandchild.pid").path
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let error = await #expect(throws: DroverError.self) {
            let script = "sleep 30 & echo $! > \(pidFile); wait"
            return try await run(["command": ["bash", "-c", .string(script)], "timeoutSeconds": 0.5])
        }
        #expect(error?.message == "timed out after 0.5 seconds")
        let grandchild = try #require(Int32(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        // The background `sleep` got the group's SIGTERM too: it is gone, or a zombie waiting
        // for init to reap it.
        func isGone() -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(grandchild)/stat", encoding: .utf8) else { return true }
            return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
        }
        var gone = isGone()
        for _ in 0..<100 where !gone {
            try await Task.sleep(for: .milliseconds(20))
            gone = isGone()
        }
        #expect(gone, "the grandchild \(grandchild) survived the timeout")
    }

    /// The command would run for 10 minutes: the run ends only because the stop ended it (the
    /// suite's time limit fails the test otherwise), and its process is gone when it has.
    @Test func stoppingTheTaskStopsTheCommand() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let fifo = directory.appendingPathComponent("stop-\(UUID().uuidString.prefix(8))").path
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let task = Task { try await run(["command": ["bash", "-c", .string("echo $$ > \(fifo); exec sleep 600")]], job: "j-stop") }
        // The command says it started by writing its pid into the FIFO (opening it blocks until then).
        let pid = try await Task.detached {
            let handle = try #require(FileHandle(forReadingAtPath: fifo))
            defer { try? handle.close() }
            return try #require(Int32(String(decoding: handle.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
        }.value
        task.cancel()
        let result = await task.result
        #expect(throws: CancellationError.self) { try result.get() }
        #expect(kill(pid, 0) != 0 && errno == ESRCH, "the command \(pid) outlived its stopped run")
        #expect(try output(job: "j-stop").contains("stopped: terminating the process group"))
    }

    @Test func badArgumentsAreNamed() async throws {
        await #expect(throws: DroverError.self) { try await run(["command": 42]) }
        await #expect(throws: DroverError.self) { try await run(["command": []]) }
        let missing = await #expect(throws: DroverError.self) { try await run(["command": ["/no/such/program"]]) }
        #expect(missing?.message.contains("cannot run /no/such/program") == true)
    }
}
