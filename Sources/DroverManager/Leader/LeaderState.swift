import DroverProtocol
import ZKRecipes
import ZooKeeper

/// The leader's decisions, without I/O: what it knows of the cluster, and what to do next.
///
/// In the style of postgres-nio's `PoolStateMachine`: inputs are `mutating` functions — an
/// executor's state or liveness changed, a queue batch was taken, records were read, a
/// transaction committed or conflicted — and planning functions return a ``Step``: read these
/// records, commit this ``Transaction``, or nothing. The ``LeaderLoop`` does the reading, the
/// committing and the waiting, and feeds the results back; the clock comes in as arguments. So
/// every decision is tested without a server (`LeaderStateTests`).
///
/// Where each rule lives: placement in ``place(_:now:into:)`` (with `Placement` in DroverProtocol),
/// collection and the next run of each kind in `LeaderState+Collection.swift`, schedules and the
/// waiting line in `LeaderState+Placement.swift`, take-back after the grace period in
/// `LeaderState+Reclaim.swift`, queue operations in `LeaderState+Queue.swift`.
struct LeaderState {
    struct Configuration: Sendable {
        /// How long an executor may stay unregistered before its tasks are taken back.
        var gracePeriod: Duration
        /// Runs kept in each job's history.
        var historyLimit: Int
        /// Queue items taken per transaction at most.
        var batchSize: Int
        /// How an infinite job whose runs fail waits before running again.
        var restartBackoff = RestartBackoff()
        /// This leader's term (its election node's sequence): placement ids begin with it, so no
        /// two leaders make the same one.
        var term: Int64 = 0
    }

    /// The crash-loop back-off of infinite jobs.
    struct RestartBackoff: Sendable {
        /// The wait after the first failure; doubled after each further one in a row.
        var initial: Duration = .seconds(1)
        var maximum: Duration = .seconds(300)
        /// A failed run that lasted this long starts the count again.
        var resetAfter: Duration = .seconds(60)
    }

    struct ExecutorEntry {
        var registration: ExecutorRegistration? {
            didSet { methods = registration?.methods.map(Set.init) }
        }
        /// The registration's methods as a set (placement asks for each job of a waiting line).
        private(set) var methods: Set<String>?
        /// The leader's assignments as last read or written, at their version (nil: missing, or
        /// not a document the leader reads — the executor is left out of placement).
        private(set) var assignments: Versioned<ExecutorState>?
        /// The executor's progress as last read (nil: none yet, or unreadable).
        private(set) var progress: Versioned<ExecutorProgress>?
        /// The progress is there but cannot be read (garbled, or its ACL keeps the leader out):
        /// nothing is taken back from the executor until it reads again — its runs may have ended.
        private(set) var progressUnreadable = false
        /// The two as one view, at the assignments' version: what every decision reads.
        private(set) var state: Versioned<ExecutorState>?
        private var assignmentsBytes = 0
        private var progressBytes = 0
        /// The encoded size of both documents (placement keeps it under ExecutorState.maximumEncodedBytes).
        var stateBytes: Int { assignmentsBytes + progressBytes }

        mutating func setAssignments(_ assignments: Versioned<ExecutorState>?, bytes: Int) {
            self.assignments = assignments
            assignmentsBytes = bytes
            merge()
        }

        mutating func setProgress(_ progress: Versioned<ExecutorProgress>?, bytes: Int, unreadable: Bool = false) {
            self.progress = progress
            goneConfirmed = false
            progressRead = true
            progressUnreadable = unreadable
            progressBytes = bytes
            merge()
        }

        private mutating func merge() {
            state = assignments.map { Versioned(document: $0.document.merging(progress?.document), version: $0.version) }
            // Claims the assignments neither hold nor name as collected: the leader adopts them.
            let claims = progress?.document.tasks.filter { $0.claimed != nil } ?? []
            if claims.isEmpty {
                unadopted = []
            } else {
                let answered = assignments?.document.answeredClaims ?? []
                unadopted = claims.filter { !answered.contains($0.placementKey) }
            }
        }
        /// Tasks this executor claimed on the direct path that the leader has not answered yet
        /// (`LeaderState+Direct.swift`).
        private(set) var unadopted: [TaskProgress] = []
        var goneSince: ContinuousClock.Instant?
        /// This leader has read the executor's liveness node, and its progress (present or not),
        /// at least once: until then what it knows of them is nothing, not "gone" or "no claims".
        var livenessRead = false
        /// When its registration was made (its liveness node's creation, ZooKeeper's clock).
        var registeredAt: Timestamp?
        private(set) var progressRead = false
        /// A read of its liveness node after the leader's last look at its progress found no
        /// registration: its tasks may be taken back as a dead executor's. The registration's watch
        /// may lag; an executor that registers again writes its progress before it starts anything,
        /// so it either registered before that read, or changes the progress version the take-back's
        /// `multi` checks (PROTOCOL.md, "Executor registration"). Any new look at the progress, or a
        /// registration, makes it unconfirmed again.
        var goneConfirmed = false

        init(goneSince: ContinuousClock.Instant? = nil) { self.goneSince = goneSince }
    }

    /// A record as this leader last wrote it, with its version and encoded size.
    struct KnownRecord {
        var record: JobRecord
        var version: Int32
        var bytes: Int
    }

    /// What to do next.
    enum Step {
        /// Read these job records (absent ones too), then plan again with them.
        case read(Set<String>)
        /// Send this transaction, fenced; report the outcome with ``committed(_:_:)``,
        /// ``conflicted(on:)`` or ``overBudget(_:)``.
        case commit(Transaction)
        /// Read executor `id`'s registration — and its progress first, when none is held — then
        /// report with ``confirmedGone(_:)`` (no registration) or the inputs for what was read, and
        /// plan again. Asked before a dead executor's tasks are taken back, as the last look at it
        /// after the leader's last look at its progress (``ExecutorEntry/goneConfirmed``).
        case confirmGone(String)
        /// Nothing to write.
        case nothing
    }

    let configuration: Configuration

    // The leader's view. Changed only by this type's functions (in this file and its extensions).

    var executors: [String: ExecutorEntry] = [:]
    /// Jobs waiting for an executor with room, first come first.
    var waiting = WaitingLine()
    /// Scheduled jobs and when their next run is due.
    var scheduled: [String: Timestamp] = [:]
    /// Records of running and waiting jobs as this leader last wrote them, with their versions.
    /// Once the leader has written a record it is the record's only writer (clients go through
    /// the queue), so placing a waiting job or collecting a finished run needs no read.
    /// Forgotten on any conflict over a record; waiting ones are kept up to ``knownWaitingBytesLimit``.
    var known: [String: KnownRecord] = [:]
    /// The encoded size of the waiting jobs' records in ``known``.
    var knownWaitingBytes = 0
    /// The running jobs in ``known``, by the executor their run was placed on: an executor's state
    /// that lacks one of them lost that placement (``planReclaim(at:wallClock:loaded:)`` takes it back).
    var runningOn: [String: Set<String>] = [:]
    /// Executors whose assignments were read (not written by this leader) since their placements
    /// were last checked.
    var statesToCheck: Set<String> = []
    /// Running jobs found at start-up that this leader has not written yet (so not in ``known``):
    /// their runs are checked against the executors' assignments as its own placements are —
    /// assignments made anew (deleted by an operator, a tree made again) lost them, and nothing
    /// else would see it.
    var adopted: [String: JobRecord] = [:]
    /// Drains (true) and undrains (false) queued for executors whose state was not read yet.
    var pendingDrains: [String: Bool] = [:]
    /// Encoded bytes of waiting jobs' records the leader keeps in memory at most, besides those of
    /// running jobs (bounded by the executors' slots): the front of a deep waiting line, the part
    /// placed next (about 40,000 small records). Beyond it a waiting job's record is read when it
    /// is placed.
    static let knownWaitingBytesLimit = 16 * 1024 * 1024
    /// Jobs whose record, carried in their submit operation as created, was not at version 0 when
    /// written back (only a program other than Drover could have changed it): read instead.
    var distrustedCarriedRecords: Set<String> = []
    /// Something changed that may let a waiting job be placed.
    var capacityChanged = true
    /// Jobs on the direct path whose tasks wait for claims (`LeaderState+Direct.swift`).
    var directJobs: [String: DirectJob] = [:]
    /// Direct jobs that ended, with the executors of their reservations: their reservations and
    /// claims are still to clear.
    var directEnded: [String: DirectLeftovers] = [:]
    /// A direct job was started: claims of its tasks executors made before may wait for adoption.
    var adoptionDue = false
    /// The list of executors was read once: an executor not in it is none (before, every executor
    /// is unknown to a new leader, not gone).
    var executorListingRead = false

    /// Job records one transaction changes at most, to begin with. ZooKeeper refuses a `multi`
    /// over about 1 MB: a transaction whose encoding passes ``Transaction/byteBudget`` is not sent
    /// but planned again with half as many jobs (``jobLimit``).
    static let transactionJobLimit = 250
    /// Job records the next transaction may change: ``transactionJobLimit``, halved while
    /// transactions come out over the byte budget (large specs or results).
    var jobLimit = LeaderState.transactionJobLimit

    /// Operations per queue item, as recently seen: a bulk submit puts a hundred in one item, so a
    /// batch takes fewer items to stay within ``jobLimit`` jobs. It starts at a bulk submit's size
    /// and falls by half per batch of single operations, so the first batch after a run of single
    /// submits is not planned at a hundred times the limit.
    var operationsPerItem = QueueItemContent.maximumOperations
    /// The executor whose runs were last taken back (take-back goes round from the next one).
    var reclaimCursor: String?
    /// Transactions committed in this term: with the term, they make every transaction's
    /// placement ids unique (``Transaction/newPlacement()``).
    private var commits = 0

    /// Whether transactions keep the active-job index (``ActiveIndex``): an entry per waiting or
    /// running job, created and removed with the record's change. Off when the leader could not
    /// make the index (a deployment secured before it existed, until `drover init` runs again).
    var maintainsActiveIndex = false
    /// Jobs whose index entry is known to exist (or not) against what their stored state implies:
    /// learnt when a transaction failed on the entry (left by another program, or by a leader
    /// older than the index). Cleared for a job once a transaction has written its record.
    var activeEntryExists: [String: Bool] = [:]

    /// The ACLs of the nodes a transaction creates.
    struct ACLs {
        var setAsideItem: [ACL]
        var activeEntry: [ACL]
        /// Nodes anyone may do anything with (tests; an open deployment).
        static let open = ACLs(setAsideItem: ACL.openUnsafe, activeEntry: ACL.openUnsafe)
    }

    init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// A transaction planned on what the leader knows now and the records read for it.
    func newTransaction(loaded: [String: LoadedRecord], placesNothing: Bool = false) -> Transaction {
        Transaction(loaded: loaded, placesNothing: placesNothing, placementPrefix: "\(configuration.term).\(commits)")
    }

    // MARK: Inputs: what the leader learns

    /// The running jobs found when leadership began: their runs are checked like this leader's own.
    mutating func adoptRunning(_ records: [JobRecord]) {
        for record in records where !record.executorsOfRuns.isEmpty && known[record.id] == nil { adopted[record.id] = record }
    }

    /// The jobs that wait, found when leadership began (and running ones with a time due: a
    /// `replace` job's next time).
    mutating func loaded(waitingJobs: [JobRecord]) {
        for record in waitingJobs where record.spec.isWorkflow { fileWorkflow(record) }
        for record in waitingJobs where record.spec.overlap == .allow { fileConcurrentRuns(record) }
        for record in waitingJobs where !record.spec.isWorkflow && record.spec.overlap != .allow && !(record.suspended == true && record.triggered != true && record.nextRunAt == nil) {
            if record.state == .running {
                // A `replace` job's next time, kept while its run runs.
                if let due = record.nextRunAt { scheduled[record.id] = due }
                continue
            }
            if let due = record.nextRunAt { scheduled[record.id] = due } else { waiting.add(record) }
        }
    }

    /// An executor appeared in the executors directory. Unseen until its liveness is read, it
    /// counts as gone since `now`.
    mutating func executorListed(_ id: String, at now: ContinuousClock.Instant) {
        executorListingRead = true
        if executors[id] == nil { executors[id] = ExecutorEntry(goneSince: now) }
    }

    /// An executor's assignments as their watch read them (nil: missing, or not a document the
    /// leader reads — the executor is left out of placement until they read again). Returns false
    /// when the notification is older than what the leader wrote since (nothing changes).
    @discardableResult
    mutating func assignmentsChanged(_ id: String, _ assignments: Versioned<ExecutorState>?, bytes: Int) -> Bool {
        if let assignments, let current = executors[id]?.assignments, assignments.version < current.version { return false }
        assignmentsRead(id, assignments, bytes: bytes)
        return true
    }

    /// An executor's assignments as read after a conflict: taken as they are.
    mutating func assignmentsRead(_ id: String, _ assignments: Versioned<ExecutorState>?, bytes: Int) {
        if assignments != nil { statesToCheck.insert(id) }
        executors[id, default: ExecutorEntry()].setAssignments(assignments, bytes: bytes)
        capacityChanged = true
    }

    /// An executor's progress as its watch found it (nil: missing, or `unreadable` — its tasks look
    /// as placed until it reads again, and none is taken back). Returns false when it is older than
    /// the progress the leader holds.
    @discardableResult
    mutating func progressChanged(_ id: String, _ progress: Versioned<ExecutorProgress>?, bytes: Int, unreadable: Bool = false) -> Bool {
        if let progress, let current = executors[id]?.progress, progress.version < current.version { return false }
        progressRead(id, progress, bytes: bytes, unreadable: unreadable)
        return true
    }

    /// An executor's progress as read after a conflict: taken as it is.
    mutating func progressRead(_ id: String, _ progress: Versioned<ExecutorProgress>?, bytes: Int, unreadable: Bool = false) {
        executors[id, default: ExecutorEntry()].setProgress(progress, bytes: bytes, unreadable: unreadable)
        capacityChanged = true
    }

    /// An executor's liveness node changed: its registration, or nil when it is gone.
    mutating func livenessChanged(_ id: String, _ registration: ExecutorRegistration?, at now: ContinuousClock.Instant, registeredAt: Timestamp? = nil) {
        var entry = executors[id, default: ExecutorEntry()]
        entry.registration = registration
        entry.registeredAt = registration == nil ? nil : registeredAt
        entry.livenessRead = true
        entry.goneSince = registration == nil ? (entry.goneSince ?? now) : nil
        if registration != nil { entry.goneConfirmed = false }
        executors[id] = entry
        capacityChanged = true
    }

    /// A read of executor `id`'s liveness node, asked for by ``Step/confirmGone(_:)``, found no
    /// registration (or none the leader can read, which counts as gone, as its watch says).
    mutating func confirmedGone(_ id: String) {
        executors[id]?.goneConfirmed = true
    }

    /// Whether any executor holds finished runs to collect.
    var hasFinishedTasks: Bool {
        executors.values.contains { $0.state?.document.tasks.contains { $0.state.isFinished } == true }
    }

    // MARK: Inputs: how a transaction went

    /// The transaction committed: the states and records it wrote are the leader's view now.
    mutating func committed(_ transaction: Transaction, _ encoded: Transaction.Encoded) {
        commits += 1
        jobLimit = min(Self.transactionJobLimit, jobLimit * 2)  // back towards the full limit, step by step
        applyCapacitySignal(of: transaction)
        // Jobs filed as waiting without a look at the executors: the line is looked at next.
        if transaction.placesNothing { capacityChanged = true }
        // Each take-back looks again: with no progress version to check (none held), only that
        // look keeps a later batch from moving tasks an executor back meanwhile has started.
        if case (let executor, true, _)? = transaction.tookBack { executors[executor]?.goneConfirmed = false }
        for id in transaction.settledDrains { pendingDrains[id] = nil }
        for (id, draining) in transaction.deferredDrains { pendingDrains[id] = draining }
        if transaction.opensClaims { adoptionDue = true }
        for (id, written) in encoded.assignments {
            guard let base = executors[id]?.assignments else { continue }
            executors[id]?.setAssignments(Versioned(document: written, version: base.version + 1), bytes: encoded.stateBytes[id] ?? 0)
        }
        // Oldest first, so jobs that wait join the line in the order they were submitted; jobs of
        // the same millisecond (a bulk submit) in the order the transaction took them (queue order).
        let changed = transaction.changedJobs.compactMap { transaction.records[$0] }.sorted {
            ($0.record.submittedAt, transaction.changeOrder[$0.record.id] ?? 0) < ($1.record.submittedAt, transaction.changeOrder[$1.record.id] ?? 0)
        }
        for (record, version) in changed {
            let id = record.id
            activeEntryExists[id] = nil  // written with the record's change: as its state says now
            adopted[id] = nil  // this leader's own from now on
            if let previous = known.removeValue(forKey: id) {
                if previous.record.state == .waiting { knownWaitingBytes -= previous.bytes }
                for executor in previous.record.executorsOfRuns { runningOn[executor]?.remove(id) }
            }
            let bytes = encoded.recordBytes[id] ?? 0
            // A workflow is kept while a step runs (its steps' runs are on several executors).
            let keep =
                record.state == .running || !record.placedSteps.isEmpty
                || (record.state == .waiting && knownWaitingBytes + bytes <= Self.knownWaitingBytesLimit)
            if keep {
                known[id] = KnownRecord(record: record, version: version + 1, bytes: bytes)
                if record.state == .waiting { knownWaitingBytes += bytes }
                for executor in record.executorsOfRuns { runningOn[executor, default: []].insert(id) }
            }
            if record.spec.isWorkflow {
                fileWorkflow(record)
                continue
            }
            if record.spec.overlap == .allow {
                fileConcurrentRuns(record)
                continue
            }
            switch (record.state, record.nextRunAt) {
            case (.waiting, nil) where record.suspended == true && record.triggered != true:
                waiting.remove(id)  // waits for `resume`, not for room
                scheduled[id] = nil
            case (.waiting, nil):
                // A run that came due without room (a scheduled run, a retry, a restart after a
                // back-off) waits ahead of the line of its priority: it has waited its turn.
                waiting.add(record, urgent: scheduled[id] != nil)
                scheduled[id] = nil
            case (.waiting, let due?), (.running, let due?):
                // A scheduled time, a retry's or a back-off's; or, while a run runs, the next time
                // of a job whose overlap policy is `replace`.
                scheduled[id] = due
                waiting.remove(id)
            default:
                waiting.remove(id)
                scheduled[id] = nil
            }
        }
    }

    /// The transaction failed on the job's active-index entry: it exists when the transaction
    /// created it, or is missing when it removed it. The next transaction goes by that.
    mutating func activeEntryDisagreed(job id: String, exists: Bool) {
        capacityChanged = true
        if activeEntryExists.count >= 10_000 { activeEntryExists.removeAll() }
        activeEntryExists[id] = exists
    }

    /// What to read again after a conflict.
    enum Reread: Equatable {
        /// One executor's assignments or progress changed meanwhile (the common case).
        case executorState(String)
        /// Anything else: every executor's state (records are read afresh anyway).
        case everyExecutorState
    }

    /// The transaction failed because a state or record changed since it was read (`path`, when
    /// ZooKeeper said which). Records the leader knew are forgotten when a record changed.
    mutating func conflicted(on path: String?, layout: Layout) -> Reread {
        // The attempt may have consumed the signal that room changed: look at the line again.
        capacityChanged = true
        if let path, let id = layout.executorID(ofTasksAt: path), executors[id] != nil { return .executorState(id) }
        if let path, let id = layout.jobID(ofRecordAt: path) {
            if distrustedCarriedRecords.count >= 10_000 { distrustedCarriedRecords.removeAll() }
            distrustedCarriedRecords.insert(id)
        }
        known.removeAll()
        knownWaitingBytes = 0
        runningOn.removeAll()
        return .everyExecutorState
    }

    /// The planned transaction was over the byte budget. Returns true to plan again with fewer
    /// jobs; false when one job's transaction alone is over it (left undone rather than stop the
    /// leader, and every leader after it, for good).
    mutating func overBudget(_ error: Transaction.OverBudget) -> Bool {
        capacityChanged = true
        guard jobLimit > 1 else { return false }
        jobLimit = max(1, min(jobLimit, error.jobs) / 2)
        return true
    }

    /// The transaction's operations, on this view's versions.
    /// - Throws: ``Transaction/OverBudget`` when they would pass the byte budget.
    func encode(_ transaction: Transaction, layout: Layout, acls: ACLs) throws -> Transaction.Encoded {
        try transaction.encoded(layout: layout, in: self, acls: acls)
    }

    /// Ends planning that wrote nothing: the signal that room changed was looked at.
    mutating func finished(_ transaction: Transaction) { applyCapacitySignal(of: transaction) }

    /// The end of a planner: read what it asked for, or commit what it planned, or nothing.
    mutating func step(for transaction: Transaction) -> Step {
        if !transaction.unread.isEmpty { return .read(transaction.unread) }
        guard transaction.hasChanges else {
            finished(transaction)
            return .nothing
        }
        return .commit(transaction)
    }

    private mutating func applyCapacitySignal(of transaction: Transaction) {
        switch transaction.capacitySignal {
        case .untouched: break
        case .consumed: capacityChanged = false
        case .roomLeft: capacityChanged = true
        }
    }

    // MARK: Helpers for the planners

    /// Whether room changed, as this transaction sees it: the leader's signal, unless the
    /// transaction already looked (it is applied only once the transaction is final, so a plan
    /// made again after reading more sees the signal as it was).
    func capacitySignalPending(_ transaction: Transaction) -> Bool {
        switch transaction.capacitySignal {
        case .untouched: capacityChanged
        case .consumed: false
        case .roomLeft: true
        }
    }

    /// How many queue items to take next.
    var queueBatchItems: Int { max(1, min(configuration.batchSize, jobLimit / operationsPerItem)) }

    /// A batch of `items` queue items with `operations` operations in all was taken.
    mutating func took(operations: Int, items: Int) {
        guard items > 0 else { return }
        operationsPerItem = max(max(1, (operations + items - 1) / items), operationsPerItem / 2)
    }

    /// Views for tests and the loop's log.
    var waitingCount: Int { waiting.count }

    /// Executors alive and gone, and the slots of the alive ones: total, and held by runs.
    var cluster: (alive: Int, gone: Int, slotsUsed: Int, slotsTotal: Int) {
        var result = (alive: 0, gone: 0, slotsUsed: 0, slotsTotal: 0)
        for entry in executors.values {
            guard let registration = entry.registration else {
                result.gone += 1
                continue
            }
            result.alive += 1
            result.slotsTotal += registration.capacity.slots
            result.slotsUsed += entry.state?.document.held.slots ?? 0
        }
        return result
    }
    var scheduledCount: Int { scheduled.count }

    /// The jobs that wait or run, by what they wait for (``ActiveIndex/Counts``): running are the
    /// jobs with a run in an executor's state (ended but not collected included); scheduled, those
    /// with a time due and no run.
    var activeCounts: ActiveIndex.Counts { activeCounts(waitingForNoExecutor: waitingReasons().noExecutor) }

    /// ``activeCounts`` with the waiting jobs no executor could run counted already.
    func activeCounts(waitingForNoExecutor: Int) -> ActiveIndex.Counts {
        var running = Set<String>()
        for entry in executors.values {
            for task in entry.state?.document.tasks ?? [] { running.insert(task.job) }
        }
        let scheduledOnly = scheduled.keys.reduce(0) { $0 + (running.contains($1) ? 0 : 1) }
        return ActiveIndex.Counts(
            waiting: waiting.count, scheduled: scheduledOnly, running: running.count, waitingForNoExecutor: waitingForNoExecutor)
    }

    /// The waiting line by why it waits: `room` — an alive executor could run the job once it has
    /// room (or now, at the next placement); `noExecutor` — none could ever (its capacity, labels
    /// or methods). One placement decision per distinct demand in line (a handful, however long
    /// the line); past `demandLimit` of them the rest count as `room`, unlooked at.
    func waitingReasons(demandLimit: Int = 256) -> (room: Int, noExecutor: Int) {
        let views = newTransaction(loaded: [:]).views(in: self)
        var noExecutor = 0
        for (demand, jobs) in waiting.jobsPerDemand.prefix(demandLimit) where Placement.decide(demand, among: views).isImpossible {
            noExecutor += jobs
        }
        return (waiting.count - noExecutor, noExecutor)
    }
}
