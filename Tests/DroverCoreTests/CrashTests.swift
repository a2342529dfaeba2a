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

    /// A direct job's executor killed while it holds a claim (its task running, checkpointed) and
    /// reservations: the task resumes elsewhere from its checkpoint, the reserved ones run elsewhere,
    /// each once.
    @Test func anExecutorKilledHoldingAClaimAndReservationsLosesNoTask() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("crash-direct")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        let manager = try manager("m1", root: root, grace: 1)
        func executor(_ id: String, slots: Int) throws -> ChildProcess {
            try ChildProcess.launchDaemon(
                ChildProcess.droverExecutable,
                ["executor", "--zk", root, "--id", id, "--slots", "\(slots)", "--session-timeout", "2", "--label", "zone=a"], name: "executor-\(id)")
        }
        let doomed = try executor("e1", slots: 1)
        var survivor: ChildProcess?
        do {
            try await waitForRegistration(client, of: doomed)
            // Three tasks, all reserved on e1 (the only executor in zone a): it claims one (its slot) and holds two reservations.
            let id = try await client.submit(
                JobSpec(method: "sample.count", arguments: ["to": 200, "stepMilliseconds": 50], constraints: ["zone": "a"], tasks: 3, placement: .random))
            try await waitForCheckpoint(zk, executor: "e1", job: id, atLeast: 5)
            #expect(try await zk.children(Layout().executorInbox("e1")).names.filter { $0.hasPrefix(id) }.count == 3 - 1)
            // The leader has adopted the claim (it is in e1's assignments): from here it is taken back as any task.
            for try await version in VersionedDocument<ExecutorState>(client: zk, path: Layout().executorAssignments("e1")).updates()
            where version?.document.tasks.contains(where: { $0.job == id }) == true { break }
            survivor = try executor("e2", slots: 3)
            try await client.waitForRegistration(of: ["e2"])
            await doomed.crash()
            let record = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
            #expect(record.state == .succeeded, "\(record)")
            #expect(record.steps?.allSatisfy { $0.state == .succeeded } == true)
            // Each task ran to its end once, on e2; the claimed one from e1's checkpoint (as its claim's run).
            #expect(record.history.count == 3 && record.history.allSatisfy { $0.executor == "e2" && $0.outcome == .succeeded }, "\(record.history)")
            let claimed = try #require(record.history.first { $0.run == ClaimedTask.run(ofTask: 0) })
            #expect(try #require(claimed.result?["resumedAt"]?.numberValue) >= 5, "the claimed task started over instead of resuming")
        } catch {
            print(doomed.log, survivor?.log ?? "", manager.log)
            throw error
        }
        await survivor?.crash()
        await manager.crash()
        await zk.close()
    }

    /// The direct path does not need the leader: with the only manager killed during a burst of
    /// direct submissions, every task still starts and ends; a manager started later records each
    /// job as it ran (once).
    @Test func directJobsRunOnWhileTheLeaderIsKilled() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("crash-direct-leader")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        let first = try manager("m1", root: root)
        let worker = try executor("e1", root: root, slots: 8)
        var second: ChildProcess?
        do {
            try await waitForRegistration(client, of: worker)
            try await APITests.waitForAManager(zk)
            let jobs = 40
            var ids: [String] = []
            for index in 0..<jobs {
                if index == jobs / 4 { await first.crash() }
                ids.append(try await client.submit(JobSpec(method: "sample.echo", arguments: ["n": .number(Double(index))], placement: .random)))
            }
            // Every job's task ended on e1, no manager running (seen in e1's progress as it changes:
            // claimed tasks no leader adopted yet), and listed as e1's.
            let progress = VersionedDocument<ExecutorProgress>(client: zk, path: Layout().executorProgress("e1"))
            let wanted = Set(ids.dropFirst(jobs / 4))
            for try await version in progress.updates()
            where wanted.isSubset(of: Set((version?.document.tasks ?? []).filter { $0.claimed != nil && $0.state == .succeeded }.map(\.job))) { break }
            let listed = try #require(try await client.executors().first?.state?.tasks)
            #expect(wanted.isSubset(of: Set(listed.filter { $0.claimed != nil }.map(\.job))))
            second = try manager("m2", root: root)
            for id in ids {
                let record = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
                #expect(record.state == .succeeded && record.history.count == 1 && record.history.first?.run == 1, "\(record)")
            }
        } catch {
            print(worker.log, first.log, second?.log ?? "")
            throw error
        }
        await worker.crash()
        await second?.crash()
        await zk.close()
    }
}
