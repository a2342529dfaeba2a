import DroverClient
import DroverExecutor
import DroverManager
import DroverProtocol
import Foundation
import Testing
import ZKRecipes
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// Executors and managers as separate processes, killed with SIGKILL mid-work.
@Suite("Crashes: kill -9 executors and managers", .serialized, .timeLimit(.minutes(4)))
struct CrashTests {
    func executor(_ id: String, root: String, slots: Int = 4, onStop: String = "finish") throws -> ChildProcess {
        try launchExecutor(id, root: root, slots: slots, onStop: onStop)
    }

    func manager(_ id: String, root: String, grace: Double = 2) throws -> ChildProcess { try launchManager(id, root: root, grace: grace) }

    @Test func aRestartedExecutorResumesItsTaskFromTheCheckpoint() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("crash-restart")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        let manager = try manager("m1", root: root, grace: 60)
        var first = try executor("e1", root: root)
        do {
            try await waitForRegistration(client, of: first)
            let id = try await client.submit(JobSpec(method: "sample.count", arguments: ["to": 200, "stepMilliseconds": 50]))
            try await waitForCheckpoint(zk, executor: "e1", job: id, atLeast: 5)
            await first.crash()
            first = try executor("e1", root: root)
            let record = try await finalRecord(client, id)
            #expect(record.state == .succeeded)
            #expect(record.history.count == 1)
            let run = try #require(record.history.first)
            #expect(run.executor == "e1")
            #expect(run.attempts == 2)
            #expect(run.result?["count"] == 200)
            let resumedAt = try #require(run.result?["resumedAt"]?.numberValue)
            #expect(resumedAt >= 5, "the second attempt started over instead of resuming")
        } catch {
            print(first.log, manager.log)
            throw error
        }
        await first.crash()
        await manager.crash()
        await zk.close()
    }

    /// Found by the chaos run (and behind three hung CI runs): a task stopped while it was not
    /// running on its executor (the executor was down, or had not started it yet) was never
    /// started and never ended, so the job stayed "running" for good.
    @Test func aTaskStoppedWhileItsExecutorWasDownEndsWhenTheExecutorIsBack() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("crash-stop")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        let manager = try manager("m1", root: root, grace: 600)  // the task is never moved
        var worker = try executor("e1", root: root)
        do {
            try await waitForRegistration(client, of: worker)
            let id = try await client.submit(JobSpec(method: "sample.count", arguments: ["to": 1_000, "stepMilliseconds": 50]))
            try await waitForCheckpoint(zk, executor: "e1", job: id, atLeast: 1)
            await worker.crash()
            try await client.stop(id)
            // The stop reaches the task in the executor's assignments while no executor runs it.
            let state = VersionedDocument<ExecutorState>(client: zk, path: Layout().executorAssignments("e1"))
            for try await version in state.updates() where version?.document.tasks.first?.stopRequested == true { break }
            worker = try executor("e1", root: root)
            let record = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
            #expect(record.state == .stopped)
            #expect(record.history.first?.outcome == .stopped)
        } catch {
            print(worker.log, manager.log)
            throw error
        }
        await worker.crash()
        await manager.crash()
        await zk.close()
    }

    @Test func aDeadExecutorsTaskFinishesElsewhereAfterTheGracePeriod() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("crash-dead")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        let manager = try manager("m1", root: root, grace: 1)
        let doomed = try executor("e1", root: root)
        var survivor: ChildProcess?
        do {
            try await waitForRegistration(client, of: doomed)
            let id = try await client.submit(JobSpec(method: "sample.count", arguments: ["to": 200, "stepMilliseconds": 50]))
            try await waitForCheckpoint(zk, executor: "e1", job: id, atLeast: 5)
            survivor = try executor("e2", root: root)
            await doomed.crash()
            let record = try await finalRecord(client, id)
            #expect(record.state == .succeeded)
            let run = try #require(record.history.last)
            #expect(run.executor == "e2")
            #expect(record.history.count == 1)
            let resumedAt = try #require(run.result?["resumedAt"]?.numberValue)
            #expect(resumedAt >= 5, "the moved run started over instead of resuming from its checkpoint")
        } catch {
            print(doomed.log, survivor?.log ?? "", manager.log)
            throw error
        }
        await survivor?.crash()
        await manager.crash()
        await zk.close()
    }

    @Test func killingTheLeadingManagerDuringABurstLosesNoJob() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("crash-manager")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        let managers = [try manager("m1", root: root), try manager("m2", root: root)]
        let worker = try executor("e1", root: root, slots: 64)
        do {
            try await waitForRegistration(client, of: worker)
            let election = LeaderElection(client: zk, path: Layout().election, participantID: "observer")
            let leader = try await election.awaitLeader()
            let jobs = 1_000
            let submitted = LockedValue(0)
            let ids = try await withThrowingTaskGroup(of: [String].self) { group in
                for lane in 0..<8 {
                    group.addTask {
                        var ids: [String] = []
                        for index in stride(from: lane, to: jobs, by: 8) {
                            ids.append(try await client.submit(JobSpec(method: "sample.echo", arguments: ["n": .number(Double(index))])))
                            submitted.update { $0 += 1 }
                        }
                        return ids
                    }
                }
                group.addTask {
                    // Kill the leader once a third of the burst is in.
                    while submitted.value < jobs / 3 { try await Task.sleep(for: .milliseconds(10)) }
                    await managers[leader == "m1" ? 0 : 1].crash()
                    return []
                }
                var all: [String] = []
                for try await ids in group { all += ids }
                return all
            }
            #expect(ids.count == jobs)
            var succeeded = 0
            for id in ids where try await finalRecord(client, id).state == .succeeded { succeeded += 1 }
            #expect(succeeded == jobs)
            let newLeader = try await election.currentLeader()
            #expect(newLeader != nil && newLeader != leader)
        } catch {
            print(worker.log, managers[0].log, managers[1].log)
            throw error
        }
        await worker.crash()
        for manager in managers { await manager.crash() }
        await zk.close()
    }

    @Test func sigtermLetsRunningTasksFinishThenDeregisters() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("sigterm")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        let manager = try manager("m1", root: root)
        let worker = try executor("e1", root: root)
        do {
            try await waitForRegistration(client, of: worker)
            let id = try await client.submit(JobSpec(method: "sample.sleep", arguments: ["seconds": 1]))
            // Until the executor has started it (the job record says running once it is placed).
            let states = VersionedDocument<ExecutorProgress>(client: zk, path: Layout().executorProgress("e1")).updates()
            for try await state in states where state?.document.tasks.first?.state == .running { break }
            worker.signal(SIGTERM)
            let status = await worker.wait()
            #expect(status == 0, "exit status \(status):\n\(worker.log)")
            #expect(try await zk.exists(Layout().executorAlive("e1")) == nil)
            let state = try #require(try await client.executors().first?.state)
            #expect(state.tasks.allSatisfy { $0.state == .succeeded } || state.tasks.isEmpty)
            #expect(try await finalRecord(client, id).state == .succeeded)
        } catch {
            print(worker.log, manager.log)
            throw error
        }
        await manager.crash()
        await zk.close()
    }

    @Test func handBackOnSigtermMovesTheRunAtOnceAndItResumesElsewhere() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("hand-back")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        let manager = try manager("m1", root: root, grace: 600)  // the grace period never ends in this test
        let leaving = try executor("e1", root: root, onStop: "hand-back")
        var staying: ChildProcess?
        do {
            try await waitForRegistration(client, of: leaving)
            let id = try await client.submit(JobSpec(method: "sample.count", arguments: ["to": 200, "stepMilliseconds": 50]))
            try await waitForCheckpoint(zk, executor: "e1", job: id, atLeast: 5)
            staying = try executor("e2", root: root)
            leaving.signal(SIGTERM)
            #expect(await leaving.wait() == 0)
            let record = try await finalRecord(client, id)
            #expect(record.state == .succeeded)
            let run = try #require(record.history.last)
            #expect(run.executor == "e2")
            #expect(try #require(run.result?["resumedAt"]?.numberValue) >= 5, "\(record)\n\(leaving.log)\n\(manager.log)")
        } catch {
            print(leaving.log, staying?.log ?? "", manager.log)
            throw error
        }
        await staying?.crash()
        await manager.crash()
        await zk.close()
    }
}
