import DroverProtocol
import Logging
import ZKRecipes
import ZooKeeper

/// One term of leadership. Builds its view of the cluster from ZooKeeper (it needs no memory
/// of an earlier leader), then handles events one at a time: queue operations, executor state
/// changes, liveness changes and timer ticks. Its state is confined to the task running it.
final class LeaderLoop {
    enum Event: Sendable {
        case queueReady
        case executorsListed([String])
        /// The executor's state as read, and its encoded size.
        case executorState(String, Versioned<ExecutorState>?, bytes: Int)
        case liveness(String, ExecutorRegistration?)
        /// Collect finished runs: queued behind the state changes that asked for it, so every
        /// change that arrived meanwhile is collected in one transaction.
        case collect
        case tick
    }

    struct ExecutorEntry {
        var registration: ExecutorRegistration?
        var state: Versioned<ExecutorState>?
        /// The encoded size of `state` (placement keeps it under ExecutorState.maximumEncodedBytes).
        var stateBytes = 0
        var goneSince: ContinuousClock.Instant?
    }

    let manager: Manager
    let leadership: Leadership
    let client: ZooKeeperClient
    let layout: Layout
    let queue: DurableQueue
    let logger: Logger
    let clock = ContinuousClock()

    var executors: [String: ExecutorEntry] = [:]
    /// Jobs waiting for an executor with room, first come first.
    var waiting = WaitingLine()
    /// Scheduled jobs and when their next run is due.
    var scheduled: [String: Timestamp] = [:]
    /// Records of running and waiting jobs as this leader last wrote them, with their versions.
    /// Once the leader has written a record it is the record's only writer (clients go through
    /// the queue), so placing a waiting job or collecting a finished run needs no read.
    /// Forgotten on any conflict; waiting ones are kept up to ``knownWaitingBytesLimit``.
    var knownRecords: [String: (record: JobRecord, version: Int32, bytes: Int)] = [:]
    /// The encoded size of the waiting jobs' records in ``knownRecords``.
    var knownWaitingBytes = 0
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

    init(manager: Manager, leadership: Leadership) {
        self.manager = manager
        self.leadership = leadership
        self.client = manager.client
        self.layout = manager.layout
        self.queue = DurableQueue(client: manager.client, root: manager.layout.queue)
        self.logger = manager.logger
    }

    func run() async throws {
        for path in [layout.queue, layout.executors, layout.jobs, layout.setAside] { try await client.createPath(path) }
        try await createJobShards()
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
            group.addTask { [manager] in
                while true {
                    try await Task.sleep(for: manager.configuration.tick)
                    emit.yield(.tick)
                }
            }
            var watched: Set<String> = []
            var collectionQueued = false
            for await event in events {
                switch event {
                case .queueReady:
                    try await drainQueue()
                    signalDrained.yield()
                case .executorsListed(let ids):
                    for id in ids where !watched.contains(id) && Layout.isValidID(id) {
                        watched.insert(id)
                        // Unseen until its liveness node is read: counts as gone since now.
                        if executors[id] == nil { executors[id] = ExecutorEntry(goneSince: clock.now) }
                        group.addTask { [client, layout, logger] in
                            // A state another program garbled is not ours to repair: the executor is
                            // left out of placement until its state reads again, and the leader goes on.
                            for try await update in client.dataUpdates(of: layout.executorState(id)) {
                                guard case .present(let node) = update else {
                                    emit.yield(.executorState(id, nil, bytes: 0))
                                    continue
                                }
                                do {
                                    let (state, bytes) = try Self.executorState(from: node)
                                    emit.yield(.executorState(id, state, bytes: bytes))
                                } catch {
                                    logger.warning(
                                        "executor state is not a valid document: leaving the executor out",
                                        metadata: ["executor": "\(id)", "version": "\(node.stat.version)", "error": "\(error)"])
                                    emit.yield(.executorState(id, nil, bytes: 0))
                                }
                            }
                        }
                        group.addTask { [client, layout] in
                            for try await update in client.dataUpdates(of: layout.executorAlive(id)) {
                                switch update {
                                case .missing: emit.yield(.liveness(id, nil))
                                case .present(let node):
                                    emit.yield(.liveness(id, try? Codec.decode(ExecutorRegistration.self, node.data)))
                                }
                            }
                        }
                    }
                case .executorState(let id, let state, let bytes):
                    // A notification read before the leader's own newer write is old news.
                    if let state, let known = executors[id]?.state, state.version < known.version { continue }
                    executors[id, default: ExecutorEntry()].state = state
                    executors[id]?.stateBytes = bytes
                    capacityChanged = true
                    if !collectionQueued {
                        collectionQueued = true
                        emit.yield(.collect)
                    }
                case .collect:
                    collectionQueued = false
                    try await collectFinishedTasks()
                    // Room the collections could not fill within their limits.
                    if capacityChanged { try await placeDueAndWaiting() }
                case .liveness(let id, let registration):
                    var entry = executors[id, default: ExecutorEntry()]
                    entry.registration = registration
                    entry.goneSince = registration == nil ? (entry.goneSince ?? clock.now) : nil
                    executors[id] = entry
                    capacityChanged = true
                case .tick:
                    try await reclaimFromDeadExecutors()
                    try await placeDueAndWaiting()
                }
            }
        }
    }

    // MARK: Startup

    /// Creates the job shard directories that are missing, in one transaction. A submit into a
    /// missing shard costs the client two more writes (a failed `multi`, the directory, then the
    /// `multi` again), which would fall on the first submits of every new deployment.
    private func createJobShards() async throws {
        while true {
            let existing = Set(try await client.children(layout.jobs).names)
            let missing = (0..<Layout.jobShards).filter { !existing.contains(Layout.jobShardName($0)) }
            guard !missing.isEmpty else { return }
            do {
                try await client.multi(missing.map { .create(path: layout.jobShard($0)) })
                return
            } catch let error as ZooKeeperError where error.code == .nodeExists {
                continue  // a client made one meanwhile: list again
            }
        }
    }

    /// The reason a leader older than queue format 2 gave when it set an item aside.
    static let olderLeadersReason = "not a Drover queue operation (format 1)"

    /// Puts back on the queue the bulk submits (format-2 items) that a leader older than this one
    /// set aside because it could not read them — their jobs would otherwise stay `queued` for
    /// good. Each goes back at the tail, in one transaction with the removal of its set-aside node.
    private func requeueBatchesSetAsideByOlderLeaders() async throws {
        let names = try await client.children(layout.setAside).names
        guard !names.isEmpty else { return }
        let batches = try await withThrowingTaskGroup(of: (String, [UInt8])?.self) { [client, layout] group in
            for name in names {
                group.addTask {
                    let path = layout.setAside + "/" + name
                    guard let node = try? await client.getData(path),
                        let item = try? Codec.decode(SetAsideItem.self, node.data), item.reason == Self.olderLeadersReason,
                        case .batch? = try? Codec.decode(QueueItemContent.self, Array(item.data.utf8))
                    else { return nil }
                    return (path, Array(item.data.utf8))
                }
            }
            var found: [(String, [UInt8])] = []
            for try await case let batch? in group { found.append(batch) }
            return found.sorted { $0.0 < $1.0 }
        }
        for (path, data) in batches {
            do {
                try await queue.put([data], alongWith: [leadership.fence, .delete(path: path)])
                logger.notice("queued again a bulk submit an older leader had set aside", metadata: ["node": "\(path)"])
            } catch let error as ZooKeeperError where error.code == .noNode && error.failedOperationIndex == 1 {
                continue  // gone meanwhile (an operator removed it)
            }
        }
    }

    /// Finds the jobs that wait for a placement or a scheduled time.
    private func loadJobs() async throws {
        for record in try await DroverClient(zookeeper: client, layout: layout).list(states: [.waiting]) {
            if let due = record.nextRunAt { scheduled[record.id] = due } else { waiting.add(record) }
        }
        logger.info("leader ready", metadata: ["waiting": "\(waiting.count)", "scheduled": "\(scheduled.count)"])
    }

    // MARK: The queue

    /// Operations per queue item, as recently seen: a bulk submit puts a hundred in one item, so a
    /// batch takes fewer items to stay within ``jobLimit`` jobs. It starts at a bulk submit's size
    /// and falls by half per batch of single operations, so the first batch after a run of single
    /// submits is not planned at a hundred times the limit.
    private var operationsPerItem = DroverClient.submitBatchJobs

    private func drainQueue() async throws {
        while true {
            var filedAsWaiting = false
            let taken = try await commitRetryingConflicts {
                let plan = Plan(loop: self)
                let maxItems = max(1, min(self.manager.configuration.batchSize, self.jobLimit / self.operationsPerItem))
                let items = try await self.queue.consume(maxItems: maxItems, fence: [self.leadership.fence]) { items in
                    let contents = items.map(Self.content(of:))
                    let operations = contents.flatMap(\.operations)
                    let unreadable = contents.flatMap(\.unreadable)
                    // Known before the plan may come out over the budget: a retry takes fewer items.
                    self.operationsPerItem = max(max(1, (operations.count + items.count - 1) / items.count), self.operationsPerItem / 2)
                    do {
                        return try await self.plan(operations, unreadable: unreadable, into: plan, placing: true)
                    } catch let error as Plan.OverBudget where items.count == 1 {
                        // One item whose jobs cannot be placed within the byte budget must not block
                        // the queue: its jobs are filed as waiting (records only, no executor state)
                        // and placed from the line, in smaller transactions.
                        self.logger.notice(
                            "a transaction of one queue item was over the byte budget: filing its jobs as waiting",
                            metadata: ["bytes": "\(error.bytes)", "jobs": "\(error.jobs)"])
                        return try await self.plan(operations, unreadable: unreadable, into: plan, placing: false)
                    }
                }
                if !items.isEmpty { self.adopt(plan) }
                filedAsWaiting = !items.isEmpty && plan.placesNothing
                return items.count
            }
            if taken == 0 { return }
            if filedAsWaiting {
                // The jobs just filed go before the items behind them.
                capacityChanged = true
                try await placeDueAndWaiting()
            }
        }
    }

    /// Plans a queue batch: its operations in order, and what of it cannot be read set aside.
    private func plan(
        _ operations: [QueueOperation], unreadable: [Unreadable], into plan: Plan, placing: Bool
    ) async throws -> [MultiOperation] {
        plan.reset()
        plan.placesNothing = !placing
        for (data, code, reason) in unreadable { plan.setAside(data, code: code, reason: reason) }
        for operation in operations where operation.op == .submit {
            if let record = operation.record, !distrustedCarriedRecords.contains(operation.job) { plan.created(record, carriedBy: operation) }
        }
        try await plan.prefetch(operations.compactMap { $0.op == .drain ? nil : $0.job })
        for operation in operations { try await apply(operation, to: plan) }
        return try plan.operations()
    }

    /// What of a queue item is set aside: its data as it was, and why.
    typealias Unreadable = (data: [UInt8], code: SetAsideItem.Code, reason: String)

    /// The operations of one queue item, and what in it is not a Drover operation of a format this
    /// leader reads, with the reason (set aside: a bad element of a batch alone, as it was).
    private static func content(of item: QueueItem) -> (operations: [QueueOperation], unreadable: [Unreadable]) {
        switch try? Codec.decode(QueueItemContent.self, item.data) {
        case nil: return ([], [(item.data, .unreadableItem, "not a Drover queue item (formats 1 and 2)")])
        case .operation(let operation)?: return ([operation], [])
        case .batch(let operations, let unreadable)?:
            if operations.isEmpty && unreadable.isEmpty { return ([], [(item.data, .emptyBatch, "a batch (format 2) with no operations")]) }
            let reason = "an element of a batch (format 2) that is not a Drover queue operation (format 1); the rest of the batch was applied"
            return (operations, unreadable.map { ((try? Codec.encode($0)) ?? [], .unreadableOperation, reason) })
        }
    }

    private func apply(_ operation: QueueOperation, to plan: Plan) async throws {
        if operation.op == .drain {
            guard var state = plan.executorState(operation.job) else { return }
            state.draining = true
            plan.update(state, of: operation.job)
            return
        }
        guard var record = try await plan.job(operation.job) else {
            if let reason = plan.unusableReason(operation.job) {
                // The record exists but cannot be used: the job ends failed, saying why.
                logger.warning("a job record cannot be used: the job fails", metadata: ["job": "\(operation.job)", "reason": "\(reason)"])
                plan.failUnusable(operation.job)
            } else {
                plan.setAside((try? Codec.encode(operation)) ?? [], code: .noJob, reason: "no job \(operation.job)")
            }
            return
        }
        switch operation.op {
        case .submit:
            guard !record.state.isFinal, !record.stopRequested else { return }
            // A run taken back from an executor (record.resume) is placed now, even for a
            // scheduled job: it was due when it first started.
            if let schedule = record.spec.schedule, record.resume == nil {
                record.state = .waiting
                record.nextRunAt = schedule.nextRunMilliseconds(after: .now())
                plan.update(record)
            } else {
                place(&record, plan: plan)
            }
        case .cancel:
            guard record.state == .queued || record.state == .waiting else { return }
            record.state = .cancelled
            record.nextRunAt = nil
            plan.update(record)
        case .stop:
            guard !record.state.isFinal else { return }
            record.stopRequested = true
            if record.state == .running, let executor = record.executor, var state = plan.executorState(executor),
                let index = state.tasks.firstIndex(where: { $0.job == record.id && !$0.state.isFinished })
            {
                state.tasks[index].stopRequested = true
                plan.update(state, of: executor)
            } else {
                record.state = .stopped
                record.nextRunAt = nil
            }
            plan.update(record)
        case .drain:
            return
        }
    }

    /// Places the job's next run, or records why it waits.
    /// A run taken back from an executor (`record.resume`) keeps its attempts and checkpoint
    /// until it is placed again.
    private func place(_ record: inout JobRecord, plan: Plan) {
        let taskBytes = Plan.estimatedBytes(ofTaskFor: record.spec)
        var decision =
            plan.placesNothing
            ? PlacementDecision.wait(reason: "waiting for the next placement round")
            : Placement.decide(resources: record.spec.resources, constraints: record.spec.constraints, among: plan.views())
        // An executor whose state would grow past its size limit counts as full for this
        // transaction: decide again without it.
        while case .place(let executor) = decision, plan.stateBytes(of: executor) + taskBytes > ExecutorState.maximumEncodedBytes {
            plan.markFullByBytes(executor)
            decision = Placement.decide(resources: record.spec.resources, constraints: record.spec.constraints, among: plan.views())
        }
        switch decision {
        case .place(let executor):
            plan.addStateBytes(taskBytes, to: executor)
            guard var state = plan.executorState(executor) else { return }
            var task = TaskRecord(
                job: record.id, run: record.runsStarted + 1, method: record.spec.method, arguments: record.spec.arguments,
                resources: record.spec.resources)
            task.attempts = record.resume?.attempts ?? 0
            task.checkpoint = record.resume?.checkpoint
            record.resume = nil
            state.tasks.append(task)
            plan.update(state, of: executor)
            record.runsStarted += 1
            record.state = .running
            record.executor = executor
            record.waitingReason = nil
            record.nextRunAt = nil
        case .wait(let reason), .impossible(let reason):
            record.state = .waiting
            // At the limit only some executors were offered: the reason may not hold for the others.
            record.waitingReason = plan.atExecutorLimit ? "waiting for the next placement round" : reason
            record.nextRunAt = nil
        }
        plan.update(record)
    }

    // MARK: Completions

    /// Job records one leader transaction changes at most, to begin with. ZooKeeper refuses a
    /// `multi` over about 1 MB: a transaction whose encoding passes ``Plan/byteBudget`` is not
    /// sent but planned again with half as many jobs (``jobLimit``).
    static let transactionJobLimit = 250

    /// Job records the next transaction may change: ``transactionJobLimit``, halved while
    /// transactions come out over the byte budget (large specs or results).
    var jobLimit = LeaderLoop.transactionJobLimit

    /// Takes finished runs out of executor states into their jobs' histories, and places the
    /// next run of jobs that go on: one bounded transaction at a time, until nothing finished
    /// is left.
    private func collectFinishedTasks() async throws {
        while executors.values.contains(where: { $0.state?.document.tasks.contains(where: { $0.state.isFinished }) == true }) {
            guard try await collectSomeFinishedTasks() > 0 else { return }
        }
    }

    /// One transaction: finished runs (up to ``jobLimit`` jobs, ``Plan/executorLimit``
    /// executors) collected, and the room they free filled from the waiting line.
    private func collectSomeFinishedTasks() async throws -> Int {
        try await commitRetryingConflicts {
            let plan = Plan(loop: self)
            try await plan.prefetch(self.executors.values.lazy.flatMap { $0.state?.document.tasks.lazy.filter(\.state.isFinished).map(\.job) ?? [] })
            for (executorID, entry) in self.executors.sorted(by: { $0.key < $1.key }) {
                let room = jobLimit - plan.changedJobs.count
                guard room > 0, !plan.atExecutorLimit else { break }
                guard var state = plan.executorState(executorID) else { continue }
                let finished = Array(state.tasks.filter { $0.state.isFinished }.prefix(room))
                guard !finished.isEmpty, entry.state != nil else { continue }
                let collected = Set(finished.map(\.id))
                state.tasks.removeAll { collected.contains($0.id) }
                plan.update(state, of: executorID)
                for task in finished {
                    guard var record = try await plan.job(task.job) else { continue }
                    let outcome: RunRecord.Outcome =
                        task.state == .succeeded ? .succeeded : (task.stopRequested ? .stopped : .failed)
                    record.history.append(RunRecord(task: task, executor: executorID, outcome: outcome))
                    if record.history.count > self.manager.configuration.historyLimit {
                        record.history.removeFirst(record.history.count - self.manager.configuration.historyLimit)
                    }
                    record.runsEnded += 1
                    record.executor = nil
                    self.decideNext(&record, lastOutcome: outcome, plan: plan)
                }
            }
            // The room the finished runs freed goes to waiting jobs in the same transaction.
            try await self.placeDueAndWaiting(into: plan, now: .now())
            guard plan.hasChanges else { return 0 }
            try await self.client.multi([self.leadership.fence] + plan.operations())
            self.adopt(plan)
            return 1
        }
    }

    private func decideNext(_ record: inout JobRecord, lastOutcome: RunRecord.Outcome, plan: Plan) {
        let spec = record.spec
        let goesOn: Bool =
            switch spec.kind {
            case .once: false
            case .finite: record.runsEnded < (spec.count ?? 1)
            case .infinite: true
            }
        if record.stopRequested || lastOutcome == .stopped {
            record.state = .stopped
        } else if !goesOn {
            record.state = lastOutcome == .succeeded ? .succeeded : .failed
        } else if let schedule = spec.schedule {
            // The next run waits for the next grid point after this one ended: never overlaps.
            record.state = .waiting
            record.nextRunAt = schedule.nextRunMilliseconds(after: .now())
            scheduled[record.id] = record.nextRunAt
        } else {
            place(&record, plan: plan)
            return
        }
        plan.update(record)
    }

    // MARK: Timers

    private func placeDueAndWaiting() async throws {
        while true {
            let now = Timestamp.now()
            guard scheduled.contains(where: { $0.value <= now }) || (capacityChanged && !waiting.isEmpty) else { return }
            let committed = try await commitRetryingConflicts {
                let plan = Plan(loop: self)
                try await self.placeDueAndWaiting(into: plan, now: now)
                guard plan.hasChanges else { return 0 }
                try await self.client.multi([self.leadership.fence] + plan.operations())
                self.adopt(plan)
                return 1
            }
            // A transaction that reached a limit leaves capacityChanged set: go on at once.
            guard committed > 0, capacityChanged else { return }
        }
    }

    /// Places due scheduled runs first (by due time), then waiting jobs in the order they began
    /// to wait, while there is room. A waiting job's record is read only when it fits now, so a
    /// deep backlog costs no reads while the executors are full. The loop's own bookkeeping
    /// follows in ``adopt(_:)`` once the transaction committed.
    private func placeDueAndWaiting(into plan: Plan, now: Timestamp) async throws {
        let due = scheduled.filter { $0.value <= now }.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map(\.key)
        try await plan.prefetch(due.prefix(jobLimit))
        for id in due where plan.changedJobs.count < jobLimit {
            guard var record = try await plan.job(id), record.state == .waiting, !record.stopRequested else {
                scheduled[id] = nil
                continue
            }
            if let next = record.nextRunAt, next > now { continue }
            // No room: it waits for capacity now, not for its time (place records why).
            place(&record, plan: plan)
        }
        guard capacityChanged, !waiting.isEmpty else { return }
        capacityChanged = false
        // The executors as placed so far: they change only when a job is placed.
        var views = plan.views()
        // Demands that found no room among `views`: the jobs with the same demand behind them are
        // passed over without a look at every executor, and the scan ends once every demand in
        // line found none. Without this a deep line of jobs that cannot go anywhere now cost a
        // pass over every executor for each of them, on every change of room.
        var noRoom: Set<WaitingLine.Demand> = []
        func hasRoom(_ demand: WaitingLine.Demand) -> Bool {
            guard !noRoom.contains(demand) else { return false }
            if Placement.choose(resources: demand.resources, constraints: demand.constraints, among: views) != nil { return true }
            noRoom.insert(demand)
            return false
        }
        // The jobs likely to be placed now, read at once: as many, from the front of the line, as
        // there are free slots (each fits some executor on its own; a few may find it taken).
        let freeSlots = views.filter { $0.alive && !$0.draining }.reduce(0) { $0 + max(0, $1.capacity.slots - $1.used.slots) }
        let likely = max(0, min(freeSlots, jobLimit - plan.changedJobs.count))
        var toRead: [String] = []
        if likely > 0 {
            for (id, demand) in waiting.inOrder {
                guard toRead.count < likely, noRoom.count < waiting.distinctDemands else { break }
                if hasRoom(demand) { toRead.append(id) }
            }
        }
        try await plan.prefetch(toRead)
        noRoom = []
        var stale: [String] = []
        for (id, demand) in waiting.inOrder {
            guard plan.changedJobs.count < jobLimit else {
                capacityChanged = true  // the rest of the room is filled by the next transaction
                break
            }
            guard views.contains(where: { $0.alive && !$0.draining && $0.used.slots < $0.capacity.slots }) else {
                // Full, or full among the executors this transaction may still change.
                if plan.atExecutorLimit { capacityChanged = true }
                break
            }
            guard noRoom.count < waiting.distinctDemands else {
                // Among the executors this transaction may still change, none has room: the others
                // may, in the next transaction.
                if plan.atExecutorLimit { capacityChanged = true }
                break
            }
            // Not decided in this transaction already (placed jobs leave the line only once it
            // commits): checked first, as deciding costs a pass over the executors.
            guard !plan.changedJobs.contains(id), hasRoom(demand) else { continue }
            guard var record = try await plan.job(id), record.state == .waiting, !record.stopRequested, record.nextRunAt == nil else {
                stale.append(id)
                continue
            }
            place(&record, plan: plan)
            views = plan.views()
            noRoom = []
        }
        for id in stale { waiting.remove(id) }
    }

    /// Executors whose liveness node stayed gone past the grace period: their unfinished
    /// runs go back on the queue, in one transaction with their removal from the executor.
    private func reclaimFromDeadExecutors() async throws {
        let grace = manager.configuration.gracePeriod
        for (executorID, entry) in executors.sorted(by: { $0.key < $1.key }) {
            let dead = entry.registration == nil && entry.goneSince.map { clock.now - $0 >= grace } == true
            // A dead executor's unfinished runs, or the runs a stopping executor handed back.
            let isOrphan = { (task: TaskRecord) in !task.state.isFinished && (dead || task.handedBack == true) }
            // At most jobLimit runs per transaction (their records can be large), until none is left.
            while executors[executorID]?.state?.document.tasks.contains(where: isOrphan) == true {
                guard try await reclaimSome(from: executorID, dead: dead, where: isOrphan) > 0 else { break }
            }
        }
    }

    /// One transaction: up to ``jobLimit`` of the executor's orphaned runs back on the queue,
    /// removed from its state at the same time. Returns how many.
    private func reclaimSome(from executorID: String, dead: Bool, where isOrphan: @escaping (TaskRecord) -> Bool) async throws -> Int {
        try await commitRetryingConflicts {
            let plan = Plan(loop: self)
            guard var current = plan.executorState(executorID) else { return 0 }
            let orphans = Array(current.tasks.filter(isOrphan).prefix(self.jobLimit))
            let moving = Set(orphans.map(\.id))
            current.tasks.removeAll { moving.contains($0.id) }
            plan.update(current, of: executorID)
            var items: [[UInt8]] = []
            for task in orphans {
                guard var record = try await plan.job(task.job) else { continue }
                record.runsStarted = task.run - 1
                record.executor = nil
                record.state = .queued
                record.resume = ResumePoint(attempts: task.attempts, checkpoint: task.checkpoint)
                plan.update(record)
                items.append(try Codec.encode(QueueOperation(.submit, job: task.job)))
            }
            if items.isEmpty {
                // Runs of jobs whose records are gone: only the executor's state changes.
                try await self.client.multi([self.leadership.fence] + plan.operations())
            } else {
                try await self.queue.put(items, alongWith: [self.leadership.fence] + plan.operations())
            }
            self.adopt(plan)
            self.logger.info(
                dead ? "took back the tasks of a dead executor" : "took back the tasks an executor handed back",
                metadata: ["executor": "\(executorID)", "tasks": "\(orphans.map(\.id))"])
            return orphans.count
        }
    }

    // MARK: Transactions

    /// Runs `attempt`; when it fails because an executor state or job record changed since it
    /// was read, refreshes the executor states and tries again. When the planned transaction is
    /// over the byte budget, plans it again with half as many jobs (nothing was sent).
    @discardableResult
    private func commitRetryingConflicts(_ attempt: () async throws -> Int) async throws -> Int {
        while true {
            do {
                let result = try await attempt()
                // Back towards the full limit step by step: the large jobs may still be there.
                if result > 0 { jobLimit = min(Self.transactionJobLimit, jobLimit * 2) }
                return result
            } catch let error as Plan.OverBudget {
                // The attempt may have consumed the signal that room changed: look at the line again.
                capacityChanged = true
                guard jobLimit > 1 else {
                    // One job's transaction alone is too large: leave it (it is logged every time it
                    // comes up) rather than stop the leader, and every leader after it, for good.
                    logger.error("a transaction for one job is over the byte budget: it is left undone", metadata: ["error": "\(error)"])
                    return 0
                }
                logger.notice(
                    "a transaction was over the byte budget: planning fewer jobs per transaction",
                    metadata: ["bytes": "\(error.bytes)", "jobs": "\(error.jobs)", "limit": "\(max(1, min(jobLimit, error.jobs) / 2))"])
                jobLimit = max(1, min(jobLimit, error.jobs) / 2)
            } catch let error as ZooKeeperError where error.code == .badVersion || (error.code == .noNode && error.failedOperationIndex != 0) {
                // The attempt may have consumed the signal that room changed: look at the line again.
                capacityChanged = true
                if let path = error.path, let id = executors.keys.first(where: { layout.executorState($0) == path }) {
                    // An executor wrote its state meanwhile (the common case): read just that one.
                    let (state, bytes) = await Self.readExecutorState(id, client: client, layout: layout)
                    executors[id]?.state = state
                    executors[id]?.stateBytes = bytes
                } else {
                    if let path = error.path, path.hasPrefix(layout.jobs + "/"), let id = path.split(separator: "/").last {
                        if distrustedCarriedRecords.count >= 10_000 { distrustedCarriedRecords.removeAll() }
                        distrustedCarriedRecords.insert(String(id))
                    }
                    knownRecords.removeAll()
                    knownWaitingBytes = 0
                    try await refreshExecutorStates()
                }
            }
        }
    }

    /// Reads every executor's state again, all at once (one round trip, not one per executor).
    private func refreshExecutorStates() async throws {
        let states = await withTaskGroup(of: (String, Versioned<ExecutorState>?, Int).self) { [client, layout] group in
            for id in executors.keys {
                group.addTask {
                    let (state, bytes) = await Self.readExecutorState(id, client: client, layout: layout)
                    return (id, state, bytes)
                }
            }
            return await group.reduce(into: [:]) { $0[$1.0] = ($1.1, $1.2) }
        }
        for (id, (state, bytes)) in states {
            executors[id]?.state = state
            executors[id]?.stateBytes = bytes
        }
    }

    /// The executor's state and its encoded size; nil (and 0) when missing or not a valid document.
    private static func readExecutorState(_ id: String, client: ZooKeeperClient, layout: Layout) async -> (Versioned<ExecutorState>?, Int) {
        guard let node = try? await client.getData(layout.executorState(id)), let (state, bytes) = try? executorState(from: node) else {
            return (nil, 0)
        }
        return (state, bytes)
    }

    /// An executor state znode's document, at its version, and its encoded size.
    private static func executorState(from node: NodeData) throws -> (Versioned<ExecutorState>, Int) {
        (Versioned(document: try Codec.decode(ExecutorState.self, node.data), version: node.stat.version), node.data.count)
    }

    /// After a commit: the executor states written are the new cached versions.
    private func adopt(_ plan: Plan) {
        for (id, state) in plan.changedStates {
            guard let base = executors[id]?.state else { continue }
            executors[id]?.state = Versioned(document: state, version: base.version + 1)
            if let bytes = plan.encodedStateBytes[id] { executors[id]?.stateBytes = bytes }
        }
        // Oldest first, so jobs that wait join the line in the order they were submitted; jobs of
        // the same millisecond (a bulk submit) in the order the transaction took them (queue order).
        let changed = plan.changedJobs.compactMap { plan.records[$0]?.record }.sorted {
            ($0.submittedAt, plan.changeOrder[$0.id] ?? 0) < ($1.submittedAt, plan.changeOrder[$1.id] ?? 0)
        }
        for record in changed {
            let id = record.id
            if let previous = knownRecords.removeValue(forKey: id), previous.record.state == .waiting { knownWaitingBytes -= previous.bytes }
            let bytes = plan.encodedRecordBytes[id] ?? 0
            let keep = record.state == .running || (record.state == .waiting && knownWaitingBytes + bytes <= Self.knownWaitingBytesLimit)
            if keep, let written = plan.records[id] {
                knownRecords[id] = (record, written.version + 1, bytes)
                if record.state == .waiting { knownWaitingBytes += bytes }
            }
            switch (record.state, record.nextRunAt) {
            case (.waiting, nil):
                // A scheduled run that came due without room waits ahead of the line.
                waiting.add(record, urgent: record.spec.schedule != nil && scheduled[id] != nil)
                scheduled[id] = nil
            case (.waiting, let due?):
                scheduled[id] = due
                waiting.remove(id)
            default:
                waiting.remove(id)
                scheduled[id] = nil
            }
        }
    }
}
