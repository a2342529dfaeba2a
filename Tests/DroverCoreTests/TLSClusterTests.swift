import DroverClient
import DroverProtocol
import DroverStore
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
            try await within(90, "e1 registering") { try await waitForRegistration(client, of: doomed) }

            // A command from the CLI, which reaches ZooKeeper through its own bridge.
            let submitted = try await ChildProcess.runDrover(["submit", "--zk", root] + tls + ["--", "echo", "over TLS"])
            #expect(submitted.status == 0, "\(submitted.stderr)")
            let echoed = try await within(90, "the CLI's job ending") {
                try await finalRecord(client, submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            #expect(echoed.state == .succeeded)

            // kill -9 of the executor mid-task: the run resumes on another from its checkpoint.
            let counting = try await client.submit(JobSpec(method: "sample.count", arguments: ["to": 100, "stepMilliseconds": 50]))
            try await within(90, "e1 checkpointing the count") { try await waitForCheckpoint(zk, executor: "e1", job: counting, atLeast: 5) }
            survivor = try daemon(["executor", "--id", "e2"], "tls-e2")
            await doomed.crash()
            let moved = try await within(120, "the count ending on e2") { try await finalRecord(client, counting) }
            #expect(moved.state == .succeeded)
            #expect(moved.history.last?.executor == "e2")
            #expect((moved.history.last?.result?["resumedAt"]?.numberValue ?? 0) >= 5, "the moved run started over")

            // kill -9 of the leading manager: the other takes over and places new work.
            let election = LeaderElection(client: zk, path: Layout().election, participantID: "observer")
            let leader = try #require(try await election.currentLeader())
            await managers[leader == "m1" ? 0 : 1].crash()
            let afterManager = try await client.submit(JobSpec(method: "sample.echo", arguments: ["after": "manager"]))
            #expect(try await within(90, "a job after the manager's crash ending") { try await finalRecord(client, afterManager) }.state == .succeeded)
            let newLeader = try await election.currentLeader()
            #expect(newLeader != nil && newLeader != leader)

            // kill -9 of ZooKeeper's leader: every session moves to another server.
            let serverLeader = try #require(try await ensemble.leader())
            try await ensemble.kill(node: serverLeader)
            let afterServer = try await client.submit(JobSpec(method: "sample.echo", arguments: ["after": "server"]))
            #expect(try await within(90, "a job after the server's crash ending") { try await finalRecord(client, afterServer) }.state == .succeeded)
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

    /// Roles held by client certificates (`drover init --certificate ROLE=SUBJECT`): a manager and
    /// an executor that show their certificates and no password lead, place and run; a reader's
    /// certificate may list but not submit; an executor whose certificate is dropped from the
    /// policy exits and says why; `drover init` itself runs by the admin's certificate, and not by
    /// another role's.
    @Test func rolesHeldByCertificatesNeedNoPasswords() async throws {
        try await LocalEnsemble.with(nodes: 1, tls: true) { ensemble in
            let root = try await ensemble.makeChroot("tls-roles")
            let ca = try #require(ensemble.tls?.certificateAuthorityFile)
            // zk-ensemble's `cert NAME` writes NAME.pem and NAME.key beside the CA (CN=NAME).
            func flags(_ name: String) async throws -> [String] {
                let issued = try await ensemble.issueCertificate(name)
                return ["--zk-ca", ca, "--zk-cert", issued.certificateFile!, "--zk-key", issued.privateKeyFile!]
            }
            let managerCertificate = try await flags("drover-manager")
            let executorCertificate = try await flags("e1")
            let readerCertificate = try await flags("watcher")
            let adminCertificate = try await flags("drover-admin")
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tls-roles-\(UUID().uuidString.prefix(8))").path
            let initialised = try await ChildProcess.runDrover(
                ["init", "--zk", root, "--zk-ca", ca, "--credentials-dir", directory, "--certificate", "manager=CN=drover-manager",
                 "--certificate", "executor:e1=CN=e1", "--certificate", "reader=CN=watcher", "--certificate", "admin=CN=drover-admin"])
            #expect(initialised.status == 0, "\(initialised.stderr)")
            #expect(initialised.stdout.contains("x509:CN=drover-manager"), "\(initialised.stdout)")

            let manager = try ChildProcess.launchDaemon(
                ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1"] + managerCertificate, name: "tls-roles-m1")
            let executor = try ChildProcess.launchDaemon(
                ChildProcess.droverExecutable,
                ["executor", "--zk", root, "--id", "e1", "--output-dir", directory + "/output"] + executorCertificate, name: "tls-roles-e1")
            defer {
                manager.signal(SIGKILL)
                executor.signal(SIGKILL)
            }
            let admin = try Credentials.read(file: directory + "/admin.json")
            let zk = try await ZooKeeperClient.connect(to: ensemble.reachable(root))
            try await closing(zk) {
                try await zk.addAuth(credentials: admin.authentication)
                let client = try await DroverClient.load(zookeeper: zk)
                try await waitForRegistration(client, of: executor)

                // A client with its password submits; the certificate-only manager and executor run it.
                let submitted = try await ChildProcess.runDrover(
                    ["submit", "--zk", root, "--zk-ca", ca, "--credentials", directory + "/client.json", "--", "echo", "by certificate"])
                #expect(submitted.status == 0, "\(submitted.stderr)")
                let id = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(try await finalRecord(client, id).state == .succeeded, "\(manager.log)\n\(executor.log)")
                let (acl, _) = try await zk.getACL(Layout().job(id))
                #expect(acl.contains { $0.scheme == "x509" && $0.id == "CN=drover-manager" }, "\(acl)")

                // The reader's certificate reads, and may not submit.
                let listed = try await ChildProcess.runDrover(["jobs", "--zk", root] + readerCertificate)
                #expect(listed.status == 0 && listed.stdout.contains(id), "\(listed.stderr)")
                let refused = try await ChildProcess.runDrover(["submit", "--zk", root] + readerCertificate + ["--", "echo", "no"])
                #expect(refused.status != 0)
                #expect(refused.stderr.contains("may not"), "\(refused.stderr)")

                // Only the admin runs init: the manager's certificate may not.
                let notAdmin = try await ChildProcess.runDrover(["init", "--zk", root] + managerCertificate + ["--certificate", "executor:e1="])
                #expect(notAdmin.status != 0)
                #expect(notAdmin.stderr.contains("x509:CN=drover-manager, does not hold the admin role"), "\(notAdmin.stderr)")
                // Dropped from the policy by the admin's certificate (no password), the executor's
                // certificate no longer works: it exits and says so.
                let dropped = try await ChildProcess.runDrover(["init", "--zk", root] + adminCertificate + ["--certificate", "executor:e1="])
                #expect(dropped.status == 0, "\(dropped.stderr)")
                // (At most 30 s: an executor that never notices fails the test instead of hanging it;
                // the wait for its exit runs on a thread of its own, which a task group would wait for.)
                let (exits, exited) = AsyncStream.makeStream(of: Int32?.self)
                Task { exited.yield(await executor.wait()) }
                Task {
                    try? await Task.sleep(for: .seconds(30))
                    exited.yield(nil)
                }
                let status = await exits.first { _ in true } ?? nil
                if status == nil { executor.signal(SIGKILL) }
                #expect(status != nil && status != 0, "the executor did not exit: \(executor.log)")
                #expect(executor.log.contains("no longer part of the deployment"), "\(executor.log)")
            }
        }
    }
}
