import DroverProtocol
import DroverStore
import Logging
import Synchronization
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
    /// Jobs' claims documents as read: they never change, and late binding claims with one job's
    /// reservation again and again.
    let documents = DocumentCache()

    enum Outcome: Sendable {
        /// Task of the job, to run; with a reusable reservation (late binding), the reservation
        /// stays for the next claim, and `left` tasks were still unclaimed at this claim, whose
        /// `multi` was sent at `sentAt` (the ``ClaimStartGate`` window counts from it). The job's
        /// last task comes with the job's other reservations (`cancelling`, paths) for
        /// ``DirectClaimer/cancelReservations(_:)`` once the progress names the task.
        case task(TaskRecord, reservationKept: Bool, left: Int = 0, sentAt: ContinuousClock.Instant = .now, cancelling: [String] = [])
        /// A task claimed whose job's document cannot be read: it fails at once, saying why.
        case unreadable(TaskRecord, reason: String)
        /// Nothing to run: every task was claimed, or the job is gone or ended.
        case none
        /// The claim could not be tried (ZooKeeper unreachable): the reservation stays.
        case later
    }

    /// Claims a task with each of `names` (a reusable reservation may appear more than once) in one
    /// `multi`. One that was cancelled, or whose job's claims were cleared, meanwhile is answered
    /// "none" and the others are claimed again together.
    func claim(reservations names: [String]) async -> [(reservation: String, outcome: Outcome)] {
        var outcomes: [(String, Outcome)] = []
        var pending: [(name: String, job: String, reusable: Bool)] = []
        for name in names {
            guard let (job, _, reusable) = Layout.reservation(named: name) else {
                // Not a reservation (another program's node): removed so it is not looked at again.
                try? await client.delete(inboxPath(name))
                outcomes.append((name, .none))
                continue
            }
            pending.append((name, job, reusable))
        }
        do {
            let note = try Codec.encode(ClaimNote(executor: executor, instance: instance))
            while !pending.isEmpty {
                // The jobs' documents (what their tasks run) are read while the claims are made,
                // not before: a claim for a job that ended finds its claims directory gone; one for
                // a job that stops is not adopted (the leader stops it).
                let jobs = Set(pending.map(\.job))
                async let reading = readDocuments(of: jobs)
                var operations: [MultiOperation] = []
                for claim in pending {
                    // A reservation yields one claim, or (reusable) claims until none is left: it
                    // goes with its claim, or with the claim that found none.
                    operations.append(.create(path: layout.claimPrefix(claim.job), data: note, mode: .persistentSequential, acl: acl(.claim)))
                    operations.append(claim.reusable ? .check(path: inboxPath(claim.name)) : .delete(path: inboxPath(claim.name)))
                }
                let results: [MultiResult]
                let sentAt = ContinuousClock.now
                do {
                    results = try await client.multi(operations)
                } catch let error as ZooKeeperError where error.code == .noNode && error.failedOperationIndex != nil {
                    _ = await reading
                    let failed = pending.remove(at: error.failedOperationIndex! / 2)
                    // Its job's claims are cleared (it ended), or the reservation was cancelled.
                    if error.failedOperationIndex! % 2 == 0 { try? await client.delete(inboxPath(failed.name)) }
                    outcomes.append((failed.name, .none))
                    continue
                }
                let read = await reading
                for (position, claim) in pending.enumerated() {
                    guard case .created(let claimPath) = results[2 * position],
                        let index = Layout.claimIndex(named: String(claimPath.split(separator: "/").last ?? ""))
                    else {
                        outcomes.append((claim.name, .none))
                        continue
                    }
                    outcomes.append(
                        (claim.name, await outcome(ofClaim: index, job: claim.job, reservation: claim.name, reusable: claim.reusable, read: read[claim.job], sentAt: sentAt)))
                }
                pending = []
            }
            return outcomes
        } catch let error as ZooKeeperError where error.isRetryable || error.code == .sessionExpired {
            logger.debug("could not claim with reservations yet", metadata: ["reservations": "\(names)", "error": "\(error)"])
            // Tried again once connected, and not at once: an answer "later" makes the executor
            // claim again, and a claim that fails at once would spin while ZooKeeper is away.
            try? await client.waitUntilConnected(timeout: .seconds(30))
            try? await Task.sleep(for: .milliseconds(100))
            return outcomes + pending.map { ($0.name, .later) }
        } catch {
            logger.warning("reservations could not be used: dropped", metadata: ["reservations": "\(names)", "error": "\(error)"])
            for claim in pending { try? await client.delete(inboxPath(claim.name)) }
            return outcomes + pending.map { ($0.name, .none) }
        }
    }

    private func inboxPath(_ name: String) -> String { layout.executorInbox(executor) + "/" + name }

    /// The claims documents of `jobs`: remembered ones, and the others read at once.
    private func readDocuments(of jobs: Set<String>) async -> [String: Result<DirectJobDocument, any Error>] {
        var found: [String: Result<DirectJobDocument, any Error>] = [:]
        for job in jobs { if let document = documents[job] { found[job] = .success(document) } }
        let missing = jobs.filter { found[$0] == nil }
        guard !missing.isEmpty else { return found }
        let read = await withTaskGroup(of: (String, Result<DirectJobDocument, any Error>).self) { group in
            for job in missing {
                group.addTask { [client, layout] in
                    do {
                        return (job, .success(try Codec.decode(DirectJobDocument.self, try await client.getData(layout.jobClaims(job)).data)))
                    } catch {
                        return (job, .failure(error))
                    }
                }
            }
            return await group.reduce(into: [String: Result<DirectJobDocument, any Error>]()) { $0[$1.0] = $1.1 }
        }
        for (job, result) in read {
            if case .success(let document) = result { documents[job] = document }
            found[job] = result
        }
        return found
    }

    /// What claim `index` of `job` (made with `reservation`, its `multi` sent at `sentAt`) gives
    /// this executor: a task to run, or none left. Claimed, the task is this executor's to run, or
    /// to fail saying why.
    private func outcome(
        ofClaim index: Int, job: String, reservation: String, reusable: Bool, read: Result<DirectJobDocument, any Error>?,
        sentAt: ContinuousClock.Instant
    ) async -> Outcome {
        var document: DirectJobDocument
        switch read {
        case .success(let read)?:
            document = read
        case .failure(let error as ZooKeeperError)? where error.isRetryable || error.code == .sessionExpired:
            // Read again once connected: the claim holds the task meanwhile.
            do {
                let data = try await repeatingAfterLostAnswers(client, logger: logger, "reading a claimed job's document") {
                    try await client.getData(layout.jobClaims(job)).data
                }
                document = try Codec.decode(DirectJobDocument.self, data)
            } catch {
                return .unreadable(ClaimedTask.unreadable(index, of: job, claimedAt: .now()), reason: "its job's claims document could not be read: \(error)")
            }
        case .failure(let error)?:
            return .unreadable(ClaimedTask.unreadable(index, of: job, claimedAt: .now()), reason: "its job's claims document cannot be read: \(error)")
        case nil:
            return .none
        }
        guard let tasks = document.spec.taskCount, index < tasks else {
            ExecutorMetrics.claimsAnswered("none")
            if reusable { try? await client.delete(inboxPath(reservation)) }
            return .none
        }
        // The job's last task: its other reservations go (a reusable one, its own too), so their
        // executors do not ask for a task only to hear there is none.
        var cancelling: [String] = []
        if index == tasks - 1 {
            cancelling = layout.reservations(of: job, on: document.reservedOn, reusable: document.spec.effectivePlacement.reservationsAreReusable)
                .filter { path in reusable || !path.hasSuffix("/" + reservation) }
        }
        ExecutorMetrics.claimsAnswered("task")
        return .task(
            ClaimedTask.task(index, of: job, spec: document.spec, claimedAt: .now())!, reservationKept: reusable && index < tasks - 1, left: tasks - index - 1,
            sentAt: sentAt, cancelling: cancelling)
    }

    /// Deletes reservations of a job whose last task is claimed (proactive cancellation; best
    /// effort: a claim with one finds none left). Sent once the progress names the claimed task
    /// (its start, its wait for room, its end) or the leader answers the claim, not with the
    /// claim's answer: a session's requests are answered in order, and these deletes, sent first,
    /// held the start's write up by a commit (late binding, start decided → handler: p50 2.4 ms,
    /// against 1.2 ms for random).
    func cancelReservations(_ reservations: [String]) {
        guard !reservations.isEmpty else { return }
        Task { [client] in
            await withTaskGroup(of: Void.self) { group in
                for path in reservations { group.addTask { try? await client.delete(path) } }
            }
        }
    }
}

/// Direct jobs' claims documents an executor read, the most recent few hundred.
final class DocumentCache: Sendable {
    private let state = Mutex<(documents: [String: DirectJobDocument], order: [String])>(([:], []))
    static let capacity = 256

    subscript(job: String) -> DirectJobDocument? {
        get { state.withLock { $0.documents[job] } }
        set {
            state.withLock { state in
                guard let newValue, state.documents.updateValue(newValue, forKey: job) == nil else { return }
                state.order.append(job)
                if state.order.count > Self.capacity { state.documents[state.order.removeFirst()] = nil }
            }
        }
    }
}

/// Writes this executor's load (``ExecutorLoad``) to its ephemeral load node when it changes,
/// at most every ``interval``: clients sample executors by it. Publishing is a service to
/// clients, never a reason for the executor to stop: a write that fails is tried again once
/// connected, and a new session (its ephemeral node gone with the old one) writes it anew.
actor LoadPublisher {
    static let interval: Duration = .milliseconds(200)

    let client: ZooKeeperClient
    let path: String
    let acl: [ACL]
    let logger: Logger
    private var wanted: ExecutorLoad?
    private var written: (load: ExecutorLoad, session: Int64?)?
    private var signal: AsyncStream<Void>.Continuation?

    init(client: ZooKeeperClient, path: String, acl: [ACL], logger: Logger) {
        self.client = client
        self.path = path
        self.acl = acl
        self.logger = logger
    }

    func update(_ load: ExecutorLoad) {
        guard load != wanted else { return }
        wanted = load
        signal?.yield()
    }

    /// Writes changes until cancelled.
    func run() async throws {
        let (changes, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.signal = signal
        if wanted != nil { signal.yield() }
        // A new session lost the ephemeral node: the load is written again.
        let sessions = Task { [client] in
            for await state in client.sessionStates() {
                if case .connected = state { signal.yield() }
            }
        }
        defer { sessions.cancel() }
        for await _ in changes {
            let session = client.sessionID
            guard let load = wanted, written.map({ $0.load != load || $0.session != session }) ?? true else { continue }
            do {
                let data = try Codec.encode(load)
                do {
                    try await client.setData(path, data: data)
                } catch let error as ZooKeeperError where error.code == .noNode {
                    _ = try await client.create(path, data: data, mode: .ephemeral, acl: acl)
                }
                written = (load, session)
            } catch let error as ZooKeeperError where error.isRetryable || error.code == .sessionExpired || error.code == .nodeExists {
                try await client.waitUntilConnected(timeout: .seconds(3600))
                signal.yield()  // tried again
            } catch {
                logger.warning("could not publish this executor's load: clients sample it as idle", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: Self.interval)
        }
    }
}

/// The reservations an executor's main loop holds, as last listed, and the claims it has in flight
/// with them: the bookkeeping of the direct path beside the tasks, without I/O.
struct InboxReservations {
    struct Entry {
        let name: String
        /// Late binding's: claimed with until the job has no task left.
        let reusable: Bool
        var inFlight = 0
        /// Tasks its job had left at its last claim (a reusable one: as many claims at once, one while unknown).
        var left: Int?
    }

    /// Oldest job first (job ids sort by submit time).
    private(set) var entries: [Entry] = []
    /// The inbox changed since it was listed (at first: never listed), and whether a listing is under way.
    private var changed = true
    private var listing = false
    /// Reservations not to claim with again (answered with their job's last task, with none, or
    /// with a job that cannot be read): gone or on their way out — a reusable one goes with the
    /// job's other reservations once the task's start is written — so a listing that still holds
    /// them does not make them claimable again. Forgotten once a listing no longer holds them.
    private var spent: Set<String> = []

    /// Claims in flight.
    var inFlight: Int { entries.reduce(0) { $0 + $1.inFlight } }
    /// Reservations not being claimed with now (the load an executor publishes).
    var waiting: Int { entries.count { $0.inFlight == 0 } }

    mutating func inboxChanged() { changed = true }

    /// The inbox as listed: entries already held keep their claims in flight. One with a claim in
    /// flight stays until that is answered even when the listing no longer holds it — the claim's
    /// own `multi` deletes a reservation, and the watch that fires then lists the inbox before the
    /// answer comes. Dropped, its claim would no longer count: a second `multi` would go out
    /// while the first is in flight, and the slot it holds would be claimed again.
    mutating func listed(_ names: [String]) {
        listing = false
        spent.formIntersection(names)
        var held = Dictionary(entries.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var next = names.sorted().compactMap { name -> Entry? in
            if let entry = held.removeValue(forKey: name) { return entry }
            guard !spent.contains(name) else { return nil }
            guard let (_, _, reusable) = Layout.reservation(named: name) else { return Entry(name: name, reusable: false) }
            return Entry(name: name, reusable: reusable)
        }
        for var entry in held.values where entry.inFlight > 0 {
            // Gone from the inbox: nothing more is claimed with it.
            entry.left = 0
            next.append(entry)
        }
        entries = next.sorted { $0.name < $1.name }
    }

    /// A claim with `name` was answered.
    mutating func answered(_ name: String, _ outcome: DirectClaimer.Outcome) {
        guard let position = entries.firstIndex(where: { $0.name == name }) else { return }
        entries[position].inFlight = max(0, entries[position].inFlight - 1)
        switch outcome {
        case .task(_, let kept, let left, _, _) where kept:
            // Answers to claims made together come in any order: the fewest tasks left holds.
            entries[position].left = min(left, entries[position].left ?? left)
        case .task, .none, .unreadable:
            // The last task, none left, the reservation gone, or its job unreadable: not claimed
            // with again — with a claim still in flight too (the entry goes when that is answered).
            // Before, a reusable one kept its old count and claimed again while another claim was
            // in flight, each answered none: a bench run made 10,000 claims for one reservation,
            // and its executor never listed its inbox for newer jobs meanwhile.
            entries[position].left = 0
            spent.insert(name)
        case .later:
            break  // still in the inbox: claimed with again
        }
        // Answers come in any order: the last one in flight may be an older claim's, after the
        // last task or "none" left nothing to claim with.
        if entries[position].left == 0 && entries[position].inFlight == 0 { entries.remove(at: position) }
    }

    /// Whether to list the inbox now: it changed, and nothing listed is left to claim with.
    mutating func shouldList(free: Int) -> Bool {
        guard free > 0, changed, !listing, !entries.contains(where: { $0.inFlight == 0 || $0.reusable }) else { return false }
        changed = false
        listing = true
        return true
    }

    /// The next batch of claims (one `multi`) to make with `free` slots — none while a batch is in
    /// flight. Claims are committed as a group: the slots that free up while one `multi` is on its
    /// way go together in the next, instead of a `multi` each. A no-op task frees its slot within a
    /// millisecond, so claiming per freed slot made 1.2 claims per `multi` (0.8 ZooKeeper writes per
    /// task, most of the direct path's). A claim made meanwhile waits for the batch in flight to be
    /// answered: one round trip, one more for each of its reservations cancelled meanwhile, and
    /// while ZooKeeper is unreachable until it is back (when no claim could be made anyway).
    mutating func nextBatch(free: Int) -> [String] {
        guard inFlight == 0 else { return [] }
        return claims(free: free)
    }

    /// The claims to make with `free` slots: one per slot, oldest job first.
    mutating func claims(free: Int) -> [String] {
        var free = free
        var batch: [String] = []
        for position in entries.indices where free > 0 {
            let allowed = entries[position].reusable ? entries[position].left ?? 1 : 1
            let more = max(0, min(free, allowed - entries[position].inFlight))
            entries[position].inFlight += more
            free -= more
            batch += Array(repeating: entries[position].name, count: more)
        }
        return batch
    }
}

/// Whether a task this executor claimed may start before the leader adopts it. The leader takes
/// over a claim its claimant's progress does not name once the claim is `--claim-timeout` old (5 s
/// at least), or once the claimant's session is gone for the grace period; a task started within
/// `window` of sending its claim is named in the progress by its start before either can pass.
/// Later — the answer or the job's document came through a link cut meanwhile, the task waited
/// for room, or the claim was taken up again after a restart — the leader may have taken the
/// claim over already: the task is named in the progress and starts when the leader adopts it,
/// asked to stop (so never run here) if it was taken over. Found by a chaos run: an executor cut
/// off for 9 s between its claim and its job's document ran two tasks the leader had placed
/// elsewhere meanwhile.
struct ClaimStartGate: Sendable {
    /// Two seconds: well under `--claim-timeout` (5 s at least) and a session's timeout plus the
    /// grace period; on a loaded machine a claim and its start write took over half a second.
    static let defaultWindow: Duration = .seconds(2)

    private(set) var window: Duration

    /// The window an executor uses: `configured`, but half its session's timeout at most. A claim
    /// answered by the server shows the session alive then, so the leader can take it over as an
    /// executor's that is gone no sooner than the session's timeout plus the grace period later —
    /// and `--grace` may be set short (a tenth of a second is allowed), with a session of a second.
    /// (An executor the leader has not listed yet keeps its claims 5 s at least, whatever the grace
    /// period: `LeaderState.unlistedClaimMinimumAge` in the manager.)
    static func window(configured: Duration, sessionTimeout: Duration) -> Duration {
        max(.zero, min(configured, sessionTimeout / 2))
    }

    /// When each unadopted claim's `multi` was sent (none for claims taken up after a restart).
    private var sentAt: [String: ContinuousClock.Instant] = [:]
    /// Unadopted claims found too old to start alone (once late, late until adopted).
    private var late: Set<String> = []

    init(window: Duration = Self.defaultWindow) { self.window = window }

    /// The servers granted a session of `timeout`: the window is half of it at most. Made from the
    /// timeout asked for, the window was too long when the servers cut the session down (they
    /// grant 20 of their ticks at most); it is never made longer.
    mutating func narrow(toHalfOf timeout: Duration) { window = Self.window(configured: window, sessionTimeout: timeout) }

    /// Claim `key` was answered with a task; its `multi` was sent at `sentAt` (nil: not known).
    mutating func claimed(_ key: String, sentAt: ContinuousClock.Instant?) { self.sentAt[key] = sentAt }

    /// Forgets claims not in `unadopted` (the leader adopted or collected them).
    mutating func keep(_ unadopted: Set<String>) {
        sentAt = sentAt.filter { unadopted.contains($0.key) }
        late = late.filter(unadopted.contains)
    }

    /// Whether claim `key` is still within its window at `now` (and never found late): checked
    /// again once its start is written, as a write held up by a lost connection may land after
    /// the leader took the claim over.
    func isFresh(_ key: String, at now: ContinuousClock.Instant) -> Bool {
        guard !late.contains(key), let sent = sentAt[key] else { return false }
        return now - sent <= window
    }

    /// Of the `unadopted` claims, those that must wait for the leader's adoption at `now`, and
    /// those among them found late just now.
    mutating func awaitingAdoption(_ unadopted: Set<String>, at now: ContinuousClock.Instant) -> (waiting: Set<String>, newlyLate: [String]) {
        var waiting: Set<String> = []
        var newlyLate: [String] = []
        for key in unadopted where !isFresh(key, at: now) {
            waiting.insert(key)
            if late.insert(key).inserted { newlyLate.append(key) }
        }
        return (waiting, newlyLate.sorted())
    }
}
