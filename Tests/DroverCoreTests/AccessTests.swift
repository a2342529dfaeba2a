import DroverClient
import DroverExecutor
import DroverManager
import DroverProtocol
import DroverStore
import Foundation
import Testing
import ZKRecipes
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// A deployment secured as `drover init` secures it, in a fresh chroot of the shared ZooKeeper.
struct SecuredDeployment {
    let root: String
    let policy: AccessPolicy
    let admin = Credentials.generate(.admin)
    let manager = Credentials.generate(.manager)
    let client = Credentials.generate(.client)
    let reader = Credentials.generate(.reader)
    let executors = ["e1": Credentials.generate(.executor, executor: "e1"), "e2": Credentials.generate(.executor, executor: "e2")]
    let layout = Layout()

    private init(root: String) {
        self.root = root
        policy = AccessPolicy(admin: admin, manager: manager, client: client, reader: reader, executors: Array(executors.values))
    }

    static func make(_ name: String) async throws -> SecuredDeployment {
        let deployment = SecuredDeployment(root: try await LocalEnsemble.shared().makeChroot(name))
        let zk = try await deployment.connect(as: deployment.admin)
        try await closing(zk) { try await AccessSetup(zookeeper: zk, layout: deployment.layout).apply(deployment.policy) }
        return deployment
    }

    /// A ZooKeeper client authenticated with `credentials` (none: anonymous).
    func connect(as credentials: Credentials?) async throws -> ZooKeeperClient {
        let zk = try await ZooKeeperClient.connect(to: root, sessionTimeout: .seconds(4))
        if let credentials { try await zk.addAuth(credentials: credentials.authentication) }
        return zk
    }
}

/// The error `body` throws as ZooKeeper's code (nil when it succeeds).
private func refusal(_ body: () async throws -> Void) async -> ZooKeeperError.Code? {
    do {
        try await body()
        return nil
    } catch let error as ZooKeeperError {
        return error.code
    } catch let error as BulkSubmitError {
        return (error.underlying as? ZooKeeperError)?.code
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

@Suite("Least privilege: ZooKeeper ACL roles (docs/SECURITY.md)", .timeLimit(.minutes(3)))
struct AccessTests {
    @Test func aSecuredDeploymentRunsJobsAndEveryNodeFollowsTheRoleTable() async throws {
        let deployment = try await SecuredDeployment.make("secured-run")
        let managerZK = try await deployment.connect(as: deployment.manager)
        let executorZK = try await deployment.connect(as: deployment.executors["e1"])
        let clientZK = try await deployment.connect(as: deployment.client)
        let adminZK = try await deployment.connect(as: deployment.admin)
        let manager = Manager(client: managerZK, configuration: .init(participantID: "m1", gracePeriod: .seconds(2)))
        let executor = try Executor(
            client: executorZK, configuration: .init(id: "e1", capacity: Resources(cpu: 2, memoryMB: 1024, slots: 2)),
            handlers: ["echo": { context in context.arguments }])
        let client = try await DroverClient.load(zookeeper: clientZK)
        #expect(client.access == .secured(deployment.policy))

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await manager.run() }
            group.addTask { try await executor.run() }
            try await client.waitForRegistration(of: ["e1"])
            let ids = try await client.submit([
                JobSpec(method: "echo", arguments: ["n": 1]), JobSpec(method: "echo", arguments: ["n": 2]),
            ])
            for id in ids {
                let record = try await finalRecord(client, id)
                #expect(record.state == .succeeded, "job \(id): \(record.state)")
            }
            // A job on the direct path: the client reserves, the executor claims, the leader adopts.
            let direct = try await client.submit(JobSpec(method: "echo", arguments: ["n": 3], tasks: 3, placement: .batchLateBinding))
            let directRecord = try await finalRecord(client, direct)
            #expect(directRecord.state == .succeeded, "\(directRecord)")
            #expect(directRecord.steps?.map(\.run) == [1, 2, 3])
            // A job the client stops goes through the queue too (a queue item of the client's).
            let stopped = try await client.submit(JobSpec(method: "echo", arguments: [:], kind: .infinite))
            try await client.stop(stopped)
            #expect(try await finalRecord(client, stopped).state.isFinal)
            group.cancelAll()
        }

        // Every node under the root — made by init, the client, the leader and the executor —
        // has exactly the ACL the role table gives its kind.
        var kinds: Set<String> = []
        var checked = 0
        var level = [deployment.layout.root]
        while !level.isEmpty {
            var next: [String] = []
            for path in level {
                let node = deployment.layout.node(at: path)
                let (acl, _) = try await adminZK.getACL(path)
                #expect(Set(acl) == Set(deployment.policy.acl(for: node)), "\(path) (\(node)): \(acl)")
                #expect(!acl.contains { $0.scheme == "world" }, "\(path) is open to the world")
                kinds.insert("\(node)".components(separatedBy: "(").first!)
                checked += 1
                next += try await adminZK.children(path).names.map { path + "/" + $0 }
            }
            level = next
        }
        for kind in [
            "root", "access", "queue", "jobs", "jobShard", "jobRecord", "executors", "executor", "executorNode", "assignments", "assignment", "election",
            "setAside", "inbox", "executorInbox", "claims", "claimsShard",
        ] {
            #expect(kinds.contains(kind), "no \(kind) node was checked (checked \(checked): \(kinds.sorted()))")
        }
        for zk in [managerZK, executorZK, clientZK, adminZK] { await zk.close() }
    }

    /// An executor's progress whose ACL was changed so that the manager may not read it: the
    /// leader cannot see its tasks end, and reads it again once an admin repairs the ACL (as
    /// `drover init` does) — ZooKeeper tells nobody of an ACL change, so the leader tries again.
    @Test func aProgressTheManagerMayNotReadIsReadAgainOnceAnAdminRepairsItsACL() async throws {
        let deployment = try await SecuredDeployment.make("secured-repair")
        let layout = deployment.layout
        let managerZK = try await deployment.connect(as: deployment.manager)
        let executorZK = try await deployment.connect(as: deployment.executors["e1"])
        let clientZK = try await deployment.connect(as: deployment.client)
        let adminZK = try await deployment.connect(as: deployment.admin)
        let gate = Gate()
        let manager = Manager(client: managerZK, configuration: .init(participantID: "m1", gracePeriod: .seconds(2)))
        let executor = try Executor(
            client: executorZK, configuration: .init(id: "e1", capacity: Resources(cpu: 2, memoryMB: 1024, slots: 2)),
            handlers: ["held": { _ in
                await gate.wait()
                return nil
            }])
        let client = try await DroverClient.load(zookeeper: clientZK)
        let admin = DroverClient(zookeeper: adminZK)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await manager.run() }
            group.addTask { try await executor.run() }
            try await client.waitForRegistration(of: ["e1"])
            let id = try await client.submit(JobSpec(method: "held"))
            try await waitUntil(admin, watching: [layout.job(id)]) { try await admin.status(id).state == .running }
            // e1's progress made again without the read-only entries (the manager's, the reader's),
            // as a compromised executor could (docs/SECURITY.md); then the task ends. (A changed
            // ACL alone goes unseen: ZooKeeper tells a watcher no change it may not read.)
            let progress = layout.executorProgress("e1")
            let (acl, _) = try await adminZK.getACL(progress)
            try await adminZK.multi([
                .delete(path: progress), .create(path: progress, data: try await adminZK.getData(progress).data, acl: acl.filter { $0.permissions != .read }),
            ])
            gate.open()
            try await waitUntil(admin, watching: [progress]) {
                try Codec.decode(ExecutorProgress.self, try await adminZK.getData(progress).data).tasks.contains { $0.job == id && $0.state == .succeeded }
            }
            // The leader could not read that end.
            #expect(try await admin.status(id).state == .running)
            // An admin sets every ACL again: the leader reads the progress and collects the end.
            try await AccessSetup(zookeeper: adminZK, layout: layout).apply(deployment.policy)
            #expect(try await finalRecord(client, id).state == .succeeded)
            group.cancelAll()
        }
        for zk in [managerZK, executorZK, clientZK, adminZK] { await zk.close() }
    }

    @Test func eachRoleIsRefusedWhatItMayNotDoAndToldWhichCredentialsItTakes() async throws {
        let deployment = try await SecuredDeployment.make("secured-refusals")
        let layout = deployment.layout
        let admin = try await deployment.connect(as: deployment.admin)
        // What the leader and the executors would have written: a job record, and two executors'
        // assignments (the leader's) and progress (each executor's own).
        let job = "j-test-1"
        _ = try await admin.create(layout.job(job), data: Array("{}".utf8), acl: deployment.policy.acl(for: .jobRecord))
        for id in ["e1", "e2"] {
            // `drover init` made the assignments of the executors it knows.
            if try await admin.exists(layout.executorAssignments(id)) == nil {
                _ = try await admin.create(layout.executorAssignments(id), data: Array("{}".utf8), acl: deployment.policy.acl(for: .assignment(id)))
            }
            _ = try await admin.create(layout.executorProgress(id), data: Array("{}".utf8), acl: deployment.policy.acl(for: .executorNode(id)))
        }
        let client = try await deployment.connect(as: deployment.client)
        let reader = try await deployment.connect(as: deployment.reader)
        let manager = try await deployment.connect(as: deployment.manager)
        let e1 = try await deployment.connect(as: deployment.executors["e1"])
        let anonymous = try await deployment.connect(as: nil)

        // A client forges an executor's assignments or progress, or a job's end: refused.
        #expect(await refusal { try await client.setData(layout.executorAssignments("e1"), data: Array("{}".utf8)) } == .noAuth)
        #expect(await refusal { try await client.setData(layout.executorProgress("e1"), data: Array("{}".utf8)) } == .noAuth)
        #expect(await refusal { try await client.setData(layout.job(job), data: Array("{}".utf8)) } == .noAuth)
        // An executor writes another executor's assignments or progress, a job record, or the queue:
        // refused. Its own progress: allowed. Its own assignments — forging tasks for itself, or
        // replacing the document with one whose ACL lets it write — refused: they are the leader's.
        #expect(await refusal { try await e1.setData(layout.executorAssignments("e2"), data: Array("{}".utf8)) } == .noAuth)
        #expect(await refusal { try await e1.setData(layout.executorProgress("e2"), data: Array("{}".utf8)) } == .noAuth)
        #expect(await refusal { _ = try await e1.getData(layout.executorProgress("e2")) } == .noAuth)
        #expect(await refusal { _ = try await e1.getData(layout.executorAssignments("e2")) } == .noAuth)
        #expect(await refusal { try await e1.setData(layout.executorAssignments("e1"), data: Array("{}".utf8)) } == .noAuth)
        #expect(await refusal { try await e1.delete(layout.executorAssignments("e1")) } == .noAuth)
        #expect(await refusal { _ = try await e1.create(layout.executorAssignments("e3"), data: Array("{}".utf8)) } == .noAuth)
        #expect(await refusal { _ = try await e1.getData(layout.executorAssignments("e1")) } == nil)
        #expect(await refusal { try await e1.setData(layout.job(job), data: Array("{}".utf8)) } == .noAuth)
        #expect(await refusal { _ = try await e1.create(layout.queue + "/s-9999999999") } == .noAuth)
        #expect(await refusal { try await e1.setData(layout.executorProgress("e1"), data: Array("{}".utf8)) } == nil)
        // The manager reads an executor's progress, never writes it.
        #expect(await refusal { try await manager.setData(layout.executorProgress("e1"), data: Array("{}".utf8)) } == .noAuth)
        #expect(await refusal { try await manager.setData(layout.executorAssignments("e1"), data: Array("{}".utf8)) } == nil)
        // A reader submits: refused, and told it takes client credentials.
        let readerClient = try await DroverClient.load(zookeeper: reader)
        do {
            _ = try await readerClient.submit(JobSpec(method: "echo", arguments: [:]))
            Issue.record("a reader submitted a job")
        } catch {
            let explained = Access.explain(error, layout: layout, credentials: deployment.reader)
            #expect((explained as? DroverError)?.code == .notPermitted)
            #expect("\(explained)".contains("the reader credentials may not do that"), "\(explained)")
            #expect("\(explained)".contains("client"), "\(explained)")
        }
        // A reader reads.
        #expect(await refusal { _ = try await reader.getData(layout.job(job)) } == nil)
        // Nobody but the admin deletes the tree or rewrites the policy. (The manager may delete
        // what it manages inside — consumed items, retired records — but no top-level node, no
        // shard and no executor: tried on empty ones, so nothing else stands in the way.)
        for zk in [client, reader, e1, anonymous] {
            #expect(await refusal { try await zk.deleteRecursively(layout.root) } == .noAuth)
        }
        for zk in [client, reader, manager, e1, anonymous] {
            #expect(await refusal { try await zk.setData(layout.access, data: Array("{}".utf8)) } == .noAuth)
            #expect(await refusal { try await zk.delete(layout.election) } == .noAuth)
            #expect(await refusal { try await zk.delete(layout.jobShard(0)) } == .noAuth)
            #expect(await refusal { try await zk.delete(layout.executorProgress("e2")) } == .noAuth)
            #expect(await refusal { try await zk.delete(layout.executorAssignments("e2")) } == .noAuth)
        }
        // Without credentials nothing is readable, and the message says how to give them.
        #expect(await refusal { _ = try await anonymous.getData(layout.job(job)) } == .noAuth)
        await #expect {
            _ = try await DroverClient.load(zookeeper: anonymous)
        } throws: { error in
            (error as? DroverError)?.code == .notPermitted && "\(error)".contains("--credentials")
        }
        // The message of a refusal names the roles that may do it.
        do {
            try await client.setData(layout.executorProgress("e1"), data: Array("{}".utf8))
        } catch {
            let message = "\(Access.explain(error, layout: layout, credentials: deployment.client))"
            #expect(message.contains("the client credentials may not do that"), "\(message)")
            #expect(message.contains("executor e1") && !message.contains("manager"), "\(message)")
        }
        do {
            try await e1.setData(layout.executorAssignments("e1"), data: Array("{}".utf8))
        } catch {
            let message = "\(Access.explain(error, layout: layout, credentials: deployment.executors["e1"]!))"
            #expect(message.contains("the executor e1 credentials may not do that"), "\(message)")
            #expect(message.contains("manager credentials") && !message.contains("or executor e1"), "\(message)")
        }
        for zk in [admin, client, reader, manager, e1, anonymous] { await zk.close() }
    }

    @Test func anExecutorWithoutAnIdentityRefusesToStartAndSaysHowToGetOne() async throws {
        let deployment = try await SecuredDeployment.make("secured-unknown-executor")
        let zk = try await deployment.connect(as: deployment.executors["e1"])
        let executor = try Executor(
            client: zk, configuration: .init(id: "e3", capacity: Resources(cpu: 1, memoryMB: 256, slots: 1)), handlers: [:])
        await #expect {
            try await executor.run()
        } throws: { error in
            (error as? DroverError)?.code == .notPermitted && "\(error)".contains("drover init --executor e3")
        }
        await zk.close()
    }

    @Test func theRoleTableGivesEachRoleTheLeastItNeeds() {
        typealias Policy = AccessPolicy
        // Clients append to the queue and create records; they change nothing else.
        #expect(Policy.permissions(of: .client, on: .queueSegment) == [.read, .create, .write])
        #expect(Policy.permissions(of: .client, on: .jobShard) == [.read, .create])
        #expect(Policy.permissions(of: .client, on: .jobRecord) == .read)
        #expect(Policy.permissions(of: .client, on: .executorNode("e1")) == .read)
        // An executor: its own nodes, and nothing of another's or of the jobs.
        #expect(Policy.permissions(of: .executor, executor: "e1", on: .executorNode("e1")) == [.read, .write])
        #expect(Policy.permissions(of: .executor, executor: "e1", on: .executorNode("e2")).isEmpty)
        #expect(Policy.permissions(of: .executor, executor: "e1", on: .jobRecord).isEmpty)
        #expect(Policy.permissions(of: .executor, executor: "e1", on: .queue).isEmpty)
        // A workflow's shared data: any executor may run its steps, so each reads and updates it;
        // none deletes it (the manager does, with the record); clients read it.
        #expect(Policy.permissions(of: .executor, executor: "e1", on: .sharedDocument) == [.read, .write])
        #expect(Policy.permissions(of: .executor, executor: "e1", on: .sharedShard) == [.read, .create])
        #expect(Policy.permissions(of: .manager, on: .sharedShard) == [.read, .delete])
        #expect(Policy.permissions(of: .client, on: .sharedDocument) == .read)
        #expect(Layout().node(at: "/drover/shared/0a/j-1") == .sharedDocument)
        // Nobody but the admin may change ACLs or the policy.
        for role in Credentials.Role.allCases where role != .admin {
            for node: Policy.Node in [.root, .access, .queue, .jobRecord, .executorNode("e1"), .election] {
                #expect(!Policy.permissions(of: role, executor: "e1", on: node).contains(.admin), "\(role) on \(node)")
            }
            #expect(!Policy.permissions(of: role, executor: "e1", on: .access).contains(.write))
        }
        // Kinds are told by place.
        let layout = Layout()
        #expect(layout.node(at: "/drover") == .root)
        #expect(layout.node(at: "/drover/jobs/0a/j-1") == .jobRecord)
        #expect(layout.node(at: "/drover/queue/s-0000000001/i-0000000001") == .queueItem)
        #expect(layout.node(at: "/drover/executors/e1/alive") == .executorNode("e1"))
        #expect(layout.node(at: "/drover/election/n-1") == .electionNode)
        #expect(layout.node(at: "/elsewhere") == .other)
    }
}
