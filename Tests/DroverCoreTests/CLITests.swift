import DroverClient
import DroverExecutor
import DroverManager
import DroverProtocol
import Foundation
import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// The `drover` binary as a user runs it, against a real ZooKeeper and daemons.
@Suite("The drover command", .serialized, .timeLimit(.minutes(3)))
struct CLITests {
    /// Numbers out of range are refused before anything is written, naming the flag or the field —
    /// before the fix some trapped the client (SIGILL) or were accepted and trapped every manager.
    @Test func outOfRangeNumbersAreRefusedWithTheirNameNotATrap() async throws {
        let flags: [([String], String)] = [
            (["--every", "9223371000000000s"], "--every"), (["--every", "1e16s"], "--every"), (["--every", "inf"], "--every"),
            (["--every", "nan"], "--every"), (["--timeout", "nan"], "--timeout"), (["--timeout", "1e300"], "--timeout"),
            (["--count", "0"], "--count"), (["--slots", "0"], "--slots"),
            (["--retry", "0"], "--retry"), (["--retry", "101"], "--retry"), (["--retry", "2", "--retry-on", "sometimes"], "--retry-on"),
            (["--retry-delay", "5s"], "--retry"), (["--retry", "2", "--retry-delay", "-1s"], "--retry-delay"), (["--priority", "0"], "--priority"),
            (["--priority", "101"], "--priority"), (["--on-failure", "continue"], "--count"), (["--at", "tomorrow"], "--at"),
            (["--at", "10m", "--every", "1h"], "--at"), (["--cron", "0 25 * * *"], "--cron"), (["--time-zone", "Europe/Berlin"], "--time-zone"),
        ]
        for (arguments, name) in flags {
            let run = try await ChildProcess.runDrover(["submit"] + arguments + ["--", "echo", "x"], environment: ["DROVER_ZK": "127.0.0.1:1"])
            #expect(run.status == 64, "\(arguments): \(run.status) \(run.stderr)")
            #expect(run.stderr.contains(name), "\(arguments): \(run.stderr)")
        }
        let files: [(String, String, String)] = [
            ("json", #"{"method":"shell","kind":"infinite","schedule":{"reference":"2021-01-31T21:01:00Z","intervalSeconds":1e300}}"#, "schedule.intervalSeconds"),
            ("yaml", "method: shell\nkind: infinite\nschedule: {reference: '2021-01-31T21:01:00Z', intervalSeconds: .nan}\n", "schedule.intervalSeconds"),
            ("yaml", "method: shell\nkind: infinite\nschedule: {reference: '2021-01-31T21:01:00Z', intervalSeconds: .inf}\n", "schedule.intervalSeconds"),
            ("json", #"{"method":"shell","arguments":{"command":["true"],"timeoutSeconds":1e300}}"#, "arguments.timeoutSeconds"),
            ("yaml", "method: shell\narguments: {command: [\"true\"]}\nretry: {maxAttempts: 0}\n", "retry.maxAttempts"),
            ("yaml", "method: shell\narguments: {command: [\"true\"]}\nretry: {maxAttempts: 2, multiplier: 1e300}\n", "retry.multiplier"),
            ("json", #"{"method":"shell","arguments":{"command":["true"]},"priority":-5}"#, "priority"),
        ]
        for (ext, text, field) in files {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID().uuidString.prefix(6)).\(ext)").path
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let run = try await ChildProcess.runDrover(["submit", "-f", file], environment: ["DROVER_ZK": "127.0.0.1:1"])
            #expect(run.status == 1, "\(text): \(run.status) \(run.stderr)")
            #expect(run.stderr.contains(field), "\(text): \(run.stderr)")
        }
    }

    /// Job files are read strictly: a typo is named, not dropped; nothing is submitted silently.
    @Test func jobFilesAreReadStrictly() async throws {
        let env = ["DROVER_ZK": "127.0.0.1:1"]
        let cases: [(String, String, String)] = [
            ("yaml", "method: shell\narguments: {command: [echo, x]}\nconstraint: {zone: a}\n", "constraint: not a field of a job spec"),
            ("json", #"{"method": "shell", "resources": {"gpus": 1}}"#, "resources.gpus: not a field of a job spec"),
            ("json", #"{"method": "shell", "retry": {"maxAttempt": 3}}"#, "retry.maxAttempt: not a field of a job spec"),
            ("json", #"{"method": "shell", "arguments": "echo x"}"#, "arguments: shell:"),
            ("json", #"{"method": 42}"#, "method: expected String"),
            ("jsonl", "\n\n", "no job specs in it"),
        ]
        for (ext, text, message) in cases {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("strict-\(UUID().uuidString.prefix(6)).\(ext)").path
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let run = try await ChildProcess.runDrover(["submit", "-f", file], environment: env)
            #expect(run.status == 1, "\(text): \(run.status) \(run.stderr)")
            #expect(run.stderr.contains(message), "\(text): \(run.stderr)")
        }
    }

    @Test func aDeadExecutorWithNoTasksCanBeForgottenAndOnlyThen() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-forget")
        let env = ["DROVER_ZK": root]
        let zk = try await ZooKeeperClient.connect(to: root)
        let layout = Layout()
        // Three executors as they are left behind: one alive, one holding a task, one empty.
        for id in ["alive", "busy", "gone"] {
            try await zk.createPath(layout.executor(id))
            try await zk.createPath(layout.assignments)
            let tasks = id == "busy" ? [TaskRecord(job: "j-1", run: 1, method: "m", arguments: nil, resources: Resources())] : []
            _ = try await zk.create(layout.executorAssignments(id), data: try Codec.encode(ExecutorState(executor: id, tasks: tasks)), mode: .persistent)
            _ = try await zk.create(layout.executorProgress(id), data: try Codec.encode(ExecutorProgress(executor: id)), mode: .persistent)
        }
        _ = try await zk.create(layout.executorAlive("alive"), data: Array("{}".utf8), mode: .ephemeral)
        let alive = try await ChildProcess.runDrover(["forget", "alive"], environment: env)
        #expect(alive.status == 1 && alive.stderr.contains("is alive: stop it first"), "\(alive.stderr)")
        let busy = try await ChildProcess.runDrover(["forget", "busy"], environment: env)
        #expect(busy.status == 1 && busy.stderr.contains("still holds 1 task(s)"), "\(busy.stderr)")
        let gone = try await ChildProcess.runDrover(["forget", "gone"], environment: env)
        #expect(gone.status == 0, "\(gone.stderr)")
        #expect(try await zk.exists(layout.executor("gone")) == nil)
        #expect(try await zk.exists(layout.executor("busy")) != nil)
        let unknown = try await ChildProcess.runDrover(["forget", "nobody"], environment: env)
        #expect(unknown.status == 1 && unknown.stderr.contains("no executor nobody"), "\(unknown.stderr)")
        await zk.close()
    }

    @Test func submitSaysWhenNoManagerRuns() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-nomanager")
        let run = try await ChildProcess.runDrover(["submit", "--", "true"], environment: ["DROVER_ZK": root])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("no manager is running"), "\(run.stderr)")
    }

    @Test func submitFollowAndReadResultsLikeAUser() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli")
        let env = ["DROVER_ZK": root]
        let manager = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1"], name: "cli-manager")
        let outputDir = FileManager.default.temporaryDirectory.appendingPathComponent("drover-cli-\(UUID().uuidString.prefix(8))").path
        let executor = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1", "--output-dir", outputDir, "--http", "127.0.0.1:0"], name: "cli-executor")
        defer {
            manager.signal(SIGKILL)
            executor.signal(SIGKILL)
        }
        // Shorthand: a command.
        let submitted = try await ChildProcess.runDrover(["submit", "--json", "--", "bash", "-c", "echo hello from drover"], environment: env)
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let id = try #require(try JSONDecoder().decode([String: String].self, from: Data(submitted.stdout.utf8))["id"])

        let zk = try await ZooKeeperClient.connect(to: root)
        let record = try await finalRecord(DroverClient(zookeeper: zk), id)
        #expect(record.state == .succeeded)
        let status = try await ChildProcess.runDrover(["status", id], environment: env)
        #expect(status.status == 0)
        #expect(status.stdout.contains("state      succeeded"))
        let result = try await ChildProcess.runDrover(["result", id], environment: env)
        #expect(result.stdout == "{\"exitCode\":0}\n")
        let log = try String(contentsOfFile: outputDir + "/\(id)/1.log", encoding: .utf8)
        #expect(log.contains("stdout| hello from drover"))

        // From a file, then the listing.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("job-\(UUID().uuidString.prefix(6)).json").path
        try #"{"method": "sample.echo", "arguments": {"x": 1}, "kind": "finite", "count": 2, "name": "from-file"}"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        let fromFile = try await ChildProcess.runDrover(["submit", "-f", file], environment: env)
        #expect(fromFile.status == 0, "\(fromFile.stderr)")
        let fileJob = fromFile.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await finalRecord(DroverClient(zookeeper: zk), fileJob).runsEnded == 2)
        // The same in YAML.
        let yamlFile = FileManager.default.temporaryDirectory.appendingPathComponent("job-\(UUID().uuidString.prefix(6)).yaml").path
        try """
            name: from-yaml
            method: sample.echo
            arguments:
              greeting: hello
              numbers: [1, 2]
            constraints: {}
            """.write(toFile: yamlFile, atomically: true, encoding: .utf8)
        let fromYAML = try await ChildProcess.runDrover(["submit", "-f", yamlFile], environment: env)
        #expect(fromYAML.status == 0, "\(fromYAML.stderr)")
        let yamlJob = fromYAML.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let yamlRecord = try await finalRecord(DroverClient(zookeeper: zk), yamlJob)
        #expect(yamlRecord.history.first?.result == ["greeting": "hello", "numbers": [1, 2]])

        let jobs = try await ChildProcess.runDrover(["jobs", "--json"], environment: env)
        let listed = try JSONDecoder().decode([JobRecord].self, from: Data(jobs.stdout.utf8))
        #expect(Set(listed.map(\.id)) == [id, fileJob, yamlJob])
        // The human tables: aligned columns, relative times.
        let table = try await ChildProcess.runDrover(["jobs"], environment: env)
        var lines = table.stdout.split(separator: "\n").map(String.init)
        // The last line counts what waits or runs, as the leader last wrote it (within a second).
        let summary = lines.popLast() ?? ""
        #expect(summary.hasPrefix("in all: ") && summary.contains(" waiting for room, ") && summary.contains(" running (the leader's count"), "\(table.stdout)")
        #expect(lines.count == 4, "\(table.stdout)")
        let header = try #require(lines.first)
        #expect(header.hasPrefix("ID"))
        for column in ["STATE", "SUBMITTED"] {
            let start = try #require(header.range(of: column)).lowerBound.utf16Offset(in: header)
            for row in lines.dropFirst() {
                let cell = row.dropFirst(start).prefix { $0 != " " }
                if column == "STATE" { #expect(JobState(rawValue: String(cell)) == .succeeded, "\(table.stdout)") }
                if column == "SUBMITTED" { #expect(cell.hasSuffix("s"), "\(table.stdout)") }
            }
        }
        #expect(lines.dropFirst().allSatisfy { $0.hasSuffix("s ago") }, "\(table.stdout)")
        let executors = try await ChildProcess.runDrover(["executors"], environment: env)
        let executorLines = executors.stdout.split(separator: "\n")
        #expect(executorLines.first?.hasPrefix("ID") == true)
        #expect(executorLines.dropFirst().first?.hasPrefix("e1  yes") == true, "\(executors.stdout)")
        // Its direct-path load: nothing reserved or claimed (it ran only centrally placed jobs).
        #expect(executorLines.first?.contains("DIRECT") == true && executorLines.dropFirst().first?.contains("0 reserved, 0 claimed") == true, "\(executors.stdout)")
        await zk.close()
    }

    /// A daemon the test harness starts exits once its parent is gone — also while it still waits
    /// for a ZooKeeper that is not there (an orphaned manager ran on for half an hour, and one
    /// never connected stayed for good).
    @Test func aDaemonWhoseParentIsGoneExitsEvenBeforeItConnects() async throws {
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        // The shell starts the manager in the background, says its pid and exits: the manager is
        // orphaned at once, with the pipe as its output.
        shell.arguments = ["-c", "DROVER_EXIT_WITH_PARENT=1 DROVER_PARENT_PID=$$ \(ChildProcess.droverExecutable) manager --zk 127.0.0.1:1/nothing --id orphan 2>&1 & echo $!"]
        let output = Pipe()
        shell.standardOutput = output
        try shell.run()
        shell.waitUntilExit()
        // The pipe ends when its last writer, the manager, is gone (the suite's time limit fails the test otherwise).
        let said = await Task.detached { String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }.value
        #expect(said.contains("drover: the parent process is gone: exiting"), "\(said)")
    }

    @Test func logsPrintsAndFollowsARunsOutputFromItsExecutor() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-logs")
        let env = ["DROVER_ZK": root]
        let manager = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1"], name: "logs-manager")
        let outputDir = FileManager.default.temporaryDirectory.appendingPathComponent("drover-logs-\(UUID().uuidString.prefix(8))").path
        let executor = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1", "--output-dir", outputDir, "--http", "127.0.0.1:0"],
            name: "logs-executor")
        defer {
            manager.signal(SIGKILL)
            executor.signal(SIGKILL)
        }
        // The command prints a line, then waits for the test to let it go on.
        let gate = FileManager.default.temporaryDirectory.appendingPathComponent("drover-gate-\(UUID().uuidString.prefix(8))").path
        let submitted = try await ChildProcess.runDrover(
            ["submit", "--", "bash", "-c", "echo first line; while [ ! -e \(gate) ]; do sleep 0.05; done; echo second line >&2"],
            environment: env)
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let id = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)

        // Followed from before the run starts: waits for it, prints as it goes, ends with the run.
        let follower = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["logs", id, "-f", "--zk", root], name: "logs-follow")
        defer {
            // Even when the test fails: nothing it started may outlive it.
            _ = FileManager.default.createFile(atPath: gate, contents: nil)
            follower.signal(SIGKILL)
        }
        try await waitUntil("the follower prints the first line", log: follower) { follower.log.contains("stdout| first line") }
        #expect(!follower.log.contains("stderr| second line"))
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(await follower.wait() == 0, "\(follower.log)")
        #expect(follower.log.contains("stderr| second line"))
        #expect(follower.log.contains("drover| exited with status 0"))

        // Without -f, after the end: exactly what the executor kept.
        let zk = try await ZooKeeperClient.connect(to: root)
        #expect(try await finalRecord(DroverClient(zookeeper: zk), id).state == .succeeded)
        let printed = try await ChildProcess.runDrover(["logs", id], environment: env)
        #expect(printed.status == 0, "\(printed.stderr)")
        #expect(printed.stdout == (try String(contentsOfFile: outputDir + "/\(id)/1.log", encoding: .utf8)))
        #expect(printed.stdout.components(separatedBy: "stdout| first line").count == 2)

        // Runs that have no output, and runs that do not exist: clear messages, non-zero exits.
        let echo = try await DroverClient(zookeeper: zk).submit(JobSpec(method: "sample.echo", arguments: ["x": 1]))
        _ = try await finalRecord(DroverClient(zookeeper: zk), echo)
        let none = try await ChildProcess.runDrover(["logs", echo], environment: env)
        #expect(none.status != 0)
        #expect(none.stderr.contains("no output for run 1 of job \(echo)"), "\(none.stderr)")
        let noRun = try await ChildProcess.runDrover(["logs", id, "--run", "7"], environment: env)
        #expect(noRun.status != 0)
        #expect(noRun.stderr.contains("never ran run 7"), "\(noRun.stderr)")
        await zk.close()
    }

    /// An executor whose output needs a token (issue 16): `drover logs` without it is refused with
    /// what to do, and with it (from the environment) prints the output.
    @Test func logsFromAnExecutorThatWantsAToken() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-logs-token")
        let tokenFile = FileManager.default.temporaryDirectory.appendingPathComponent("drover-token-\(UUID().uuidString.prefix(8))").path
        try "t0ken-\(UUID().uuidString)\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: tokenFile) }
        chmod(tokenFile, 0o644)
        let refusedStart = try await ChildProcess.runDrover(["executor", "--zk", root, "--id", "e1", "--http-token-file", tokenFile])
        #expect(refusedStart.status != 0 && refusedStart.stderr.contains("chmod 600"), "\(refusedStart.stderr)")
        chmod(tokenFile, 0o600)
        let manager = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1"], name: "token-manager")
        let executor = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1", "--http-token-file", tokenFile], name: "token-executor")
        defer {
            manager.signal(SIGKILL)
            executor.signal(SIGKILL)
        }
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        try await client.waitForRegistration(of: ["e1"])
        #expect(try await client.registration(of: "e1")?.address?.hasPrefix("http://127.0.0.1:") == true, "loopback by default")
        let id = try await client.submit(JobSpec(method: "shell", arguments: ["command": ["echo", "guarded"]]))
        _ = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
        let refused = try await ChildProcess.runDrover(["logs", id, "--zk", root])
        #expect(refused.status != 0 && refused.stderr.contains("--http-token-file"), "\(refused.stderr)")
        let printed = try await ChildProcess.runDrover(["logs", id, "--zk", root], environment: ["DROVER_HTTP_TOKEN_FILE": tokenFile])
        #expect(printed.status == 0 && printed.stdout.contains("stdout| guarded"), "\(printed.stdout) \(printed.stderr)")
        await zk.close()
    }

    /// An executor serving output over HTTPS with client certificates: `drover logs` reads it with
    /// the CA and a client certificate, and says why it cannot without them.
    @Test func logsFromAnExecutorServingTLS() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-logs-tls")
        let certificates = try await TestCertificates.make()
        defer { try? FileManager.default.removeItem(atPath: certificates.directory) }
        let daemons = try Daemons.launch(
            root: root, name: "tls-logs",
            executors: [
                (
                    "e1",
                    [
                        "--http-tls-cert", certificates.serverCertificate, "--http-tls-key", certificates.serverKey, "--http-tls-client-ca",
                        certificates.authority,
                    ]
                )
            ])
        defer { daemons.stop() }
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        try await client.waitForRegistration(of: ["e1"])
        #expect(try await client.registration(of: "e1")?.address?.hasPrefix("https://127.0.0.1:") == true)
        let id = try await client.submit(JobSpec(method: "shell", arguments: ["command": ["echo", "encrypted"]]))
        _ = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
        let untrusting = try await ChildProcess.runDrover(["logs", id, "--zk", root])
        #expect(untrusting.status != 0 && untrusting.stderr.contains("give --http-ca"), "\(untrusting.stderr)")
        let noCertificate = try await ChildProcess.runDrover(["logs", id, "--zk", root, "--http-ca", certificates.authority])
        #expect(noCertificate.status != 0 && noCertificate.stderr.contains("--http-cert"), "\(noCertificate.stderr)")
        let printed = try await ChildProcess.runDrover(
            ["logs", id, "--zk", root, "--http-ca", certificates.authority, "--http-cert", certificates.clientCertificate, "--http-key", certificates.clientKey])
        #expect(printed.status == 0 && printed.stdout.contains("stdout| encrypted"), "\(printed.stdout) \(printed.stderr)")
        await zk.close()
    }

    @Test func logsFollowCarriesOnThroughAnExecutorRestart() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-logs-restart")
        let manager = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1"], name: "restart-manager")
        let outputDir = FileManager.default.temporaryDirectory.appendingPathComponent("drover-logs-\(UUID().uuidString.prefix(8))").path
        let executorArguments = [
            "executor", "--zk", root, "--id", "e1", "--output-dir", outputDir, "--http", "127.0.0.1:0", "--session-timeout", "2",
        ]
        var executor = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, executorArguments, name: "restart-executor")
        defer {
            manager.signal(SIGKILL)
            executor.signal(SIGKILL)
        }
        let gate = FileManager.default.temporaryDirectory.appendingPathComponent("drover-gate-\(UUID().uuidString.prefix(8))").path
        let submitted = try await ChildProcess.runDrover(
            ["submit", "--", "bash", "-c", "echo started; while [ ! -e \(gate) ]; do sleep 0.05; done; echo finished"],
            environment: ["DROVER_ZK": root])
        let id = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let follower = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["logs", id, "-f", "--zk", root], name: "restart-follow")
        defer {
            _ = FileManager.default.createFile(atPath: gate, contents: nil)
            follower.signal(SIGKILL)
        }
        try await waitUntil("the follower prints the start", log: follower) { follower.log.contains("stdout| started") }
        await executor.crash()
        executor = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, executorArguments, name: "restart-executor-2")
        // The restarted executor runs the task again (attempt 2) and appends to the same file.
        try await waitUntil("the restarted executor runs attempt 2", log: follower) { follower.log.contains("drover| attempt 2") }
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(await follower.wait() == 0, "\(follower.log)")
        let log = follower.log
        #expect(log.components(separatedBy: "drover| attempt 1").count == 2, "printed once: \(log)")
        #expect(log.components(separatedBy: "stdout| started").count == 3, "once per attempt: \(log)")
        #expect(log.contains("stdout| finished"))
        #expect(log.contains("drover| exited with status 0"))
    }

    @Test func stopDrainAndCancelFromTheCommandLine() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-control")
        let env = ["DROVER_ZK": root]
        let manager = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1"], name: "control-manager")
        let executor = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1", "--slots", "1", "--http", "127.0.0.1:0"],
            name: "control-executor")
        defer {
            manager.signal(SIGKILL)
            executor.signal(SIGKILL)
        }
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        // An infinite job runs until `drover stop`.
        let forever = try await ChildProcess.runDrover(["submit", "--forever", "--", "sleep", "0.2"], environment: env)
        #expect(forever.status == 0, "\(forever.stderr)")
        let foreverID = forever.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try await withDiagnosis(client, foreverID) {
            for try await record in client.updates(foreverID) where record.runsEnded >= 2 { break }
        }
        let stop = try await ChildProcess.runDrover(["stop", foreverID], environment: env)
        #expect(stop.status == 0)
        #expect(stop.stdout == "stop requested for \(foreverID)\n")
        #expect(try await withDiagnosis(client, foreverID) { try await finalRecord(client, foreverID) }.state == .stopped)

        // A drained executor takes nothing new: the next job waits, saying why, and can be cancelled.
        let drain = try await ChildProcess.runDrover(["drain", "e1"], environment: env)
        #expect(drain.status == 0, "\(drain.stderr)")
        try await withDiagnosis(client, forever.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) {
            try await waitUntil(client, watching: [client.layout.executorAssignments("e1")]) { try await client.executors().first?.state?.draining == true }
        }
        let waiting = try await ChildProcess.runDrover(["submit", "--", "true"], environment: env)
        let waitingID = waiting.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try await withDiagnosis(client, waitingID) {
            for try await record in client.updates(waitingID) where record.state == .waiting { break }
        }
        let status = try await ChildProcess.runDrover(["status", waitingID], environment: env)
        #expect(status.stdout.contains("waiting"), "\(status.stdout)")
        #expect(status.stdout.contains("draining"), "the reason names the draining executor: \(status.stdout)")
        let cancel = try await ChildProcess.runDrover(["cancel", waitingID], environment: env)
        #expect(cancel.status == 0, "\(cancel.stderr)")
        #expect(try await withDiagnosis(client, waitingID) { try await finalRecord(client, waitingID) }.state == .cancelled)
        let again = try await ChildProcess.runDrover(["cancel", waitingID], environment: env)
        #expect(again.status != 0)
        #expect(again.stderr.contains("already cancelled"), "\(again.stderr)")
        // Undrained, it takes work again.
        let undrain = try await ChildProcess.runDrover(["undrain", "e1"], environment: env)
        #expect(undrain.status == 0, "\(undrain.stderr)")
        let after = try await ChildProcess.runDrover(["submit", "--", "true"], environment: env)
        let afterID = after.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await withDiagnosis(client, afterID) { try await finalRecord(client, afterID) }.state == .succeeded)
        let unknownExecutor = try await ChildProcess.runDrover(["drain", "nobody"], environment: env)
        #expect(unknownExecutor.status != 0)
        #expect(unknownExecutor.stderr.contains("no executor nobody"))
        await zk.close()
    }

    /// A command that times out, retried as the flags say; `drover status` shows each attempt.
    @Test func retriesFromTheCommandLine() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-retry")
        let env = ["DROVER_ZK": root]
        let manager = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1"], name: "retry-manager")
        let executor = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1", "--http", "127.0.0.1:0"], name: "retry-executor")
        defer {
            manager.signal(SIGKILL)
            executor.signal(SIGKILL)
        }
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        let submit = try await ChildProcess.runDrover(
            ["submit", "--retry", "2", "--retry-delay", "0.1s", "--retry-on", "timedOut", "--timeout", "0.3", "--priority", "70", "--", "sleep", "5"],
            environment: env)
        #expect(submit.status == 0, "\(submit.stderr)")
        let id = submit.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let record = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
        #expect(record.state == .failed)
        #expect(record.history.map(\.failure) == [.timedOut, .timedOut])
        #expect(record.spec.priority == 70)
        let status = try await ChildProcess.runDrover(["status", id], environment: env)
        #expect(status.stdout.contains("up to 2 attempts when a run ends timedOut"), "\(status.stdout)")
        #expect(status.stdout.contains("failed (timedOut)"), "\(status.stdout)")
        #expect(status.stdout.contains("priority   70"), "\(status.stdout)")
        #expect(status.stdout.contains("1 retried"), "\(status.stdout)")

        // A cron job waits for its next match; status shows the next three in the job's zone.
        let cron = try await ChildProcess.runDrover(["submit", "--cron", "0 3 * * *", "--time-zone", "Europe/Berlin", "--", "true"], environment: env)
        #expect(cron.status == 0, "\(cron.stderr)")
        let cronID = cron.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let waiting = try await withDiagnosis(client, cronID) {
            for try await record in client.updates(cronID) where record.nextRunAt != nil { return record }
            throw CancellationError()
        }
        #expect(waiting.spec.schedule?.cron?.expression == "0 3 * * *")
        let cronStatus = try await ChildProcess.runDrover(["status", cronID], environment: env)
        let line = cronStatus.stdout.split(separator: "\n").first { $0.hasPrefix("schedule") }.map(String.init) ?? ""
        #expect(line.contains(#"cron "0 3 * * *" in Europe/Berlin; next: "#), "\(cronStatus.stdout)")
        #expect(line.components(separatedBy: " 03:00 ").count == 4, "three runs at 03:00 local: \(line)")
        _ = try await ChildProcess.runDrover(["stop", cronID], environment: env)
        #expect(try await withDiagnosis(client, cronID) { try await finalRecord(client, cronID) }.state == .stopped)
        await zk.close()
    }

    /// Suspend, resume and trigger a scheduled job, and start a job later, as a user would.
    @Test func suspendResumeTriggerAndAtFromTheCommandLine() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-lifecycle")
        let env = ["DROVER_ZK": root]
        let manager = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1"], name: "lifecycle-manager")
        let executor = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1", "--http", "127.0.0.1:0"], name: "lifecycle-executor")
        defer {
            manager.signal(SIGKILL)
            executor.signal(SIGKILL)
        }
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        func drover(_ arguments: String...) async throws -> (status: Int32, stdout: String, stderr: String) {
            try await ChildProcess.runDrover(arguments, environment: env)
        }
        // Hourly from now: its first time is an hour away.
        let id = try await drover("submit", "--every", "1h", "--", "true").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try await withDiagnosis(client, id) {
            for try await record in client.updates(id) where record.nextRunAt != nil { break }
        }
        let trigger = try await drover("trigger", id)
        #expect(trigger.status == 0, "\(trigger.stderr)")
        var record = try await withDiagnosis(client, id) {
            for try await record in client.updates(id) where record.runsEnded == 1 && record.state == .waiting { return record }
            throw CancellationError()
        }
        #expect((record.nextRunAt ?? 0) > Timestamp.now() + 3_000_000, "the hourly schedule goes on")
        #expect(try await drover("suspend", id).status == 0)
        record = try await withDiagnosis(client, id) {
            for try await record in client.updates(id) where record.suspended == true { return record }
            throw CancellationError()
        }
        #expect(record.nextRunAt == nil)
        let status = try await drover("status", id)
        #expect(status.stdout.contains("suspended (drover resume continues it)"), "\(status.stdout)")
        let jobs = try await drover("jobs")
        #expect(jobs.stdout.contains("waiting (suspended)"), "\(jobs.stdout)")
        let again = try await drover("suspend", id)
        #expect(again.status != 0 && again.stderr.contains("suspended already"), "\(again.stderr)")
        #expect(try await drover("resume", id).status == 0)
        record = try await withDiagnosis(client, id) {
            for try await record in client.updates(id) where record.suspended == nil && record.nextRunAt != nil { return record }
            throw CancellationError()
        }
        #expect(record.state == .waiting)
        let notSuspended = try await drover("resume", id)
        #expect(notSuspended.status != 0 && notSuspended.stderr.contains("is not suspended"), "\(notSuspended.stderr)")
        _ = try await drover("stop", id)

        // Later: waits for its time, then runs.
        let later = try await drover("submit", "--at", "1s", "--", "true")
        #expect(later.status == 0, "\(later.stderr)")
        let laterID = later.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let ended = try await withDiagnosis(client, laterID) { try await finalRecord(client, laterID) }
        #expect(ended.state == .succeeded)
        let notBefore = try #require(ended.spec.notBefore)
        #expect(try #require(ended.history.first?.startedAt) >= notBefore)
        await zk.close()
    }

    /// `--overlap allow`: each time's run starts beside the running one, never more than
    /// `--max-concurrent` at once; `drover status` lists them, a trigger at the maximum is refused,
    /// and a stop stops them all (issue 15).
    @Test func anAllowJobRunsItsTimesBesideEachOtherUpToItsMaximum() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-allow")
        let env = ["DROVER_ZK": root]
        let manager = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1"], name: "allow-manager")
        let executor = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1", "--slots", "4", "--http", "127.0.0.1:0"], name: "allow-executor")
        defer {
            manager.signal(SIGKILL)
            executor.signal(SIGKILL)
        }
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        try await client.waitForRegistration(of: ["e1"])
        let refused = try await ChildProcess.runDrover(["submit", "--every", "1s", "--max-concurrent", "2", "--", "true"], environment: env)
        #expect(refused.status == 64 && refused.stderr.contains("--max-concurrent needs --overlap allow"), "\(refused.stderr)")
        let submitted = try await ChildProcess.runDrover(
            ["submit", "--every", "1s", "--overlap", "allow", "--max-concurrent", "2", "--", "sleep", "60"], environment: env)
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let id = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // Every version of the record until two runs run at once: never more than two in flight.
        let both = try await withDiagnosis(client, id) {
            for try await record in client.updates(id) {
                #expect((record.concurrentRuns?.count ?? 0) <= 2, "\(record.concurrentRuns ?? [])")
                if record.concurrentRuns?.filter({ $0.executor != nil }).count == 2 { return record }
            }
            throw CancellationError()
        }
        #expect(both.state == .running)
        #expect(both.concurrentRuns?.map(\.run) == [1, 2])
        let status = try await ChildProcess.runDrover(["status", id], environment: env)
        #expect(status.stdout.contains("overlap allow (at most 2 runs at once)"), "\(status.stdout)")
        #expect(status.stdout.contains("running    run 1 for its time") && status.stdout.contains("running    run 2 for its time"), "\(status.stdout)")
        let trigger = try await ChildProcess.runDrover(["trigger", id], environment: env)
        #expect(trigger.status != 0 && trigger.stderr.contains("its maximum at once"), "\(trigger.stderr)")
        #expect(try await ChildProcess.runDrover(["stop", id], environment: env).status == 0)
        let ended = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
        #expect(ended.state == .stopped)
        #expect(ended.history.map(\.outcome) == [.stopped, .stopped])
        #expect(ended.runsStarted == 2)
        await zk.close()
    }

    /// An executor restarted with other labels and capacity is placed on as it is now (issue 15:
    /// changes are picked up on restart): a job for the label and size it gained runs on it.
    @Test func anExecutorRestartedWithNewLabelsAndCapacityIsPlacedOnAsItIsNow() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-relabel")
        let env = ["DROVER_ZK": root]
        let manager = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1"], name: "relabel-manager")
        let first = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1", "--label", "zone=a", "--http", "127.0.0.1:0"], name: "relabel-e1")
        defer { manager.signal(SIGKILL) }
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        try await client.waitForRegistration(of: ["e1"])
        // Refused while no executor has the label: said at submit, nothing written.
        let refused = try await ChildProcess.runDrover(["submit", "--constraint", "zone=b", "--slots", "2", "--", "true"], environment: env)
        #expect(refused.status != 0 && refused.stderr.contains("no executor has the labels zone=b"), "\(refused.stderr)")
        first.signal(SIGTERM)
        _ = await first.wait()
        let second = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1", "--label", "zone=b", "--slots", "2", "--http", "127.0.0.1:0"],
            name: "relabel-e1-again")
        defer { second.signal(SIGKILL) }
        for try await update in zk.dataUpdates(of: client.layout.executorAlive("e1")) {
            if case .present(let node) = update, (try? Codec.decode(ExecutorRegistration.self, node.data))?.labels == ["zone": "b"] { break }
        }
        let submit = try await ChildProcess.runDrover(["submit", "--constraint", "zone=b", "--slots", "2", "--", "true"], environment: env)
        #expect(submit.status == 0, "\(submit.stderr)")
        let id = submit.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let record = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
        #expect(record.state == .succeeded)
        #expect(record.history.first?.executor == "e1")
        #expect(try await client.executors().first?.registration?.capacity.slots == 2)
        await zk.close()
    }

    /// Issue 13: a second executor started with the id of one that runs must not take over its
    /// registration (the two then deleted each other's for ever, and both ran its tasks): it
    /// refuses to start, saying why. A restart after kill -9 still takes over at once.
    @Test func aSecondExecutorWithTheIdOfALiveOneRefusesToStart() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-same-id")
        let first = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1"], name: "same-id-first")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        try await client.waitForRegistration(of: ["e1"])
        let before = try await zk.getData(client.layout.executorAlive("e1"))
        let second = try await ChildProcess.runDrover(["executor", "--zk", root, "--id", "e1"])
        #expect(second.status != 0)
        #expect(second.stderr.contains("executor id e1 is in use by process \(first.pid) on this host"), "\(second.stderr)")
        let after = try await zk.getData(client.layout.executorAlive("e1"))
        #expect(after.stat.ephemeralOwner == before.stat.ephemeralOwner && after.data == before.data, "the first keeps its registration")
        // Killed, it is replaced at once by a new process with its id (no wait for its session to end).
        first.signal(SIGKILL)
        _ = await first.wait()
        let clock = ContinuousClock()
        let restartedAt = clock.now
        let again = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1"], name: "same-id-again")
        defer { again.signal(SIGKILL) }
        for try await update in zk.dataUpdates(of: client.layout.executorAlive("e1")) {
            if case .present(let node) = update, node.stat.ephemeralOwner != before.stat.ephemeralOwner { break }
        }
        #expect(clock.now - restartedAt < .seconds(5), "taken over before the old session's 6 s timeout")
        await zk.close()
    }

    @Test func badInputGetsAClearErrorAndWritesNothing() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-bad")
        let env = ["DROVER_ZK": root]
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("jobs-\(UUID().uuidString.prefix(6)).jsonl").path
        try """
            {"method": "sample.echo"}
            {"method": "sample.echo", "kind": "finite", "count": 0}
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let invalid = try await ChildProcess.runDrover(["submit", "-f", file], environment: env)
        #expect(invalid.status != 0)
        #expect(invalid.stderr.contains("\(file):2: count: must be between 1 and 1000000000 (got 0)"), "\(invalid.stderr)")

        let badFlag = try await ChildProcess.runDrover(["submit", "--count", "0", "--", "true"], environment: env)
        #expect(badFlag.status == 64)
        #expect(badFlag.stderr.contains("--count 0: expected 1 to 1000000000"), "\(badFlag.stderr)")

        let unknown = try await ChildProcess.runDrover(["status", "j-nope"], environment: env)
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("no job j-nope"))

        // Nothing was written: no job record at all.
        let zk = try await ZooKeeperClient.connect(to: root)
        #expect(try await DroverClient(zookeeper: zk).list().isEmpty)
        await zk.close()
    }

    @Test func aSpecFileOfManyJobsGoesInBatchesWithProgress() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("cli-bulk")
        let env = ["DROVER_ZK": root]
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("jobs-\(UUID().uuidString.prefix(6)).jsonl").path
        try (0..<150).map { #"{"method": "sample.echo", "arguments": {"n": \#($0)}}"# }.joined(separator: "\n")
            .write(toFile: file, atomically: true, encoding: .utf8)
        let submitted = try await ChildProcess.runDrover(["submit", "-f", file], environment: env)
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let ids = submitted.stdout.split(separator: "\n")
        #expect(ids.count == 150 && Set(ids).count == 150)
        #expect(submitted.stderr.contains("submitted 100/150") && submitted.stderr.contains("submitted 150/150"), "\(submitted.stderr)")
        let zk = try await ZooKeeperClient.connect(to: root)
        let jobs = try await DroverClient(zookeeper: zk).list()
        #expect(Set(jobs.map(\.id)) == Set(ids.map(String.init)))
        await zk.close()
    }

    @Test func zooKeeperDownIsAClearMessageWithoutAHang() async throws {
        let started = ContinuousClock().now
        let down = try await ChildProcess.runDrover(["jobs", "--zk", "127.0.0.1:1", "--connect-timeout", "2"])
        #expect(down.status != 0)
        #expect(down.stderr.contains("cannot reach ZooKeeper at 127.0.0.1:1"))
        #expect(ContinuousClock().now - started < .seconds(10))
    }

    @Test func flagsBeatTheEnvironmentWhichBeatsTheConfigFile() async throws {
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("drover-config-\(UUID().uuidString.prefix(6)).yaml").path
        try "zk: 127.0.0.1:1\n".write(toFile: config, atomically: true, encoding: .utf8)
        let fromFile = try await ChildProcess.runDrover(["jobs", "--connect-timeout", "1"], environment: ["DROVER_CONFIG": config])
        #expect(fromFile.stderr.contains("cannot reach ZooKeeper at 127.0.0.1:1 "))
        let fromEnvironment = try await ChildProcess.runDrover(
            ["jobs", "--connect-timeout", "1"], environment: ["DROVER_CONFIG": config, "DROVER_ZK": "127.0.0.1:2"])
        #expect(fromEnvironment.stderr.contains("cannot reach ZooKeeper at 127.0.0.1:2 "))
        let fromFlag = try await ChildProcess.runDrover(
            ["jobs", "--connect-timeout", "1", "--zk", "127.0.0.1:3"], environment: ["DROVER_CONFIG": config, "DROVER_ZK": "127.0.0.1:2"])
        #expect(fromFlag.stderr.contains("cannot reach ZooKeeper at 127.0.0.1:3 "))
    }

    @Test func droverDevRunsAWholeClusterUntilStopped() async throws {
        let dev = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["dev", "--executors", "1"], name: "dev")
        var zk: String?
        while zk == nil {
            try await Task.sleep(for: .milliseconds(200))
            zk = dev.log.split(separator: "\n").first { $0.contains("export DROVER_ZK=") }
                .map { String($0.split(separator: "=").last!) }
            #expect(!dev.log.contains("Error"), "\(dev.log)")
        }
        let submitted = try await ChildProcess.runDrover(["submit", "--", "echo", "dev works"], environment: ["DROVER_ZK": zk!])
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let id = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let client = try await ZooKeeperClient.connect(to: zk!)
        #expect(try await finalRecord(DroverClient(zookeeper: client), id).state == .succeeded)
        await client.close()
        dev.signal(SIGTERM)
        #expect(await dev.wait() == 0)
        #expect(dev.log.contains("stopped."))
    }
}

/// Polls `condition` until it holds; fails naming `what` (with the process's output) after 60 s
/// rather than hanging until the suite's time limit.
func waitUntil(_ what: String, log process: ChildProcess, _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(60)
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting until \(what); its output:\n\(process.log)")
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}
