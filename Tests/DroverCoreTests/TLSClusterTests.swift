import DroverClient
import DroverProtocol
import Foundation
import Testing
import ZKRecipes
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// Drover on a ZooKeeper ensemble that serves only TLS: every daemon and command reaches it
/// through its TLS bridge (`--zk-ca`, `--zk-cert`, `--zk-key`).
@Suite("A cluster over TLS", .serialized, .timeLimit(.minutes(4)))
struct TLSClusterTests {
    /// The smoke set: a command submitted from the CLI runs; an executor killed with -9 mid-task
    /// has its task finished elsewhere from the checkpoint; the leading manager killed with -9 is
    /// replaced; the ZooKeeper leader killed with -9 is survived — all through the bridge.
    @Test func aClusterRunsThroughTheBridgeAcrossExecutorManagerAndServerCrashes() async throws {
        let ensemble = try await LocalEnsemble.start(nodes: 3, tls: true)
        let root = try await ensemble.makeChroot("tls-smoke")
        let zk = try await ZooKeeperClient.connect(to: ensemble.reachable(root))
        let client = DroverClient(zookeeper: zk)
        let tls = ensemble.droverFlags
        func daemon(_ arguments: [String], _ name: String) throws -> ChildProcess {
            try ChildProcess.launchDaemon(ChildProcess.droverExecutable, arguments + ["--zk", root, "--session-timeout", "2"] + tls, name: name)
        }
        let managers = try ["m1", "m2"].map { try daemon(["manager", "--id", $0, "--grace", "1"], "tls-\($0)") }
        let doomed = try daemon(["executor", "--id", "e1"], "tls-e1")
        var survivor: ChildProcess?
        do {
            try await waitForRegistration(client, of: doomed)

            // A command from the CLI, which reaches ZooKeeper through its own bridge.
            let submitted = try await ChildProcess.runDrover(["submit", "--zk", root] + tls + ["--", "echo", "over TLS"])
            #expect(submitted.status == 0, "\(submitted.stderr)")
            let echoed = try await finalRecord(client, submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            #expect(echoed.state == .succeeded)

            // kill -9 of the executor mid-task: the run resumes on another from its checkpoint.
            let counting = try await client.submit(JobSpec(method: "sample.count", arguments: ["to": 100, "stepMilliseconds": 50]))
            try await waitForCheckpoint(zk, executor: "e1", job: counting, atLeast: 5)
            survivor = try daemon(["executor", "--id", "e2"], "tls-e2")
            await doomed.crash()
            let moved = try await finalRecord(client, counting)
            #expect(moved.state == .succeeded)
            #expect(moved.history.last?.executor == "e2")
            #expect((moved.history.last?.result?["resumedAt"]?.numberValue ?? 0) >= 5, "the moved run started over")

            // kill -9 of the leading manager: the other takes over and places new work.
            let election = LeaderElection(client: zk, path: Layout().election, participantID: "observer")
            let leader = try #require(try await election.currentLeader())
            await managers[leader == "m1" ? 0 : 1].crash()
            let afterManager = try await client.submit(JobSpec(method: "sample.echo", arguments: ["after": "manager"]))
            #expect(try await finalRecord(client, afterManager).state == .succeeded)
            let newLeader = try await election.currentLeader()
            #expect(newLeader != nil && newLeader != leader)

            // kill -9 of ZooKeeper's leader: every session moves to another server.
            let serverLeader = try #require(try await ensemble.leader())
            try await ensemble.kill(node: serverLeader)
            let afterServer = try await client.submit(JobSpec(method: "sample.echo", arguments: ["after": "server"]))
            #expect(try await finalRecord(client, afterServer).state == .succeeded)
        } catch {
            print(doomed.log, survivor?.log ?? "", managers[0].log, managers[1].log)
            for process in managers + [doomed] + (survivor.map { [$0] } ?? []) { await process.crash() }
            await zk.close()
            await ensemble.stop()
            throw error
        }
        for process in managers + [doomed] + (survivor.map { [$0] } ?? []) { await process.crash() }
        await zk.close()
        await ensemble.stop()
    }
}
