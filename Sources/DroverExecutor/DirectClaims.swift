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
        /// stays for the next claim, and `left` tasks were still unclaimed at this claim.
        case task(TaskRecord, reservationKept: Bool, left: Int = 0)
        /// Nothing to run: every task was claimed, or the job is gone or ended.
        case none
        /// The claim could not be tried (ZooKeeper unreachable): the reservation stays.
        case later
    }

    /// Takes the reservation `name` of this executor's inbox and claims a task with it.
    func claim(reservation name: String) async -> Outcome {
        await claim(reservations: [name])[0].outcome
    }

    /// Claims a task with each of `names` (a reusable reservation may appear more than once) in one
    /// `multi`; when one of them was cancelled or its job cleared meanwhile, one at a time.
    func claim(reservations names: [String]) async -> [(reservation: String, outcome: Outcome)] {
        var parsed: [(name: String, job: String, reusable: Bool)] = []
        for name in names {
            guard let (job, _, reusable) = Layout.reservation(named: name) else {
                // Not a reservation (another program's node): removed so it is not looked at again.
                try? await client.delete(layout.executorInbox(executor) + "/" + name)
                return await names.count == 1 ? [(name, .none)] : claimOneByOne(names)
            }
            parsed.append((name, job, reusable))
        }
        do {
            // The jobs' documents (what their tasks run) are read while the claims are made, not
            // before: a claim for a job that ended finds its claims directory gone; one for a job
            // that stops is not adopted (the leader stops it).
            let note = try Codec.encode(ClaimNote(executor: executor, instance: instance))
            let jobs = Set(parsed.map(\.job))
            async let documents = readDocuments(of: jobs)
            var operations: [MultiOperation] = []
            for claim in parsed {
                // A reservation yields one claim, or (reusable) claims until none is left: it goes
                // with its claim, or with the claim that found none.
                let path = layout.executorInbox(executor) + "/" + claim.name
                operations.append(.create(path: layout.claimPrefix(claim.job), data: note, mode: .persistentSequential, acl: acl(.claim)))
                operations.append(claim.reusable ? .check(path: path) : .delete(path: path))
            }
            let results: [MultiResult]
            do {
                results = try await client.multi(operations)
            } catch let error as ZooKeeperError where error.code == .noNode {
                _ = await documents
                guard parsed.count == 1 else { return await claimOneByOne(names) }
                // The job's claims are cleared (it ended), or the reservation was cancelled.
                if error.failedOperationIndex == 0 { try? await client.delete(layout.executorInbox(executor) + "/" + parsed[0].name) }
                return [(parsed[0].name, .none)]
            }
            let read = await documents
            var outcomes: [(String, Outcome)] = []
            for (position, claim) in parsed.enumerated() {
                guard case .created(let claimPath) = results[2 * position],
                    let index = Layout.claimIndex(named: String(claimPath.split(separator: "/").last ?? ""))
                else {
                    outcomes.append((claim.name, .none))
                    continue
                }
                outcomes.append((claim.name, await outcome(ofClaim: index, job: claim.job, reservation: claim.name, reusable: claim.reusable, read: read[claim.job])))
            }
            return outcomes
        } catch let error as ZooKeeperError where error.isRetryable {
            logger.debug("could not claim with reservations yet", metadata: ["reservations": "\(names)", "error": "\(error)"])
            // Tried again once connected, and not at once: an answer "later" makes the executor
            // claim again, and a claim that fails at once would spin while ZooKeeper is away.
            try? await client.waitUntilConnected(timeout: .seconds(30))
            try? await Task.sleep(for: .milliseconds(100))
            return names.map { ($0, .later) }
        } catch {
            logger.warning("reservations could not be used: dropped", metadata: ["reservations": "\(names)", "error": "\(error)"])
            for name in Set(names) { try? await client.delete(layout.executorInbox(executor) + "/" + name) }
            return names.map { ($0, .none) }
        }
    }

    private func claimOneByOne(_ names: [String]) async -> [(reservation: String, outcome: Outcome)] {
        var outcomes: [(String, Outcome)] = []
        for name in names { outcomes.append((name, await claim(reservations: [name])[0].outcome)) }
        return outcomes
    }

    /// The claims documents of `jobs`, read at once.
    private func readDocuments(of jobs: Set<String>) async -> [String: Result<[UInt8], any Error>] {
        await withTaskGroup(of: (String, Result<[UInt8], any Error>).self) { group in
            for job in jobs {
                group.addTask { [client, layout] in
                    do {
                        return (job, .success(try await client.getData(layout.jobClaims(job)).data))
                    } catch {
                        return (job, .failure(error))
                    }
                }
            }
            return await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
    }

    /// What claim `index` of `job` (made with `reservation`) gives this executor: a task to run, or
    /// none left. Claimed, the task is this executor's to run, or to fail saying why.
    private func outcome(ofClaim index: Int, job: String, reservation: String, reusable: Bool, read: Result<[UInt8], any Error>?) async -> Outcome {
        let document: DirectJobDocument
        switch read {
        case .success(let data)?:
            do {
                document = try Codec.decode(DirectJobDocument.self, data)
            } catch {
                return .task(ClaimedTask.unreadable(index, of: job, reason: "its job's claims document cannot be read: \(error)", claimedAt: .now()), reservationKept: false)
            }
        case .failure(let error)?:
            // Read again once connected: the claim holds the task meanwhile.
            guard let data = try? await repeatingAfterLostAnswers(client, logger: logger, "reading a claimed job's document", { try await self.client.getData(self.layout.jobClaims(job)) }).data,
                let again = try? Codec.decode(DirectJobDocument.self, data)
            else {
                return .task(ClaimedTask.unreadable(index, of: job, reason: "its job's claims document could not be read: \(error)", claimedAt: .now()), reservationKept: false)
            }
            document = again
        case nil:
            return .none
        }
        guard let tasks = document.spec.taskCount, index < tasks else {
            ExecutorMetrics.claimsAnswered("none")
            if reusable { try? await client.delete(layout.executorInbox(executor) + "/" + reservation) }
            return .none
        }
        if index == tasks - 1 {
            cancelReservations(of: job, on: document.reservedOn, reusable: document.spec.effectivePlacement.reservationsAreReusable, keeping: reusable ? nil : reservation)
        }
        guard let task = ClaimedTask.task(index, of: job, spec: document.spec, claimedAt: .now()) else { return .none }
        ExecutorMetrics.claimsAnswered("task")
        return .task(task, reservationKept: reusable && index < tasks - 1, left: tasks - index - 1)
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
