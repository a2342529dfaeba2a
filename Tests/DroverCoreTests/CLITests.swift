import DroverCore
import DroverProtocol
import Foundation
import Testing
import ZooKeeper
import ZooKeeperTesting

/// The `drover` binary as a user runs it, against a real ZooKeeper and daemons.
@Suite("The drover command", .serialized, .timeLimit(.minutes(3)))
struct CLITests {
    @Test func submitFollowAndReadResultsLikeAUser() async throws {
        let root = try await TestEnsemble.shared().makeChroot("cli")
        let env = ["DROVER_ZK": root]
        let manager = try ChildProcess.launch(ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1"], name: "cli-manager")
        let outputDir = FileManager.default.temporaryDirectory.appendingPathComponent("drover-cli-\(UUID().uuidString.prefix(8))").path
        let executor = try ChildProcess.launch(
            ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1", "--output-dir", outputDir], name: "cli-executor")
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
        let executors = try await ChildProcess.runDrover(["executors"], environment: env)
        #expect(executors.stdout.contains("e1"))
        await zk.close()
    }

    @Test func badInputGetsAClearErrorAndWritesNothing() async throws {
        let root = try await TestEnsemble.shared().makeChroot("cli-bad")
        let env = ["DROVER_ZK": root]
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("jobs-\(UUID().uuidString.prefix(6)).jsonl").path
        try """
            {"method": "sample.echo"}
            {"method": "sample.echo", "kind": "finite", "count": 0}
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let invalid = try await ChildProcess.runDrover(["submit", "-f", file], environment: env)
        #expect(invalid.status != 0)
        #expect(invalid.stderr.contains("\(file):2: count: must be at least 1"), "\(invalid.stderr)")

        let badFlag = try await ChildProcess.runDrover(["submit", "--count", "0", "--", "true"], environment: env)
        #expect(badFlag.status == 64)
        #expect(badFlag.stderr.contains("--count must be at least 1"))

        let unknown = try await ChildProcess.runDrover(["status", "j-nope"], environment: env)
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("no job j-nope"))

        // Nothing was written: no job record at all.
        let zk = try await ZooKeeperClient.connect(to: root)
        #expect(try await DroverClient(zookeeper: zk).list().isEmpty)
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
        let dev = try ChildProcess.launch(ChildProcess.droverExecutable, ["dev", "--executors", "1"], name: "dev")
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
