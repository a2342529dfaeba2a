import DroverClient
import DroverProtocol
import Foundation
import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// A real network split between simulated hosts (network namespaces joined by a bridge,
/// `Deploy/sim-hosts`): a ZooKeeper server on each of h1–h3, a manager and an executor on h4.
/// Needs root; skipped (and said so) where the machine does not allow namespaces.
@Suite("Network partitions between simulated hosts", .serialized, .timeLimit(.minutes(3)), .enabled(if: SimulatedHosts.mayRunHere, "needs root, ip and nft (Deploy/sim-hosts check)"))
struct NetworkPartitionTests {
    /// The ensemble splits 2/1: a client on the cut-off server's host is told it cannot reach
    /// ZooKeeper and nothing it tried is accepted; the majority side keeps accepting and placing;
    /// after the heal the cut-off server serves again and nothing is lost.
    @Test func theMinoritySideOfASplitEnsembleAcceptsNothingAndTheMajorityGoesOn() async throws {
        let hosts = try await SimulatedHosts.up(4)
        do {
            try await LocalEnsemble.with(nodes: 3, hosts: ["h1", "h2", "h3"]) { ensemble in
                let root = try await ensemble.makeChroot("split")
                let launch = SimulatedHosts.command(on: "h4")
                let h4 = try #require(hosts.addresses["h4"])
                let output = FileManager.default.temporaryDirectory.appendingPathComponent("drover-split-\(UUID().uuidString.prefix(8))").path
                let manager = try ChildProcess.launchDaemon(
                    launch[0], Array(launch.dropFirst()) + [ChildProcess.droverExecutable, "manager", "--zk", root, "--id", "m1"], name: "split-m1")
                let executor = try ChildProcess.launchDaemon(
                    launch[0],
                    Array(launch.dropFirst()) + [
                        ChildProcess.droverExecutable, "executor", "--zk", root, "--id", "e1", "--http", "\(h4):0", "--output-dir", output,
                    ], name: "split-e1")
                defer {
                    manager.signal(SIGKILL)
                    executor.signal(SIGKILL)
                }
                let zookeeper = try await ZooKeeperClient.connect(to: root, sessionTimeout: .seconds(10))
                try await closing(zookeeper) {
                    let client = try await DroverClient.load(zookeeper: zookeeper)
                    try await waitForRegistration(client, of: executor)
                    let before = try await client.submit(JobSpec(method: "shell", arguments: ["command": ["echo", "before"]]))
                    #expect(try await client.finalRecord(before).state == .succeeded)

                    // Cut off the ZooKeeper leader's host: the other two elect a new leader.
                    let leader = try #require(try await ensemble.leader())
                    let cutHost = "h\(leader)"
                    try await hosts.cut(cutHost)
                    // A client there reaches only its own server, which no longer serves.
                    let minority = SimulatedHosts.command(on: cutHost)
                    let refused = try await runAndCapture(
                        minority + [ChildProcess.droverExecutable, "submit", "--zk", root, "--connect-timeout", "3", "--name", "minority", "--", "echo", "x"])
                    #expect(refused.status != 0, "a submit on the cut-off side must fail: \(refused.output)")
                    #expect(refused.output.contains("cannot reach ZooKeeper"), "the error says ZooKeeper cannot be reached: \(refused.output)")
                    print("split: the submit on the cut-off host said: \(refused.output.trimmingCharacters(in: .whitespacesAndNewlines))")
                    // The majority side accepts and places meanwhile.
                    let during = try await client.submit(JobSpec(method: "shell", arguments: ["command": ["echo", "during"]]))
                    #expect(try await client.finalRecord(during).state == .succeeded)

                    try await hosts.heal(cutHost)
                    let after = try await client.submit(JobSpec(method: "shell", arguments: ["command": ["echo", "after"]]))
                    #expect(try await client.finalRecord(after).state == .succeeded)
                    // Nothing the minority side tried was accepted; nothing accepted was lost.
                    let names = try await client.list().map { $0.spec.name }
                    #expect(!names.contains("minority"))
                    #expect(try await client.list().count == 3)
                }
            }
        } catch {
            await hosts.down()
            throw error
        }
        await hosts.down()
    }

    /// Runs a command to completion: its exit status and what it printed (both streams).
    private func runAndCapture(_ command: [String]) async throws -> (status: Int32, output: String) {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("split-\(UUID().uuidString.prefix(8)).out").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let status = try await runAndWait(command[0], Array(command.dropFirst()), stdout: file, stderr: file + ".err")
        let output = ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "") + ((try? String(contentsOfFile: file + ".err", encoding: .utf8)) ?? "")
        try? FileManager.default.removeItem(atPath: file + ".err")
        return (status, output)
    }
}
