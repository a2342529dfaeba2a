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
            try await client.drain(executor: "e1")
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
}
