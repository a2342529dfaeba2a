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

/// Bad input written straight into ZooKeeper, or sent by a handler, under a live cluster: each
/// bad document ends with a reason, and the cluster keeps placing (issue 13; ARCHITECTURE.md,
/// promise 7).
@Suite("Bad input does not take the cluster down", .timeLimit(.minutes(3)))
struct BadInputTests {
    static let good = #"{"format":1,"id":"ID","spec":{"format":1,"method":"echo","kind":"once"},"state":"queued","submittedAt":0,"runsStarted":0,"runsEnded":0,"history":[],"stopRequested":false}"#

    /// Writes a job record as another program would, and queues its submit.
    static func writeAndSubmit(_ record: String, id: String, client: DroverClient) async throws {
        let zk = client.zookeeper
        try await zk.createPath(client.layout.jobShard(Layout.shard(of: id)))
        _ = try await zk.create(client.layout.job(id), data: Array(record.replacingOccurrences(of: "\"ID\"", with: "\"\(id)\"").utf8), mode: .persistent)
        let queue = DurableQueue(client: zk, root: client.layout.queue)
        _ = try await queue.put(Array(#"{"format":1,"op":"submit","job":"\#(id)"}"#.utf8))
    }

    /// Waits until the leader has replaced the job's record by the note that it cannot be used.
    static func unusableNote(_ id: String, client: DroverClient) async throws -> UnusableJobRecord {
        for try await update in client.zookeeper.dataUpdates(of: client.layout.job(id)) {
            if case .present(let node) = update, let note = try? JSONDecoder().decode(UnusableJobRecord.self, from: Data(node.data)) {
                return note
            }
        }
        throw CancellationError()
    }

    @Test func aJobWhoseRecordCannotBeUsedFailsWithTheFieldNamedAndTheLeaderGoesOn() async throws {
        let cluster = try await Cluster.start("unusable")
        try await cluster.with(handlers: SchedulerTests.handlers) { client in
            // Before the fix: a schedule of 1e300 s trapped every manager in turn; a missing field
            // or an unknown kind left the job `queued` for ever and set the submit aside as "no job";
            // a record of 1 MB wedged the leader; a newer format was run.
            let cases: [(id: String, record: String, field: String)] = [
                ("j-bad-interval", Self.good.replacingOccurrences(of: #""kind":"once""#, with: #""kind":"infinite","schedule":{"reference":"2021-01-31T21:01:00Z","intervalSeconds":1e300}"#), "spec.schedule.intervalSeconds"),
                ("j-bad-missing", Self.good.replacingOccurrences(of: #""runsEnded":0,"#, with: ""), "runsEnded"),
                ("j-bad-kind", Self.good.replacingOccurrences(of: #""kind":"once""#, with: #""kind":"sometimes""#), "spec.kind"),
                ("j-bad-format", Self.good.replacingOccurrences(of: #"{"format":1,"id""#, with: #"{"format":999999999999,"id""#), "format"),
                ("j-bad-count", Self.good.replacingOccurrences(of: #""kind":"once""#, with: #""kind":"finite","count":0"#), "spec.count"),
                ("j-bad-huge", String(repeating: " ", count: 1_000_000) + Self.good, "over the limit"),
                // Before the fix a timeout of 1e300 s trapped every executor in turn.
                ("j-bad-timeout", Self.good.replacingOccurrences(of: #""method":"echo""#, with: #""method":"shell","arguments":{"command":["true"],"timeoutSeconds":1e300}"#), "arguments.timeoutSeconds"),
            ]
            for bad in cases { try await Self.writeAndSubmit(bad.record, id: bad.id, client: client) }
            // The queue behind them still moves.
            #expect(try await client.call(JobSpec(method: "echo", arguments: "still placing")) == "still placing")
            for bad in cases {
                let note = try await Self.unusableNote(bad.id, client: client)
                #expect(note.state == .failed)
                #expect(note.unusable.contains(bad.field), "\(bad.id): \(note.unusable)")
                // Every reader reports it rather than hides it.
                await #expect {
                    _ = try await client.status(bad.id)
                } throws: { error in
                    (error as? DroverError)?.code == .unusableRecord && "\(error)".contains(bad.field)
                }
            }
            let listing = try await client.listing()
            #expect(Set(listing.unusable.map(\.job)) == Set(cases.map(\.id)))
            // Nothing was set aside as "no job": the records exist.
            #expect(try await client.zookeeper.children(client.layout.setAside).names.isEmpty)
        }
        await cluster.close()
    }

    @Test func aMegabyteQueueItemIsSetAsideWithoutItsDataAndTheQueueMovesOn() async throws {
        let cluster = try await Cluster.start("hugeitem")
        try await cluster.with(handlers: SchedulerTests.handlers) { [cluster] client in
            // Another program, without Drover's limit on item size.
            let queue = DurableQueue(client: client.zookeeper, root: client.layout.queue, maximumItemBytes: 2_000_000)
            _ = try await queue.put(Array(repeating: UInt8(ascii: "x"), count: 1_000_000))
            #expect(try await client.call(JobSpec(method: "echo", arguments: "after")) == "after")
            let names = try await client.zookeeper.children(client.layout.setAside).names
            #expect(names.count == 1)
            let node = try await client.zookeeper.getData(client.layout.setAside + "/" + names[0])
            let item = try JSONDecoder().decode(SetAsideItem.self, from: Data(node.data))
            #expect(item.code == .unreadableItem)
            #expect(item.bytes == 1_000_000)
            #expect(node.data.count < 2 * Bounds.setAsideDataBytes)
            // An operator sees it, with why.
            let listed = try await ChildProcess.runDrover(["setaside"], environment: ["DROVER_ZK": cluster.root])
            #expect(listed.status == 0, "\(listed.stderr)")
            #expect(listed.stdout.contains("unreadableItem") && listed.stdout.contains("(1000000 bytes)"), "\(listed.stdout)")
        }
        await cluster.close()
    }

    @Test func aJobFailingWithHugeErrorsKeepsItsRecordBoundedAndCollectionGoesOn() async throws {
        let cluster = try await Cluster.start("hugeerrors")
        var handlers = SchedulerTests.handlers
        handlers["shout"] = { _ in throw DroverError(.jobFailed, String(repeating: "x", count: 50_000)) }
        try await cluster.with(handlers: handlers) { client in
            // Before the fix: after ~13 runs the record outgrew the leader's transaction budget and
            // the leader collected nothing anywhere any more.
            let id = try await client.submit(JobSpec(method: "shout", kind: .infinite))
            for try await record in client.updates(id) where record.runsEnded >= 25 { break }
            let data = try await client.zookeeper.getData(client.layout.job(id)).data
            #expect(data.count < 25 * Bounds.errorBytes, "\(data.count) bytes")
            let record = try await client.status(id)
            #expect(record.history.allSatisfy { ($0.error?.utf8.count ?? 0) <= Bounds.errorBytes })
            try await client.stop(id)
            #expect(try await client.call(JobSpec(method: "echo", arguments: "collected")) == "collected")
        }
        await cluster.close()
    }

    @Test func anExecutorWhoseRegistrationIsRemovedRegistersAgain() async throws {
        let cluster = try await Cluster.start("reregister")
        try await cluster.with(handlers: SchedulerTests.handlers) { client in
            let alive = client.layout.executorAlive("e1")
            var updates = client.zookeeper.dataUpdates(of: alive).makeAsyncIterator()
            // Registered first.
            var first: NodeData?
            while first == nil, let update = try await updates.next() {
                if case .present(let node) = update { first = node }
            }
            try await client.zookeeper.delete(alive)
            // Created again (before the fix it stayed gone until the executor restarted). The
            // removal and the new node may come as one update: the new node is told by its zxid.
            while let update = try await updates.next() {
                if case .present(let node) = update, node.stat.createdZxid != first?.stat.createdZxid { break }
            }
            #expect(try await client.registration(of: "e1") != nil)
            // Its progress written after the new registration, before anything starts: what makes
            // a take-back by a leader that saw it gone safe (PROTOCOL.md, "Executor registration").
            try await waitUntilProgressIsWrittenAfterRegistering(client.zookeeper, executor: "e1")
            #expect(try await client.call(JobSpec(method: "echo", arguments: "placed")) == "placed")
        }
        await cluster.close()
    }

    /// Seen in a chaos run: an executor whose session expired while it was cut off started a task
    /// 0.9 s into its new session, and the leader, which had not seen it register again, took the
    /// task back and ran it elsewhere too. It now registers, writes its progress, reads its
    /// assignments, and only then starts anything; the leader asks ZooKeeper before a take-back.
    @Test func anExecutorInANewSessionWritesItsProgressAfterRegisteringBeforeItStartsAnything() async throws {
        let cluster = try await Cluster.start("new-session-fence")
        let managerZK = try await cluster.connect()
        let executorZK = try await cluster.connect()
        let manager = Manager(client: managerZK, configuration: .init(participantID: "m1", gracePeriod: .seconds(30)))
        let executor = try Executor(
            client: executorZK, configuration: .init(id: "x1", capacity: Resources(cpu: 1, memoryMB: 1024, slots: 2)), handlers: SchedulerTests.handlers)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await manager.run() }
            group.addTask { try await executor.run() }
            let client = cluster.client
            try await client.waitForRegistration(of: ["x1"])
            // Registered at start the same way.
            try await waitUntilProgressIsWrittenAfterRegistering(client.zookeeper, executor: "x1")
            let before = try #require(try await client.zookeeper.exists(client.layout.executorAlive("x1")))
            try await executorZK.expireSessionForTesting()
            try await waitUntilProgressIsWrittenAfterRegistering(client.zookeeper, executor: "x1")
            let after = try #require(try await client.zookeeper.exists(client.layout.executorAlive("x1")))
            #expect(after.createdZxid > before.createdZxid && after.ephemeralOwner == executorZK.sessionID)
            #expect(try await client.call(JobSpec(method: "echo", arguments: "placed")) == "placed")
            // Its assignments deleted (an operator's repair of garbled ones) and made again by the
            // leader: their versions start again from 0, below those the executor went by when it
            // registered. Its tasks still start (a fence kept by version held them back for good).
            let assignments = client.layout.executorAssignments("x1")
            for index in 0..<3 { #expect(try await client.call(JobSpec(method: "echo", arguments: .number(Double(index)))) == .number(Double(index))) }
            try await executorZK.expireSessionForTesting()
            try await waitUntilProgressIsWrittenAfterRegistering(client.zookeeper, executor: "x1")
            let grown = try #require(try await client.zookeeper.exists(assignments))
            try await client.zookeeper.delete(assignments)
            #expect(try await client.call(JobSpec(method: "echo", arguments: "again")) == "again")
            let remade = try #require(try await client.zookeeper.exists(assignments))
            #expect(remade.version < grown.version && remade.createdZxid > grown.modifiedZxid)
            group.cancelAll()
        }
        await managerZK.close()
        await executorZK.close()
        await cluster.close()
    }

    @Test func cancellingARunningJobSaysToStopIt() async throws {
        let cluster = try await Cluster.start("cancelrunning")
        let gate = Gate()
        var handlers = SchedulerTests.handlers
        handlers["hold"] = { _ in
            await gate.wait()
            return nil
        }
        try await cluster.with(handlers: handlers) { client in
            let id = try await client.submit(JobSpec(method: "hold"))
            for try await record in client.updates(id) where record.state == .running { break }
            await #expect {
                try await client.cancel(id)
            } throws: { error in
                (error as? DroverError)?.code == .jobNotCancellable && "\(error)".contains("drover stop")
            }
            gate.open()
            #expect(try await finalRecord(client, id).state == .succeeded)
        }
        await cluster.close()
    }

    @Test func aGarbledExecutorProgressIsKeptAsideAndRepairedWhileItsTasksRunOn() async throws {
        let cluster = try await Cluster.start("garbledstate")
        let gate = Gate()
        let (handlers, started) = handlersWithHold(until: gate)
        try await cluster.with(handlers: handlers) { client in
            let id = try await client.submit(JobSpec(method: "hold"))
            // Running on the executor: its progress records the start.
            for await _ in started { break }
            // Before the fix the executor killed its running command, the job stayed `running` for
            // ever and the executor refused to start again.
            let path = client.layout.executorProgress("e1")
            try await client.zookeeper.setData(path, data: Array("not a state".utf8))
            for try await update in client.zookeeper.dataUpdates(of: path) {
                if case .present(let node) = update, let progress = try? JSONDecoder().decode(ExecutorProgress.self, from: Data(node.data)) {
                    #expect(progress.tasks.map(\.job) == [id])
                    #expect(progress.tasks.map(\.state) == [.running])
                    break
                }
            }
            let aside = try await client.zookeeper.getData(client.layout.executorUnreadableProgress("e1"))
            #expect(aside.data == Array("not a state".utf8))
            gate.open()
            let record = try await finalRecord(client, id)
            #expect(record.state == .succeeded)
            #expect(record.history.first?.result == "held to the end")
            #expect(record.history.first?.attempts == 1)
        }
        await cluster.close()
    }

    /// Found by a chaos run (seed 41177): an executor's progress was garbled while its session
    /// changed, and registering in the new session found it so. The executor exited, and its
    /// tasks stayed where the leader takes nothing back from (unreadable progress). It holds the
    /// last good progress: it writes it back, registers, and its task runs on to its end.
    @Test func anExecutorWhoseProgressIsGarbledWhileItsSessionChangesRepairsItAndRegistersAgain() async throws {
        let cluster = try await Cluster.start("garbled-new-session")
        let managerZK = try await cluster.connect()
        let executorZK = try await cluster.connect()
        let gate = Gate()
        let (handlers, started) = handlersWithHold(until: gate)
        let manager = Manager(client: managerZK, configuration: .init(participantID: "m1", gracePeriod: .seconds(30)))
        let executor = try Executor(
            client: executorZK, configuration: .init(id: "x1", capacity: Resources(cpu: 1, memoryMB: 1024, slots: 2)), handlers: handlers)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await manager.run() }
            group.addTask { try await executor.run() }
            let client = cluster.client
            defer { gate.open() }
            let id = try await client.submit(JobSpec(method: "hold"))
            for await _ in started { break }
            let path = client.layout.executorProgress("x1")
            let zookeeper = client.zookeeper
            try await executorZK.expireSessionForTesting {
                try await zookeeper.setData(path, data: Array("not a state".utf8))
            }
            try await waitUntilProgressIsWrittenAfterRegistering(client.zookeeper, executor: "x1")
            let alive = try #require(try await client.zookeeper.exists(client.layout.executorAlive("x1")))
            #expect(alive.ephemeralOwner == executorZK.sessionID)
            let progress = try Codec.decode(ExecutorProgress.self, try await client.zookeeper.getData(path).data)
            #expect(progress.tasks.map(\.job) == [id] && progress.tasks.map(\.state) == [.running])
            #expect(try await client.zookeeper.getData(client.layout.executorUnreadableProgress("x1")).data == Array("not a state".utf8))
            gate.open()
            let record = try await finalRecord(client, id)
            #expect(record.state == .succeeded && record.history.first?.result == "held to the end")
            group.cancelAll()
        }
        await managerZK.close()
        await executorZK.close()
        await cluster.close()
    }

    /// A batch item another program wrote, whose jobs cannot even be filed as waiting in one
    /// transaction (100 records of 10 KB): before, the drain stopped on it for ever; now its
    /// operations go back on the queue one per item, and every job runs.
    @Test func aBatchTooLargeToFileIsPutBackOnePerItemAndEveryJobRuns() async throws {
        let cluster = try await Cluster.start("splitbatch")
        let eight: [(id: String, capacity: Resources, labels: [String: String])] = [("e1", Resources(cpu: 8, memoryMB: 8192, slots: 8), [:])]
        try await cluster.with(executors: eight, handlers: SchedulerTests.handlers) { client in
            let zk = client.zookeeper
            let padding = JSONValue.string(String(repeating: "p", count: 10_000))
            var ids: [String] = []
            for index in 0..<100 {
                let id = "j-split-\(index)"
                ids.append(id)
                let record = JobRecord(id: id, spec: JobSpec(method: "echo", arguments: padding))
                try await zk.createPath(client.layout.jobShard(Layout.shard(of: id)))
                _ = try await zk.create(client.layout.job(id), data: try Codec.encode(record), mode: .persistent)
            }
            let operations = try ids.map { try Codec.encode(QueueOperation(.submit, job: $0)) }
            _ = try await DurableQueue(client: zk, root: client.layout.queue).put(QueueItemContent.batchItem(operations))
            for id in ids {
                let record = try await withDiagnosis(client, id, limit: .seconds(120)) { try await finalRecord(client, id) }
                #expect(record.state == .succeeded, "\(id)")
            }
        }
        await cluster.close()
    }

    @Test func setAsideItemsAreBoundedAndTheDroppedCounted() async throws {
        let cluster = try await Cluster.start("setasidebound")
        try await cluster.with(handlers: SchedulerTests.handlers, setAsideLimit: 3) { [cluster] client in
            let queue = DurableQueue(client: client.zookeeper, root: client.layout.queue)
            for index in 0..<5 { _ = try await queue.put(Array("garbage \(index)".utf8)) }
            // Behind them in the queue: once it ran, every item before it was set aside (and pruned).
            #expect(try await client.call(JobSpec(method: "echo", arguments: "after")) == "after")
            let listing = try await client.setAsideItems(limit: 10)
            #expect(listing.total == 3)
            #expect(listing.dropped == 2)
            // The newest are kept.
            #expect(listing.items.map(\.item.data) == ["garbage 4", "garbage 3", "garbage 2"])
            let shown = try await ChildProcess.runDrover(["setaside"], environment: ["DROVER_ZK": cluster.root])
            #expect(shown.stdout.contains("2 older items were dropped"), "\(shown.stdout)")
        }
        await cluster.close()
    }

    /// A sample of the bad-document corpus written straight into a live cluster, as queue items
    /// and as job records with their submits: the leader sets aside or fails each, keeps placing,
    /// and the queue ends empty.
    @Test func aSampleOfTheCorpusWrittenIntoALiveClusterIsAllAccountedFor() async throws {
        let cluster = try await Cluster.start("corpus")
        try await cluster.with(handlers: SchedulerTests.handlers) { client in
            let zk = client.zookeeper
            let sample = Array(BadDocumentCorpusTests.documents.prefix(300))
            // Another program's puts: no size limit of Drover's.
            let queue = DurableQueue(client: zk, root: client.layout.queue, maximumItemBytes: 1_000_000)
            for document in sample.prefix(200) { _ = try await queue.put(document) }
            var records: [(id: String, usable: Bool)] = []
            for (index, document) in sample.dropFirst(200).enumerated() {
                let id = "j-corpus-\(index)"
                _ = try await queue.put(Array(#"{"format":1,"op":"submit","job":"\#(id)"}"#.utf8), alongWith: [.create(path: client.layout.job(id), data: document)])
                records.append((id, (try? JobRecord.read(document, job: id)) != nil))
            }
            #expect(try await client.call(JobSpec(method: "echo", arguments: "still placing")) == "still placing")
            // Every record is a job that the leader took as it is (it survived its one change), or
            // one it failed with the leader's note saying why.
            for (id, usable) in records where !usable {
                let note = try await withDiagnosis(client, id) { try await Self.unusableNote(id, client: client) }
                #expect(!note.unusable.isEmpty, "\(id)")
            }
            #expect(records.contains { !$0.usable })
            let left = try await zk.children(client.layout.queue).names
            for segment in left { #expect(try await zk.children(client.layout.queue + "/" + segment).names.isEmpty, "queue segment \(segment)") }
        }
        await cluster.close()
    }
}

/// The test handlers, and `hold`: says it started (`started`), waits for `gate`, and returns
/// "held to the end".
func handlersWithHold(until gate: Gate) -> (handlers: [String: TaskHandler], started: AsyncStream<Void>) {
    let (started, start) = AsyncStream.makeStream(of: Void.self)
    var handlers = SchedulerTests.handlers
    handlers["hold"] = { _ in
        start.yield()
        await gate.wait()
        return "held to the end"
    }
    return (handlers, started)
}

/// Waits until executor `id`'s progress was written after its registration was created — by the
/// executor, once registered (without it, this waits for a write that never comes: bounded).
func waitUntilProgressIsWrittenAfterRegistering(_ zookeeper: ZooKeeperClient, executor id: String) async throws {
    let layout = Layout()
    try await withThrowingTaskGroup(of: Bool.self) { group in
        group.addTask {
            for try await update in zookeeper.dataUpdates(of: layout.executorProgress(id)) {
                guard case .present(let progress) = update, let alive = try await zookeeper.exists(layout.executorAlive(id)) else { continue }
                if progress.stat.modifiedZxid > alive.createdZxid { return true }
            }
            return false
        }
        group.addTask {
            try await Task.sleep(for: .seconds(30))
            return false
        }
        defer { group.cancelAll() }
        if try await group.next() != true {
            Issue.record("executor \(id)'s progress was not written after it registered, within 30 s")
        }
    }
}
