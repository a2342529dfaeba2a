import Foundation
import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// `make run` shows `drover tour`: it must go through every step on a real ZooKeeper and report
/// what it saw — nothing lost when the leader and an executor are killed.
@Suite("drover tour (what make run shows)", .timeLimit(.minutes(3)))
struct TourTests {
    @Test func theTourRunsEveryKindOfJobAndLosesNothingToKill9() async throws {
        let ensemble = try await LocalEnsemble.shared()
        let run = try await ChildProcess.runDrover(["tour", "--zk", ensemble.connectionString, "--bulk", "200"])
        #expect(run.status == 0, "\(run.stderr)\n\(run.stdout)")
        for expected in [
            "hello from", "runs 1 on", "attempt 1 failed", "attempt 3 succeeded", "s on the grid, each started within",
            "then stopped", "all 200 succeeded", "300 of 300 succeeded, 0 lost", "resumed from its checkpoint at", "(attempt 2): succeeded", "10000 of 10000 finished",
            "Done in",
        ] {
            #expect(run.stdout.contains(expected), "missing \"\(expected)\" in:\n\(run.stdout)")
        }
        // It cleans up after itself: nothing of it is left in ZooKeeper.
        let zk = try await ZooKeeperClient.connect(to: ensemble.connectionString)
        let left = try await zk.children("/").names.filter { $0.hasPrefix("drover-tour-") }
        #expect(left.isEmpty, "\(left)")
        await zk.close()
    }
}
