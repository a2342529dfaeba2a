import DroverProtocol
import DroverStore
import Logging
import ZKRecipes
import ZooKeeper

/// One term of leadership: the I/O around ``LeaderState``, which makes every decision. It builds
/// the leader's view from ZooKeeper (it needs no memory of an earlier leader), then handles events
/// one at a time — queue items, executor state and liveness changes, timer ticks — by asking the
/// state what to do, reading the records it asks for, sending its transactions fenced by the
/// election node, and telling it how they went. Confined to the task running it.
final class LeaderLoop {
    enum Event: Sendable {
        case queueReady
        case executorsListed([String])
        /// The leader's assignments to an executor as read, and their encoded size.
        case assignments(String, Versioned<ExecutorState>?, bytes: Int)
        /// An executor's progress as read, its encoded size, and whether it is there but unreadable.
        case progress(String, Versioned<ExecutorProgress>?, bytes: Int, unreadable: Bool)
        case liveness(String, ExecutorRegistration?, registeredAt: Timestamp?)
        /// Collect finished runs: queued behind the state changes that asked for it, so every
        /// change that arrived meanwhile is collected in one transaction.
        case collect
        case tick
    }

    let leadership: Leadership
    let client: ZooKeeperClient
    let layout: Layout
    /// The ACLs of what the leader creates (docs/SECURITY.md).
    let access: Access
    let queue: DurableQueue
    let logger: Logger
    let tick: Duration
    let setAsideLimit: Int
    let retention: Duration?
    let maxWaiting: Int?
    let rebuildActiveIndex: Bool
    /// How long a direct job's tasks wait for executors' claims before the leader takes them over.
    let claimTimeout: Duration
    /// Finished direct jobs whose reservations and claims are to clear, for the task that clears them.
    var clearing: AsyncStream<[DirectClearing]>.Continuation?
    /// What the admission document last said (nil: not written in this term yet), when, and
    /// whether this manager may write it at all.
    var admissionFull: Bool?
    var admissionWaiting = 0
    var admissionWrittenAt = ContinuousClock.now
    var admissionWritable = true
    /// The active-job index's document as this leader last wrote or found it (nil: no index kept).
    var activeIndex: ActiveIndex?
    var countsWrittenAt = ContinuousClock.now - .seconds(60)
    var queueCountedAt = ContinuousClock.now - .seconds(60)
    let clock = ContinuousClock()
    var state: LeaderState

    init(manager: Manager, leadership: Leadership, access: Access) {
        self.leadership = leadership
        self.client = manager.client
        self.layout = manager.layout
        self.access = access
        self.queue = DurableQueue(
            client: manager.client, root: manager.layout.queue,
            acls: .init(root: access.acl(for: .queue), segment: access.acl(for: .queueSegment), item: access.acl(for: .queueItem)))
        self.logger = manager.logger
        self.tick = manager.configuration.tick
        self.setAsideLimit = manager.configuration.setAsideLimit
        self.retention = manager.configuration.retention
        self.maxWaiting = manager.configuration.maxWaiting
        self.rebuildActiveIndex = manager.configuration.rebuildActiveIndex
        self.claimTimeout = manager.configuration.claimTimeout
        self.state = LeaderState(
            configuration: .init(
                gracePeriod: manager.configuration.gracePeriod, historyLimit: manager.configuration.historyLimit,
                batchSize: manager.configuration.batchSize,
                restartBackoff: .init(initial: manager.configuration.restartBackoff, maximum: manager.configuration.restartBackoffMaximum),
                term: leadership.term))
    }

    func run() async throws {
        LeaderMetrics.terms.increment()
        LeaderMetrics.term.record(leadership.term)
        LeaderMetrics.leading.record(1)
        defer { LeaderMetrics.leading.record(0) }
        for path in [layout.queue, layout.executors, layout.assignments, layout.jobs, layout.setAside, layout.inbox, layout.claims] {
            do {
                try await client.createPath(path) { [access, layout] in access.acl(at: $0, in: layout) }
            } catch let error as ZooKeeperError where error.code == .noAuth {
                throw DroverError(
                    .notPermitted,
                    "this manager may not create \(path), which this version of Drover needs: an admin runs "
                        + "`drover init --credentials admin.json` once (it makes the nodes a new version adds; docs/DEPLOY.md)", cause: error)
            }
        }
        try await createShardDirectories()
        try await requeueBatchesSetAsideByOlderLeaders()
        try await loadJobs()

        let (events, emit) = AsyncStream.makeStream(of: Event.self)
        let (drained, signalDrained) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { [queue] in
                var drainedSignals = drained.makeAsyncIterator()
                while true {
                    try await queue.waitForItems()
                    emit.yield(.queueReady)
                    guard await drainedSignals.next() != nil else { return }
                }
            }
            group.addTask { [client, layout] in
                for try await update in client.childrenUpdates(of: layout.executors) {
                    if case .present(let children) = update { emit.yield(.executorsListed(children.names)) }
                }
            }
            group.addTask { [tick] in
                while true {
                    try await Task.sleep(for: tick)
                    emit.yield(.tick)
                }
            }
            if let retention {
                let sweep = RetentionSweep(
                    client: client, layout: layout, rule: RetentionRule(periodMilliseconds: retention.wholeMilliseconds), fence: leadership.fence,
                    acl: access.acl(for: .retention),
                    logger: logger)
                group.addTask { try await sweep.run() }
            } else {
                // Clients must not say a missing job was removed when nothing removes jobs.
                // Emptied, not deleted: in a secured deployment the node is the admin's to delete.
                do {
                    try await client.multi([leadership.fence, .setData(path: layout.retention, data: [])])
                } catch let error as ZooKeeperError where error.code == .noNode && error.failedOperationIndex == 1 {}
            }
            // A dead executor's work units are freed after the grace period, as its tasks are.
            let unitSweep = UnitLeaseSweep(
                store: UnitStore(zookeeper: client, layout: layout, access: access), layout: layout, gracePeriod: state.configuration.gracePeriod,
                fence: leadership.fence, countsACL: access.acl(for: .unitCounts), logger: logger)
            group.addTask { try await unitSweep.run() }
            let (finishedDirectJobs, clearing) = AsyncStream.makeStream(of: [DirectClearing].self)
            self.clearing = clearing
            group.addTask { [client, layout] in await Self.clearFinishedDirectJobs(finishedDirectJobs, client: client, layout: layout) }
            try await publishAdmission(force: true)
            // Once at the start, so the gauge exists as soon as a leader leads (then on the tick).
            try await countQueue()
            var watched: Set<String> = []
            var collectionQueued = false
            for await event in events {
                switch event {
                case .queueReady:
                    try await drainQueue()
                    signalDrained.yield()
                    try await publishAdmission()
                    // Direct jobs just started whose tasks executors claimed already.
                    if state.adoptionDue && !collectionQueued {
                        collectionQueued = true
                        emit.yield(.collect)
                    }
                case .executorsListed(let ids):
                    state.executorListingRead = true
                    for id in ids where Layout.isValidID(id) {
                        if watched.insert(id).inserted {
                            state.executorListed(id, at: clock.now)
                            group.addTask { [client, layout, logger] in
                                try await Self.watchDocument(ExecutorState.self, at: layout.executorAssignments(id), of: id, client: client, logger: logger) {
                                    emit.yield(.assignments(id, $0.document, bytes: $0.bytes))
                                }
                            }
                            group.addTask { [client, layout, logger] in
                                try await Self.watchDocument(ExecutorProgress.self, at: layout.executorProgress(id), of: id, client: client, logger: logger) {
                                    emit.yield(.progress(id, $0.document, bytes: $0.bytes, unreadable: $0.unreadable))
                                }
                            }
                            group.addTask { [client, layout, logger] in
                                try await Self.watchLiveness(of: id, client: client, layout: layout, logger: logger, emit: emit)
                            }
                        } else if state.executors[id]?.assignments == nil {
                            // Listed again (forgotten, then registered anew): its assignments too.
                            try await createAssignments(of: id)
                        }
                    }
                case .assignments(let id, let assignments, let bytes):
                    if assignments == nil { try await createAssignments(of: id) }
                    if state.assignmentsChanged(id, assignments, bytes: bytes) && !collectionQueued {
                        collectionQueued = true
                        emit.yield(.collect)
                    }
                case .progress(let id, let progress, let bytes, let unreadable):
                    if state.progressChanged(id, progress, bytes: bytes, unreadable: unreadable) && !collectionQueued {
                        collectionQueued = true
                        emit.yield(.collect)
                    }
                case .collect:
                    collectionQueued = false
                    while try await commit({ $0.planAdoption(now: .now(), loaded: $1) ?? .nothing }) {}
                    while try await commit({ $0.planCollection(now: .now(), loaded: $1) }) {}
                    // Room the collections could not fill within their limits.
                    try await placeDueAndWaiting()
                case .liveness(let id, let registration, let registeredAt):
                    state.livenessChanged(id, registration, at: clock.now, registeredAt: registeredAt)
                case .tick:
                    let cluster = state.cluster
                    LeaderMetrics.executorsAlive.record(cluster.alive)
                    LeaderMetrics.executorsGone.record(cluster.gone)
                    LeaderMetrics.slotsUsed.record(cluster.slotsUsed)
                    LeaderMetrics.slotsTotal.record(cluster.slotsTotal)
                    LeaderMetrics.waiting.record(state.waitingCount)
                    LeaderMetrics.scheduled.record(state.scheduledCount)
                    while try await commit({ [clock] in $0.planReclaim(at: clock.now, wallClock: .now(), loaded: $1) }) {}
                    try await directPass()
                    try await placeDueAndWaiting()
                    try await publishAdmission()
                    // Recorded with no suspension before the counts are: both tell of one state.
                    let reasons = state.waitingReasons()
                    LeaderMetrics.waitingForRoom.record(reasons.room)
                    LeaderMetrics.waitingForNoExecutor.record(reasons.noExecutor)
                    try await publishCounts(waitingForNoExecutor: reasons.noExecutor)
                    try await countQueue()
                }
            }
        }
    }

    /// A document of an executor's, as its watch reads it (nil: missing or not valid). One another
    /// program garbled is not the leader's to repair: the leader goes on (``decode(_:from:of:logger:)``).
    private static func watchDocument<Document: Decodable & Sendable>(
        _ type: Document.Type, at path: String, of id: String, client: ZooKeeperClient, logger: Logger,
        emit: (DocumentRead<Document>) -> Void
    ) async throws {
        var refused = false
        while true {
            do {
                for try await update in client.dataUpdates(of: path) {
                    if refused { logger.notice("the manager may read an executor's document again", metadata: ["executor": "\(id)", "path": "\(path)"]) }
                    refused = false
                    guard case .present(let node) = update else {
                        emit(.missing)
                        continue
                    }
                    emit(Self.decode(type, from: node, of: id, logger: logger))
                }
                return
            } catch let error as ZooKeeperError where error.code == .noAuth {
                // Not the leader's to end over: that executor stays as it is, and the rest go on.
                if !refused { emit(unreadable(path, of: id, error, logger: logger)) }
                refused = true
                // ZooKeeper tells nobody of an ACL change (nor, in a test, of changes to a node
                // the watcher may not read), so an admin's repair (`drover init`) is found by
                // reading again after a while; no watch is left per try.
                try await Task.sleep(for: Self.unreadableRetry)
            }
        }
    }

    /// How often a document the leader may not read is read again.
    static let unreadableRetry: Duration = .seconds(5)

    /// Creates the leader's (empty) assignments document of an executor whose directory exists and
    /// who has none: a new executor, one forgotten and registered again, or a tree made anew. Only
    /// while the executor's directory exists (a forgotten executor gets none), fenced.
    func createAssignments(of id: String) async throws {
        do {
            try await client.multi([
                leadership.fence,
                .check(path: layout.executor(id)),
                .create(
                    path: layout.executorAssignments(id), data: try Codec.encode(ExecutorState(executor: id)), acl: access.acl(for: .assignment(id))),
            ])
        } catch let error as ZooKeeperError where (error.code == .nodeExists || error.code == .noNode) && error.failedOperationIndex != 0 {
            // Made meanwhile (its watch brings it), or the executor is gone.
        }
    }

    /// An executor's registration, as its watch reads it (nil: gone, or not a registration).
    private static func watchLiveness(
        of id: String, client: ZooKeeperClient, layout: Layout, logger: Logger, emit: AsyncStream<Event>.Continuation
    ) async throws {
        for try await update in client.dataUpdates(of: layout.executorAlive(id)) {
            switch update {
            case .missing: emit.yield(.liveness(id, nil, registeredAt: nil))
            case .present(let node):
                do {
                    emit.yield(.liveness(id, try Codec.decode(ExecutorRegistration.self, node.data), registeredAt: node.stat.createdTime))
                } catch {
                    logger.warning(
                        "executor registration is not a valid document: the executor counts as gone",
                        metadata: ["executor": "\(id)", "version": "\(node.stat.version)", "error": "\(error)"])
                    emit.yield(.liveness(id, nil, registeredAt: nil))
                }
            }
        }
    }

    // MARK: The queue

    private func drainQueue() async throws {
        while true {
            var filedAsWaiting = false
            let took = try await retrying { loaded in
                var pending: (Transaction, Transaction.Encoded)?
                let items = try await queue.consume(maxItems: state.queueBatchItems, fence: [leadership.fence]) { items in
                    let contents = items.map { LeaderState.content(of: $0.data) }
                    let operations = contents.flatMap(\.operations)
                    let unreadable = contents.flatMap(\.unreadable)
                    // Known before the plan may come out over the budget: a retry takes fewer items.
                    state.took(operations: operations.count, items: items.count)
                    // Placed if it fits; else its jobs filed as waiting (records only); else — an
                    // item of another program's, with many large records — its operations put back
                    // one per item. Each step makes progress: one item never blocks the queue.
                    var mode = BatchMode.place
                    while true {
                        let placing = mode == .place
                        if mode == .split {
                            logger.warning(
                                "a queue item is too large to apply in one transaction: its operations go back on the queue one per item",
                                metadata: ["operations": "\(operations.count)"])
                            pending = nil
                            var effects = try await queue.putOperations(try operations.map { try Codec.encode($0) })
                            for (data, code, reason) in unreadable {
                                effects.append(
                                    .create(
                                        path: layout.setAsideItemPrefix, data: try Codec.encode(SetAsideItem(code: code, reason: reason, data: data)),
                                        mode: .persistentSequential, acl: access.acl(for: .setAsideItem)))
                            }
                            return effects
                        }
                        let step = try await resolve(
                            { $0.planQueueBatch(operations, unreadable: unreadable, now: .now(), loaded: $1, placing: placing) }, &loaded)
                        // A batch always makes a transaction (an empty one takes items that change nothing):
                        // anything else would delete the items with no effect.
                        guard case .commit(let transaction) = step else { throw LeaderInvariantViolation("a queue batch planned no transaction") }
                        do {
                            let encoded = try state.encode(transaction, layout: layout, acls: transactionACLs)
                            pending = (transaction, encoded)
                            return encoded.operations
                        } catch let error as Transaction.OverBudget where items.count == 1 && mode != .split {
                            if mode == .place {
                                logger.notice(
                                    "a transaction of one queue item was over the byte budget: filing its jobs as waiting",
                                    metadata: ["bytes": "\(error.bytes)", "jobs": "\(error.jobs)"])
                            }
                            mode = mode == .place ? .fileAsWaiting : .split
                            if mode == .split && operations.count < 2 { throw error }  // one job over budget: left to the retry
                        }
                    }
                }
                guard !items.isEmpty else { return false }
                LeaderMetrics.queueItems.increment(by: items.count)
                if let (transaction, encoded) = pending {
                    state.committed(transaction, encoded)
                    report(transaction, encoded)
                    filedAsWaiting = transaction.placesNothing
                    if !transaction.setAsides.isEmpty { try await pruneSetAside() }
                }
                return true
            }
            guard took else { return }
            // The jobs just filed go before the items behind them.
            if filedAsWaiting { try await placeDueAndWaiting() }
        }
    }

    // MARK: Transactions

    /// Places due scheduled runs and waiting jobs, a transaction at a time, while the last one
    /// reached a limit with room left.
    private func placeDueAndWaiting() async throws {
        while try await commit({ $0.planPlacement(now: .now(), loaded: $1) }), state.placementContinues {}
    }

    /// Plans with `planner` — reading the records it asks for — sends the transaction it makes,
    /// and tells the state how it went. Returns whether a transaction committed.
    func commit(_ planner: (inout LeaderState, [String: LoadedRecord]) -> LeaderState.Step) async throws -> Bool {
        try await retrying { loaded in
            guard case .commit(let transaction) = try await resolve(planner, &loaded) else { return false }
            let encoded = try state.encode(transaction, layout: layout, acls: transactionACLs)
            let fenced = [leadership.fence] + encoded.operations
            if transaction.queueItems.isEmpty {
                try await client.multi(fenced)
            } else {
                try await queue.put(transaction.queueItems, alongWith: fenced)
            }
            state.committed(transaction, encoded)
            report(transaction, encoded)
            if !transaction.setAsides.isEmpty { try await pruneSetAside() }
            return true
        }
    }

    /// Reads executor `id`'s registration for ``LeaderState/Step/confirmGone(_:)``: its progress
    /// first when the leader holds none (without a version the take-back checks nothing on the
    /// executor's side; found now, it is planned again with it), then its liveness node.
    /// Registered after all, the leader learns so now and its tasks stay with it.
    private func confirmGone(_ id: String) async throws {
        if state.executors[id]?.progress == nil {
            apply(try await Self.readExecutorDocuments(id, client: client, layout: layout, logger: logger), of: id)
            // Planned again: with a version to check, or not at all (no take-back from unreadable progress).
            if state.executors[id]?.progress != nil || state.executors[id]?.progressUnreadable == true { return }
        }
        let node: NodeData
        do {
            node = try await client.getData(layout.executorAlive(id))
        } catch let error as ZooKeeperError where error.code == .noNode {
            state.confirmedGone(id)
            return
        }
        // Not a registration: counts as gone, as its watch says.
        guard let registration = try? Codec.decode(ExecutorRegistration.self, node.data) else {
            state.confirmedGone(id)
            return
        }
        state.livenessChanged(id, registration, at: clock.now, registeredAt: node.stat.createdTime)
        logger.notice("an executor registered again as its tasks were about to be taken back: they stay with it", metadata: ["executor": "\(id)"])
    }

    /// Plans until the planner needs nothing more read.
    private func resolve(
        _ planner: (inout LeaderState, [String: LoadedRecord]) -> LeaderState.Step, _ loaded: inout [String: LoadedRecord]
    ) async throws -> LeaderState.Step {
        while true {
            let step = planner(&state, loaded)
            switch step {
            case .read(let ids): loaded.merge(try await readRecords(ids)) { _, new in new }
            case .confirmGone(let id): try await confirmGone(id)
            case .commit, .nothing: return step
            }
        }
    }

    /// Runs `attempt`; when its transaction fails because an executor state or job record changed
    /// since it was read, reads what the state asks and tries again. When the planned transaction
    /// is over the byte budget, tries again with fewer jobs (nothing was sent).
    private func retrying(_ attempt: (inout [String: LoadedRecord]) async throws -> Bool) async throws -> Bool {
        var loaded: [String: LoadedRecord] = [:]
        var conflicts = 0
        while true {
            do {
                return try await attempt(&loaded)
            } catch let error as Transaction.OverBudget {
                guard state.overBudget(error) else {
                    // One job's transaction alone is too large: leave it (it is logged every time it
                    // comes up) rather than stop the leader, and every leader after it, for good.
                    logger.error("a transaction for one job is over the byte budget: it is left undone", metadata: ["error": "\(error)"])
                    return false
                }
                logger.notice(
                    "a transaction was over the byte budget: planning fewer jobs per transaction",
                    metadata: ["bytes": "\(error.bytes)", "jobs": "\(error.jobs)", "limit": "\(state.jobLimit)"])
            } catch let error as ZooKeeperError
                where (error.code == .nodeExists || error.code == .noNode) && error.path.flatMap(layout.jobID(ofActiveEntryAt:)) != nil
            {
                try await activeEntryDisagreed(error)
            } catch let error as ZooKeeperError where error.code == .badVersion || (error.code == .noNode && error.failedOperationIndex != 0) {
                LeaderMetrics.conflicts.increment()
                conflicts += 1
                // A transaction that keeps conflicting is a leader making no progress: say on what
                // (16, 32, 64, … conflicts in a row), so that an operator, or a chaos run, can see it.
                if conflicts >= 16, conflicts & (conflicts - 1) == 0 {
                    logger.warning(
                        "a transaction keeps conflicting: the leader reads again and retries",
                        metadata: [
                            "conflicts": "\(conflicts)", "path": "\(error.path ?? "-")", "code": "\(error.code)",
                            "operation": "\(error.failedOperationIndex.map(String.init) ?? "-")",
                        ])
                }
                // Items put back in a consumer's transaction met a sealed segment: look again.
                if let path = error.path, path.hasPrefix(layout.queue + "/") { queue.segmentChanged() }
                switch state.conflicted(on: error.path, layout: layout) {
                case .executorState(let id):
                    apply(try await Self.readExecutorDocuments(id, client: client, layout: layout, logger: logger), of: id)
                case .everyExecutorState:
                    loaded = [:]  // a record changed: every record is read afresh
                    try await refreshExecutorStates()
                }
            }
        }
    }

    /// Counts the queue's items for `drover_queue_items`, every 5 s: it costs a few round trips
    /// (the segments' listing, one `exists` each), so it runs on the timer, never per scrape.
    func countQueue() async throws {
        guard clock.now - queueCountedAt >= .seconds(5) else { return }
        queueCountedAt = clock.now
        LeaderMetrics.queueDepth.record(try await queue.count())
    }

    /// Writes the counts of waiting, scheduled and running jobs into the active-job index's
    /// document, at most once a second and only when they changed: one write, however many read them.
    func publishCounts(waitingForNoExecutor: Int) async throws {
        guard state.maintainsActiveIndex, var index = activeIndex, clock.now - countsWrittenAt >= .seconds(1) else { return }
        let counts = state.activeCounts(waitingForNoExecutor: waitingForNoExecutor)
        guard counts != index.counts else { return }
        index.counts = counts
        index.countedAt = .now()
        try await client.multi([leadership.fence, .setData(path: layout.active, data: try Codec.encode(index))])
        activeIndex = index
        countsWrittenAt = clock.now
    }

    /// The ACLs of the nodes transactions create.
    private var transactionACLs: LeaderState.ACLs {
        LeaderState.ACLs(setAsideItem: access.acl(for: .setAsideItem), activeEntry: access.acl(for: .activeEntry))
    }

    /// A transaction failed on a job's active-index entry: one already there (created by another
    /// program, or left by a leader older than the index), or one missing. The next transaction
    /// goes by what is there. A missing shard directory means someone removed part of the index:
    /// this leader stops keeping it and marks it incomplete, so the next leader builds it again.
    private func activeEntryDisagreed(_ error: ZooKeeperError) async throws {
        guard let path = error.path, let id = layout.jobID(ofActiveEntryAt: path) else { throw error }
        if error.code == .noNode, try await client.exists(layout.activeShard(Layout.shard(of: id))) == nil {
            logger.error(
                "the active-job index lost a directory: this leader stops keeping it, and the next one builds it again from every record",
                metadata: ["missing": "\(layout.activeShard(Layout.shard(of: id)))"])
            state.maintainsActiveIndex = false
            // Marked incomplete before anything more is written without entries; should that fail,
            // this term ends (the next leader finds the directory missing and builds again).
            try await client.multi([leadership.fence, .setData(path: layout.active, data: [])])
            return
        }
        logger.notice(
            "a job's active-index entry was not as its record implied: going by what is there",
            metadata: ["job": "\(id)", "entry": error.code == .nodeExists ? "present" : "missing"])
        state.activeEntryDisagreed(job: id, exists: error.code == .nodeExists)
    }

    /// Keeps the newest ``setAsideLimit`` set-aside items; the oldest beyond go, counted in the
    /// directory's data (`{"format": 1, "dropped": N}`), in one fenced transaction. Items are set
    /// aside rarely: this lists the directory only after a transaction set one aside.
    private func pruneSetAside() async throws {
        let names = try await client.children(layout.setAside).names.sorted()
        guard names.count > setAsideLimit else { return }
        let excess = names.prefix(min(names.count - setAsideLimit, 1_000))
        let directory = try await client.getData(layout.setAside)
        let dropped = (try? Codec.decode(SetAsideDirectory.self, directory.data).dropped) ?? 0
        do {
            try await client.multi(
                [leadership.fence, .setData(path: layout.setAside, data: try Codec.encode(SetAsideDirectory(dropped: dropped + excess.count)), version: directory.stat.version)]
                    + excess.map { .delete(path: layout.setAsideItem($0)) })
            logger.notice("dropped the oldest set-aside items", metadata: ["dropped": "\(excess.count)", "kept": "\(setAsideLimit)"])
        } catch let error as ZooKeeperError where error.code == .badVersion || error.code == .noNode {
            // Changed meanwhile (an operator removed some): looked at again after the next set-aside.
        }
    }

    /// Logs what a committed transaction did that an operator wants to know.
    /// Logs what a committed transaction did that an operator should hear of, and counts it.
    private func report(_ transaction: Transaction, _ encoded: Transaction.Encoded) {
        LeaderMetrics.commits.increment()
        LeaderMetrics.commitBytes.record(encoded.operations.reduce(0) { $0 + $1.encodedSize })
        LeaderMetrics.setAside.increment(by: transaction.setAsides.count)
        LeaderMetrics.waiting.record(state.waitingCount)
        for run in transaction.endedRuns { LeaderMetrics.runEnded(run) }
        for milliseconds in transaction.submitToPlacement { LeaderMetrics.submitToPlacement.recordMilliseconds(milliseconds) }
        for milliseconds in transaction.submitToStart { LeaderMetrics.submitToStart.recordMilliseconds(milliseconds) }
        for (id, entry) in transaction.failedUnusable {
            logger.warning("a job record cannot be used: the job fails", metadata: ["job": "\(id)", "reason": "\(entry.note.unusable)"])
        }
        for item in transaction.setAsides {
            logger.warning("a queue item was set aside", metadata: ["code": "\(item.code.map(\.rawValue) ?? "-")", "reason": "\(item.reason)"])
        }
        if let (executor, dead, tasks) = transaction.tookBack {
            logger.info(
                dead ? "took back the tasks of a dead executor" : "took back the tasks an executor handed back",
                metadata: ["executor": "\(executor)", "tasks": "\(tasks)"])
        }
    }
}

/// A rule of the leader's own was broken: the term ends (a new leader starts from ZooKeeper).
struct LeaderInvariantViolation: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// How the drain applies a queue batch that is over the byte budget (see ``LeaderLoop/drainQueue()``).
enum BatchMode { case place, fileAsWaiting, split }
