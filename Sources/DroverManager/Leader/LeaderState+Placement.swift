import DroverProtocol

/// Placement: where a job's next run goes, due scheduled runs, and the waiting line.
extension LeaderState {
    /// Places the job's next run, or records why it waits. The rule: `Placement.decide` over the
    /// executors as this transaction leaves them, skipping any whose state would pass its size
    /// limit. A run taken back from an executor (`record.resume`) keeps its attempts and
    /// checkpoint until it is placed again.
    ///
    /// A workflow's steps are placed by ``placeWorkflow(_:now:into:)``, the runs of a job with
    /// `overlap: allow` by ``placeConcurrentRuns(_:now:placing:into:)``.
    func place(_ record: inout JobRecord, now: Timestamp, into transaction: inout Transaction) {
        if record.spec.isWorkflow {
            placeWorkflow(&record, now: now, into: &transaction)
            return
        }
        if record.spec.overlap == .allow {
            placeConcurrentRuns(&record, now: now, into: &transaction)
            return
        }
        let run = record.spec
        let taskBytes = Transaction.estimatedBytes(ofTaskFor: run)
        switch decide(run.demand, taskBytes: taskBytes, in: &transaction) {
        case .place(let executor):
            guard var state = transaction.executorState(executor, in: self) else { return }
            var task = TaskRecord(job: record.id, run: record.runsStarted + 1, method: run.method, arguments: run.arguments, resources: run.resources)
            task.attempts = record.resume?.attempts ?? 0
            task.checkpoint = record.resume?.checkpoint
            task.placement = transaction.newPlacement()
            if record.runsStarted == 0, record.resume == nil, record.spec.schedule == nil, record.spec.notBefore == nil {
                transaction.submitToPlacement.append(max(0, now - record.submittedAt))
            }
            record.resume = nil
            state.tasks.append(task)
            transaction.update(state, of: executor)
            record.runsStarted += 1
            record.state = .running
            record.executor = executor
            record.waitingReason = nil
            record.nextRunAt = nil
            record.triggered = nil
            keepNextTimeWhileRunning(&record, now: now)
        case .wait(let reason), .impossible(let reason):
            record.state = .waiting
            // At the limit only some executors were offered: the reason may not hold for the others.
            record.waitingReason = transaction.atExecutorLimit ? "waiting for the next placement round" : reason
            record.nextRunAt = nil
        }
        transaction.update(record)
    }

    /// Where a task of `demand` goes in this transaction, skipping any executor whose state would
    /// grow past its size limit (it counts as full for the rest of the transaction); a place
    /// decided has the task's bytes counted on it.
    func decide(_ demand: Demand, taskBytes: Int, in transaction: inout Transaction) -> PlacementDecision {
        guard !transaction.placesNothing else { return .wait(reason: "waiting for the next placement round") }
        var decision = Placement.decide(demand, among: transaction.views(in: self))
        while case .place(let executor) = decision, transaction.stateBytes(of: executor, in: self) + taskBytes > ExecutorState.maximumEncodedBytes {
            transaction.markFullByBytes(executor)
            decision = Placement.decide(demand, among: transaction.views(in: self))
        }
        if case .place(let executor) = decision { transaction.addStateBytes(taskBytes, to: executor) }
        return decision
    }

    /// Plans one transaction of due scheduled runs and waiting jobs, when any is due or room
    /// changed.
    mutating func planPlacement(now: Timestamp, loaded: [String: LoadedRecord]) -> Step {
        guard scheduled.contains(where: { $0.value <= now }) || (capacityChanged && !waiting.isEmpty) else { return .nothing }
        var transaction = newTransaction(loaded: loaded)
        placeDueAndWaiting(into: &transaction, now: now)
        return step(for: transaction)
    }

    /// Whether placement should go on at once after a commit: a limit left room unfilled.
    var placementContinues: Bool { capacityChanged && !waiting.isEmpty }

    /// Places due scheduled runs first (by due time), then waiting jobs in the order they began
    /// to wait, while there is room. A waiting job's record is read only when it fits now, so a
    /// deep backlog costs no reads while the executors are full.
    mutating func placeDueAndWaiting(into transaction: inout Transaction, now: Timestamp) {
        let due = scheduled.filter { $0.value <= now }.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map(\.key)
        // At most jobLimit due runs per transaction, counting those whose records are still to read.
        for id in due where transaction.changedJobs.count + transaction.unread.count < jobLimit {
            switch transaction.job(id, in: self) {
            case .unread: continue  // read, then planned again
            case .found(var record) where record.spec.isWorkflow && !record.state.isFinal:
                placeWorkflow(&record, now: now, into: &transaction)  // a step's retry came due
            case .found(var record) where record.spec.overlap == .allow && !record.state.isFinal:
                // A time came: its run starts beside the running ones (or the time passes).
                guard let next = record.nextRunAt, next <= now else { continue }
                concurrentTimeCame(&record, now: now, into: &transaction)
            case .found(var record) where record.state == .waiting && !record.stopRequested && record.suspended != true:
                if let next = record.nextRunAt, next > now { continue }
                guard admitDueRun(&record, now: now) else {
                    transaction.update(record)  // skipped: waits for a later time
                    continue
                }
                if let next = record.nextRunAt, next > now {
                    transaction.update(record)
                    continue
                }
                // No room: it waits for capacity now, not for its time (place records why).
                place(&record, now: now, into: &transaction)
            case .found(var record)
            where record.state == .running && record.spec.overlap == .replace && record.replacing != true && !record.stopRequested
                && record.suspended != true:
                guard let next = record.nextRunAt, next <= now else { continue }
                replaceRunningRun(&record, into: &transaction)
            case .unusable:
                scheduled[id] = nil
                transaction.failUnusable(id)
            case .found, .absent:
                scheduled[id] = nil  // no longer waits for a time (stopped, gone)
            }
        }
        guard transaction.unread.isEmpty, capacitySignalPending(transaction), !waiting.isEmpty else { return }
        transaction.consumeCapacitySignal()
        // The executors as placed so far: they change only when a job is placed.
        var views = transaction.views(in: self)
        // Demands that found no room among `views`: the jobs with the same demand behind them are
        // passed over without a look at every executor, and the scan ends once every demand in
        // line found none. Without this a deep line of jobs that cannot go anywhere now cost a
        // pass over every executor for each of them, on every change of room.
        var noRoom: Set<Demand> = []
        func hasRoom(_ demand: Demand) -> Bool {
            guard !noRoom.contains(demand) else { return false }
            if Placement.choose(demand, among: views) != nil { return true }
            noRoom.insert(demand)
            return false
        }
        // The jobs likely to be placed now, read at once: from the front of the line, as many of
        // each demand as the executors that can take it have free slots for.
        let freeSlots = views.filter { $0.alive && !$0.draining }.reduce(0) { $0 + max(0, $1.capacity.slots - $1.used.slots) }
        let likely = max(0, min(freeSlots, jobLimit - transaction.changedJobs.count))
        var roomLeft: [Demand: Int] = [:]
        // Stops after `likely` candidates, or once no demand in line has room left: never a walk
        // of the whole line (the records of most candidates are known, and need no read).
        func requestReads(from entries: some Sequence<(id: String, demand: Demand)>) {
            var candidates = 0
            for (id, demand) in entries {
                guard candidates < likely, noRoom.count < waiting.distinctDemands else { break }
                guard !transaction.changedJobs.contains(id), hasRoom(demand) else { continue }
                let room = roomLeft[demand] ?? views.filter { $0.canTake(demand) }.reduce(0) {
                    $0 + max(0, $1.capacity.slots - $1.used.slots) / max(1, demand.resources.slots)
                }
                guard room > 0 else {
                    noRoom.insert(demand)
                    continue
                }
                roomLeft[demand] = room - 1
                candidates += 1
                if transaction.needsRead(id, in: self) { _ = transaction.job(id, in: self) }
            }
        }
        if likely > 0 {
            requestReads(from: waiting.inOrder)
            if !transaction.unread.isEmpty { return }  // read them all at once, then plan again
        }
        noRoom = []
        var stale: [String] = []
        scan: for (id, demand) in waiting.inOrder {
            guard transaction.changedJobs.count < jobLimit else {
                transaction.leaveRoomSignal()  // the rest of the room is filled by the next transaction
                break
            }
            guard views.contains(where: { $0.alive && !$0.draining && $0.used.slots < $0.capacity.slots }) else {
                // Full, or full among the executors this transaction may still change.
                if transaction.atExecutorLimit { transaction.leaveRoomSignal() }
                break
            }
            guard noRoom.count < waiting.distinctDemands else {
                // Among the executors this transaction may still change, none has room: the others
                // may, in the next transaction.
                if transaction.atExecutorLimit { transaction.leaveRoomSignal() }
                break
            }
            // Not decided in this transaction already (placed jobs leave the line only once it
            // commits): checked first, as deciding costs a pass over the executors.
            guard !transaction.changedJobs.contains(id), hasRoom(demand) else { continue }
            switch transaction.job(id, in: self) {
            case .unread:
                // Read, then planned again from here: with the records of the jobs after it that
                // are likely to be placed too, so the line is not walked again for each one.
                noRoom = []
                roomLeft = [:]
                requestReads(from: waiting.inOrder.lazy.drop { $0.id != id }.dropFirst())
                break scan
            case .found(var record) where record.spec.isWorkflow && !record.state.isFinal:
                placeWorkflow(&record, now: now, into: &transaction)
                views = transaction.views(in: self)
                noRoom = []
            case .found(var record) where record.spec.overlap == .allow && !record.state.isFinal:
                placeConcurrentRuns(&record, now: now, into: &transaction)
                views = transaction.views(in: self)
                noRoom = []
            case .found(var record)
            where record.state == .waiting && !record.stopRequested && record.nextRunAt == nil && (record.suspended != true || record.triggered == true):
                // A scheduled time that waited for room past its starting deadline: as its policy says.
                // (It leaves the line when the transaction commits: `committed` files it by its time.)
                guard admitDueRun(&record, now: now), record.nextRunAt == nil else {
                    transaction.update(record)  // skipped, or waits for a later time of the schedule
                    continue
                }
                place(&record, now: now, into: &transaction)
                views = transaction.views(in: self)
                noRoom = []
            case .unusable:
                stale.append(id)
                transaction.failUnusable(id)
            case .found, .absent:
                stale.append(id)
            }
        }
        for id in stale { waiting.remove(id) }
    }
}
