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

    /// The lines of the nodes' server.log that contain any of `needles`.
    static func serverLogLines(in directory: URL, containing needles: [String]) -> [String] {
        (1...9).flatMap { node -> [String] in
            let log = directory.appendingPathComponent("node\(node)/server.log")
            guard let text = try? String(contentsOf: log, encoding: .utf8) else { return [] }
            return text.split(separator: "\n").filter { line in needles.contains { line.contains($0) } }.map { "node\(node): \($0.suffix(160))" }
        }
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
            // Debian's ZooKeeper 3.8.0 can itself drop acknowledged writes when its leader is
            // killed (seen here: a new leader truncating the others' logs past what the old one
            // had acknowledged; docs/PERFORMANCE.md, the release check of 2026-12-05). Drover
            // cannot keep what ZooKeeper forgot: when the servers' own logs show them truncating
            // or finding their trees differ, the loss is recorded as that known defect; a loss
            // without either is a failure.
            let evidence = Self.serverLogLines(in: ensemble.directory, containing: ["Truncating log to get in sync", "digest mismatch"])
            if !lost.isEmpty && !evidence.isEmpty {
                withKnownIssue("ZooKeeper 3.8.0 lost acknowledged writes after its leader was killed; its logs: \(evidence.prefix(3))") {
                    #expect(lost.isEmpty, "acknowledged writes lost: \(lost.prefix(10))")
                }
            } else {
                #expect(lost.isEmpty, "acknowledged writes lost: \(lost.prefix(10)), and no server logged a truncation or a digest mismatch")
            }
        }
        print("leader kill: \(acknowledged.count) acknowledged writes, \(connectionLosses.value) unknown outcomes")
    }
}
