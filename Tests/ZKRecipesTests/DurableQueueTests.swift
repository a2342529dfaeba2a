import Foundation
import Testing
import ZKRecipes
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

@Suite("zkmq: the durable queue", .timeLimit(.minutes(5)))
struct DurableQueueTests {
    @Test func itemsComeOutInOrderAndAcrossSegments() async throws {
        try await LocalEnsemble.shared().withClient(chroot: "zkmq-order") { zk in
            let queue = DurableQueue(client: zk, root: "/queue", segmentCapacity: 10)
            #expect(try await queue.consume(maxItems: 5) { _ in [] }.isEmpty)
            for index in 0..<25 { try await queue.put(Array("\(index)".utf8)) }
            #expect(try await queue.count() == 25)
            var seen: [String] = []
            while true {
                let batch = try await queue.consume(maxItems: 7) { _ in [] }
                if batch.isEmpty { break }
                seen += batch.map { String(decoding: $0.data, as: UTF8.self) }
            }
            #expect(seen == (0..<25).map(String.init))
            #expect(queue.stats.largestSegmentSeen <= 10)
            // Sealed, drained segments are removed: only the open one is left.
            #expect(try await zk.children("/queue").names.count <= 1)
        }
    }

    /// A consumer waiting on an empty queue wakes for the next put (waitForItems returns at the
    /// watch's event without reading the queue again), and a wake-up with nothing new is harmless.
    @Test(.timeLimit(.minutes(1))) func aWaitingConsumerWakesForTheNextPut() async throws {
        try await LocalEnsemble.shared().withClient(chroot: "zkmq-wait") { zk in
            let queue = DurableQueue(client: zk, root: "/queue", segmentCapacity: 5)
            try await queue.put(Array("first".utf8))
            #expect(try await queue.consume(maxItems: 10) { _ in [] }.count == 1)
            for round in 0..<3 {
                async let woke: Void = queue.waitForItems()
                try await queue.put(Array("item \(round)".utf8))
                try await woke
                let batch = try await queue.consume(maxItems: 10) { _ in [] }
                #expect(batch.map { String(decoding: $0.data, as: UTF8.self) } == ["item \(round)"])
            }
            // Items put while nobody waited: it returns at once.
            try await queue.put([Array("a".utf8), Array("b".utf8)])
            try await queue.waitForItems()
            #expect(try await queue.consume(maxItems: 10) { _ in [] }.count == 2)
        }
    }

    /// A consumer that found the queue empty reads the next item with the listings, in one round
    /// trip (the latency of an idle queue); a guess that turns out wrong — several items, a new
    /// segment — costs nothing but the usual reads, and order and exactly-once hold.
    @Test func aLoneItemIsReadWithTheListingAndWrongGuessesChangeNothing() async throws {
        try await LocalEnsemble.shared().withClient(chroot: "zkmq-read-ahead") { zk in
            let queue = DurableQueue(client: zk, root: "/queue", segmentCapacity: 4)
            let producer = DurableQueue(client: zk, root: "/queue", segmentCapacity: 4)
            var seen: [String] = []
            var put: [String] = []
            for round in 0..<12 {
                #expect(try await queue.consume(maxItems: 10) { _ in [] }.isEmpty)
                // Every third round two items come at once; the others one.
                let items = round % 3 == 2 ? ["\(round)a", "\(round)b"] : ["\(round)"]
                try await producer.put(items.map { Array($0.utf8) })
                put += items
                let batch = try await queue.consume(maxItems: 10) { _ in [] }
                seen += batch.map { String(decoding: $0.data, as: UTF8.self) }
            }
            #expect(seen == put)
            // Each round's first item is guessed right, except in the first round (nothing consumed
            // yet) and in the three rounds whose item opens a new segment (rounds 3, 6 and 9: four
            // items fill a segment of 4): 8 of 12.
            let readAhead = queue.stats.itemsReadAhead
            #expect(readAhead == 8, "read ahead \(readAhead) of \(put.count) items")
            #expect(try await queue.count() == 0)
        }
    }

    @Test func aFailingEffectConsumesNothingAndOversizedItemsAreRefused() async throws {
        try await LocalEnsemble.shared().withClient(chroot: "zkmq-effect") { zk in
            let queue = DurableQueue(client: zk, root: "/queue", maximumItemBytes: 100)
            try await queue.put([[1], [2]])
            await #expect(throws: ZooKeeperError.self) {
                // The effect's create fails (no parent): the items must stay queued.
                try await queue.consume(maxItems: 10) { _ in [.create(path: "/missing/parent/x")] }
            }
            #expect(try await queue.count() == 2)
            let tooBig = await #expect(throws: ZooKeeperError.self) { try await queue.put([UInt8](repeating: 0, count: 101)) }
            #expect(tooBig?.code == .requestTooLarge)
            #expect(try await queue.count() == 2)
        }
    }

    /// 100,000 items from 4 producers, 2 consumers, one of which dies holding a batch it read
    /// but never committed: every item is consumed exactly once, in each producer's order.
    @Test func hundredThousandItemsExactlyOnceWithAConsumerKilledMidBatch() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("zkmq-load")
        let producers = 4
        let itemsPerProducer = 25_000
        let putBatch = 100
        let capacity = 1_000
        let setup = try await ZooKeeperClient.connect(to: root)
        try await setup.createPath("/consumed")
        let clock = ContinuousClock()
        let started = clock.now

        let killedHolding = LockedValue(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for producer in 0..<producers {
                group.addTask {
                    let zk = try await ZooKeeperClient.connect(to: root)
                    try await closing(zk) {
                        let queue = DurableQueue(client: zk, root: "/queue", segmentCapacity: capacity)
                        for start in stride(from: 0, to: itemsPerProducer, by: putBatch) {
                            try await queue.put((start..<start + putBatch).map { Array("\(producer):\($0)".utf8) })
                        }
                    }
                }
            }
            // The consumer that dies: on its third batch it loses its session while holding
            // the batch, before committing.
            group.addTask {
                let zk = try await ZooKeeperClient.connect(to: root)
                let queue = DurableQueue(client: zk, root: "/queue", segmentCapacity: capacity)
                var batches = 0
                do {
                    while true {
                        try await queue.waitForItems()
                        try await queue.consume(maxItems: 500) { items in
                            batches += 1
                            if batches == 3 {
                                killedHolding.update { $0 = items.count }
                                await zk.close()
                            }
                            return [Self.record(items)]
                        }
                    }
                } catch let error as ZooKeeperError where error.code == .clientClosed || error.code == .closing {
                    // Died as planned.
                }
                await zk.close()
            }
            try await group.waitForAll()
        }
        let produced = clock.now - started

        // The survivor drains the rest.
        let queue = DurableQueue(client: setup, root: "/queue", segmentCapacity: capacity)
        while try await !queue.consume(maxItems: 500, { items in [Self.record(items)] }).isEmpty {}
        let drained = clock.now - started

        // Read the consumption records back, in commit order.
        let records = try await setup.children("/consumed").names.sorted()
        var perProducer = [[Int]](repeating: [], count: producers)
        for name in records {
            let data = try await setup.getData("/consumed/" + name).data
            for item in String(decoding: data, as: UTF8.self).split(separator: ",") {
                let parts = item.split(separator: ":")
                perProducer[Int(parts[0])!].append(Int(parts[1])!)
            }
        }
        #expect(killedHolding.value > 0, "the dying consumer never held a batch")
        for producer in 0..<producers {
            #expect(perProducer[producer] == Array(0..<itemsPerProducer), "producer \(producer): lost, duplicated or reordered items")
        }
        #expect(try await queue.count() == 0)
        let bound = capacity + producers * putBatch
        #expect(queue.stats.largestSegmentSeen <= bound)
        let segmentsLeft = try await setup.children("/queue").names.count
        #expect(segmentsLeft <= 1)
        print(
            "zkmq: \(producers * itemsPerProducer) items put in \(produced), all consumed after \(drained); "
                + "\(records.count) commits; a consumer died holding \(killedHolding.value) items; "
                + "largest segment \(queue.stats.largestSegmentSeen) (bound \(bound))")
        await setup.close()
    }

    /// What a consumer did with a batch: one record node listing the items, in order.
    static func record(_ items: [QueueItem]) -> MultiOperation {
        .create(
            path: "/consumed/b-", data: Array(items.map { String(decoding: $0.data, as: UTF8.self) }.joined(separator: ",").utf8),
            mode: .persistentSequential)
    }
}
