import DroverClient
@testable import DroverExecutor
import DroverProtocol
import DroverStore
import Foundation
import Synchronization
import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// Work specs end to end on a real ZooKeeper: executors claim units straight from their
/// segments (no manager runs in these tests: the unit path does not need one).
@Suite("Work specs on ZooKeeper")
struct WorkSpecIntegrationTests {
    /// Runs executors with unit slots around `body`, and stops them afterwards.
    func withExecutors<T: Sendable>(
        _ cluster: Cluster, ids: [String], unitSlots: Int = 8, handlers: [String: TaskHandler], _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        var clients: [ZooKeeperClient] = []
        for _ in ids { clients.append(try await cluster.connect()) }
        let runners = try zip(ids, clients).map { id, zk in
            try Executor(client: zk, configuration: .init(id: id, unitSlots: unitSlots), handlers: handlers)
        }
        let result = try await withRunning(runners, body)
        for zk in clients { await zk.close() }
        return result
    }

    /// Runs `runners` around `body`, and cancels them once it has answered.
    func withRunning<T: Sendable>(_ runners: [Executor], _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            for runner in runners {
                group.addTask {
                    try await runner.run()
                    return nil
                }
            }
            group.addTask { try await body() }
            defer { group.cancelAll() }
            while let next = try await group.next() {
                if let value = next { return value }
            }
            throw CancellationError()
        }
    }

    /// A `drover executor` process with 2 unit slots and a 2-second session; with `ledger`, its
    /// `sample.ledger` runs record their starts and ends in that file.
    func launchUnitExecutor(_ id: String, _ cluster: Cluster, _ flags: [String] = [], ledger: String? = nil) throws -> ChildProcess {
        let arguments = ["executor", "--zk", cluster.root, "--id", id, "--unit-slots", "2", "--session-timeout", "2"] + flags
        guard let ledger else { return try ChildProcess.launchDaemon(ChildProcess.droverExecutable, arguments, name: "executor-\(id)") }
        return try ChildProcess.launchDaemon("/usr/bin/env", ["DROVER_LEDGER_FILE=\(ledger)", ChildProcess.droverExecutable] + arguments, name: "executor-\(id)")
    }

    /// Waits until `ledger` records `count` starts; fails, with its log, if `process` exits first.
    /// The file is the one sign outside the executor's process that it runs what it claimed, so
    /// it is looked at every 20 ms.
    func waitForStarts(_ count: Int, in ledger: String, of process: ChildProcess) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ((try? String(contentsOfFile: ledger, encoding: .utf8)) ?? "").split(separator: "\n").count(where: { $0.hasPrefix("S ") }) < count {
            if process.hasExited { throw LocalEnsembleError("the executor exited before \(count) starts:\n\(process.log)") }
            guard ContinuousClock.now < deadline else { throw LocalEnsembleError("fewer than \(count) starts within 60 s:\n\(process.log)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits on the index of `spec`'s bucket 0 until its counts satisfy `done`; fails, with its
    /// log, if `process` exits first.
    func waitForCounts(
        _ cluster: Cluster, _ spec: String, _ what: String, while process: ChildProcess? = nil, _ done: @escaping @Sendable (UnitCounts) -> Bool
    ) async throws {
        let path = cluster.client.layout.specBucket(spec, 0)
        let seen = try await within(60, what) { [zookeeper = cluster.client.zookeeper] in
            for try await update in zookeeper.dataUpdates(of: path) {
                if process?.hasExited == true { return false }
                if case .present(let node) = update, done(try Codec.decode(UnitBucket.self, node.data).counts) { return true }
            }
            return false
        }
        if !seen { throw LocalEnsembleError("\(what): the executor exited first:\n\(process?.log ?? "")") }
    }

    /// Waits, on watches of the buckets' indexes, until no unit of `spec` is claimable or running.
    func settled(_ client: DroverClient, _ spec: WorkSpec) async throws -> UnitCounts {
        var total = UnitCounts()
        for bucket in 0..<spec.buckets {
            for try await update in client.zookeeper.dataUpdates(of: client.layout.specBucket(spec.name, bucket)) {
                guard case .present(let node) = update else { continue }
                let counts = try Codec.decode(UnitBucket.self, node.data).counts
                if counts.unfinished == 0 {
                    total = total + counts
                    break
                }
            }
        }
        return total
    }

    @Test func everyUnitRunsOnceAcrossExecutorsAndTheCountsSaySo() async throws {
        let cluster = try await Cluster.start("units-once")
        let runs = Mutex<[String: Int]>([:])
        let handlers: [String: TaskHandler] = [
            "unit.echo": { context in
                guard let key = context.unit?.key else { throw DroverError(.invalidSpec, "no unit in the context") }
                runs.withLock { $0[key, default: 0] += 1 }
                return ["key": .string(key), "size": context.arguments["size"] ?? .null]
            }
        ]
        let store = cluster.client.workSpecs
        let spec = WorkSpec(name: "thumbs", method: "unit.echo", arguments: ["size": 64], maxGetwork: 50, buckets: 4)
        try await store.create(spec)
        let units = (0..<600).map { WorkUnit(key: "img/\($0).png", data: ["n": .number(Double($0))]) }
        let report = try await store.add(units, to: "thumbs")
        #expect(report.added == 600 && report.alreadyPresent == 0)
        // Packed: a few writes for thousands of units.
        #expect(report.writes <= 4)
        // Adding again changes nothing and says so.
        let again = try await store.add(Array(units.prefix(10)), to: "thumbs")
        #expect(again.added == 0 && again.alreadyPresent == 10)

        let counts = try await withExecutors(cluster, ids: ["e1", "e2"], handlers: handlers) { try await within(120, "every unit ended") { try await settled(cluster.client, spec) } }
        #expect(counts.finished == 600 && counts.total == 600)
        let ran = runs.withLock { $0 }
        #expect(ran.count == 600 && ran.values.allSatisfy { $0 == 1 })
        let unit = try #require(try await store.unit("img/7.png", of: spec))
        #expect(unit.state == .finished && unit.attempts == 1 && unit.data == ["n": 7] && unit.lease == nil)
        #expect(unit.last?.result == ["key": "img/7.png", "size": 64])
        #expect(["e1", "e2"].contains(unit.last?.executor ?? ""))
        // Both executors took part.
        var byExecutor: [String: Int] = [:]
        var page = try await store.units(of: spec, state: .finished, limit: 250, after: nil)
        var listed = page.units.count
        for unit in page.units { byExecutor[unit.last?.executor ?? "?", default: 0] += 1 }
        while let next = page.next {
            page = try await store.units(of: spec, state: .finished, limit: 250, after: next)
            listed += page.units.count
            for unit in page.units { byExecutor[unit.last?.executor ?? "?", default: 0] += 1 }
        }
        #expect(listed == 600)
        #expect(byExecutor.values.reduce(0, +) == 600 && Set(byExecutor.keys).isSubset(of: ["e1", "e2"]))
        await cluster.client.zookeeper.close()
    }

    /// A segment write that loses its compare-and-set to another writer is read and applied again,
    /// and counted (`drover_unit_write_conflicts_total`); an add that meets units already there,
    /// over several writes, adds only the new ones.
    @Test func aLostCompareAndSetIsAppliedAgainAndCountedAndARepeatedAddAddsOnlyWhatIsNew() async throws {
        let cluster = try await Cluster.start("units-conflict")
        let conflicts = Mutex(0)
        let store = UnitStore(zookeeper: cluster.client.zookeeper, layout: cluster.client.layout, onConflict: { conflicts.withLock { $0 += 1 } })
        let spec = WorkSpec(name: "contended", method: "unit.echo", maxGetwork: 10, buckets: 1)
        try await store.create(spec)
        let first = (0..<3_000).map { WorkUnit(key: "k\($0)", data: ["pad": .string(String(repeating: "x", count: 400))]) }
        let added = try await store.add(first, to: spec.name)
        #expect(added.added == 3_000 && added.writes > 1, "several writes: \(added)")
        // Half known, half new, in one add: only the new ones go in.
        let mixed = try await store.add(Array(first.suffix(1_500)) + (3_000..<4_500).map { WorkUnit(key: "k\($0)") }, to: spec.name)
        #expect(mixed.added == 1_500 && mixed.alreadyPresent == 1_500, "\(mixed)")
        #expect(try await store.counts(of: spec).total == 4_500)

        let stale = try #require(try await store.bucket(spec.name, 0))
        let segment = try #require(stale.document.segments.first?.name)
        // Another writer changes the bucket's index after this writer read it.
        let indexPath = cluster.client.layout.specBucket(spec.name, 0)
        _ = try await cluster.client.zookeeper.setData(indexPath, data: try await cluster.client.zookeeper.getData(indexPath).data)
        let tries = Mutex(0)
        let claimed = try await store.modify(spec.name, bucket: 0, segment: segment, startingFrom: stale) { (content: inout UnitSegment) -> Int? in
            tries.withLock { $0 += 1 }
            let now = Timestamp.now()
            return content.claim(upTo: 2, executor: "e1", claim: "e1.1", now: now, leaseUntil: now + 60_000, maxRetries: 0).count
        }
        #expect(claimed == 2)
        #expect(tries.withLock { $0 } == 2, "read and applied again once")
        #expect(conflicts.withLock { $0 } == 1)
        #expect(try await store.counts(of: spec).pending == 2)

        // A writer's kept copy of the segment: used while the index summarizes it, and not
        // trusted when a change would write nothing over it.
        let kept = Mutex<UnitStore.Read<UnitSegment>?>(nil)
        let later = Timestamp.now() + 120_000
        _ = try await store.modify(spec.name, bucket: 0, segment: segment, wrote: { written in kept.withLock { $0 = written } }) {
            (content: inout UnitSegment, _: UnitBucket) -> Int? in
            let now = Timestamp.now()
            return content.claim(upTo: 1, executor: "e2", claim: "e2.1", now: now, leaseUntil: later, maxRetries: 0).count
        }
        let copy = try #require(kept.withLock { $0 })
        #expect(copy.version == (try await store.segment(spec.name, 0, segment))?.version)
        // Another writer moves e2's lease on: not the earliest lease, so the index still summarizes the copy.
        _ = try await store.modify(spec.name, bucket: 0, segment: segment) { (content: inout UnitSegment) -> Int? in
            content.renew(Set(content.units.filter { $0.lease?.claim == "e2.1" }.map(\.key)), claim: "e2.1", until: later + 60_000)
        }
        let index = try #require(try await store.bucket(spec.name, 0))
        #expect(index.document.segments.first { $0.name == segment }?.summarizes(copy.document) == true)
        // Setting the lease back to `later` changes nothing in the stale copy; the segment itself is read and changed.
        let reads = Mutex(0)
        let renewed = try await store.modify(spec.name, bucket: 0, segment: segment, knownSegment: copy) { (content: inout UnitSegment, _: UnitBucket) -> Int? in
            reads.withLock { $0 += 1 }
            return content.renew(Set(content.units.filter { $0.lease?.claim == "e2.1" }.map(\.key)), claim: "e2.1", until: later)
        }
        #expect(renewed == 1 && reads.withLock { $0 } == 2)
        let now = try #require(try await store.segment(spec.name, 0, segment))
        #expect(now.document.units.first { $0.lease?.claim == "e2.1" }?.lease?.until == later)
        await cluster.close()
    }

    @Test func aFailingUnitIsTriedMaxRetriesTimesMoreThenFailedAndRetriedOnRequest() async throws {
        let cluster = try await Cluster.start("units-retry")
        let failing = Mutex(true)
        let handlers: [String: TaskHandler] = [
            "unit.maybe": { context in
                if context.unit?.key == "bad", failing.withLock({ $0 }) { throw DroverError(.jobFailed, "bad unit, attempt \(context.attempt)") }
                return nil
            }
        ]
        let store = cluster.client.workSpecs
        let spec = WorkSpec(name: "flaky", method: "unit.maybe", maxRetries: 2, buckets: 2)
        try await store.create(spec)
        _ = try await store.add([WorkUnit(key: "good"), WorkUnit(key: "bad")], to: "flaky")
        try await withExecutors(cluster, ids: ["e1"], handlers: handlers) {
            let counts = try await within(120, "every unit ended") { try await settled(cluster.client, spec) }
            #expect(counts.finished == 1 && counts.failed == 1)
            let bad = try #require(try await store.unit("bad", of: spec))
            #expect(bad.state == .failed && bad.attempts == 3 && bad.last?.error?.contains("attempt 3") == true)
            // Its attempts: the two before the last, each with its executor, times, outcome and error.
            #expect(bad.earlier?.map { $0.error?.contains("attempt") == true && $0.executor == "e1" && $0.outcome == .failed } == [true, true], "\(bad)")
            let shown = try await ChildProcess.runDrover(["units", "show", "flaky", "bad", "--zk", cluster.root])
            #expect(shown.stdout.components(separatedBy: "earlier attempt: executor e1").count == 3 && shown.stdout.contains("last attempt: executor e1"), "\(shown.stdout)")
            // Fixed: retried on request, it runs again and finishes.
            failing.withLock { $0 = false }
            #expect(try await store.retryFailed(of: spec) == 1)
            let after = try await within(120, "every unit ended") { try await settled(cluster.client, spec) }
            #expect(after.finished == 2 && after.failed == 0)
            let fixed = try #require(try await store.unit("bad", of: spec))
            #expect(fixed.attempts == 1 && fixed.last?.outcome == .finished && fixed.earlier?.count == 3)
        }
        await cluster.client.zookeeper.close()
    }

    @Test func aUnitHeldByAnExecutorKilledWithSIGKILLRunsAgainElsewhereOnceItsLeaseRunsOut() async throws {
        let cluster = try await Cluster.start("units-kill")
        let store = cluster.client.workSpecs
        // The `drover executor` process sleeps an hour on each unit; the one in this test finishes at once.
        let spec = WorkSpec(name: "held", method: "sample.sleep", arguments: ["seconds": 3_600], maxRetries: 1, leaseSeconds: 2, buckets: 1)
        try await store.create(spec)
        _ = try await store.add([WorkUnit(key: "only")], to: "held")
        let process = try launchUnitExecutor("doomed", cluster)
        // Claimed, then its lease renewed (the executor lives): seen on the bucket's index.
        let bucketPath = cluster.client.layout.specBucket("held", 0)
        let renewed = try await within(60, "the executor claiming the unit and renewing its lease") { [zookeeper = cluster.client.zookeeper] in
            var firstLeaseEnd: Timestamp?
            for try await update in zookeeper.dataUpdates(of: bucketPath) {
                if process.hasExited { return false }
                guard case .present(let node) = update, let segment = try Codec.decode(UnitBucket.self, node.data).segments.first,
                    segment.counts.pending == 1, let leaseEnd = segment.leaseEnds
                else { continue }
                if let firstLeaseEnd, leaseEnd > firstLeaseEnd { return true }
                firstLeaseEnd = firstLeaseEnd ?? leaseEnd
            }
            return false
        }
        guard renewed else {
            Issue.record("the executor exited:\n\(process.log)")
            return
        }
        await process.crash()
        let held = try #require(try await store.unit("only", of: spec))
        #expect(held.state == .pending && held.lease?.executor == "doomed")
        // The dead executor's 2 s lease stands; the survivor's attempt gets a long one, so that a
        // machine too loaded to renew within 2 s cannot expire the attempt this test waits for.
        _ = try await store.update("held") { $0.leaseSeconds = 300 }

        let handlers: [String: TaskHandler] = ["sample.sleep": { _ in "woke at once" }]
        let counts = try await withExecutors(cluster, ids: ["survivor"], handlers: handlers) { try await within(120, "every unit ended") { try await settled(cluster.client, spec) } }
        #expect(counts.finished == 1)
        let unit = try #require(try await store.unit("only", of: spec))
        #expect(unit.attempts == 2 && unit.last?.executor == "survivor" && unit.last?.result == "woke at once")
        #expect(counts.expired == 0 && counts.failed == 0)
        await cluster.client.zookeeper.close()
    }

    /// `maxRunning` caps the units running at once, all executors together: two executors of 8
    /// unit slots each never run more than 2 of the spec's 24 units at once, and every unit finishes.
    @Test func maxRunningCapsTheUnitsRunningAtOnceAcrossExecutors() async throws {
        let cluster = try await Cluster.start("units-cap")
        let concurrency = Mutex((running: 0, most: 0))
        let handlers: [String: TaskHandler] = [
            "unit.slow": { _ in
                concurrency.withLock {
                    $0.running += 1
                    $0.most = max($0.most, $0.running)
                }
                defer { concurrency.withLock { $0.running -= 1 } }
                try await Task.sleep(for: .milliseconds(50))
                return nil
            }
        ]
        let store = cluster.client.workSpecs
        let spec = WorkSpec(name: "capped", method: "unit.slow", buckets: 2, maxRunning: 2)
        try await store.create(spec)
        _ = try await store.add((0..<24).map { WorkUnit(key: "u\($0)") }, to: "capped")
        let counts = try await withExecutors(cluster, ids: ["e1", "e2"], handlers: handlers) {
            try await within(120, "every unit ended") { try await settled(cluster.client, spec) }
        }
        #expect(counts.finished == 24)
        let most = concurrency.withLock { $0.most }
        #expect(most >= 1 && most <= 2, "\(most) units ran at once")
        await cluster.client.zookeeper.close()
    }

    /// An executor claims as many units as slots are free and half its slots more: those wait
    /// in it for a slot (leases held), so no more than its slots run at once, and a claim takes
    /// a whole segment's units where they fit. Here 4 slots hold 6 units of one claim.
    @Test func unitsClaimedBeyondTheFreeSlotsWaitForASlot() async throws {
        let cluster = try await Cluster.start("units-waiting")
        let concurrency = Mutex((running: 0, most: 0, ran: 0))
        let (started, startedOne) = AsyncStream.makeStream(of: Int.self)
        // Every unit waits until the test opens the gate; then all go through.
        let gate = Mutex((open: false, waiting: [CheckedContinuation<Void, Never>]()))
        @Sendable func openGate() {
            for waiter in gate.withLock({ gate in
                gate.open = true
                defer { gate.waiting = [] }
                return gate.waiting
            }) { waiter.resume() }
        }
        defer { openGate() }
        let handlers: [String: TaskHandler] = [
            "unit.held": { _ in
                let now = concurrency.withLock {
                    $0.running += 1
                    $0.ran += 1
                    $0.most = max($0.most, $0.running)
                    return $0.running
                }
                startedOne.yield(now)
                await withCheckedContinuation { continuation in
                    let open = gate.withLock { gate in
                        if !gate.open { gate.waiting.append(continuation) }
                        return gate.open
                    }
                    if open { continuation.resume() }
                }
                concurrency.withLock { $0.running -= 1 }
                return nil
            }
        ]
        let store = cluster.client.workSpecs
        let spec = WorkSpec(name: "waiting", method: "unit.held", maxGetwork: 100, buckets: 1)
        try await store.create(spec)
        _ = try await store.add((0..<6).map { WorkUnit(key: "u\($0)") }, to: "waiting")
        let counts = try await withExecutors(cluster, ids: ["e1"], unitSlots: 4, handlers: handlers) {
            try await within(60, "four units running") {
                for await running in started where running == 4 { break }
            }
            // One claim took all six: four run, two wait for a slot.
            let index = try #require(try await store.bucket("waiting", 0))
            #expect(index.document.counts.pending == 6, "\(index.document.counts)")
            #expect(concurrency.withLock { $0.ran } == 4)
            openGate()
            return try await within(60, "every unit ended") { try await settled(cluster.client, spec) }
        }
        #expect(counts.finished == 6)
        let seen = concurrency.withLock { $0 }
        #expect(seen.most == 4 && seen.ran == 6, "\(seen)")
        await cluster.client.zookeeper.close()
    }

    /// A finished unit feeds its spec's `then` spec: the units its result lists under `output`
    /// are added there (before its end is recorded) and run. A `then` spec that does not exist
    /// fails the attempt, saying so.
    @Test func finishedUnitsFeedTheirThenSpec() async throws {
        let cluster = try await Cluster.start("units-then")
        let stored = Mutex<[String]>([])
        let handlers: [String: TaskHandler] = [
            "unit.crawl": { context in
                let key = context.unit?.key ?? "?"
                return ["output": [.string("\(key)/a"), ["key": .string("\(key)/b"), "data": ["from": .string(key)]]]]
            },
            "unit.store": { context in
                stored.withLock { $0.append(context.unit?.key ?? "?") }
                return nil
            },
        ]
        let store = cluster.client.workSpecs
        let links = WorkSpec(name: "links", method: "unit.store", buckets: 2)
        let pages = WorkSpec(name: "pages", method: "unit.crawl", buckets: 2, then: "links")
        let orphan = WorkSpec(name: "orphan", method: "unit.crawl", buckets: 1, then: "missing")
        for spec in [links, pages, orphan] { try await store.create(spec) }
        _ = try await store.add(["p1", "p2", "p3"].map { WorkUnit(key: $0) }, to: "pages")
        _ = try await store.add([WorkUnit(key: "lonely")], to: "orphan")
        try await withExecutors(cluster, ids: ["e1"], handlers: handlers) {
            // Pages' ends are recorded after their outputs were added: links has all 6 by then.
            let fed = try await within(120, "every page ended") { try await settled(cluster.client, pages) }
            #expect(fed.finished == 3)
            let linked = try await within(120, "every link ended") { try await settled(cluster.client, links) }
            #expect(linked.finished == 6 && linked.total == 6)
            let failed = try await within(120, "the orphan's unit ended") { try await settled(cluster.client, orphan) }
            #expect(failed.failed == 1)
        }
        #expect(Set(stored.withLock { $0 }) == ["p1/a", "p1/b", "p2/a", "p2/b", "p3/a", "p3/b"])
        #expect(try await store.unit("p2/b", of: links)?.data == ["from": "p2"])
        let lonely = try #require(try await store.unit("lonely", of: orphan))
        #expect(lonely.last?.error?.contains("spec missing") == true, "\(lonely.last?.error ?? "no error")")
        await cluster.client.zookeeper.close()
    }

    /// Under the role table (a secured deployment), an executor feeds a `then` spec: it may
    /// create the new segments the fed units need, as the client that made both specs may.
    @Test func aThenSpecIsFedInASecuredDeployment() async throws {
        let deployment = try await SecuredDeployment.make("units-then-secured")
        let clientZK = try await deployment.connect(as: deployment.client)
        let client = try await DroverClient.load(zookeeper: clientZK)
        let store = client.workSpecs
        let links = WorkSpec(name: "links", method: "unit.store", buckets: 2)
        let pages = WorkSpec(name: "pages", method: "unit.crawl", buckets: 1, then: "links")
        for spec in [links, pages] { try await store.create(spec) }
        _ = try await store.add([WorkUnit(key: "p1")], to: "pages")
        let handlers: [String: TaskHandler] = [
            "unit.crawl": { context in ["output": [.string("\(context.unit?.key ?? "?")/a"), .string("\(context.unit?.key ?? "?")/b")]] },
            "unit.store": { _ in nil },
        ]
        let executorZK = try await deployment.connect(as: deployment.executors["e1"]!)
        let executor = try Executor(client: executorZK, configuration: .init(id: "e1", unitSlots: 2), handlers: handlers)
        let counts = try await withRunning([executor]) {
            let fed = try await within(120, "the page ended") { try await settled(client, pages) }
            #expect(fed.finished == 1, "\(fed)")
            return try await within(120, "the links ended") { try await settled(client, links) }
        }
        #expect(counts.finished == 2 && counts.total == 2, "\(counts)")
        await executorZK.close()
        await clientZK.close()
    }

    /// A `drover executor` stopped with SIGTERM stops its units as it stops its tasks: with
    /// `--on-stop hand-back` an hour-long unit is given back at once (claimable, its try not
    /// spent) and the executor exits; with the default (`finish`) a running unit finishes and its
    /// end is recorded before the executor exits.
    @Test func anExecutorStoppedGracefullyHandsItsUnitsBackOrLetsThemFinish() async throws {
        let cluster = try await Cluster.start("units-stop")
        let store = cluster.client.workSpecs
        /// SIGTERM, then the exit status (SIGKILL after 60 s: a graceful stop that hangs fails here).
        func terminate(_ process: ChildProcess) async -> Int32 {
            process.signal(SIGTERM)
            let killer = Task {
                try await Task.sleep(for: .seconds(60))
                process.signal(SIGKILL)
            }
            defer { killer.cancel() }
            return await process.wait()
        }

        // Two unit slots hold three units: two run, one waits for a slot.
        let held = WorkSpec(name: "held", method: "sample.sleep", arguments: ["seconds": 3_600], leaseSeconds: 600, buckets: 1)
        try await store.create(held)
        _ = try await store.add(["long1", "long2", "long3"].map { WorkUnit(key: $0) }, to: "held")
        let leaving = try launchUnitExecutor("leaving", cluster, ["--on-stop", "hand-back"])
        try await waitForCounts(cluster, "held", "the executor claiming the units of held", while: leaving) { $0.pending == 3 }
        #expect(await terminate(leaving) == 0, "\(leaving.log)")
        for key in ["long1", "long2", "long3"] {
            let long = try #require(try await store.unit(key, of: held))
            #expect(long.state == .available && long.attempts == 0 && long.lease == nil, "\(long)")
            #expect(long.last?.error == UnitSegment.handedBackError && long.last?.executor == "leaving")
        }

        // Finishing, the unit waiting for a slot runs too once one frees.
        _ = try await store.update("held") { $0.paused = true }
        let short = WorkSpec(name: "short", method: "sample.ledger", arguments: ["milliseconds": 2_000], buckets: 1)
        try await store.create(short)
        _ = try await store.add(["brief1", "brief2", "brief3"].map { WorkUnit(key: $0) }, to: "short")
        let ledger = FileManager.default.temporaryDirectory.appendingPathComponent("units-stop-\(UUID().uuidString.prefix(8)).ledger").path
        defer { try? FileManager.default.removeItem(atPath: ledger) }
        let staying = try launchUnitExecutor("staying", cluster, ledger: ledger)
        try await waitForCounts(cluster, "short", "the executor claiming the units of short", while: staying) { $0.pending == 3 }
        // Claimed in ZooKeeper is not yet claimed in the executor: a stop while the claim's answer is
        // on its way gives its units back unrun (as it should). Two started means the claim came back,
        // its third unit waiting for a slot.
        try await waitForStarts(2, in: ledger, of: staying)
        #expect(await terminate(staying) == 0, "\(staying.log)")
        for key in ["brief1", "brief2", "brief3"] {
            let brief = try #require(try await store.unit(key, of: short))
            #expect(brief.state == .finished && brief.attempts == 1 && brief.last?.executor == "staying", "\(brief)")
        }
        await cluster.client.zookeeper.close()
    }

    /// With a manager running, a SIGKILL'd executor's units are freed once it has been gone for
    /// the grace period (1 s here), not when their 10-minute lease runs out, and run elsewhere.
    @Test func theLeaderFreesADeadExecutorsUnitsAfterTheGracePeriod() async throws {
        let cluster = try await Cluster.start("units-sweep")
        let store = cluster.client.workSpecs
        let spec = WorkSpec(name: "swept", method: "sample.sleep", arguments: ["seconds": 3_600], maxRetries: 1, leaseSeconds: 600, buckets: 1)
        try await store.create(spec)
        _ = try await store.add([WorkUnit(key: "only")], to: "swept")
        let manager = try launchManager("m1", root: cluster.root, grace: 1)
        let doomed = try launchUnitExecutor("doomed", cluster)
        do {
            try await waitForCounts(cluster, "swept", "the executor claiming the unit", while: doomed) { $0.pending == 1 }
            await doomed.crash()
            try await waitForCounts(cluster, "swept", "the leader freeing the dead executor's unit") { $0.retryable == 1 }
            let freed = try #require(try await store.unit("only", of: spec))
            #expect(freed.attempts == 1 && freed.lease == nil && freed.last?.error?.contains("doomed was gone for the grace period") == true, "\(freed)")
            let handlers: [String: TaskHandler] = ["sample.sleep": { _ in "woke at once" }]
            let counts = try await withExecutors(cluster, ids: ["survivor"], handlers: handlers) {
                try await within(120, "every unit ended") { try await settled(cluster.client, spec) }
            }
            #expect(counts.finished == 1)
            #expect(try await store.unit("only", of: spec)?.attempts == 2)
            // The leader publishes every spec's counts from the indexes it reads: one read.
            try await within(60, "the leader publishing the counts") { [zookeeper = cluster.client.zookeeper, path = cluster.client.layout.unitCounts] in
                for try await update in zookeeper.dataUpdates(of: path) {
                    if case .present(let node) = update, !node.data.isEmpty, try Codec.decode(SpecCounts.self, node.data).specs["swept"]?.finished == 1 { return }
                }
            }
            let listed = try await ChildProcess.runDrover(["spec", "list", "--zk", cluster.root])
            #expect(listed.status == 0 && listed.stdout.contains("counted by the leader"), "\(listed.stdout)\(listed.stderr)")
        } catch {
            print(manager.log, doomed.log)
            await manager.crash()
            throw error
        }
        await manager.crash()
        await cluster.client.zookeeper.close()
    }

    /// Clearing removes a spec's units — those in the states given, or all — segment by segment;
    /// a segment left empty goes with its index entry, and the spec takes new units afterwards.
    /// `drover spec clear` does the same from the command line.
    @Test func clearingRemovesUnitsByStateOrAllAndTheSpecTakesNewOnes() async throws {
        let cluster = try await Cluster.start("units-clear")
        let store = cluster.client.workSpecs
        let spec = WorkSpec(name: "tidy", method: "m", buckets: 2)
        try await store.create(spec)
        let units = (0..<1_500).map { WorkUnit(key: "k\($0)", data: ["pad": .string(String(repeating: "x", count: 40))]) }
        _ = try await store.add(units, to: "tidy")
        let before = try #require(try await store.bucket("tidy", 0))
        #expect(before.document.segments.count >= 2, "several segments: \(before.document.segments.count)")
        // Bucket 0's first segment: 5 units finished, 3 failed (no tries left), the rest available.
        let first = before.document.segments[0].name
        _ = try await store.modify("tidy", bucket: 0, segment: first) { (content: inout UnitSegment) -> Int? in
            let now = Timestamp.now()
            let claimed = content.claim(upTo: 8, executor: "e1", claim: "c1", now: now, leaseUntil: now + 60_000, maxRetries: 0)
            let ends = claimed.enumerated().map { index, unit in
                UnitSegment.End(key: unit.key, claim: "c1", outcome: index < 5 ? .finished : .failed, error: index < 5 ? nil : "no", at: now)
            }
            return content.record(ends, maxRetries: 0).count
        }
        var counts = try await store.counts(of: spec)
        #expect(counts.finished == 5 && counts.failed == 3 && counts.total == 1_500, "\(counts)")

        // The failed go first: the segment keeps its finished units, and its room counts each unit
        // as it was added (not with the attempt it has run since: that was the growth allowance).
        #expect(try await store.clear(spec, states: [.failed]) == 3)
        let kept = try #require(try await store.segment("tidy", 0, first)).document
        let room = try #require(try await store.bucket("tidy", 0)).document.segments.first { $0.name == first }?.room
        #expect(kept.units.count { $0.state == .finished } == 5)
        #expect(room == kept.units.reduce(0) { $0 + UnitSegment.room(of: WorkUnit(key: $1.key, data: $1.data)) }, "\(String(describing: room))")

        let ended = try await store.clear(spec, states: [.finished, .failed])
        counts = try await store.counts(of: spec)
        #expect(ended == 5 && counts.total == 1_492 && counts.finished == 0 && counts.failed == 0, "\(ended) \(counts)")
        let remaining = try await store.units(of: spec, state: nil, limit: 2_000, after: nil).units
        #expect(remaining.count == 1_492 && remaining.allSatisfy { $0.state == .available })

        let cleared = try await ChildProcess.runDrover(["spec", "clear", "tidy", "--zk", cluster.root])
        #expect(cleared.status == 0 && cleared.stdout.contains("removed 1492 units of tidy"), "\(cleared.stdout)\(cleared.stderr)")
        #expect(try await store.counts(of: spec).total == 0)
        for bucket in 0..<spec.buckets {
            #expect(try await cluster.client.zookeeper.children(cluster.client.layout.specBucket("tidy", bucket)).names.isEmpty)
            #expect(try await store.bucket("tidy", bucket)?.document.segments.isEmpty == true)
        }
        let none = try await ChildProcess.runDrover(["spec", "clear", "tidy", "--json", "--zk", cluster.root])
        let answer = try? Codec.decode(JSONValue.self, Array(none.stdout.utf8))
        #expect(none.status == 0 && answer == ["name": "tidy", "action": "clear", "units": 0], "\(none.stdout)\(none.stderr)")
        let bad = try await ChildProcess.runDrover(["spec", "clear", "tidy", "--state", "asleep", "--zk", cluster.root])
        #expect(bad.status != 0 && bad.stderr.contains("--state asleep"), "\(bad.stderr)")

        // Paging goes on where it stopped when a clear deletes a segment in between.
        let paged = WorkSpec(name: "paged", method: "m", buckets: 1)
        try await store.create(paged)
        _ = try await store.add(units, to: "paged")
        let segments = try #require(try await store.bucket("paged", 0)).document.segments
        #expect(segments.count >= 3)
        let firstSize = segments[0].counts.total
        _ = try await store.modify("paged", bucket: 0, segment: segments[0].name) { (content: inout UnitSegment) -> Int? in
            let now = Timestamp.now()
            let claimed = content.claim(upTo: .max, executor: "e1", claim: "all", now: now, leaseUntil: now + 60_000, maxRetries: 0)
            return content.record(claimed.map { UnitSegment.End(key: $0.key, claim: "all", outcome: .finished, at: now) }, maxRetries: 0).count
        }
        let pageOne = try await store.units(of: paged, state: nil, limit: firstSize + 5, after: nil)
        #expect(try await store.clear(paged, states: [.finished]) == firstSize)
        var seen = pageOne.units.filter { $0.state == .available }.map(\.key)
        var cursor = pageOne.next
        while let next = cursor {
            let page = try await store.units(of: paged, state: nil, limit: 400, after: next)
            seen += page.units.map(\.key)
            cursor = page.next
        }
        #expect(seen.count == 1_500 - firstSize && Set(seen).count == seen.count, "\(seen.count) units seen, \(Set(seen).count) different")

        // A segment its index lists but that another program removed: the add says so.
        try await cluster.client.zookeeper.delete(cluster.client.layout.specSegment("paged", 0, segments[1].name))
        do {
            _ = try await store.add([WorkUnit(key: "late")], to: "paged")
            Issue.record("an add went on over a missing segment")
        } catch let error as DroverError {
            #expect(error.message.contains("is in its index but missing"), "\(error)")
        }

        // New units go into new segments (names are not reused) and are all there.
        let again = try await store.add(Array(units.prefix(100)), to: "tidy")
        #expect(again.added == 100 && again.alreadyPresent == 0)
        #expect(try await store.counts(of: spec).available == 100)
        let names = Set(try await store.bucket("tidy", 0)?.document.segments.map(\.name) ?? [])
        #expect(names.isDisjoint(with: before.document.segments.map(\.name)), "\(names)")
        await cluster.client.zookeeper.close()
    }

    @Test func badSpecsAndBadUnitsAreRefusedWithNothingWritten() async throws {
        let cluster = try await Cluster.start("units-bad")
        let store = cluster.client.workSpecs
        await #expect(throws: DroverError.self) { try await store.create(WorkSpec(name: "w", method: "m", weight: 0)) }
        await #expect(throws: DroverError.self) { try await store.create(WorkSpec(name: "w", method: "m", leaseSeconds: 0)) }
        #expect(try await store.specNames().isEmpty)
        let spec = WorkSpec(name: "w", method: "m", buckets: 3)
        try await store.create(spec)
        await #expect(throws: DroverError.self) { try await store.create(spec) }
        // One bad unit, a duplicate key: the whole add is refused, naming the unit.
        do {
            _ = try await store.add([WorkUnit(key: "a"), WorkUnit(key: "b"), WorkUnit(key: "a")], to: "w")
            Issue.record("a duplicate key was accepted")
        } catch let error as DroverError {
            #expect(error.message.contains("unit 3") && error.message.contains("unit 1"))
        }
        await #expect(throws: DroverError.self) {
            try await store.add([WorkUnit(key: "a"), WorkUnit(key: "big", data: .string(String(repeating: "x", count: 2_000)))], to: "w")
        }
        await #expect(throws: DroverError.self) { try await store.add([WorkUnit(key: "a")], to: "missing") }
        #expect(try await store.counts(of: spec).total == 0)
        // A changed bucket count would misplace every unit.
        await #expect(throws: DroverError.self) { try await store.update("w") { $0.buckets = 5 } }
        #expect(try await store.update("w") { $0.paused = true }.paused)
        try await store.delete("w")
        #expect(try await store.specNames().isEmpty)
        await cluster.client.zookeeper.close()
    }
}
