import DroverClient
import DroverExecutor
import DroverManager
import DroverProtocol
import Foundation
import Testing
import ZooKeeper
import ZooKeeperTesting

/// The direct path end to end (docs/PLACEMENT.md): clients reserve executors, executors claim
/// tasks, the leader adopts the claims and takes over what nobody can claim.
@Suite("Direct placement end to end", .timeLimit(.minutes(3)))
struct DirectPlacementTests {
    /// Which executor ran which task, and how often.
    final class Runs: Sendable {
        private let runs = LockedValue<[(task: Int, run: Int)]>([])
        func record(_ context: TaskContext) {
            runs.update { $0.append((Int(context.arguments["taskIndex"]?.numberValue ?? -1), context.run)) }
        }
        var all: [(task: Int, run: Int)] { runs.update { $0 } }
    }

    static func handlers(_ runs: Runs, gate: Gate? = nil) -> [String: TaskHandler] {
        [
            "work": { context in
                runs.record(context)
                if let gate { await gate.wait() }
                return ["task": context.arguments["taskIndex"] ?? .null]
            },
            "hold": { _ in
                if let gate { await gate.wait() }
                return nil
            },
        ]
    }

    static let threeExecutors: [(id: String, capacity: Resources, labels: [String: String])] = [
        ("d1", Resources(cpu: 4, memoryMB: 4096, slots: 2), [:]), ("d2", Resources(cpu: 4, memoryMB: 4096, slots: 2), [:]),
        ("d3", Resources(cpu: 4, memoryMB: 4096, slots: 2), [:]),
    ]

    @Test(arguments: [PlacementPolicy.random, .powerOfTwo, .batch, .batchLateBinding])
    func eachPolicyRunsEveryTaskOnceByClaimsTheLeaderAdopts(_ policy: PlacementPolicy) async throws {
        let cluster = try await Cluster.start("direct-\(policy.rawValue)")
        let runs = Runs()
        try await cluster.with(executors: Self.threeExecutors, handlers: Self.handlers(runs)) { client in
            let id = try await client.submit(JobSpec(method: "work", tasks: 6, placement: policy))
            let record = try await finalRecord(client, id)
            #expect(record.state == .succeeded, "\(record)")
            #expect(record.steps?.allSatisfy { $0.state == .succeeded } == true, "\(String(describing: record.steps))")
            // Every task ran once, as the run its claim numbers (1…6): claimed, none placed by the leader.
            let ran = runs.all.sorted { $0.task < $1.task }
            #expect(ran.map(\.task) == Array(0..<6))
            #expect(ran.map(\.run) == Array(1...6))
            #expect(record.steps?.map(\.run) == Array(1...6))
            let reserved = record.reservedOn ?? []
            // Late binding: one reusable reservation on each of the 3 executors (fewer than 2 × 6).
            let expected = policy == .batchLateBinding ? 3 : 6
            #expect(reserved.count == expected)
            #expect(Set(reserved).isSubset(of: ["d1", "d2", "d3"]))
            // Claimed and cancelled: no reservation is left in an inbox.
            for executor in ["d1", "d2", "d3"] {
                try await waitUntil(client, watching: [], childrenOf: [Layout().executorInbox(executor)]) {
                    try await client.zookeeper.children(Layout().executorInbox(executor)).names.filter { $0.hasPrefix(id) }.isEmpty
                }
            }
            // The leader clears the job's claims once it ended (without a read first for all but late binding's).
            let claims = Layout().jobClaims(id)
            try await waitUntil(client, watching: [], existenceOf: [claims]) { try await client.zookeeper.exists(claims) == nil }
        }
        await cluster.close()
    }

    @Test func aSingleTaskJobStartsWithoutALeader() async throws {
        let cluster = try await Cluster.start("direct-leaderless")
        let runs = Runs()
        let gate = Gate()
        // No leader can take a claim over here: the executor may start it however late its answer
        // came (a loaded test machine took seconds), as it may for the window in a real deployment.
        // The window is capped at half the executor's session timeout: a long session lets it be
        // long (with 4 s sessions, a full test run's load made the claim late, and it waited for
        // an adoption no leader would make).
        let started = try await cluster.with(
            executors: [Self.threeExecutors[0]], handlers: Self.handlers(runs, gate: gate), withManager: false, claimStartWindow: .seconds(120),
            executorSessionTimeout: .seconds(240)
        ) { client in
            // No manager runs: the executor claims and starts the task by itself.
            let id = try await client.submit(JobSpec(method: "work", placement: .random))
            let progress = Layout().executorProgress("d1")
            try await waitUntil(client, watching: [progress]) {
                let node = try await client.zookeeper.getData(progress)
                return try Codec.decode(ExecutorProgress.self, node.data).tasks.contains { $0.job == id && $0.state == .running }
            }
            gate.open()
            // Its end is recorded in the executor's progress, still without a leader.
            try await waitUntil(client, watching: [progress]) {
                let node = try await client.zookeeper.getData(progress)
                return try Codec.decode(ExecutorProgress.self, node.data).tasks.contains { $0.job == id && $0.state == .succeeded }
            }
            return id
        }
        #expect(runs.all.map(\.task) == [0])
        // A manager then adopts the claim and collects the end.
        try await cluster.with(executors: [Self.threeExecutors[0]], handlers: Self.handlers(runs)) { client in
            let record = try await finalRecord(client, started)
            #expect(record.state == .succeeded, "\(record)")
            #expect(record.history.map(\.executor) == ["d1"], "\(record.history)")
        }
        #expect(runs.all.count == 1)
        await cluster.close()
    }

    /// A claim answered too late to be sure the leader has not taken it over meanwhile (here every
    /// claim: a start window of zero, as for one whose job's document came through a link cut for
    /// seconds) is named in the progress and does not start until a leader adopts it.
    @Test func aClaimTooOldToStartAloneWaitsForTheLeadersAdoption() async throws {
        let cluster = try await Cluster.start("direct-late-claim")
        let runs = Runs()
        try await cluster.with(executors: [Self.threeExecutors[0]], handlers: Self.handlers(runs), withManager: false, claimStartWindow: .zero) {
            client in
            let id = try await client.submit(JobSpec(method: "work", placement: .random))
            let progress = Layout().executorProgress("d1")
            try await waitUntil(client, watching: [progress]) {
                let node = try await client.zookeeper.getData(progress)
                return try Codec.decode(ExecutorProgress.self, node.data).tasks.contains { $0.job == id && $0.claimed != nil && $0.state == .assigned }
            }
            // No leader can adopt it: it has not started (a started task is named running by its start).
            #expect(runs.all.isEmpty)
            // A manager comes, adopts the claim, and the task runs once, as its claim's run.
            let managerZK = try await cluster.connect()
            let manager = Manager(client: managerZK, configuration: Manager.Configuration(participantID: "m1", gracePeriod: .seconds(2)))
            let record = try await withThrowingTaskGroup(of: JobRecord?.self) { group in
                group.addTask {
                    try await manager.run()
                    return nil
                }
                group.addTask { try await finalRecord(client, id) }
                defer { group.cancelAll() }
                while let next = try await group.next() { if let record = next { return record } }
                throw CancellationError()
            }
            await managerZK.close()
            #expect(record.state == .succeeded, "\(record)")
            #expect(record.history.map(\.executor) == ["d1"], "\(record.history)")
            #expect(runs.all.map(\.run) == [1])
        }
        await cluster.close()
    }

    @Test func twoExecutorsClaimingTheSameTaskOneWinsAndTheOtherHearsNone() async throws {
        let cluster = try await Cluster.start("direct-contention")
        let runs = Runs()
        let executors: [(id: String, capacity: Resources, labels: [String: String])] = [
            ("c1", Resources(cpu: 1, memoryMB: 1024, slots: 1), [:]), ("c2", Resources(cpu: 1, memoryMB: 1024, slots: 1), [:]),
        ]
        try await cluster.with(executors: executors, handlers: Self.handlers(runs)) { client in
            for _ in 0..<10 {
                // Two reservations for one task, one on each executor: both may ask, one gets it.
                let id = try await client.submit(JobSpec(method: "work", placement: .batchLateBinding, probeRatio: 2))
                let record = try await finalRecord(client, id)
                #expect(record.state == .succeeded)
                #expect(Set(record.reservedOn ?? []) == ["c1", "c2"])
            }
            #expect(runs.all.count == 10)
            #expect(runs.all.allSatisfy { $0.task == 0 && $0.run == 1 })
        }
        await cluster.close()
    }

    /// Proactive cancellation: the claim of a job's last task deletes the job's reservations on
    /// other executors — once the claimant's progress names the task (its start), not before: the
    /// deletes went first in the session's order and held the start's write up by a commit. No
    /// leader runs, so the executor, not the leader's clean-up at the job's end, removes them.
    @Test func theLastClaimCancelsTheOtherReservationsOnceItsStartIsWritten() async throws {
        let cluster = try await Cluster.start("direct-cancellation")
        let runs = Runs()
        let gate = Gate()
        let executors: [(id: String, capacity: Resources, labels: [String: String])] = [
            ("k1", Resources(cpu: 1, memoryMB: 1024, slots: 1), [:]), ("k2", Resources(cpu: 1, memoryMB: 1024, slots: 1), [:]),
        ]
        try await cluster.with(
            executors: executors, handlers: Self.handlers(runs, gate: gate), withManager: false, claimStartWindow: .seconds(120),
            executorSessionTimeout: .seconds(240)
        ) { client in
            func named(_ job: String, on executor: String) async throws -> TaskProgress? {
                try Codec.decode(ExecutorProgress.self, try await client.zookeeper.getData(Layout().executorProgress(executor)).data).tasks.first { $0.job == job }
            }
            // One executor busy: its one slot held by a job until the gate opens.
            let holder = try await client.submit(JobSpec(method: "hold", placement: .random))
            let progresses = executors.map { Layout().executorProgress($0.id) }
            var busy = ""
            try await waitUntil(client, watching: progresses) {
                for executor in executors where try await named(holder, on: executor.id)?.state == .running { busy = executor.id }
                return !busy.isEmpty
            }
            let free = executors.map(\.id).first { $0 != busy }!
            // Late binding's reservations, one on each; only the free one can claim.
            let id = try await client.submit(JobSpec(method: "work", placement: .batchLateBinding, probeRatio: 2))
            #expect(Set(try await client.status(id).reservedOn ?? []) == ["k1", "k2"])
            let busyInbox = Layout().executorInbox(busy)
            try await waitUntil(client, watching: [], childrenOf: [busyInbox]) {
                try await client.zookeeper.children(busyInbox).names.allSatisfy { !$0.hasPrefix(id) }
            }
            // Gone from the busy executor's inbox: the claimant's progress names the task started,
            // in a write committed before the deletion (the handler holds, so nothing wrote since).
            let deletedAt = try await client.zookeeper.children(busyInbox).stat.childrenZxid
            let progress = try await client.zookeeper.getData(Layout().executorProgress(free))
            let started = try Codec.decode(ExecutorProgress.self, progress.data).tasks.first { $0.job == id }
            #expect(started?.state == .running, "\(String(describing: started))")
            #expect(progress.stat.modifiedZxid < deletedAt, "the start was written at zxid \(progress.stat.modifiedZxid), the reservation deleted at \(deletedAt)")
            gate.open()
            try await waitUntil(client, watching: [Layout().executorProgress(free)]) { try await named(id, on: free)?.state == .succeeded }
        }
        #expect(runs.all.map(\.task) == [0])
        await cluster.close()
    }

    /// One executor (`id`) with one slot, held by a job until `gate` opens, and a claim timeout of
    /// a second: a reservation made now waits in its inbox.
    func withABusyExecutor(
        _ name: String, _ id: String, _ body: @escaping @Sendable (DroverClient, Runs, Gate) async throws -> Void
    ) async throws {
        let cluster = try await Cluster.start(name)
        let runs = Runs()
        let gate = Gate()
        let executors: [(id: String, capacity: Resources, labels: [String: String])] = [(id, Resources(cpu: 1, memoryMB: 1024, slots: 1), [:])]
        try await cluster.with(executors: executors, handlers: Self.handlers(runs, gate: gate), claimTimeout: .seconds(1)) { client in
            let holder = try await client.submit(JobSpec(method: "hold"))
            // Started on the executor, not only placed (the record says `running` from placement
            // on): an executor that had not seen the assignment yet claimed the next job's task
            // with the slot, and the body's own claim failed (seen once, as a hung test run).
            let progress = Layout().executorProgress(id)
            try await waitUntil(client, watching: [progress]) {
                let tasks = try Codec.decode(ExecutorProgress.self, try await client.zookeeper.getData(progress).data).tasks
                return tasks.contains { $0.job == holder && $0.state == .running }
            }
            do {
                try await body(client, runs, gate)
            } catch {
                // The held handler ends, so the executor can stop and the failure is reported.
                gate.open()
                throw error
            }
        }
        await cluster.close()
    }

    @Test func tasksNobodyClaimsInTimeAreTakenOverAndALateClaimGetsNone() async throws {
        try await withABusyExecutor("direct-takeover", "t1") { client, runs, gate in
            // The only slot is held: the reservation waits in the inbox past the claim timeout.
            let id = try await client.submit(JobSpec(method: "work", placement: .random))
            try await waitUntil(client, watching: [Layout().job(id)]) {
                // Taken over: the leader holds its claim and places it itself, with a run after the claims' numbers.
                let step = try await client.status(id).steps?.first
                return step != nil && step?.claimable == nil
            }
            gate.open()
            let record = try await finalRecord(client, id)
            #expect(record.state == .succeeded, "\(record)")
            #expect(record.steps?.first?.run == 2)
            #expect(runs.all.map(\.run) == [2])
            // The executor's own claim, made once its slot freed, found the task taken (it ran only
            // run 2, above): at most its claim and the leader's, unless the leader cleared them
            // already (the job ended).
            do {
                #expect(try await client.zookeeper.children(Layout().jobClaims(id)).names.count <= 2)
            } catch let error as ZooKeeperError where error.code == .noNode {}
        }
    }

    @Test func aClaimWhoseAnswerWasLostIsTakenOverAfterTheClaimTimeout() async throws {
        try await withABusyExecutor("direct-lost-claim", "l1") { client, runs, gate in
            let layout = Layout()
            let id = try await client.submit(JobSpec(method: "work", placement: .random))
            // The executor's claim as ZooKeeper committed it, its answer lost on the way back: the
            // claim names l1's live process, the reservation is gone, and l1 never learns of it.
            let registration = try #require(try await client.registration(of: "l1"))
            let note = try Codec.encode(ClaimNote(executor: "l1", instance: registration.instance))
            _ = try await client.zookeeper.multi([
                .create(path: layout.claimPrefix(id), data: note, mode: .persistentSequential),
                .delete(path: layout.reservation(job: id, index: 0, on: "l1")),
            ])
            // Unnamed by l1's progress for the claim timeout: the leader takes it over and places it.
            try await waitUntil(client, watching: [layout.job(id)]) {
                let step = try await client.status(id).steps?.first
                return step != nil && step?.claimable == nil
            }
            gate.open()
            let record = try await finalRecord(client, id)
            #expect(record.state == .succeeded, "\(record)")
            #expect(record.steps?.first?.run == 2)
            #expect(runs.all.map(\.run) == [2])
        }
    }

    @Test func anExecutorWhoseSessionExpiresGoesOnAndPublishesItsLoadAgain() async throws {
        let cluster = try await Cluster.start("direct-expiry")
        let runs = Runs()
        let managerZK = try await cluster.connect()
        let executorZK = try await cluster.connect()
        let manager = Manager(client: managerZK, configuration: .init(participantID: "m1", gracePeriod: .seconds(30)))
        let executor = try Executor(
            client: executorZK, configuration: .init(id: "x1", capacity: Resources(cpu: 1, memoryMB: 1024, slots: 2)), handlers: Self.handlers(runs))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await manager.run() }
            // An executor that stopped with an error would end the group, and the test, with it.
            group.addTask { try await executor.run() }
            let client = cluster.client
            try await client.waitForRegistration(of: ["x1"])
            let load = Layout().executorLoad("x1")
            try await waitUntil(client, watching: [], existenceOf: [load]) { try await client.zookeeper.exists(load) != nil }
            let before = executorZK.sessionID
            // Its ephemeral nodes go with the session (once seen, a chaos run's executor exited here).
            try await executorZK.expireSessionForTesting()
            try await waitUntil(client, watching: [], existenceOf: [load]) {
                guard let stat = try await client.zookeeper.exists(load) else { return false }
                return stat.ephemeralOwner != before && stat.ephemeralOwner == executorZK.sessionID
            }
            let id = try await client.submit(JobSpec(method: "work", placement: .random))
            #expect(try await finalRecord(client, id).state == .succeeded)
            group.cancelAll()
        }
        await managerZK.close()
        await executorZK.close()
        await cluster.close()
    }

    @Test func anExecutorsLoadAndClaimsAreListedAsTheyChange() async throws {
        let cluster = try await Cluster.start("direct-load")
        let runs = Runs()
        let gate = Gate()
        let oneSlot: [(id: String, capacity: Resources, labels: [String: String])] = [("l1", Resources(cpu: 1, memoryMB: 1024, slots: 1), [:])]
        try await cluster.with(executors: oneSlot, handlers: Self.handlers(runs, gate: gate)) { client in
            // Three tasks reserved on the only executor: it claims one (its slot) and holds two.
            let id = try await client.submit(JobSpec(method: "work", tasks: 3, placement: .random))
            let paths = [Layout().executorLoad("l1"), Layout().executorProgress("l1"), Layout().executorAssignments("l1")]
            try await waitUntil(client, watching: [], existenceOf: paths) {
                let listing = try await client.executors().first
                return listing?.load?.reserved == 2 && listing?.load?.running == 1 && listing?.claimedTasks == 1
            }
            let listing = try #require(try await client.executors().first)
            #expect(listing.id == "l1" && listing.registration != nil && listing.load?.slots == 1 && listing.load?.draining == false)
            gate.open()
            #expect(try await finalRecord(client, id).state == .succeeded)
            try await waitUntil(client, watching: [], existenceOf: paths) {
                let listing = try await client.executors().first
                return listing?.load?.reserved == 0 && listing?.load?.running == 0 && listing?.claimedTasks == 0
            }
        }
        await cluster.close()
    }

    @Test func badPlacementsAreRefusedWithTheirReason() throws {
        #expect(throws: SpecError.self) { try JobSpec(method: "work", probeRatio: 2).validate() }
        #expect(throws: SpecError.self) { try JobSpec(method: "work", placement: .batch, probeRatio: 0.5).validate() }
        #expect(throws: SpecError.self) { try JobSpec(method: "work", kind: .infinite, placement: .random).validate() }
        let scheduled = JobSpec(method: "work", kind: .infinite, schedule: Schedule(referenceMilliseconds: 0, intervalMilliseconds: 60_000), placement: .batch)
        #expect(throws: SpecError.self) { try scheduled.validate() }
        let unknown = #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(JobSpec.self, from: Data(#"{"method": "work", "placement": "nearest"}"#.utf8))
        }
        #expect("\(String(describing: unknown))".contains("batchLateBinding"))
        try JobSpec(method: "work", tasks: 3, placement: .batchLateBinding, probeRatio: 1.5).validate()
    }
}
