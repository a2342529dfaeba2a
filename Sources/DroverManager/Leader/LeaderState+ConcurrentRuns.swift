import DroverProtocol

/// Scheduled jobs whose overlap policy is `allow`: each time of the schedule starts a run beside
/// the running ones, up to `maxConcurrentRuns`. Their runs in flight are kept in the record
/// (`concurrentRuns`: placed, or waiting for room), as a workflow keeps its steps' runs; each ends
/// on its own, and the job ends once none is left and no time is to come.
extension LeaderState {
    /// Whether later times of the job's schedule still start runs: not once it is stopped; for a
    /// finite job, while its ended and in-flight runs are fewer than `count` and none failed (unless
    /// `onFailure: continue`).
    func takesMoreTimes(_ record: JobRecord) -> Bool {
        guard !record.stopRequested else { return false }
        switch record.spec.kind {
        case .once: return false
        case .infinite: return true
        case .finite:
            if (record.runsFailed ?? 0) > 0, record.spec.onFailure != .continue { return false }
            return record.runsEnded + (record.concurrentRuns?.count ?? 0) < (record.spec.count ?? 1)
        }
    }

    /// A time of the schedule came (`nextRunAt` ≤ now): its run joins those in flight — unless the
    /// job runs `maxConcurrentRuns` already (the time passes, as with `forbid`), or it is later than
    /// a `skip` policy's starting deadline — and the job waits for its next time.
    func concurrentTimeCame(_ record: inout JobRecord, now: Timestamp, into transaction: inout Transaction) {
        guard let schedule = record.spec.schedule, let due = record.nextRunAt, due <= now else { return }
        var runs = record.concurrentRuns ?? []
        let skipped = record.spec.missedRuns.map { $0.policy == .skip && now - due > $0.startingDeadlineMilliseconds } ?? false
        if !skipped, runs.count < record.spec.effectiveMaxConcurrentRuns, takesMoreTimes(record) {
            runs.append(ConcurrentRun(scheduledFor: due))
            record.concurrentRuns = runs
        }
        record.scheduledFor = due
        // `runOnce`: the times that passed while no leader ran make this one run, not one each.
        record.nextRunAt = schedule.nextRunMilliseconds(after: now)
        placeConcurrentRuns(&record, now: now, into: &transaction)
    }

    /// Ends the job's runs that wait to be placed: new ones are dropped (they never started), each
    /// one taken back from an executor (it has a number and started) ends `stopped` in the history.
    func endWaitingRuns(_ record: inout JobRecord, now: Timestamp, _ reason: String, into transaction: inout Transaction) {
        for waiting in record.concurrentRuns ?? [] where waiting.executor == nil {
            guard let number = waiting.run else { continue }
            let ended = RunRecord.stopped(record.id, run: number, attempts: waiting.resume?.attempts ?? 0, on: "-", at: now, reason)
            record.appendHistory(ended, limit: configuration.historyLimit)
            transaction.ended(ended)
            record.runsEnded += 1
        }
        record.concurrentRuns?.removeAll { $0.executor == nil }
    }

    /// Places the job's runs that wait for room, as room allows (unless `placing` is false: a
    /// take-back rewrites the executor's state it took them from, and leaves them to the line);
    /// asks its runs to stop once the job is stopped; files the record: `running` while a run is
    /// placed, `waiting` while one waits for room or for the next time, final once none is left
    /// and no time is to come.
    func placeConcurrentRuns(_ record: inout JobRecord, now: Timestamp, placing: Bool = true, into transaction: inout Transaction) {
        record.executor = nil
        var runs = record.concurrentRuns ?? []
        if record.stopRequested {
            endWaitingRuns(&record, now: now, "stopped while it waited to be placed again", into: &transaction)
            runs.removeAll { $0.executor == nil }
            // Asked on every pass until the executor's state shows it (a state unread now is
            // asked at the next).
            for index in runs.indices where requestStop(of: record.id, run: runs[index].run, on: runs[index].executor, into: &transaction) {
                runs[index].stopRequested = true
            }
        }
        if placing, let missed = record.spec.missedRuns, missed.policy == .skip {
            // A new run that waited for room past the starting deadline: its time passes, as an
            // ordinary job's late run does (one taken back, with a number, is not new).
            runs.removeAll { run in
                run.executor == nil && run.run == nil && run.scheduledFor.map { now - $0 > missed.startingDeadlineMilliseconds } == true
            }
        }
        var noRoom: String?
        for index in runs.indices where runs[index].executor == nil {
            guard placing else { break }
            if let noRoom {
                runs[index].waitingReason = noRoom  // the same demand: no look at every executor again
                continue
            }
            let spec = record.spec
            switch decide(spec.demand, taskBytes: Transaction.estimatedBytes(ofTaskFor: spec), in: &transaction) {
            case .place(let executor):
                guard var state = transaction.executorState(executor, in: self) else { continue }
                // A run taken back keeps its number; a new one takes the next.
                let number = runs[index].run ?? record.runsStarted + 1
                var task = TaskRecord(job: record.id, run: number, method: spec.method, arguments: spec.arguments, resources: spec.resources)
                task.attempts = runs[index].resume?.attempts ?? 0
                task.checkpoint = runs[index].resume?.checkpoint
                task.placement = transaction.newPlacement()
                state.tasks.append(task)
                transaction.update(state, of: executor)
                record.runsStarted = max(record.runsStarted, number)
                runs[index].run = number
                runs[index].executor = executor
                runs[index].resume = nil
                runs[index].waitingReason = nil
            case .wait(let why), .impossible(let why):
                let why = transaction.atExecutorLimit ? "waiting for the next placement round" : why
                runs[index].waitingReason = why
                noRoom = why
            }
        }
        record.concurrentRuns = runs.isEmpty ? nil : runs
        record.triggered = nil
        if !takesMoreTimes(record) || record.suspended == true { record.nextRunAt = nil }
        if runs.contains(where: { $0.executor != nil }) {
            record.state = .running
            record.waitingReason = nil
        } else if let waiting = runs.first {
            record.state = .waiting
            record.waitingReason = waiting.waitingReason
        } else if record.stopRequested {
            record.stop(as: .stopped, at: now)
        } else if !takesMoreTimes(record) {
            record.state = (record.runsFailed ?? 0) > 0 ? .failed : .succeeded
            record.suspended = nil
            record.waitingReason = nil
            record.finishedAt = now
        } else if record.suspended == true {
            record.park()
        } else {
            record.state = .waiting
            record.waitingReason = nil
            if record.nextRunAt == nil, let schedule = record.spec.schedule { waitForNextTime(&record, schedule, after: now) }
        }
        transaction.update(record)
    }

    /// A client's stop, suspend, resume or trigger of a job with runs at once: each applies to all
    /// of them (a submit or cancel goes the jobs' own way).
    func applyToConcurrentRuns(_ op: QueueOperation.Kind, of record: inout JobRecord, now: Timestamp, into transaction: inout Transaction) {
        switch op {
        case .stop:
            record.stopRequested = true
        case .suspend:
            guard record.suspended != true else { return }
            // Runs that run finish; new ones that wait for room are dropped, no time comes.
            record.suspended = true
            record.concurrentRuns?.removeAll { $0.executor == nil && $0.run == nil }
        case .resume:
            guard record.suspended == true, let schedule = record.spec.schedule else { return }
            record.suspended = nil
            // Times missed while suspended are skipped: the next one after now (or after its
            // `notBefore`, if it has not started yet).
            let after = record.spec.notBefore.map { $0 > now && record.runsStarted == 0 ? $0 - 1 : now } ?? now
            record.nextRunAt = takesMoreTimes(record) ? schedule.nextRunMilliseconds(after: after) : nil
            record.scheduledFor = record.nextRunAt
        case .trigger:
            // One more run now, outside the schedule, beside the running ones (up to the maximum).
            guard (record.concurrentRuns?.count ?? 0) < record.spec.effectiveMaxConcurrentRuns, takesMoreTimes(record) else { return }
            record.concurrentRuns = (record.concurrentRuns ?? []) + [ConcurrentRun(scheduledFor: nil)]
        case .submit, .cancel, .inject, .drain, .undrain:
            return
        }
        placeConcurrentRuns(&record, now: now, into: &transaction)
    }

    /// Sets `stopRequested` on the job's run `run` on `executor`, if it is there unfinished.
    /// Returns whether the run is asked to stop now (by this or before).
    func requestStop(of job: String, run: Int?, on executor: String?, into transaction: inout Transaction) -> Bool {
        guard let executor, let run, var state = transaction.executorState(executor, in: self),
            let position = state.tasks.firstIndex(where: { $0.job == job && $0.run == run && !$0.state.isFinished })
        else { return false }
        guard !state.tasks[position].stopRequested else { return true }
        state.tasks[position].stopRequested = true
        transaction.update(state, of: executor)
        return true
    }

    /// One of the job's runs ended on `executorID` (collected from its state): into the history,
    /// out of the runs in flight; then what the job does next.
    func collectConcurrentRun(_ task: TaskRecord, of record: inout JobRecord, on executorID: String, now: Timestamp, into transaction: inout Transaction) {
        // A run the record does not expect there (collected already, moved) is only removed.
        guard let index = record.concurrentRuns?.firstIndex(where: { $0.run == task.run && $0.executor == executorID }) else { return }
        let outcome: RunRecord.Outcome = task.state == .succeeded ? .succeeded : (task.stopRequested ? .stopped : .failed)
        endConcurrentRun(index, of: &record, with: RunRecord(task: task, executor: executorID, outcome: outcome), now: now, into: &transaction)
    }

    /// Run `index` of the job's runs in flight ended as `run` says.
    func endConcurrentRun(
        _ index: Int, of record: inout JobRecord, with run: RunRecord, now: Timestamp, placing: Bool = true, into transaction: inout Transaction
    ) {
        record.concurrentRuns?.remove(at: index)
        record.appendHistory(run, limit: configuration.historyLimit)
        transaction.ended(run)
        record.runsEnded += 1
        if run.outcome == .failed { record.runsFailed = (record.runsFailed ?? 0) + 1 }
        placeConcurrentRuns(&record, now: now, placing: placing, into: &transaction)
    }

    /// One of the job's runs taken back from `executorID` (dead past the grace period, handed
    /// back, or missing from its state): it waits in line to be placed again with its number and
    /// checkpoint — or, when the job is stopped, it ends here, stopped. Placed by the line, not
    /// here: the take-back rewrites the state it came from (a live executor that handed it back
    /// could otherwise be given it again, and lose it with that write).
    func takeBackConcurrentRun(
        _ run: Int, attempts: Int, checkpoint: JSONValue?, of record: inout JobRecord, from executorID: String, at now: Timestamp,
        into transaction: inout Transaction
    ) {
        guard let index = record.concurrentRuns?.firstIndex(where: { $0.run == run && $0.executor == executorID }) else { return }
        if record.stopRequested {
            let ended = RunRecord.stopped(
                record.id, run: run, attempts: attempts, on: executorID, at: now, "stopped: taken back from executor \(executorID) while asked to stop")
            endConcurrentRun(index, of: &record, with: ended, now: now, placing: false, into: &transaction)
            return
        }
        record.concurrentRuns![index].executor = nil
        record.concurrentRuns![index].stopRequested = nil
        record.concurrentRuns![index].resume = ResumePoint(attempts: attempts, checkpoint: checkpoint)
        record.concurrentRuns![index].waitingReason = "taken back from executor \(executorID): waits to be placed again"
        placeConcurrentRuns(&record, now: now, placing: false, into: &transaction)
    }

    /// Where the job waits: in the line while a run waits for room, among the scheduled jobs while
    /// a time is to come (both can hold, and either beside runs that run).
    mutating func fileConcurrentRuns(_ record: JobRecord) {
        let id = record.id
        waiting.remove(id)
        guard !record.state.isFinal else {
            scheduled[id] = nil
            return
        }
        if record.concurrentRuns?.contains(where: { $0.executor == nil }) == true { waiting.add(record) }
        scheduled[id] = record.nextRunAt
    }
}

extension RunRecord {
    /// A run that ended stopped with no end from its executor: asked to stop, it was taken back,
    /// left the executor's state, or was waiting to be placed again.
    static func stopped(_ job: String, run: Int, attempts: Int = 0, on executor: String, at time: Timestamp, attempt: Int = 1, _ reason: String) -> RunRecord {
        var task = TaskRecord(job: job, run: run, method: "", arguments: [:], resources: Resources())
        task.state = .failed
        task.attempts = attempts
        task.endedAt = time
        var ended = RunRecord(task: task, executor: executor, outcome: .stopped, attempt: attempt)
        ended.error = reason
        return ended
    }
}

extension QueueOperation.Kind {
    /// Stop, suspend, resume, trigger: what changes a job's runs rather than its place in the queue.
    var changesRuns: Bool { self == .stop || self == .suspend || self == .resume || self == .trigger }
}
