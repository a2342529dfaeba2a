import DroverClient
import DroverProtocol
import Foundation
import ServiceLifecycle
import Synchronization
import ZooKeeper

/// `GET /v1/events`: server-sent events for the dashboard — the executors (as `/v1/executors`
/// answers) and the leader's counts (as `/v1/counts`), sent when they change. They come from
/// ZooKeeper watches on each executor's registration, state and load and on the active-job index, so an
/// open page costs nothing while nothing changes, instead of a read of every executor a second.
struct LiveEvents {
    let client: DroverClient

    /// Streams open at once in this process at most: each holds four watches per executor.
    static let maximumStreams = 64
    private static let open = Mutex(0)

    /// Changes are gathered this long before they are sent, so a burst of state changes (a bulk
    /// placement touching every executor) is one event, not hundreds.
    static let gathering = Duration.milliseconds(200)
    /// A comment line this often, so a connection whose reader went away is noticed.
    static let heartbeat = Duration.seconds(15)

    /// Whether another stream may open (checked when it is asked for; counted while it runs, so a
    /// burst of requests may pass the bound by a few).
    static var hasRoom: Bool { open.withLock { $0 < maximumStreams } }

    private enum Change: Sendable {
        case executorIDs([String])
        case registration(String, ExecutorRegistration?)
        /// The leader's assignments to an executor.
        case state(String, ExecutorState?)
        /// The executor's progress on them.
        case progress(String, ExecutorProgress?)
        /// The load it publishes (direct path).
        case load(String, ExecutorLoad?)
        case index(ActiveIndex?)
        case flush
        case heartbeat
    }

    /// Sends the current picture, then each change, through `write` (SSE frames), until the
    /// reader goes away (`write` throws) or the task is cancelled.
    func run(write: (String) async throws -> Void) async throws {
        Self.open.withLock { $0 += 1 }
        defer { Self.open.withLock { $0 -= 1 } }
        let (changes, emit) = AsyncStream.makeStream(of: Change.self)
        let client = self.client
        let zookeeper = client.zookeeper
        let layout = client.layout
        // A watch that fails ends the stream (the reader's EventSource connects again) rather than
        // leave it open with nothing more to send.
        @Sendable func watching(_ body: @Sendable () async throws -> Void) async throws {
            do {
                try await body()
            } catch {
                emit.finish()
                throw error
            }
        }
        /// Sends the document at `path` as it changes (nil when missing or unreadable).
        @Sendable func watchDocument<Document>(
            at path: String, _ decode: @escaping @Sendable ([UInt8]) -> Document?, _ change: @escaping @Sendable (Document?) -> Change
        ) async throws {
            try await watching {
                for try await update in zookeeper.dataUpdates(of: path) {
                    guard case .present(let node) = update else {
                        emit.yield(change(nil))
                        continue
                    }
                    emit.yield(change(decode(node.data)))
                }
            }
        }
        // Ended when the manager shuts down, not left open until the reader goes away.
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask {
                    try await watching {
                        for try await update in zookeeper.childrenUpdates(of: layout.executors) {
                            if case .present(let children) = update { emit.yield(.executorIDs(children.names.filter(Layout.isValidID))) }
                        }
                    }
                }
                group.addTask { try await watchDocument(at: layout.active, ActiveIndex.read) { .index($0) } }
                group.addTask {
                    while true {
                        try await Task.sleep(for: Self.heartbeat)
                        emit.yield(.heartbeat)
                    }
                }
                var registrations: [String: ExecutorRegistration] = [:]
                var states: [String: ExecutorState] = [:]
                var progress: [String: ExecutorProgress] = [:]
                var loads: [String: ExecutorLoad] = [:]
                // Executors whose registration and state were read at least once: until every listed
                // one was, an executor would show as gone for a moment.
                var registrationRead: Set<String> = []
                var stateRead: Set<String> = []
                var postponed = 0
                var ids: [String] = []
                var watched: Set<String> = []
                var counts: ActiveIndex.Counts?
                var countedAt: Timestamp?
                var executorsChanged = true
                var countsChanged = true
                var flushPending = false
                for await change in changes {
                    switch change {
                    case .executorIDs(let names):
                        ids = names.sorted()
                        executorsChanged = true
                        for id in names where watched.insert(id).inserted {
                            group.addTask {
                                try await watchDocument(at: layout.executorAlive(id), { try? Codec.decode(ExecutorRegistration.self, $0) }) {
                                    .registration(id, $0)
                                }
                            }
                            group.addTask {
                                try await watchDocument(at: layout.executorAssignments(id), { try? Codec.decode(ExecutorState.self, $0) }) { .state(id, $0) }
                            }
                            group.addTask {
                                try await watchDocument(at: layout.executorProgress(id), { try? Codec.decode(ExecutorProgress.self, $0) }) {
                                    .progress(id, $0)
                                }
                            }
                            group.addTask {
                                try await watchDocument(at: layout.executorLoad(id), { try? Codec.decode(ExecutorLoad.self, $0) }) { .load(id, $0) }
                            }
                        }
                    case .registration(let id, let registration):
                        registrations[id] = registration
                        registrationRead.insert(id)
                        executorsChanged = true
                    case .state(let id, let state):
                        states[id] = state
                        stateRead.insert(id)
                        executorsChanged = true
                    case .progress(let id, let executorProgress):
                        progress[id] = executorProgress
                        executorsChanged = true
                    case .load(let id, let load):
                        loads[id] = load
                        executorsChanged = true
                    case .index(let index):
                        if index?.counts != counts || index?.countedAt != countedAt {
                            (counts, countedAt) = (index?.counts, index?.countedAt)
                            countsChanged = true
                        }
                    case .heartbeat:
                        try await write(": still here\n\n")
                    case .flush:
                        flushPending = false
                        let unread = ids.contains { !registrationRead.contains($0) || !stateRead.contains($0) }
                        if executorsChanged && unread && postponed < 10 {
                            postponed += 1  // the first reads of a new executor are on their way
                        } else if executorsChanged {
                            postponed = 0
                            let executors = ids.map { id in
                                ExecutorJSON(
                                    ExecutorListing(id: id, registration: registrations[id], assignments: states[id], progress: progress[id], load: loads[id]))
                            }
                            try await write("event: executors\ndata: " + (try Self.encode(executors)) + "\n\n")
                            executorsChanged = false
                        }
                        if countsChanged, let counts, let countedAt {
                            try await write("event: counts\ndata: " + (try Self.encode(CountsJSON(counts, countedAt: countedAt))) + "\n\n")
                        }
                        countsChanged = false
                    }
                    if (executorsChanged || countsChanged) && !flushPending {
                        flushPending = true
                        group.addTask {
                            try await Task.sleep(for: Self.gathering)
                            emit.yield(.flush)
                        }
                    }
                }
                group.cancelAll()  // cancelled, shut down, or a watch failed: the other watches end with the stream
            }
        } onGracefulShutdown: {
            emit.finish()
        }
    }

    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// An executor as `/v1/executors` and the `executors` event show it.
struct ExecutorJSON: Encodable {
    let id: String
    let alive: Bool
    let registration: ExecutorRegistration?
    let state: ExecutorState?
    /// Its published load (direct path): slots, running, reserved (reservations it has listed and
    /// not claimed with yet), draining.
    let load: ExecutorLoad?
    /// Its tasks claimed on the direct path that have not ended, and the slots they hold.
    let claimed: Int
    let claimedSlots: Int

    init(_ listing: ExecutorListing) {
        id = listing.id
        alive = listing.registration != nil
        registration = listing.registration
        state = listing.state
        load = listing.load
        claimed = listing.claimedTasks
        claimedSlots = listing.claimedSlots
    }
}

/// The leader's counts as `/v1/counts` and the `counts` event show them.
struct CountsJSON: Encodable {
    let waiting: Int
    let scheduled: Int
    let running: Int
    /// Of `waiting`, the jobs no alive executor could ever run (nil from an older leader).
    let waitingForNoExecutor: Int?
    let countedAt: Int64

    init(_ counts: ActiveIndex.Counts, countedAt: Timestamp) {
        waiting = counts.waiting
        scheduled = counts.scheduled
        running = counts.running
        waitingForNoExecutor = counts.waitingForNoExecutor
        self.countedAt = countedAt
    }
}
