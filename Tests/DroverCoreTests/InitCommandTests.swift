import DroverClient
import DroverProtocol
import DroverStore
import Foundation
import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// `drover init` as an operator runs it: an open deployment with jobs waiting is secured in
/// place, the daemons start with their credentials files, and the waiting jobs run.
@Suite("drover init", .serialized, .timeLimit(.minutes(3)))
struct InitCommandTests {
    @Test func anOpenDeploymentIsSecuredInPlaceAndItsWaitingJobsRun() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("init")
        let env = ["DROVER_ZK": root]
        // Jobs submitted while the deployment is open and no manager runs: they wait in the queue.
        var waiting: [String] = []
        for index in 1...3 {
            let run = try await ChildProcess.runDrover(["submit", "--", "echo", "job \(index)"], environment: env)
            #expect(run.status == 0, "\(run.stderr)")
            waiting.append(run.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("drover-init-\(UUID().uuidString.prefix(8))").path
        let credentials = directory + "/credentials"
        let initialised = try await ChildProcess.runDrover(["init", "--credentials-dir", credentials, "--executor", "e1"], environment: env)
        #expect(initialised.status == 0, "\(initialised.stderr)")
        #expect(initialised.stdout.contains("executor-e1.json"), "\(initialised.stdout)")
        for role in ["admin", "manager", "client", "reader", "executor-e1"] {
            let attributes = try FileManager.default.attributesOfItem(atPath: "\(credentials)/\(role).json")
            #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(role).json")
        }
        // Running it again does not overwrite credentials.
        let again = try await ChildProcess.runDrover(["init", "--credentials-dir", credentials], environment: env)
        #expect(again.status != 0)
        #expect(again.stderr.contains("admin's credentials"), "\(again.stderr)")

        // Without credentials, nothing; with the client's, the jobs are there.
        let anonymous = try await ChildProcess.runDrover(["jobs"], environment: env)
        #expect(anonymous.status != 0)
        #expect(anonymous.stderr.contains("--credentials"), "\(anonymous.stderr)")
        let clientEnv = env.merging(["DROVER_CREDENTIALS": "\(credentials)/client.json"]) { $1 }
        let listed = try await ChildProcess.runDrover(["jobs"], environment: clientEnv)
        #expect(listed.status == 0, "\(listed.stderr)")
        for id in waiting { #expect(listed.stdout.contains(id)) }

        // An executor's credentials serve that executor only.
        let wrongID = try await ChildProcess.runDrover(
            ["executor", "--id", "e9", "--credentials", "\(credentials)/executor-e1.json", "--output-dir", directory + "/o"], environment: env)
        #expect(wrongID.status != 0)
        #expect(wrongID.stderr.contains("with the credentials of executor e1"), "\(wrongID.stderr)")
        // A manager without credentials is refused, and says what it needs.
        let refused = try await ChildProcess.runDrover(["manager", "--id", "m0"], environment: env)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("--credentials"), "\(refused.stderr)")

        let manager = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1", "--credentials", "\(credentials)/manager.json"], name: "init-manager")
        let executor = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable,
            ["executor", "--zk", root, "--credentials", "\(credentials)/executor-e1.json", "--output-dir", directory + "/output"], name: "init-executor")
        defer {
            manager.signal(SIGKILL)
            executor.signal(SIGKILL)
        }
        // The waiting jobs run; a new one from the client too; a reader cannot submit.
        let submitted = try await ChildProcess.runDrover(["submit", "--", "echo", "after init"], environment: clientEnv)
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let readerRun = try await ChildProcess.runDrover(
            ["submit", "--credentials", "\(credentials)/reader.json", "--", "echo", "no"], environment: env)
        #expect(readerRun.status != 0)
        #expect(readerRun.stderr.contains("the reader credentials may not do that"), "\(readerRun.stderr)")

        let zk = try await ZooKeeperClient.connect(to: root)
        try await zk.addAuth(credentials: try Credentials.read(file: "\(credentials)/reader.json").authentication)
        let client = try await DroverClient.load(zookeeper: zk)
        for id in waiting + [submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)] {
            #expect(try await finalRecord(client, id).state == .succeeded, "\(id)")
        }

        // Rotating the manager's credentials: the running manager sees the policy change, exits
        // saying why (locked out, it would sit leading and deaf), and one started with the new file takes over.
        let rotated = directory + "/rotated"
        let rotation = try await ChildProcess.runDrover(
            ["init", "--credentials", "\(credentials)/admin.json", "--rotate", "manager", "--credentials-dir", rotated], environment: env)
        #expect(rotation.status == 0, "\(rotation.stderr)")
        #expect(FileManager.default.fileExists(atPath: rotated + "/manager.json"))
        let afterRotation = try await ChildProcess.runDrover(["submit", "--", "echo", "after rotation"], environment: clientEnv)
        #expect(afterRotation.status == 0, "\(afterRotation.stderr)")
        let exitStatus = await manager.wait()
        #expect(exitStatus != 0)
        #expect(manager.log.contains("restart it with its new credentials file"), "\(manager.log.suffix(600))")
        let newManager = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m2", "--credentials", rotated + "/manager.json"], name: "init-manager2")
        defer { newManager.signal(SIGKILL) }
        #expect(try await finalRecord(client, afterRotation.stdout.trimmingCharacters(in: .whitespacesAndNewlines)).state == .succeeded)
        // A secured manager stops cleanly on SIGTERM (its watch of the policy ends without an error).
        newManager.signal(SIGTERM)
        #expect(await newManager.wait() == 0, "\(newManager.log.suffix(400))")

        // Rotating the admin: the new one adds an executor; the old one is refused.
        let newAdmin = directory + "/new-admin"
        let adminRotation = try await ChildProcess.runDrover(
            ["init", "--credentials", "\(credentials)/admin.json", "--rotate", "admin", "--credentials-dir", newAdmin], environment: env)
        #expect(adminRotation.status == 0, "\(adminRotation.stderr)")
        let oldAdmin = try await ChildProcess.runDrover(["init", "--credentials", "\(credentials)/admin.json", "--executor", "e2"], environment: env)
        #expect(oldAdmin.status != 0)
        let added = try await ChildProcess.runDrover(
            ["init", "--credentials", newAdmin + "/admin.json", "--executor", "e2", "--credentials-dir", newAdmin], environment: env)
        #expect(added.status == 0, "\(added.stderr)")
        #expect(FileManager.default.fileExists(atPath: newAdmin + "/executor-e2.json"))
        await zk.close()
    }

    /// A certificate role the servers cannot take (here: no x509 provider on a plain server) is
    /// refused before anything changes — no policy, no credentials — instead of locking out every
    /// daemon that would follow the policy.
    @Test func certificatesTheServersCannotNameAreRefusedBeforeAnythingChanges() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("init-x509")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("drover-init-x509-\(UUID().uuidString.prefix(8))").path
        let refused = try await ChildProcess.runDrover(
            ["init", "--credentials-dir", directory, "--certificate", "manager=CN=drover-manager"], environment: ["DROVER_ZK": root])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("refused an ACL naming CN=drover-manager"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory))
        let zk = try await ZooKeeperClient.connect(to: root)
        #expect(try await zk.exists(Layout().access) == nil)
        await zk.close()
        let shared = try await ChildProcess.runDrover(
            ["init", "--credentials-dir", directory, "--certificate", "manager=CN=same", "--certificate", "client=CN=same"], environment: ["DROVER_ZK": root])
        #expect(shared.status != 0 && shared.stderr.contains("client and manager name the same subject CN=same"), "\(shared.stderr)")
    }
}
