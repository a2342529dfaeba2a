import DroverClient
import Foundation
import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// `--log-format json` and `--log-level` on the daemons, as a log collector reads them.
@Suite("Daemon logs", .timeLimit(.minutes(1)))
struct LoggingTests {
    @Test func withJSONEachLineIsAnObjectACollectorCanRead() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("json-logs")
        let outputDir = FileManager.default.temporaryDirectory.appendingPathComponent("drover-logs-\(UUID().uuidString.prefix(8))").path
        let executor = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable,
            ["executor", "--zk", root, "--id", "e1", "--output-dir", outputDir, "--log-format", "json", "--log-level", "debug"], name: "json-executor")
        let zk = try await ZooKeeperClient.connect(to: root)
        try await DroverClient(zookeeper: zk).waitForRegistration(of: ["e1"])
        executor.signal(SIGTERM)
        #expect(await executor.wait() == 0)
        await zk.close()

        let lines = executor.log.split(separator: "\n")
        #expect(!lines.isEmpty)
        var messages: [(message: String, level: String, executor: String?)] = []
        for line in lines {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                Issue.record("not a JSON object: \(line)")
                continue
            }
            for key in ["time", "level", "label", "message"] { #expect(object[key] is String, "\(key) missing in \(line)") }
            let metadata = object["metadata"] as? [String: String]
            messages.append((object["message"] as? String ?? "", object["level"] as? String ?? "", metadata?["executor"]))
        }
        #expect(messages.contains { $0.message == "executor registered" && $0.level == "info" && $0.executor == "e1" }, "\(messages)")
        #expect(messages.contains { $0.message == "executor deregistered" })

        let refused = try await ChildProcess.runDrover(["executor", "--zk", root, "--log-format", "xml"])
        #expect(refused.status == 64)
        #expect(refused.stderr.contains("--log-format xml: expected text or json"), "\(refused.stderr)")
        let badLevel = try await ChildProcess.runDrover(["manager", "--zk", root, "--log-level", "loud"])
        #expect(badLevel.status == 64)
        #expect(badLevel.stderr.contains("--log-level loud"), "\(badLevel.stderr)")
    }
}
