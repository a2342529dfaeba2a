import DroverProtocol
import DroverStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import ZKRecipes
import ZooKeeper

/// What a handler gets for one run of a job.
public struct TaskContext: Sendable {
    public let job: String
    /// 1 for the job's first run.
    public let run: Int
    /// 1 the first time this run starts; more after an executor crash or restart.
    public let attempt: Int
    public let arguments: JSONValue
    /// The last checkpoint saved by an earlier attempt of this run, if any.
    public let checkpoint: JSONValue?
    let save: @Sendable (JSONValue) async throws -> Void
    let addSteps: @Sendable ([WorkflowStep]) async throws -> Void
    /// The job's shared data (a workflow's steps share it), when the executor can reach it.
    public let shared: SharedData
    /// The work unit this run is an attempt of, when the handler runs a work spec's unit
    /// (`job` is then the spec's name, `run` 1, `attempt` the unit's try).
    public let unit: Unit?

    /// A work unit as its handler sees it.
    public struct Unit: Sendable, Hashable {
        public let key: String
        public let data: JSONValue?

        public init(key: String, data: JSONValue?) {
            self.key = key
            self.data = data
        }
    }

    /// A context for running a handler outside an executor (tests, tools).
    public init(
        job: String, run: Int, attempt: Int = 1, arguments: JSONValue, checkpoint: JSONValue? = nil,
        saveCheckpoint: @escaping @Sendable (JSONValue) async throws -> Void = { _ in },
        shared: SharedData = SharedData(document: nil, job: ""),
        inject: @escaping @Sendable ([WorkflowStep]) async throws -> Void = { _ in }, unit: Unit? = nil
    ) {
        self.unit = unit
        self.job = job
        self.run = run
        self.attempt = attempt
        self.arguments = arguments
        self.checkpoint = checkpoint
        self.save = saveCheckpoint
        self.addSteps = inject
        self.shared = shared
    }

    /// Saves progress in the executor's state (keep it small: it lives in ZooKeeper). A run
    /// restarted after a crash gets it back as ``checkpoint``.
    public func saveCheckpoint(_ value: JSONValue) async throws { try await save(value) }

    /// Adds steps to the workflow this run is a step of. They are kept with the run (in the
    /// executor's state, so a restarted run keeps them) and added by the leader when the run ends;
    /// a first step without `after` runs after this one. Steps the workflow's graph cannot take
    /// (a repeated id, a cycle, a reference to a step they do not run after) fail this run, saying
    /// why, and so does injecting into a job that is no workflow.
    /// - Throws: ``DroverError`` `.invalidSpec` when the steps are not valid on their own or too large.
    public func inject(_ steps: [WorkflowStep]) async throws {
        guard !steps.isEmpty else { return }
        for (index, step) in steps.enumerated() {
            do {
                var alone = JobSpec(method: step.method, arguments: step.arguments, resources: step.resources ?? Resources(), constraints: step.constraints ?? [:], retry: step.retry)
                alone.name = step.id
                try alone.validate(checkingSize: false)
            } catch {
                throw DroverError(.invalidSpec, "injected step \(index) (\(step.id)): \(error.field): \(error.reason)")
            }
        }
        let size = try Codec.encode(steps).count
        guard size <= Self.maximumInjectedBytes else {
            throw DroverError(.invalidSpec, "the injected steps are \(size) bytes, over the limit of \(Self.maximumInjectedBytes) per run")
        }
        try await addSteps(steps)
    }

    /// Encoded bytes of steps one run may inject in all (they wait in the executor's state).
    public static let maximumInjectedBytes = Bounds.injectedStepsBytes
}

/// A workflow's shared data, as a step's handler sees it: one JSON object per workflow that every
/// step reads and updates with compare-and-set (``update(_:)`` applies a change again when another
/// step wrote first, so no update is lost). At most 64 KiB.
public struct SharedData: Sendable {
    let document: SharedDocument?
    let job: String

    public init(document: SharedDocument?, job: String) {
        self.document = document
        self.job = job
    }

    /// The shared data now (`{}` before anything was written).
    public func read() async throws -> JSONValue {
        guard let document else { throw DroverError(.invalidSpec, "no shared data: this run is not a workflow's step") }
        return try await document.read(job)
    }

    /// Applies `change` to the shared data and writes it, again and again while other steps write
    /// first. Returns what was written.
    @discardableResult
    public func update(_ change: (inout JSONValue) throws -> Void) async throws -> JSONValue {
        guard let document else { throw DroverError(.invalidSpec, "no shared data: this run is not a workflow's step") }
        return try await document.update(job, change)
    }
}

/// A registered method: runs one task and returns its (small) result. Throwing fails the run;
/// the task is cancelled when the job is stopped.
public typealias TaskHandler = @Sendable (TaskContext) async throws -> JSONValue?

/// The executor: registers under a stable id, watches the leader's assignments to it and runs
/// what they hold, up to its capacity, recording its progress in a document of its own. Embed it
/// in a program with your own handlers, or run the stock daemon.
///
/// After a crash or restart with the same id it re-reads its assignments and progress and runs
/// again every task that was assigned or running, from the task's last checkpoint.
public final class Executor: Service, Sendable {
    public struct Configuration: Sendable {
        /// Stable identity across restarts (a znode name: letters, digits, `.`, `_`, `-`).
        public var id: String
        public var capacity: Resources
        public var labels: [String: String]
        /// Where the executor serves task output, advertised in its registration.
        public var address: String?
        /// Larger results fail the run (results live in ZooKeeper; outputs do not).
        public var maximumResultBytes: Int
        /// What a graceful shutdown does with running tasks.
        public var onShutdown: ShutdownBehaviour
        /// Work units (of work specs whose method this executor has) run at once, in slots of
        /// their own beside the tasks' (0: this executor runs no units). Claims hold up to half
        /// as many more, waiting for a slot, so that a claim takes a segment's units whole.
        public var unitSlots: Int
        /// How long after its claim was sent a task claimed on the direct path may start before
        /// the leader adopts it (2 s by default: the leader may take over a claim it has not seen
        /// named in the executor's progress once it is `--claim-timeout` old, or once the executor's
        /// session is gone for the grace period); keep it well under both. Half the session timeout
        /// at most, whatever is set here (the grace period can be short). Zero: every claimed task
        /// waits for the leader's adoption.
        public var claimStartWindow: Duration = ClaimStartGate.defaultWindow

        public enum ShutdownBehaviour: String, Sendable, CaseIterable {
            /// Start nothing new, let running tasks finish, then deregister.
            case finish
            /// Stop running tasks at once and hand them back: the manager moves them to another
            /// executor, where they resume from their last checkpoint.
            case handBack = "hand-back"
        }

        public init(
            id: String, capacity: Resources = Resources(cpu: 1, memoryMB: 1024, slots: 4), labels: [String: String] = [:],
            address: String? = nil, maximumResultBytes: Int = Bounds.resultBytes, onShutdown: ShutdownBehaviour = .finish, unitSlots: Int = 0
        ) {
            self.unitSlots = unitSlots
            self.onShutdown = onShutdown
            self.id = id
            self.capacity = capacity
            self.labels = labels
            self.address = address
            self.maximumResultBytes = maximumResultBytes
        }
    }

    public let client: ZooKeeperClient
    public let layout: Layout
    public let configuration: Configuration
    let handlers: [String: TaskHandler]
    let logger: Logger
    /// The executor's progress document, which only it writes.
    let document: VersionedDocument<ExecutorProgress>
    /// How the deployment is protected, read when the executor starts.
    let access = Mutex<Access>(.open)
    /// The runs this executor holds unfinished, as it last read them ("job#run" → method).
    private let heldRuns = Mutex<[String: String]>([:])

    /// The method of run `run` of `job` when this executor holds it unfinished (placed here,
    /// started or not), as of its last read: its output server waits for a shell run's
    /// output to begin.
    public func heldMethod(job: String, run: Int) -> String? { heldRuns.withLock { $0["\(job)#\(run)"] } }

    /// The ACL of a node of this executor's (its directory, or a node in it).
    func acl(_ node: AccessPolicy.Node) -> [ACL] { access.withLock { $0 }.acl(for: node) }

    public init(
        client: ZooKeeperClient, layout: Layout = Layout(), configuration: Configuration, handlers: [String: TaskHandler],
        logger: Logger = Logger(label: "drover.executor")
    ) throws {
        guard Layout.isValidID(configuration.id) else {
            throw DroverError(.invalidSpec, "executor id \"\(configuration.id)\" must be letters, digits, '.', '_' or '-'")
        }
        self.client = client
        self.layout = layout
        self.configuration = configuration
        self.handlers = handlers
        var logger = logger
        logger[metadataKey: "executor"] = "\(configuration.id)"
        self.logger = logger
        let progressEncoder = ProgressEncoder()
        self.document = VersionedDocument(
            client: client, path: layout.executorProgress(configuration.id), maximumBytes: ExecutorState.maximumEncodedBytes,
            encode: { try progressEncoder.encode($0) })
        self.writer = StateWriter(
            document: document, claimStartWindow: ClaimStartGate.window(configured: configuration.claimStartWindow, sessionTimeout: client.sessionTimeout),
            logger: logger)
    }

    let writer: StateWriter

    private enum Event: Sendable {
        /// The assignments or the progress changed (the writer has seen the new version).
        case stateChanged
        case ended(taskID: String)
        /// A task's start was not written: the executor is not registered in this session yet.
        case startDeferred(taskID: String)
        /// A run's handler returned and its end is being recorded: its slot is free from now on
        /// (the next task need not wait a write for it), while the run stays known as this
        /// executor's until `.ended`, so it is not started again.
        case handlerReturned(taskID: String)
        /// The reservations in this executor's inbox (direct path), by name, as just listed.
        case inbox([String])
        /// The inbox changed since it was last listed.
        case inboxChanged
        /// A claim with the reservation was answered.
        case claimed(reservation: String, DirectClaimer.Outcome)
        case shutdown
        /// A part of the executor failed for good (its identity was rotated away, its id is held
        /// by another live process): it stops with the error, and a supervisor may start it again.
        case failed(any Error)
    }

    /// Registers, then runs assigned tasks until cancelled or gracefully shut down (then it
    /// lets running tasks finish and deregisters).
    public func run() async throws {
        let id = configuration.id
        // A daemon starting while ZooKeeper is slow or failing over waits it out instead of
        // exiting: every step here is safe to repeat.
        let loadedAccess = try await repeatingAfterLostAnswers(client, logger: logger, "reading the deployment's access policy") {
            try await Access.load(client, layout: layout)
        }
        if case .secured(let policy) = loadedAccess, policy.executors[id] == nil, policy.certificates?["executor:\(id)"] == nil {
            throw DroverError(
                .notPermitted,
                "this deployment is secured and has no identity for executor \(id): an admin adds one with "
                    + "`drover init --executor \(id) --credentials admin.json` and hands over the credentials file it writes "
                    + "(or names its TLS certificate: `--certificate executor:\(id)=CN=…`)")
        }
        access.withLock { $0 = loadedAccess }
        do {
            try await repeatingAfterLostAnswers(client, logger: logger, "registering") { try await registerWithEverythingItNeeds() }
        } catch {
            throw explainedRegistrationFailure(error)
        }
        logger.info("executor registered", metadata: ["capacity": "\(configuration.capacity)"])
        ExecutorMetrics.slotsTotal.record(configuration.capacity.slots)

        let (events, emit) = AsyncStream.makeStream(of: Event.self)
        wakeLoop.withLock { $0 = { emit.yield(.stateChanged) } }
        // Work units stop with the tasks, the same way (finish, or hand back).
        let unitControl = configuration.unitSlots > 0 ? UnitWorker.Control() : nil
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                // Each part ends when the group is cancelled at shutdown, which is not an error.
                // Any other end is: a child's error would cancel the other children but not the
                // loop below that waits for events, and the executor would sit idle, registered
                // nowhere, saying nothing (seen in a chaos run: after a session expiry an executor
                // took no more work and logged nothing). The loop is told, and the executor exits
                // with the error.
                func part(_ body: @escaping @Sendable () async throws -> Void) {
                    group.addTask {
                        do {
                            try await body()
                        } catch is CancellationError {
                        } catch {
                            emit.yield(.failed(error))
                        }
                    }
                }
                part { [self] in
                    for try await update in client.dataUpdates(of: layout.executorAssignments(id)) {
                        let node: NodeData? = if case .present(let node) = update { node } else { nil }
                        guard await observeAssignments(node) else { continue }
                        await noteHeldRuns()
                        emit.yield(.stateChanged)
                    }
                }
                part { [self] in
                    // Its own writes come back as changes too: those it holds are not read again.
                    for try await update in client.dataUpdates(of: document.path, unlessHeld: { [writer] in await writer.holdsProgress(version: $0.version) }) {
                        switch update {
                        case .missing: await writer.observed(progress: nil)
                        case .present(.held): break
                        case .present(.read(let node)):
                            do {
                                await writer.observed(progress: try document.decode(node))
                            } catch {
                                // Another program garbled it: its running tasks go on here.
                                await repairUnreadableProgress(node, error)
                                continue
                            }
                        }
                        await noteHeldRuns()
                        // A start or end whose write was lost (a repair wrote back older progress)
                        // is tried again at the next change: this is one.
                        emit.yield(.stateChanged)
                    }
                }
                part { [self] in try await keepRegistered() }
                // The inbox is listed when the executor needs more reservations — its list has none
                // left to claim with, a slot is free, and the inbox changed since it was listed —
                // not on every change: with a backlog each claim removes one, and listing the whole
                // inbox for each would cost O(backlog) per task. New reservations are of newer jobs
                // (ids sort by submit time), so they go after those already listed anyway.
                let (listingRequests, requestListing) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
                part { [self] in
                    try await withThrowingDiscardingTaskGroup { watches in
                        for await _ in listingRequests {
                            let (changes, watcher) = Watcher.makeStream()
                            let names = try await repeatingAfterLostAnswers(client, logger: logger, "listing the inbox") {
                                do {
                                    return try await client.children(layout.executorInbox(id), watcher: watcher).names
                                } catch let error as ZooKeeperError where error.code == .noNode {
                                    try await client.createPath(layout.executorInbox(id)) { [layout] in acl(layout.node(at: $0)) }
                                    return try await client.children(layout.executorInbox(id), watcher: watcher).names
                                }
                            }
                            emit.yield(.inbox(names.sorted()))
                            watches.addTask {
                                for await _ in changes {
                                    emit.yield(.inboxChanged)
                                    break
                                }
                            }
                        }
                    }
                }
                let loads = LoadPublisher(client: client, path: layout.executorLoad(id), acl: acl(.executorNode(id)), logger: logger)
                part { try await loads.run() }
                let claimer = DirectClaimer(
                    client: client, layout: layout, executor: id, instance: ProcessInstance.current.description,
                    acl: { [self] node in acl(node) }, logger: logger)
                if let unitControl {
                    let worker = UnitWorker(
                        store: UnitStore(zookeeper: client, layout: layout, access: access.withLock { $0 }, onConflict: { ExecutorMetrics.unitWriteConflicts.increment() }), executor: id,
                        slots: configuration.unitSlots, handlers: handlers, logger: logger)
                    part { try await worker.run(control: unitControl) }
                }
                part { [self] in try await watchRegistration() }
                if case .secured(let initial) = access.withLock({ $0 }) {
                    // What it creates follows the policy as it changes; rotated away, it could
                    // write nothing more: it stops, and says so.
                    part { [self] in
                        var policy = initial
                        while true {
                            policy = try await Access.nextChange(after: policy, client, layout: layout)
                            access.withLock { $0 = .secured(policy) }
                        }
                    }
                }

                // Runs in progress here: how to stop each, and the slots it holds.
                var running: [String: (stop: AsyncStream<Void>.Continuation, slots: Int)] = [:]
                // A run whose handler returned holds no slot while its end is written.
                func usedSlots() -> Int { running.values.reduce(0) { $0 + $1.slots } }
                func handlersRunning() -> Int { running.values.count { $0.slots > 0 } }
                // Runs that ended here since the state last changed. One that still looks
                // unfinished could not record its start or end: it is tried again at the next
                // change, not at once (a write that keeps failing would rerun it in a tight loop).
                var endedSinceLastChange: Set<String> = []
                var shuttingDown = false
                // Reservations in the inbox and the claims in flight with them (each holds a slot until answered).
                var inbox = InboxReservations()
                for await event in events {
                    switch event {
                    case .shutdown:
                        shuttingDown = true
                        switch configuration.onShutdown {
                        case .handBack:
                            // Everything goes back, running or not.
                            unitControl?.stop(.handBack)
                            try await handBack(keeping: [])
                            for run in running.values { run.stop.finish() }
                        case .finish:
                            // Running tasks finish here; those not started go back at once.
                            unitControl?.stop(.finish)
                            try await handBack(keeping: Set(running.keys))
                        }
                    case .failed(let error):
                        // Its commands stop, and its tasks move once its session ends with the
                        // process (or it takes them up again when restarted in time).
                        for run in running.values { run.stop.finish() }
                        throw error
                    case .ended(let taskID):
                        running.removeValue(forKey: taskID)?.stop.finish()
                        endedSinceLastChange.insert(taskID)
                    case .startDeferred(let taskID):
                        // Tried again once the executor has registered (the fence opening wakes this loop).
                        running.removeValue(forKey: taskID)?.stop.finish()
                        // Kept at a graceful stop as running, it never ran: it goes back now, as
                        // the tasks not started did, rather than wait out the grace period.
                        if shuttingDown { try await handBack(keeping: Set(running.keys)) }
                    case .handlerReturned(let taskID):
                        running[taskID]?.slots = 0
                    case .stateChanged:
                        endedSinceLastChange = []
                    case .inboxChanged:
                        inbox.inboxChanged()
                    case .inbox(let names):
                        inbox.listed(names)
                    case .claimed(let reservation, let outcome):
                        inbox.answered(reservation, outcome)
                        switch outcome {
                        case .task(let task, _, _, let sentAt, let cancelling):
                            // (Not a ternary: Swift 6.3 failed to type-check one here.)
                            var onceNamed: (@Sendable () -> Void)?
                            if !cancelling.isEmpty { onceNamed = { [claimer] in claimer.cancelReservations(cancelling) } }
                            await writer.claim(task, sentAt: sentAt, onceNamed: onceNamed)
                        case .unreadable(let task, let reason):
                            // Recorded as a run that failed at once, through the way every end goes.
                            await writer.claim(task)
                            let (_, stop) = AsyncStream.makeStream(of: Void.self)
                            running[task.placementKey] = (stop, 0)
                            group.addTask { [self] in
                                await finish(task.placementKey, .failed(reason, timedOut: false))
                                emit.yield(.ended(taskID: task.placementKey))
                            }
                        case .none, .later:
                            break
                        }
                    }
                    // Both a new state and a freed slot can start tasks: an end is written
                    // before `.ended` arrives here, so the manager's next assignment may come
                    // first and find the slots still taken. The writer's newest state is at least
                    // as new as both (it holds this executor's own writes too).
                    if shuttingDown && running.isEmpty { break }
                    let state = await writer.newest() ?? ExecutorState(executor: id)
                    let live = Dictionary(state.tasks.filter { !$0.state.isFinished }.map { ($0.placementKey, $0) }, uniquingKeysWith: { a, _ in a })
                    // Stop what was stopped or taken away (by the assignments: none read, none taken).
                    if await writer.hasAssignments {
                        for (taskID, run) in running where live[taskID] == nil || live[taskID]!.stopRequested {
                            run.stop.finish()
                        }
                    }
                    defer { ExecutorMetrics.slotsUsed.record(usedSlots()) }
                    guard !shuttingDown else {
                        await loads.update(ExecutorLoad(slots: configuration.capacity.slots, running: handlersRunning(), reserved: inbox.waiting, draining: true))
                        continue
                    }
                    // Tasks stopped before they started here go through `execute` too: it records
                    // their end, without which the manager would wait for them forever. Claimed
                    // tasks first: each was claimed with a slot free for it — unless too old to be
                    // sure the leader has not taken it over: that one waits for its adoption.
                    let toStart = state.tasks.filter { $0.claimed != nil } + state.tasks.filter { $0.claimed == nil }
                    // Until registered in this session (its progress written and its assignments
                    // read again after), nothing starts: see allowStartsAfterRegistering().
                    let mayStart = await writer.startsAllowed()
                    let awaitingAdoption = await writer.claimsAwaitingAdoption(
                        among: Set(toStart.filter { $0.claimed != nil && !$0.state.isFinished && running[$0.placementKey] == nil }.map(\.placementKey)))
                    for task in toStart
                    where mayStart && !task.state.isFinished && task.handedBack != true && running[task.placementKey] == nil
                        && !endedSinceLastChange.contains(task.placementKey) && !awaitingAdoption.contains(task.placementKey)
                    {
                        guard usedSlots() + task.resources.slots <= configuration.capacity.slots else { break }
                        let (stopSignal, stop) = AsyncStream.makeStream(of: Void.self)
                        running[task.placementKey] = (stop, task.resources.slots)
                        group.addTask { [self] in
                            let ran = await execute(task, stopSignal: stopSignal) { emit.yield(.handlerReturned(taskID: task.placementKey)) }
                            emit.yield(ran ? .ended(taskID: task.placementKey) : .startDeferred(taskID: task.placementKey))
                        }
                    }
                    let waitingToStart = state.tasks.filter { !$0.state.isFinished && $0.handedBack != true && running[$0.placementKey] == nil }
                    // A claimed task that must wait for room (the slots it needs are taken) is named
                    // in the progress now: the leader takes over no claim its claimant's progress names.
                    if waitingToStart.contains(where: { $0.claimed != nil }) { await writer.recordWaitingClaims() }
                    // Slots still free take reservations: a claim each (one multi for them all, and
                    // none while the last is in flight), answered with a task or none. While the
                    // leader is behind with recording what this executor claimed, none.
                    var free = configuration.capacity.slots - usedSlots() - inbox.inFlight - waitingToStart.count
                    if await writer.unadoptedClaims >= StateWriter.maximumUnadoptedClaims || state.draining { free = 0 }
                    if inbox.shouldList(free: free) { requestListing.yield() }
                    let batch = inbox.nextBatch(free: free)
                    if !batch.isEmpty {
                        group.addTask {
                            for (reservation, outcome) in await claimer.claim(reservations: batch) {
                                emit.yield(.claimed(reservation: reservation, outcome))
                            }
                        }
                    }
                    await loads.update(
                        ExecutorLoad(
                            slots: configuration.capacity.slots, running: handlersRunning() + waitingToStart.count, reserved: inbox.waiting,
                            draining: state.draining))
                }
                // Units running finish and their ends are written, or they are handed back.
                await unitControl?.waitUntilStopped()
                deregistering.withLock { $0 = true }
                try? await client.delete(layout.executorAlive(id))
                // After the registration: the leader must not see a leaving executor as alive a
                // round trip longer than before (it places on it, and then waits out the grace period).
                try? await client.delete(layout.executorLoad(id))
                logger.info("executor deregistered")
                group.cancelAll()
            }
        } onGracefulShutdown: {
            emit.yield(.shutdown)
        }
    }

    /// Creates this executor's progress document (empty) unless it exists; the writer starts from
    /// what is there (so progress garbled before its watch first reads keeps what an earlier run of
    /// this executor recorded).
    func createProgressIfMissing() async throws {
        if let existing = try await document.read() {
            await writer.observed(progress: existing)
            return
        }
        do {
            await writer.observed(progress: try await document.create(ExecutorProgress(executor: configuration.id), acl: acl(.executorNode(configuration.id))))
        } catch let error as ZooKeeperError where error.code == .nodeExists {}
    }

    /// Remembers which runs the assignments hold unfinished (for the output server).
    private func noteHeldRuns() async {
        let state = await writer.newest()
        heldRuns.withLock {
            $0 = Dictionary(
                (state?.tasks.filter { !$0.state.isFinished } ?? []).map { ($0.id, $0.method) }, uniquingKeysWith: { first, _ in first })
        }
    }

    /// The progress znode holds something that is not progress (another program wrote it): keeps
    /// it aside for inspection (`unreadable-progress`) and writes back the last progress this
    /// executor saw, in one transaction — so its running tasks go on, their ends can be recorded,
    /// and the leader can read it again. Nothing is silently killed.
    func repairUnreadableProgress(_ node: NodeData, _ error: any Error) async {
        let id = configuration.id
        let asidePath = layout.executorUnreadableProgress(id)
        // None seen (made anew with the tree): empty is what it knows.
        let good = await writer.progressToRestore() ?? Versioned(document: ExecutorProgress(executor: id), version: -1)
        do {
            // The aside node replaced in the same transaction: two repairs of the same garbage (its
            // watch's, and registering again's) cannot leave it deleted, the second fails whole.
            var operations: [MultiOperation] = []
            if let aside = try await client.exists(asidePath) { operations.append(.delete(path: asidePath, version: aside.version)) }
            operations.append(.create(path: asidePath, data: node.data, acl: acl(.executorNode(id))))
            operations.append(try document.writeOperation(good.document, over: node.stat.version))
            let results = try await client.multi(operations)
            // Held as written: the next write starts from it, and its watch does not read it back.
            if case .dataSet(let stat)? = results.last { await writer.observed(progress: Versioned(document: good.document, version: stat.version)) }
            logger.error(
                "this executor's progress is not a valid document: kept aside, and the last good progress written back",
                metadata: ["path": "\(document.path)", "version": "\(node.stat.version)", "aside": "\(asidePath)", "error": "\(error)"])
        } catch {
            // Changed again meanwhile (or repaired by another part of this executor): the next
            // notification, or the next try at registering, decides again.
            logger.notice("this executor's progress changed before it could be restored", metadata: ["error": "\(error)"])
        }
    }

    /// Marks the unfinished tasks not in `keeping` (placement keys) handed back (one write), so
    /// the manager moves them now instead of after the grace period.
    private func handBack(keeping: Set<String>) async throws {
        let handedBack = try await writer.handBack(keeping: keeping)
        if handedBack > 0 { logger.info("handed back unfinished tasks", metadata: ["tasks": "\(handedBack)"]) }
    }

    // MARK: Registration (the steps are in Executor+Registration.swift)

    /// The session that owns this executor's liveness node (set by ``register()``).
    let registeredSession = Mutex<Int64?>(nil)

    /// True from the moment the executor deregisters at shutdown: its liveness node's removal is
    /// then its own doing, not something to repair.
    let deregistering = Mutex(false)

    /// Tells the main loop that tasks may start (set by ``run()`` while it runs).
    let wakeLoop = Mutex<(@Sendable () -> Void)?>(nil)

    // MARK: Running a task

    private enum Outcome: Sendable {
        case succeeded(JSONValue?)
        case failed(String, timedOut: Bool)
        case stopped

        /// The outcome's name in metrics.
        var name: String {
            switch self {
            case .succeeded: "succeeded"
            case .failed(_, let timedOut): timedOut ? "timedOut" : "failed"
            case .stopped: "stopped"
            }
        }
    }

    /// Runs a task: records its start, runs its handler, calls `handlerReturned` once the
    /// handler is done with its slot, and records its end. Returns false when the start was not
    /// written because the executor is not registered in this session yet (nothing ran).
    private func execute(_ assigned: TaskRecord, stopSignal: AsyncStream<Void>, handlerReturned: @Sendable () -> Void = {}) async -> Bool {
        let taskID = assigned.placementKey
        // Mark it running (one more attempt), unless it was stopped or taken away meanwhile.
        // The state writer retries a lost answer; a retry finds the start already written if
        // the lost answer was a success, so it is not counted twice.
        let startedAt = Timestamp.now()
        let started: TaskRecord?
        // The start fence is checked as the start is written, not only when it was decided: a write
        // held up by a lost connection goes out in the next session, maybe before this executor
        // registered in it.
        let deferred = StartDeferral()
        do {
            started = try await writer.update(taskID, deferred: deferred) { task in
                if task.state == .running && task.startedAt == startedAt { return true }
                guard !task.stopRequested else { return false }
                task.state = .running
                task.attempts += 1
                task.startedAt = startedAt
                return true
            }
        } catch {
            logger.warning("could not mark a task running", metadata: ["task": "\(taskID)", "error": "\(error)"])
            return true
        }
        // Not started until this executor has registered again: tried again when it has.
        if deferred.isSet {
            logger.info("a task waits for this executor to register again before it starts", metadata: ["task": "\(taskID)"])
            return false
        }
        // Declined: a stop came first (the end is recorded as stopped), or the task is no longer
        // this executor's (then recording changes nothing).
        guard let started else {
            await finish(taskID, .stopped)
            return true
        }
        // A claim the leader has not adopted whose start was written past its window (the write
        // waited out a lost connection) may have been taken over before the write landed: it runs
        // once the leader adopts it, and not if that says stop (the wait is in the handler's
        // task below, so a stop or hand-back meanwhile ends it as it ends a handler).
        let startsOnAdoption = await writer.claimStartWasLate(taskID)
        if startsOnAdoption {
            logger.info(
                "a claimed task's start was recorded too late to be sure the leader had not taken it over: it runs once the leader adopts it",
                metadata: ["task": "\(taskID)"])
        }
        // The first start of a placement only (a resumed one measures the restart instead).
        if started.attempts == 1, startedAt >= started.assignedAt {
            ExecutorMetrics.startDelay.recordMilliseconds(startedAt - started.assignedAt)
        }
        guard let handler = handlers[started.method] else {
            await finish(taskID, .failed("this executor has no method \"\(started.method)\" (it has: \(handlers.keys.sorted().joined(separator: ", ")))", timedOut: false))
            return true
        }
        let context = TaskContext(
            job: started.job, run: started.run, attempt: started.attempts, arguments: started.arguments,
            checkpoint: started.checkpoint,
            saveCheckpoint: { [self] checkpoint in
                _ = try await updateTask(taskID) { task in
                    task.checkpoint = checkpoint
                    return true
                }
            },
            shared: SharedData(
                // Only a workflow step's run has shared data (a plain job would leave documents
                // that nothing removes).
                document: started.step == nil
                    ? nil : SharedDocument(zookeeper: client, layout: layout, acl: { [self] path in access.withLock { $0 }.acl(at: path, in: layout) }),
                job: started.job),
            inject: { [self] steps in
                let added = try await updateTask(taskID) { task in
                    // A run started again (its executor restarted) injects again: once per id.
                    let known = Set((task.inject ?? []).map(\.id))
                    let all = (task.inject ?? []) + steps.filter { !known.contains($0.id) }
                    guard let size = try? Codec.encode(all).count, size <= TaskContext.maximumInjectedBytes else { return false }
                    task.inject = all
                    return true
                }
                if added == nil {
                    throw DroverError(.invalidSpec, "the steps this run injected would pass \(TaskContext.maximumInjectedBytes) bytes in all (or the run is gone)")
                }
            })
        logger.debug("task started", metadata: ["task": "\(taskID)", "attempt": "\(started.attempts)"])
        let outcome = await withTaskGroup(of: Outcome?.self) { [writer] group in
            group.addTask {
                if startsOnAdoption {
                    await writer.waitUntilAnswered(taskID)
                    if Task.isCancelled { return nil }
                    let adopted = await writer.newest()?.tasks.first { $0.placementKey == taskID }
                    guard let adopted, !adopted.stopRequested, !adopted.state.isFinished, adopted.handedBack != true else { return .stopped }
                }
                do {
                    return .succeeded(try await handler(context))
                } catch is CancellationError {
                    return nil
                } catch {
                    return .failed("\(error)", timedOut: (error as? DroverError)?.code == .timedOut)
                }
            }
            group.addTask {
                for await _ in stopSignal {}
                return Task.isCancelled ? nil : .stopped
            }
            defer { group.cancelAll() }
            return await group.next() ?? nil
        }
        guard let outcome else { return true }  // the executor itself is stopping: the run resumes later
        handlerReturned()
        await finish(taskID, outcome)
        return true
    }

    private func finish(_ taskID: String, _ outcome: Outcome) async {
        var outcome = outcome
        if case .succeeded(let result) = outcome, let result,
            let size = try? Codec.encode(result).count, size > configuration.maximumResultBytes
        {
            outcome = .failed(
                "the result is \(size) bytes, over the limit of \(configuration.maximumResultBytes): return a reference, not the data", timedOut: false)
        }
        ExecutorMetrics.ended(outcome.name)
        do {
            try await recordEnd(taskID, outcome)
            logger.debug("task ended", metadata: ["task": "\(taskID)", "outcome": "\(outcome)"])
        } catch {
            logger.warning("could not record a task's end", metadata: ["task": "\(taskID)", "error": "\(error)"])
        }
    }

    private func recordEnd(_ taskID: String, _ outcome: Outcome) async throws {
        let finalOutcome = outcome
        _ = try await updateTask(taskID) { task in
            task.endedAt = .now()
            switch finalOutcome {
            case .succeeded(let result):
                task.state = .succeeded
                task.result = result
            case .failed(let error, let timedOut):
                task.state = .failed
                task.error = Bounds.truncated(error, toBytes: Bounds.errorBytes)
                task.timedOut = timedOut ? true : nil
            case .stopped:
                task.state = .failed
                task.error = "stopped"
            }
            return true
        }
    }

    /// Applies `change` to one task of this executor's state. Returns the updated task, or nil
    /// when the task is gone or `change` declined.
    private func updateTask(_ taskID: String, _ change: @escaping @Sendable (inout TaskRecord) -> Bool) async throws -> TaskRecord? {
        try await writer.update(taskID, change)
    }
}

/// Keeps the executor's view of its tasks — the leader's assignments with its own progress laid
/// over them — and funnels every change the executor makes to its progress into as few
/// compare-and-set writes as possible: changes that arrive while a write is in flight are applied
/// together by the next one. Many tasks finishing at once then cost one write, not one each.
actor StateWriter {
    typealias Change = @Sendable (inout TaskRecord) -> Bool
    /// A change to one task; a start's is applied only while ``startFence`` allows it, and says
    /// so in `deferred` when it does not.
    struct TaskChange: Sendable {
        let taskID: String
        let change: Change
        var deferred: StartDeferral? = nil
    }
    private struct Pending {
        let change: TaskChange
        let continuation: CheckedContinuation<TaskRecord?, any Error>
    }

    /// When starts may be written (``Executor/allowStartsAfterRegistering()``).
    let startFence = StartFence()

    let document: VersionedDocument<ExecutorProgress>
    private var pending: [Pending] = []
    private var writing = false
    /// The newest assignments seen through their watch.
    private var assignments: Versioned<ExecutorState>? {
        didSet { merged = nil }
    }
    /// The newest progress seen (written here or watched): a write starts from it instead of
    /// reading first, and reads only when someone wrote since.
    private var progress: Versioned<ExecutorProgress>? {
        didSet { merged = nil }
    }

    /// Tasks this executor claimed on the direct path that its assignments do not hold yet (the
    /// leader adopts them into the assignments), by placement key.
    private var claimed: [String: TaskRecord] = [:] {
        didSet { merged = nil }
    }

    /// ``newest()`` as last made, until one of the three above changes: the main loop asks for it
    /// after every event, and making it anew each time (merging and sorting by placement keys,
    /// strings built per comparison) was a third of an executor's CPU on the direct path.
    private var merged: ExecutorState??

    /// The tasks as this executor knows them: the assignments with its progress, and the tasks it
    /// claimed that the leader has not adopted yet (nil: no assignments yet, or deleted).
    func newest() -> ExecutorState? {
        if let merged { return merged }
        var made: ExecutorState?
        if var state = assignmentsOrNoneForClaims { made = Self.adding(claimed, to: &state).merging(progress?.document) }
        merged = .some(made)
        return made
    }

    /// Whether the leader's assignments were read (a new executor whose leader is down has none:
    /// it runs what it claims all the same).
    var hasAssignments: Bool { assignments != nil }

    /// The assignments; with none, empty ones while this executor holds claimed tasks.
    private var assignmentsOrNoneForClaims: ExecutorState? {
        assignments?.document ?? (claimed.isEmpty ? nil : ExecutorState(executor: progress?.document.executor ?? ""))
    }

    private static func adding(_ claimed: [String: TaskRecord], to state: inout ExecutorState) -> ExecutorState {
        guard !claimed.isEmpty else { return state }
        let assigned = Set(state.tasks.map(\.placementKey))
        // Ordered by the dictionary's keys (their placement keys), not by keys built per comparison.
        state.tasks += claimed.filter { !assigned.contains($0.key) }.sorted { $0.key < $1.key }.map(\.value)
        return state
    }

    /// A task claimed on the direct path with a claim sent at `sentAt`: run like an assigned one
    /// from now on — at once while the claim is fresh, else once the leader adopts it
    /// (``ClaimStartGate``).
    ///
    /// `onceNamed` runs when a progress write first names the task (its start, its wait for room,
    /// its end, or its hand-back), or when the leader answers the claim (adopts, collects or takes
    /// it over) before that.
    func claim(_ task: TaskRecord, sentAt: ContinuousClock.Instant? = nil, onceNamed: (@Sendable () -> Void)? = nil) {
        claimed[task.placementKey] = task
        startGate.claimed(task.placementKey, sentAt: sentAt)
        if let onceNamed { afterNamed[task.placementKey] = onceNamed }
    }

    /// What to do once the progress names a claimed task (``claim(_:sentAt:onceNamed:)``), by key.
    private var afterNamed: [String: @Sendable () -> Void] = [:]

    /// Runs what waited for the progress to name `keys` (or for the leader to answer their claims).
    private func runAfterNamed(_ keys: some Sequence<String>) {
        guard !afterNamed.isEmpty else { return }
        for key in keys { afterNamed.removeValue(forKey: key)?() }
    }

    /// Which unadopted claims may start without the leader's word.
    private var startGate: ClaimStartGate

    /// Of `candidates` (tasks about to start, by placement key), the claimed ones the leader has
    /// not adopted that must wait for it before they start.
    func claimsAwaitingAdoption(among candidates: Set<String>, at now: ContinuousClock.Instant = .now) -> Set<String> {
        let (waiting, late) = startGate.awaitingAdoption(candidates.filter { claimed[$0] != nil }, at: now)
        for key in late {
            logger.info(
                "a claimed task waits for the leader to adopt it before it starts: its claim is too old to be sure the leader has not taken it over",
                metadata: ["task": "\(key)"])
        }
        return waiting
    }

    /// Whether claimed task `key`, not adopted yet, had its start written too late (past the
    /// claim's window) to be sure the leader had not taken the claim over before: it then runs
    /// only once the leader adopts it (``waitUntilAnswered(_:)``).
    func claimStartWasLate(_ key: String, at now: ContinuousClock.Instant = .now) -> Bool {
        claimed[key] != nil && !startGate.isFresh(key, at: now)
    }

    /// Callers waiting for the leader to answer (adopt or collect) a claim, by key.
    private var answerWaiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    /// Waits until claim `key` is answered by the assignments, or the calling task is cancelled.
    func waitUntilAnswered(_ key: String) async {
        guard claimed[key] != nil else { return }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if claimed[key] == nil || Task.isCancelled {
                    continuation.resume()
                } else {
                    answerWaiters[key, default: []].append(continuation)
                }
            }
        } onCancel: {
            Task { await self.releaseWaiters(of: key) }
        }
    }

    private func releaseWaiters(of key: String) {
        for waiter in answerWaiters.removeValue(forKey: key) ?? [] { waiter.resume() }
    }

    /// Claimed tasks the leader has not adopted yet (started, running or ended).
    var unadoptedClaims: Int { claimed.count }

    /// Names in the progress the claimed tasks it does not name yet (they wait for room): asked
    /// for together, so the writer puts them in one write (two when one is under way), where one
    /// after another cost a write each.
    func recordWaitingClaims() async {
        let named = Set(progress?.document.tasks.map(\.placementKey) ?? [])
        await withTaskGroup(of: Void.self) { group in
            for key in claimed.keys where !named.contains(key) {
                group.addTask { _ = try? await self.update(key) { _ in true } }
            }
        }
    }

    /// Claimed tasks an executor holds unadopted at most before it claims more: when the leader
    /// falls behind, executors wait for it rather than grow their progress without bound.
    static let maximumUnadoptedClaims = 64

    /// Claimed tasks the progress names that this executor does not hold in memory (it restarted):
    /// taken up again — those the leader adopted or collected leave once the assignments say so.
    private func restoreClaims() {
        guard let progress = progress?.document else { return }
        let answered = assignments?.document.answeredClaims ?? []
        for entry in progress.tasks where entry.claimed != nil && !answered.contains(entry.placementKey) && claimed[entry.placementKey] == nil {
            let claim = entry.claimed!
            var task = TaskRecord(job: entry.job, run: entry.run, method: claim.method, arguments: claim.arguments, resources: claim.resources)
            task.step = ClaimedTask.stepID(claim.index)
            task.placement = entry.placement
            task.claimed = claim
            claimed[task.placementKey] = task
        }
    }


    /// The transaction that last wrote the assignments held (0: none held).
    private(set) var assignmentsZxid: Int64 = 0

    /// Remembers the assignments as read (`modifiedZxid`: the transaction that last wrote them),
    /// unless older than those held; nil: missing.
    func observed(assignments: Versioned<ExecutorState>?, modifiedZxid: Int64 = 0) {
        guard let assignments else {
            self.assignments = nil
            assignmentsZxid = 0
            return
        }
        if self.assignments == nil || modifiedZxid > assignmentsZxid {
            self.assignments = assignments
            assignmentsZxid = modifiedZxid
        }
        // Adopted by the leader (the assignments hold them from now on), or collected already.
        if !claimed.isEmpty {
            let answered = assignments.document.answeredClaims
            claimed = claimed.filter { !answered.contains($0.key) }
            startGate.keep(Set(claimed.keys))
            runAfterNamed(afterNamed.keys.filter { claimed[$0] == nil })
            for key in answerWaiters.keys where claimed[key] == nil { releaseWaiters(of: key) }
        }
    }

    /// The servers granted the session `timeout` (``ClaimStartGate/narrow(toHalfOf:)``).
    func sessionGranted(_ timeout: Duration) { startGate.narrow(toHalfOf: timeout) }

    /// Whether a start may be written now, going by the assignments this writer holds.
    func startsAllowed() -> Bool {
        startFence.allows(session: document.client.sessionCredentials?.id, assignmentsZxid: assignmentsZxid)
    }

    /// Writes the progress back as it is, so that its version moves on (a write the leader's
    /// take-back `multi` would see: ``Executor/allowStartsAfterRegistering()``). Nothing when it is
    /// missing.
    func touchProgress() async throws {
        let written = try await repeatingAfterLostAnswers(document.client, logger: logger, "writing the executor's progress after registering") {
            try await self.document.update(startingFrom: self.progress) { $0 }
        }
        if let written { observed(progress: written) }
    }

    /// Whether the progress this writer holds is at `version` (it wrote or read that version).
    func holdsProgress(version: Int32) -> Bool { progress?.version == version }

    /// Remembers a version of the progress seen through the watch (or written here).
    func observed(progress: Versioned<ExecutorProgress>?) {
        guard let progress else {
            self.progress = nil
            return
        }
        if progress.version > self.progress?.version ?? -1 { self.progress = progress }
        if !restoredClaims {
            restoredClaims = true
            restoreClaims()
        }
    }

    /// Whether the claims the progress names were taken up (once, at the first progress read:
    /// before the assignments, which a new executor whose leader is down may never get).
    private var restoredClaims = false

    let logger: Logger

    init(document: VersionedDocument<ExecutorProgress>, claimStartWindow: Duration = ClaimStartGate.defaultWindow, logger: Logger) {
        self.document = document
        self.startGate = ClaimStartGate(window: claimStartWindow)
        self.logger = logger
    }

    /// Applies `change` to the task (by placement key). The first caller while no write is in
    /// flight does the writing, for itself and for everyone who queued up behind it meanwhile.
    /// A start passes `deferred`: applied only while the start fence allows it (else nil, and
    /// `deferred` says why).
    func update(_ taskID: String, deferred: StartDeferral? = nil, _ change: @escaping Change) async throws -> TaskRecord? {
        let change = TaskChange(taskID: taskID, change: change, deferred: deferred)
        if writing {
            return try await withCheckedThrowingContinuation { continuation in
                pending.append(Pending(change: change, continuation: continuation))
            }
        }
        writing = true
        defer { finishedWriting() }
        // Changes made together (the starts of the tasks one assignment brought, ends that
        // come at once) are usually a few ready tasks apart: letting them queue up first turns
        // them into one write, where the first would otherwise go alone.
        await Task.yield()
        let own: Result<TaskRecord?, any Error>
        do {
            own = .success(try await write([change] + takePending()))
        } catch {
            own = .failure(error)
        }
        while !pending.isEmpty { _ = try? await write(takePending()) }
        return try own.get()
    }

    /// Marks every unfinished task whose placement key is not in `keeping` handed back, in one
    /// write. Returns how many.
    func handBack(keeping: Set<String>) async throws -> Int {
        await waitForWrites()
        writing = true
        defer { finishedWriting() }
        let handing = (newest()?.tasks ?? []).filter { !$0.state.isFinished && !keeping.contains($0.placementKey) }
        let changes: [TaskChange] = handing.map { task in
            TaskChange(taskID: task.placementKey) { task in
                task.handedBack = true
                return true
            }
        }
        let handed: Result<Int, any Error>
        do {
            handed = .success(changes.isEmpty ? 0 : try await apply(changes).compactMap { $0 }.count)
        } catch {
            handed = .failure(error)
        }
        // Changes queued behind this write (a running task's checkpoint, its end) are written
        // next, as `update` does: left queued, their callers would wait for ever — seen as an
        // executor that never exited after SIGTERM with --on-stop hand-back, its task's handler
        // stuck in saveCheckpoint.
        while !pending.isEmpty { _ = try? await write(takePending()) }
        return try handed.get()
    }

    private var waiting: [Pending] = []
    /// Callers waiting for the write in flight (and those queued behind it) to finish.
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []

    private func finishedWriting() {
        writing = false
        let waiters = idleWaiters
        idleWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once no write is in flight (nothing suspends after that before the caller goes on).
    private func waitForWrites() async {
        while writing { await withCheckedContinuation { idleWaiters.append($0) } }
    }

    /// The progress to write back over garbage: the newest this executor knows once every write
    /// it has in flight has landed or failed. Taken while one is in flight, it could be older than
    /// a start or an end that landed before the garbage — written back, that would lose it (seen in
    /// `make chaos-long SEED=10`: runs recorded as ended by attempt 0 that their handler ran as 1).
    func progressToRestore() async -> Versioned<ExecutorProgress>? {
        await waitForWrites()
        return progress
    }

    private func takePending() -> [TaskChange] {
        waiting += pending
        defer { pending = [] }
        return pending.map(\.change)
    }

    /// One compare-and-set applying every change; resumes the queued callers among them.
    private func write(_ changes: [TaskChange]) async throws -> TaskRecord? {
        let callers = waiting
        waiting = []
        let results: [TaskRecord?]
        do {
            // Given up on, a start or an end that did not land leaves the task looking assigned
            // or running with nothing to make the executor look again: a lost answer is retried
            // once connected. Safe to repeat: the compare-and-set re-applies the changes to what
            // is there (finished tasks are skipped; a start recognises itself).
            results = try await repeatingAfterLostAnswers(document.client, logger: logger, "writing the executor's progress") {
                try await self.apply(changes)
            }
        } catch {
            for caller in callers { caller.continuation.resume(throwing: error) }
            throw error
        }
        // The callers queued behind are the last entries of `changes`.
        let offset = changes.count - callers.count
        for (index, caller) in callers.enumerated() { caller.continuation.resume(returning: results[offset + index]) }
        return offset > 0 ? results[0] : nil
    }

    /// One compare-and-set applying `changes` to the progress; returns each changed task (nil:
    /// not changed). The progress written holds an entry for each assigned task that has one or
    /// is changed now: entries of tasks no longer assigned leave with it.
    private func apply(_ changes: [TaskChange]) async throws -> [TaskRecord?] {
        var results = [TaskRecord?](repeating: nil, count: changes.count)
        guard var assignments = assignmentsOrNoneForClaims else { return results }
        // The assignments this write goes by: a start is written only on assignments read after
        // the registration (the closure below can run again after a conflict, with this same copy).
        let assignmentsZxid = self.assignmentsZxid
        let startFence = self.startFence
        let client = document.client
        assignments = Self.adding(claimed, to: &assignments)
        let keepsEveryEntry = !hasAssignments
        let written = try await document.update(startingFrom: progress) { progress in
            // Run again after a conflict: what an earlier try changed was not written.
            for index in results.indices { results[index] = nil }
            // Missing (gone with the tree): made again when registering, not here without its ACL.
            guard let progress else { return nil }
            var merged = assignments.merging(progress)
            let recorded = Set(progress.tasks.map(\.placementKey))
            var changedKeys: Set<String> = []
            for (index, change) in changes.enumerated() {
                // A finished or handed-back task is no longer this executor's to change.
                guard let position = merged.tasks.firstIndex(where: { $0.placementKey == change.taskID }),
                    !merged.tasks[position].state.isFinished, merged.tasks[position].handedBack != true
                else { continue }
                if let deferred = change.deferred {
                    let allowed = startFence.allows(session: client.sessionCredentials?.id, assignmentsZxid: assignmentsZxid)
                    deferred.set(!allowed)
                    guard allowed else { continue }
                }
                if change.change(&merged.tasks[position]) {
                    results[index] = merged.tasks[position]
                    changedKeys.insert(change.taskID)
                }
            }
            guard !changedKeys.isEmpty else { return nil }
            var next = progress
            next.tasks = merged.tasks.filter { recorded.contains($0.placementKey) || changedKeys.contains($0.placementKey) }
                .map(TaskProgress.init(of:))
            if keepsEveryEntry {
                // Without the leader's assignments nothing says which entries are done with (a claim
                // made before they were first read, its leader down): every entry stays.
                let kept = Set(next.tasks.map(\.placementKey))
                next.tasks = progress.tasks.filter { !kept.contains($0.placementKey) } + next.tasks
            }
            return next
        }
        if let written { observed(progress: written) }
        // Lazily: most writes name no claim with something waiting (nothing is built for them).
        runAfterNamed(zip(changes, results).lazy.compactMap { $1 == nil ? nil : $0.taskID })
        return results
    }
}
