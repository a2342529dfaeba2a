import Foundation
import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

@Suite("3-node ensemble faults", .serialized, .timeLimit(.minutes(4)))
struct EnsembleFaultTests {
    /// Four writers keep creating nodes while the ensemble's leader is killed with SIGKILL.
    /// Every create ZooKeeper acknowledged must be there afterwards.
    @Test func killingTheLeaderLosesNoAcknowledgedWrite() async throws {
        let ensemble = try await LocalEnsemble.start(nodes: 3)
        do {
            try await runLeaderKill(ensemble)
        } catch {
            await ensemble.stop()
            throw error
        }
        await ensemble.stop()
    }

    private func runLeaderKill(_ ensemble: LocalEnsemble) async throws {
        let writers = 4
        let writesPerWriter = 400
        let killAfter = 100  // acknowledged writes per writer before the kill
        let setup = try await ZooKeeperClient.connect(to: ensemble.connectionString)
        try await closing(setup) {
            for writer in 0..<writers { try await setup.createPath("/w\(writer)") }
        }

        let killed = LockedValue(false)
        let reachedKillPoint = AsyncStream.makeStream(of: Void.self)
        let connectionLosses = LockedValue(0)

        let acknowledged = try await withThrowingTaskGroup(of: [String].self) { group in
            for writer in 0..<writers {
                group.addTask {
                    let zk = try await ZooKeeperClient.connect(
                        to: ensemble.connectionString, sessionTimeout: .seconds(6))
                    return try await closing(zk) {
                        var done: [String] = []
                        var attempt = 0
                        // Keep writing through the kill and the restart, then up to the minimum.
                        while done.count < writesPerWriter || !killed.value {
                            attempt += 1
                            do {
                                let path = try await zk.create("/w\(writer)/n-\(attempt)", data: Array("\(attempt)".utf8))
                                done.append(path)
                                if done.count == killAfter { reachedKillPoint.continuation.yield() }
                            } catch let error as ZooKeeperError where error.isRetryable {
                                // Unknown outcome: not acknowledged, so not counted. Try the next name.
                                connectionLosses.update { $0 += 1 }
                            } catch let error as ZooKeeperError where error.code == .nodeExists {
                                continue
                            }
                        }
                        return done
                    }
                }
            }
            group.addTask {
                var arrivals = 0
                for await _ in reachedKillPoint.stream {
                    arrivals += 1
                    if arrivals == writers { break }
                }
                let leader = try #require(try await ensemble.leader())
                try await ensemble.kill(node: leader)
                try await ensemble.restart(node: leader)
                killed.update { $0 = true }
                return []
            }
            var all: [String] = []
            for try await paths in group { all += paths }
            return all
        }

        #expect(killed.value)
        #expect(acknowledged.count >= writers * writesPerWriter)

        let checker = try await ZooKeeperClient.connect(to: ensemble.connectionString)
        try await closing(checker) {
            try await checker.sync("/")
            var present = Set<String>()
            for writer in 0..<writers {
                for name in try await checker.children("/w\(writer)").names { present.insert("/w\(writer)/\(name)") }
            }
            let lost = acknowledged.filter { !present.contains($0) }
            #expect(lost.isEmpty, "acknowledged writes lost: \(lost.prefix(10))")
        }
        print("leader kill: \(acknowledged.count) acknowledged writes, \(connectionLosses.value) unknown outcomes, 0 lost")
    }
}
