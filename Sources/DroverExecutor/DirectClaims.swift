import DroverProtocol
import DroverStore
import Logging
import ZooKeeper

/// The executor's side of the direct path (docs/PLACEMENT.md): reservations arrive in its inbox;
/// with a slot free it takes the oldest and claims one of its job's tasks — a sequential node in
/// the job's claims directory, created in the same `multi` that deletes the reservation, so a
/// reservation yields at most one claim and the n-th claim holds task n. The claim of a job's last
/// task deletes the job's other reservations (proactive cancellation).
struct DirectClaimer: Sendable {
    let client: ZooKeeperClient
    let layout: Layout
    let executor: String
    /// This process (``ExecutorRegistration/instance``): a claim names it, so the leader can tell
    /// a claim of an earlier process of this executor (which cannot run it any more) from one of this.
    let instance: String
    let acl: @Sendable (AccessPolicy.Node) -> [ACL]
    let logger: Logger

    enum Outcome: Sendable {
        /// Task of the job, to run.
        case task(TaskRecord)
        /// Nothing to run: every task was claimed, or the job is gone or ended.
        case none
        /// The claim could not be tried (ZooKeeper unreachable): the reservation stays.
        case later
    }

    /// Takes the reservation `name` of this executor's inbox and claims a task with it.
    func claim(reservation name: String) async -> Outcome {
        let path = layout.executorInbox(executor) + "/" + name
        guard let (job, _) = Layout.reservation(named: name) else {
            // Not a reservation (another program's node): removed so it is not looked at again.
            try? await client.delete(path)
            return .none
        }
        do {
            let record: JobRecord
            do {
                let node = try await client.getData(layout.job(job))
                record = try JobRecord.read(node.data, job: job)
            } catch let error as ZooKeeperError where error.code == .noNode {
                try? await client.delete(path)
                return .none
            } catch let error as UnusableRecordError {
                logger.warning("a reservation's job record cannot be used: dropped", metadata: ["job": "\(job)", "error": "\(error.reason)"])
                try? await client.delete(path)
                return .none
            }
            guard !record.state.isFinal, !record.stopRequested, let tasks = record.spec.taskCount else {
                try? await client.delete(path)
                return .none
            }
            let note = try Codec.encode(ClaimNote(executor: executor, instance: instance))
            let results: [MultiResult]
            do {
                results = try await client.multi([
                    .create(path: layout.claimPrefix(job), data: note, mode: .persistentSequential, acl: acl(.claim)),
                    .delete(path: path),
                ])
            } catch let error as ZooKeeperError where error.code == .noNode {
                // The job's claims are cleared (it ended), or the reservation was cancelled.
                if error.failedOperationIndex == 0 { try? await client.delete(path) }
                return .none
            }
            guard case .created(let claimPath)? = results.first,
                let index = Layout.claimIndex(named: String(claimPath.split(separator: "/").last ?? ""))
            else { return .none }
            guard index < tasks else {
                ExecutorMetrics.claimsAnswered("none")
                return .none
            }
            if index == tasks - 1 { cancelReservations(of: record, keeping: name) }
            guard let task = ClaimedTask.task(index, of: record, claimedAt: .now()) else { return .none }
            ExecutorMetrics.claimsAnswered("task")
            return .task(task)
        } catch let error as ZooKeeperError where error.isRetryable {
            logger.debug("could not claim with a reservation yet", metadata: ["reservation": "\(name)", "error": "\(error)"])
            return .later
        } catch {
            logger.warning("a reservation could not be used: dropped", metadata: ["reservation": "\(name)", "error": "\(error)"])
            try? await client.delete(path)
            return .none
        }
    }

    /// The job's last task is claimed: its other reservations go, so their executors do not ask
    /// for a task only to hear there is none (best effort: a claim with one finds none left).
    private func cancelReservations(of record: JobRecord, keeping name: String) {
        let others = (record.reservedOn ?? []).enumerated().map { layout.reservation(job: record.id, index: $0.offset, on: $0.element) }
            .filter { !$0.hasSuffix("/" + name) }
        guard !others.isEmpty else { return }
        Task { [client] in
            await withTaskGroup(of: Void.self) { group in
                for path in others { group.addTask { try? await client.delete(path) } }
            }
        }
    }
}

/// Writes this executor's load (``ExecutorLoad``) to its ephemeral load node when it changes,
/// at most every ``interval``: clients sample executors by it.
actor LoadPublisher {
    static let interval: Duration = .milliseconds(50)

    let client: ZooKeeperClient
    let path: String
    let acl: [ACL]
    private var wanted: ExecutorLoad?
    private var written: ExecutorLoad?
    private var signal: AsyncStream<Void>.Continuation?

    init(client: ZooKeeperClient, path: String, acl: [ACL]) {
        self.client = client
        self.path = path
        self.acl = acl
    }

    func update(_ load: ExecutorLoad) {
        guard load != wanted else { return }
        wanted = load
        signal?.yield()
    }

    /// Writes changes until cancelled; removes the node when it ends.
    func run() async throws {
        let (changes, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.signal = signal
        if wanted != nil { signal.yield() }
        for await _ in changes {
            guard let load = wanted, load != written else { continue }
            do {
                let data = try Codec.encode(load)
                do {
                    try await client.setData(path, data: data)
                } catch let error as ZooKeeperError where error.code == .noNode {
                    _ = try await client.create(path, data: data, mode: .ephemeral, acl: acl)
                }
                written = load
            } catch let error as ZooKeeperError where error.isRetryable || error.code == .nodeExists {
                signal.yield()  // tried again
            }
            try await Task.sleep(for: Self.interval)
        }
    }

    func remove() async { try? await client.delete(path) }
}
