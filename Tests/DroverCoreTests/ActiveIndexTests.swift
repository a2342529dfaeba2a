import DroverClient
import DroverProtocol
import Testing
import ZooKeeper

@testable import DroverStore

/// The active-job index (issues 15 and 22): a new leader, and a listing of waiting or running
/// jobs, read the jobs that wait or run, not every record kept.
@Suite("The active-job index", .timeLimit(.minutes(2)))
struct ActiveIndexTests {
    static func executor(_ id: String) -> [(id: String, capacity: Resources, labels: [String: String])] {
        [(id, Resources(cpu: 4, memoryMB: 4096, slots: 4), [:])]
    }

    /// Submits a job while no executor is registered (a manager runs): it waits.
    static func submitWaiting(_ cluster: Cluster) async throws -> String {
        try await cluster.with(executors: [], handlers: SchedulerTests.handlers) { client in
            let id = try await client.submit(JobSpec(method: "echo"))
            for try await record in client.updates(id) where record.state == .waiting { break }
            return id
        }
    }

    @Test func leadersAndListingsFindWaitingJobsThroughTheIndexAndBuildOrCleanItWhenNeeded() async throws {
        let cluster = try await Cluster.start("active-index")
        let client = cluster.client
        let zookeeper = client.zookeeper
        let layout = client.layout
        let store = JobStore(zookeeper: zookeeper, layout: layout)

        // Five jobs end; then one waits, as no executor is registered.
        let finished = try await cluster.with(executors: Self.executor("e1"), handlers: SchedulerTests.handlers) { client in
            var finished: [String] = []
            for _ in 0..<5 { finished.append(try await client.submit(JobSpec(method: "echo"))) }
            for id in finished { _ = try await withDiagnosis(client, id) { try await finalRecord(client, id) } }
            return finished
        }
        let waiting = try await Self.submitWaiting(cluster)
        #expect(try await store.activeIndexIsComplete())
        #expect(try await store.activeEntryIDs() == [waiting])
        let page = try await client.page(states: [.waiting, .running], limit: 10)
        #expect(page.records.map(\.id) == [waiting])
        #expect(page.read == 1, "a listing of waiting jobs reads the one that waits, not the 5 that ended")

        // As a deployment older than the index would leave it: not marked complete, the waiting
        // job without its entry, and an entry for a job that ended.
        _ = try await zookeeper.setData(layout.active, data: [])
        try await zookeeper.delete(layout.activeEntry(waiting))
        _ = try await zookeeper.create(layout.activeEntry(finished[0]))
        #expect(try await client.page(states: [.waiting], limit: 10).read == 6, "an index not marked complete is not used")

        // The next leader builds the index from every record, and places the waiting job.
        try await cluster.with(executors: Self.executor("e2"), handlers: SchedulerTests.handlers) { client in
            let record = try await withDiagnosis(client, waiting) { try await finalRecord(client, waiting) }
            #expect(record.state == .succeeded)
        }
        #expect(try await store.activeIndexIsComplete())
        #expect(try await store.activeEntryIDs().isEmpty, "built: the stale entry removed, and the job's entry gone once it ended")

        // A complete index with a stale entry: the next leader removes it when it starts, and finds
        // the waiting job through its entry. An entry whose record this server does not have (as on
        // a ZooKeeper server that lost the record's transaction) is kept for a leader that reads
        // from a server that has it.
        let second = try await Self.submitWaiting(cluster)
        _ = try await zookeeper.create(layout.activeEntry(finished[1]))
        let unseen = Layout.newJobID()
        _ = try await zookeeper.create(layout.activeEntry(unseen))
        try await cluster.with(executors: Self.executor("e3"), handlers: SchedulerTests.handlers) { client in
            let record = try await withDiagnosis(client, second) { try await finalRecord(client, second) }
            #expect(record.state == .succeeded)
            for try await update in client.zookeeper.dataUpdates(of: client.layout.activeEntry(finished[1])) {
                if case .missing = update { break }
            }
        }
        #expect(try await store.activeEntryIDs() == [unseen], "the entry without a record is kept")

        // An older manager led: a job waits without an entry, and the index still says complete.
        // --rebuild-index finds it from every record; a lost shard directory does too, unasked.
        let third = try await Self.submitWaiting(cluster)
        try await zookeeper.delete(layout.activeEntry(third))
        try await cluster.with(executors: Self.executor("e4"), handlers: SchedulerTests.handlers, rebuildActiveIndex: true) { client in
            let record = try await withDiagnosis(client, third) { try await finalRecord(client, third) }
            #expect(record.state == .succeeded)
        }
        #expect(try await store.activeEntryIDs().isEmpty, "--rebuild-index removes the entry whose record is gone")
        let fourth = try await Self.submitWaiting(cluster)
        let shard = layout.activeShard(Layout.shard(of: fourth))
        try await zookeeper.delete(layout.activeEntry(fourth))
        for name in try await zookeeper.children(shard).names { try await zookeeper.delete(shard + "/" + name) }
        try await zookeeper.delete(shard)
        try await cluster.with(executors: Self.executor("e5"), handlers: SchedulerTests.handlers) { client in
            let record = try await withDiagnosis(client, fourth) { try await finalRecord(client, fourth) }
            #expect(record.state == .succeeded)
        }
        #expect(try await store.activeIndexIsComplete())
        await cluster.close()
    }
}
