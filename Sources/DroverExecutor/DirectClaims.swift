import DroverProtocol
import DroverStore
import Logging
import ZKRecipes
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
        /// Task of the job, to run; with a reusable reservation (late binding), the reservation
        /// stays for the next claim.
        case task(TaskRecord, reservationKept: Bool)
        /// Nothing to run: every task was claimed, or the job is gone or ended.
        case none
        /// The claim could not be tried (ZooKeeper unreachable): the reservation stays.
        case later
    }

    /// Takes the reservation `name` of this executor's inbox and claims a task with it.
    func claim(reservation name: String) async -> Outcome {
        let path = layout.executorInbox(executor) + "/" + name
        guard let (job, _, reusable) = Layout.reservation(named: name) else {
            // Not a reservation (another program's node): removed so it is not looked at again.
            try? await client.delete(path)
            return .none
        }
        do {
            // The job's document (what its tasks run) is read while the claim is made, not before:
            // a claim for a job that ended finds its claims directory gone; one for a job that
            // stops is not adopted (the leader stops it).
            let note = try Codec.encode(ClaimNote(executor: executor, instance: instance))
            async let reading = client.getData(layout.jobClaims(job))
            let results: [MultiResult]
            do {
                // A reservation yields one claim, or (reusable) claims until none is left: it goes
                // with its claim, or with the claim that found none.
                let claim = MultiOperation.create(path: layout.claimPrefix(job), data: note, mode: .persistentSequential, acl: acl(.claim))
                results = try await client.multi(reusable ? [claim, .check(path: path)] : [claim, .delete(path: path)])
            } catch let error as ZooKeeperError where error.code == .noNode {
                // The job's claims are cleared (it ended), or the reservation was cancelled.
                if error.failedOperationIndex == 0 { try? await client.delete(path) }
                _ = try? await reading
                return .none
            }
            guard case .created(let claimPath)? = results.first,
                let index = Layout.claimIndex(named: String(claimPath.split(separator: "/").last ?? ""))
            else { return .none }
            // Claimed: from here on the task is this executor's to run, or to fail, saying why.
            let document: DirectJobDocument
            do {
                let data = try await reading.data
                do {
                    document = try Codec.decode(DirectJobDocument.self, data)
                } catch {
                    return .task(ClaimedTask.unreadable(index, of: job, reason: "its job's claims document cannot be read: \(error)", claimedAt: .now()), reservationKept: false)
                }
            } catch {
                // Read again once connected: the claim holds the task meanwhile.
                guard let data = try? await repeatingAfterLostAnswers(client, logger: logger, "reading a claimed job's document", { try await self.client.getData(self.layout.jobClaims(job)) }).data,
                    let read = try? Codec.decode(DirectJobDocument.self, data)
                else {
                    return .task(ClaimedTask.unreadable(index, of: job, reason: "its job's claims document could not be read: \(error)", claimedAt: .now()), reservationKept: false)
                }
                document = read
            }
            guard let tasks = document.spec.taskCount, index < tasks else {
                ExecutorMetrics.claimsAnswered("none")
                if reusable { try? await client.delete(path) }
                return .none
            }
            if index == tasks - 1 {
                cancelReservations(of: job, on: document.reservedOn, reusable: document.spec.effectivePlacement.reservationsAreReusable, keeping: reusable ? nil : name)
            }
            guard let task = ClaimedTask.task(index, of: job, spec: document.spec, claimedAt: .now()) else { return .none }
            ExecutorMetrics.claimsAnswered("task")
            return .task(task, reservationKept: reusable && index < tasks - 1)
        } catch let error as ZooKeeperError where error.isRetryable {
            logger.debug("could not claim with a reservation yet", metadata: ["reservation": "\(name)", "error": "\(error)"])
            return .later
        } catch {
            logger.warning("a reservation could not be used: dropped", metadata: ["reservation": "\(name)", "error": "\(error)"])
            try? await client.delete(path)
            return .none
        }
    }

    /// The job's last task is claimed: its other reservations go (a reusable one, its own too), so
    /// their executors do not ask for a task only to hear there is none (best effort: a claim with
    /// one finds none left).
    private func cancelReservations(of job: String, on reservedOn: [String], reusable: Bool, keeping name: String?) {
        let others = reservedOn.enumerated().map { layout.reservation(job: job, index: $0.offset, on: $0.element, reusable: reusable) }
            .filter { path in name.map { !path.hasSuffix("/" + $0) } ?? true }
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
    static let interval: Duration = .milliseconds(200)

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
