import DroverProtocol
import Logging
import Synchronization
import ZooKeeper

/// The executors' registrations and published loads (``ExecutorLoad``), kept by watching: what
/// the direct path samples from. Read once when first needed (a listing and two small reads per
/// executor), then changed only by watch events — a submit reads nothing. Its watches live as long
/// as the ZooKeeper client: they end when it is closed.
final class ExecutorLoadView: Sendable {
    struct Entry: Sendable {
        var registration: ExecutorRegistration?
        var load: ExecutorLoad?
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var watchers: [String: Task<Void, Never>] = [:]
        var started: Task<Void, any Error>?
    }

    private let state = Mutex(State())

    /// The executors that could run `demand` now (registered, not draining), with their load.
    func candidates(for demand: Demand, zookeeper: ZooKeeperClient, layout: Layout) async throws -> [LoadSample] {
        try await start(zookeeper: zookeeper, layout: layout)
        return state.withLock { state in
            state.entries.values.compactMap { entry -> LoadSample? in
                guard let registration = entry.registration, entry.load?.draining != true else { return nil }
                guard ExecutorView(registration: registration).couldRun(demand) else { return nil }
                let load = entry.load.map { $0.running + $0.reserved } ?? 0
                return LoadSample(executor: registration.id, slots: registration.capacity.slots, load: load)
            }.sorted { $0.executor < $1.executor }
        }
    }

    /// Counts a reservation just made on each of `executors` until their own loads say so.
    func reserved(on executors: [String]) {
        state.withLock { state in
            for executor in executors { state.entries[executor]?.load?.reserved += 1 }
        }
    }

    private func start(zookeeper: ZooKeeperClient, layout: Layout) async throws {
        let task = state.withLock { state -> Task<Void, any Error> in
            if let started = state.started { return started }
            let task = Task { try await self.listAndWatch(zookeeper: zookeeper, layout: layout) }
            state.started = task
            return task
        }
        do {
            try await task.value
        } catch {
            // Tried again by the next submit.
            state.withLock { $0.started = nil }
            throw error
        }
    }

    /// Lists the executors and reads each one's registration and load, then returns; the watches
    /// it sets keep the view current from then on.
    private func listAndWatch(zookeeper: ZooKeeperClient, layout: Layout) async throws {
        let children = zookeeper.childrenUpdates(of: layout.executors)
        var iterator = children.makeAsyncIterator()
        guard let first = try await iterator.next() else { return }
        try await follow(first, zookeeper: zookeeper, layout: layout, waitingForReads: true)
        Task { [iterator] in
            var iterator = iterator
            while let update = try? await iterator.next() {
                try? await self.follow(update, zookeeper: zookeeper, layout: layout, waitingForReads: false)
            }
        }
    }

    private func follow(_ update: NodeUpdate<NodeChildren>, zookeeper: ZooKeeperClient, layout: Layout, waitingForReads: Bool) async throws {
        let ids: Set<String> = if case .present(let children) = update { Set(children.names.filter(Layout.isValidID)) } else { [] }
        var started: [(String, AsyncStream<Void>)] = []
        state.withLock { state in
            for (id, watcher) in state.watchers where !ids.contains(id) {
                watcher.cancel()
                state.watchers[id] = nil
                state.entries[id] = nil
            }
            for id in ids where state.watchers[id] == nil {
                let (firstRead, signal) = AsyncStream.makeStream(of: Void.self)
                state.entries[id] = Entry()
                state.watchers[id] = Task { await self.watch(id, zookeeper: zookeeper, layout: layout, firstRead: signal) }
                started.append((id, firstRead))
            }
        }
        guard waitingForReads else { return }
        // Each watcher says when its registration and load were read once.
        for (_, firstRead) in started {
            for await _ in firstRead {}
        }
    }

    private func watch(_ id: String, zookeeper: ZooKeeperClient, layout: Layout, firstRead: AsyncStream<Void>.Continuation) async {
        // The first reads of both documents, counted: the view is ready for this executor after two.
        let reads = FirstReads(firstRead)
        await withDiscardingTaskGroup { group in
            group.addTask {
                do {
                    for try await update in zookeeper.dataUpdates(of: layout.executorAlive(id)) {
                        let registration: ExecutorRegistration? = if case .present(let node) = update { try? Codec.decode(ExecutorRegistration.self, node.data) } else { nil }
                        self.state.withLock { $0.entries[id]?.registration = registration }
                        reads.read(0)
                    }
                } catch {}
                reads.read(0)
            }
            group.addTask {
                do {
                    for try await update in zookeeper.dataUpdates(of: layout.executorLoad(id)) {
                        let load: ExecutorLoad? = if case .present(let node) = update { try? Codec.decode(ExecutorLoad.self, node.data) } else { nil }
                        self.state.withLock { $0.entries[id]?.load = load }
                        reads.read(1)
                    }
                } catch {}
                reads.read(1)
            }
        }
    }
}

/// Which of an executor's two documents were read once; finishes the signal when both were.
private final class FirstReads: Sendable {
    private let read = Mutex<Set<Int>>([])
    private let signal: AsyncStream<Void>.Continuation

    init(_ signal: AsyncStream<Void>.Continuation) { self.signal = signal }

    func read(_ document: Int) {
        if read.withLock({ $0.insert(document).inserted && $0.count == 2 }) { signal.finish() }
    }
}
