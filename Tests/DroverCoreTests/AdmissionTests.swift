import DroverClient
import DroverProtocol
import Foundation
import Testing
import ZKRecipes
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// `drover manager --max-waiting N`: while N jobs wait, clients refuse new submits, saying why;
/// once the line is back under nine tenths of N, they submit again.
@Suite("Admission: a bound on the waiting line", .serialized, .timeLimit(.minutes(2)))
struct AdmissionTests {
    @Test func submitsAreRefusedWhileTheLineIsFullAndTakenAgainOnceItDrains() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("admission")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        let daemons = try Daemons.launch(root: root, name: "admission", manager: ["--max-waiting", "3"])
        do {
            try await waitForRegistration(client, of: daemons.executors["e1"]!)
            let admission = VersionedDocument<Admission>(client: zk, path: Layout().admission)
            // The leader says there is room before anything waits.
            for try await version in admission.updates() where version?.document.full == false { break }

            // One bulk submit cannot pass the bound either.
            await #expect {
                _ = try await client.submit(Array(repeating: JobSpec(method: "sample.echo"), count: 5))
            } throws: { error in
                (error as? BulkSubmitError)?.underlying is DroverError && "\(error)".contains("would pass the bound")
            }

            // A drained executor takes nothing: three jobs wait, and the line is full.
            try await drained(zk, client, "e1")
            var waiting: [String] = []
            for index in 1...3 { waiting.append(try await client.submit(JobSpec(method: "sample.echo", arguments: ["n": .number(Double(index))]))) }
            for try await version in admission.updates() where version?.document.full == true {
                #expect(version?.document.waiting == 3)
                break
            }
            let refused = try await ChildProcess.runDrover(["submit", "--zk", root, "--", "echo", "one too many"])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("the queue is full: 3 jobs wait"), "\(refused.stderr)")
            // A client reads the rule at most once a second: a new one sees it at once.
            await #expect {
                _ = try await DroverClient(zookeeper: zk).submit(JobSpec(method: "sample.echo"))
            } throws: { error in
                (error as? DroverError)?.code == .queueFull
            }

            // Undrained, the executor runs them; the line opens and a submit goes through.
            try await client.undrain(executor: "e1")
            for id in waiting { #expect(try await finalRecord(client, id).state == .succeeded) }
            for try await version in admission.updates() where version?.document.full == false { break }
            let accepted = try await ChildProcess.runDrover(["submit", "--zk", root, "--", "echo", "room again"])
            #expect(accepted.status == 0, "\(accepted.stderr)")
        } catch {
            print(daemons.manager.log, daemons.executors["e1"]?.log ?? "")
            daemons.stop()
            await zk.close()
            throw error
        }
        daemons.stop()
        await zk.close()
    }

    /// A line that is full stays full across a fail-over while it is between nine tenths of the
    /// bound and the bound: the new leader goes on from the document the old one wrote.
    @Test func aFullLineStaysFullAcrossALeaderFailOver() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("admission-failover")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        func manager(_ id: String) throws -> ChildProcess {
            try ChildProcess.launchDaemon(
                ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", id, "--max-waiting", "20", "--session-timeout", "2"],
                name: "admission-\(id)")
        }
        let first = try manager("m1")
        let executor = try ChildProcess.launchDaemon(ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e1"], name: "admission-e1")
        var second: ChildProcess?
        do {
            try await waitForRegistration(client, of: executor)
            try await drained(zk, client, "e1")
            var ids: [String] = []
            for _ in 0..<20 { ids.append(try await client.submit(JobSpec(method: "sample.echo"))) }
            let admission = VersionedDocument<Admission>(client: zk, path: Layout().admission)
            for try await version in admission.updates() where version?.document.full == true { break }
            // 19 wait: above nine tenths of 20, so the line stays full.
            try await client.cancel(ids[0])
            _ = try await finalRecord(client, ids[0])
            let before = try #require(try await admission.read()).version
            await first.crash()
            second = try manager("m2")
            for try await version in admission.updates() where (version?.version ?? before) > before {
                #expect(version?.document.full == true, "the new leader opened a line of \(version?.document.waiting ?? -1) waiting jobs")
                #expect(version?.document.waiting == 19)
                break
            }
        } catch {
            print(first.log, second?.log ?? "", executor.log)
            for process in [first, executor] + (second.map { [$0] } ?? []) { await process.crash() }
            await zk.close()
            throw error
        }
        for process in [first, executor] + (second.map { [$0] } ?? []) { await process.crash() }
        await zk.close()
    }

    /// Drains an executor and waits until the leader has marked its state draining (the drain
    /// goes through the queue: a submit right after could still be placed on it).
    func drained(_ zk: ZooKeeperClient, _ client: DroverClient, _ executor: String) async throws {
        try await client.drain(executor: executor)
        for try await version in VersionedDocument<ExecutorState>(client: zk, path: Layout().executorAssignments(executor)).updates()
        where version?.document.draining == true { return }
    }
}
