import DroverProtocol

/// Queue operations: submit, cancel, stop, suspend, resume, trigger, drain and undrain, as the leader applies them.
extension LeaderState {
    /// What of a queue item is set aside: its data as it was, and why.
    typealias Unreadable = (data: [UInt8], code: SetAsideItem.Code, reason: String)

    /// The operations of one queue item, and what in it is not a Drover operation of a format this
    /// leader reads, with the reason (set aside: a bad element of a batch alone, as it was).
    static func content(of data: [UInt8]) -> (operations: [QueueOperation], unreadable: [Unreadable]) {
        switch try? Codec.decode(QueueItemContent.self, data) {
        case nil: return ([], [(data, .unreadableItem, "not a Drover queue item (formats 1 and 2)")])
        case .operation(let operation)?: return ([operation], [])
        case .batch(let operations, let unreadable)?:
            if operations.isEmpty && unreadable.isEmpty { return ([], [(data, .emptyBatch, "a batch (format 2) with no operations")]) }
            let reason = "an element of a batch (format 2) that is not a Drover queue operation (format 1); the rest of the batch was applied"
            return (operations, unreadable.map { ((try? Codec.encode($0)) ?? [], .unreadableOperation, reason) })
        }
    }

    /// Plans a queue batch: its operations in order, and what of it cannot be read set aside.
    /// With `placing` false the submitted jobs are filed as waiting, none placed (one item whose
    /// jobs cannot be placed within the byte budget must not block the queue).
    mutating func planQueueBatch(
        _ operations: [QueueOperation], unreadable: [Unreadable], now: Timestamp, loaded: [String: LoadedRecord], placing: Bool
    ) -> Step {
        var transaction = newTransaction(loaded: loaded, placesNothing: !placing)
        for (data, code, reason) in unreadable { transaction.setAside(data, code: code, reason: reason) }
        for operation in operations where operation.op == .submit {
            if let record = operation.record, !distrustedCarriedRecords.contains(operation.job) { transaction.created(record, carriedBy: operation, in: self) }
        }
        // Every record the batch needs, at once.
        var unread: Set<String> = []
        for operation in operations where !operation.namesExecutor && transaction.needsRead(operation.job, in: self) { unread.insert(operation.job) }
        if !unread.isEmpty { return .read(unread) }
        for operation in operations { apply(operation, now: now, into: &transaction) }
        // Every record was read above; a batch that changes nothing still takes its items.
        return transaction.unread.isEmpty ? .commit(transaction) : .read(transaction.unread)
    }

    /// One operation's effect.
    func apply(_ operation: QueueOperation, now: Timestamp, into transaction: inout Transaction) {
        if operation.namesExecutor {
            let executor = operation.drainedExecutor
            guard var state = transaction.executorState(executor, in: self) else {
                // Its state is not read yet (it has just registered): the drain waits for it
                // rather than being lost.
                transaction.deferredDrains[executor] = operation.op == .drain
                return
            }
            transaction.deferredDrains[executor] = nil
            transaction.settledDrains.insert(executor)
            guard state.draining != (operation.op == .drain) else { return }
            state.draining = operation.op == .drain
            transaction.update(state, of: executor)
            return
        }
        var record: JobRecord
        switch transaction.job(operation.job, in: self) {
        case .found(let found): record = found
        case .unusable:
            // The record exists but cannot be used: the job ends failed, saying why.
            transaction.failUnusable(operation.job)
            return
        case .absent:
            transaction.setAside((try? Codec.encode(operation)) ?? [], code: .noJob, reason: "no job \(operation.job)")
            return
        case .unread:
            return  // read, then planned again
        }
        if record.spec.isWorkflow {
            switch operation.op {
            case .stop:
                // Every step's run is asked to stop; it ends `stopped` once they have ended.
                guard !record.state.isFinal else { return }
                _ = record.stopWorkflowRequested(now: now)
                placeWorkflow(&record, now: now, into: &transaction)
                return
            case .suspend where record.steps != nil, .resume where record.steps != nil, .trigger where record.steps != nil:
                // A pass through its graph is what a run is to a job. One under way finishes its
                // steps: suspend and resume only mark the workflow, a trigger adds no second pass.
                // Between passes (steps absent) it is a job between runs: the cases below.
                guard operation.op != .trigger, !record.state.isFinal, (record.suspended == true) != (operation.op == .suspend) else { return }
                record.suspended = operation.op == .suspend ? true : nil
                record.triggered = nil
                transaction.update(record)
                return
            case .submit, .cancel, .inject, .drain, .undrain, .suspend, .resume, .trigger:
                break
            }
        }
        if record.spec.overlap == .allow, record.state != .queued, !record.state.isFinal, operation.op.changesRuns {
            applyToConcurrentRuns(operation.op, of: &record, now: now, into: &transaction)
            return
        }
        switch operation.op {
        case .submit:
            guard !record.state.isFinal else { return }
            if record.stopRequested {
                // Stopped while its run was taken back from an executor: it ends here, or it
                // would stay `queued` for ever.
                record.stop(as: .stopped, at: now)
                transaction.update(record)
                return
            }
            if record.suspended == true {
                record.park()
                transaction.update(record)
                return
            }
            // Not before its time: the first run of a job that asks to start later.
            if let notBefore = record.spec.notBefore, notBefore > now, record.runsStarted == 0, record.resume == nil {
                if let schedule = record.spec.schedule {
                    waitForNextTime(&record, schedule, after: notBefore - 1)
                } else {
                    record.state = .waiting
                    record.nextRunAt = notBefore
                }
                transaction.update(record)
                return
            }
            // A run taken back from an executor (record.resume) is placed now, even for a
            // scheduled job: it was due when it first started.
            if let schedule = record.spec.schedule, record.resume == nil {
                waitForNextTime(&record, schedule, after: now)
                transaction.update(record)
            } else {
                place(&record, now: now, into: &transaction)
            }
        case .cancel:
            // A running job is stopped, not cancelled (the client says so before it queues this).
            guard record.state == .queued || record.state == .waiting else { return }
            // An `allow` job's runs taken back and waiting to be placed again had started: their history says how they ended.
            endWaitingRuns(&record, now: now, "cancelled while it waited to be placed again", into: &transaction)
            record.stop(as: .cancelled, at: now)
            transaction.update(record)
        case .stop:
            guard !record.state.isFinal else { return }
            record.stopRequested = true
            if record.state == .running, let executor = record.executor, var state = transaction.executorState(executor, in: self),
                let index = state.tasks.firstIndex(where: { $0.job == record.id && !$0.state.isFinished })
            {
                state.tasks[index].stopRequested = true
                transaction.update(state, of: executor)
            } else {
                record.stop(as: .stopped, at: now)
            }
            transaction.update(record)
        case .suspend:
            guard !record.state.isFinal, record.suspended != true else { return }
            record.suspended = true
            // Waiting (for room, a time, a retry): it waits for `resume` instead. Running: the run
            // finishes, then it waits (decideNext) — a `replace` job's next time no longer stops it.
            // Queued: its submit parks it.
            if record.state == .waiting { record.park() }
            if record.state == .running { record.nextRunAt = nil }
            transaction.update(record)
        case .resume:
            guard !record.state.isFinal, record.suspended == true else { return }
            record.suspended = nil
            record.triggered = nil
            if record.state == .running { keepNextTimeWhileRunning(&record, now: now) }
            if record.state == .waiting {
                record.waitingReason = nil
                if let notBefore = record.spec.notBefore, notBefore > now, record.runsStarted == 0, record.resume == nil {
                    // Not before its time, as at submit.
                    if let schedule = record.spec.schedule {
                        waitForNextTime(&record, schedule, after: notBefore - 1)
                    } else {
                        record.nextRunAt = notBefore
                    }
                } else if let schedule = record.spec.schedule, record.resume == nil, record.attempt == nil {
                    // Times missed while suspended are skipped: the next one after now.
                    waitForNextTime(&record, schedule, after: now)
                } else {
                    place(&record, now: now, into: &transaction)
                    return
                }
            }
            transaction.update(record)
        case .trigger:
            // One run now, outside the schedule; never a second run beside a running one.
            guard record.state == .waiting else { return }
            // The run stands for no time of the schedule: the next waits for its own.
            record.scheduledFor = nil
            // Suspended and no room now: it keeps its place in line until room comes.
            if record.suspended == true { record.triggered = true }
            place(&record, now: now, into: &transaction)
        case .inject:
            do {
                try record.inject(operation.steps ?? [], by: nil)
            } catch {
                transaction.setAside((try? Codec.encode(operation)) ?? [], code: .refused, reason: "steps not added to \(record.id): \(error.field): \(error.reason)")
                return
            }
            transaction.update(record)
        case .drain, .undrain:
            return
        }
    }
}

extension JobRecord {
    /// A suspended job between runs: waiting for `resume`, with nothing due.
    mutating func park() {
        state = .waiting
        nextRunAt = nil
        waitingReason = "suspended (drover resume continues it)"
    }

    /// Ends a job that is not running: nothing due, nothing to resume, no attempt under way.
    mutating func stop(as final: JobState, at now: Timestamp) {
        if steps != nil { _ = stopWorkflow(as: final, now: now, reason: "skipped: the workflow was \(final.rawValue)") }
        concurrentRuns = nil
        state = final
        finishedAt = now
        nextRunAt = nil
        resume = nil
        attempt = nil
        suspended = nil
        triggered = nil
    }
}
