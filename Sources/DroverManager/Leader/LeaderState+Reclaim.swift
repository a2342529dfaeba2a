import DroverProtocol

/// Take-back: the unfinished runs of executors that stayed dead past the grace period, and the
/// runs an executor handed back when it stopped, go back on the queue.
extension LeaderState {
    /// Whether the executor counts as dead at `now`: unregistered for the grace period or longer,
    /// as read (listed but not read yet is not known to be unregistered).
    func isDead(_ id: String, at now: ContinuousClock.Instant) -> Bool {
        guard let entry = executors[id], entry.livenessRead else { return false }
        return entry.registration == nil && entry.goneSince.map { now - $0 >= configuration.gracePeriod } == true
    }

    /// Plans one transaction: up to ``jobLimit`` of one executor's orphaned runs (a dead
    /// executor's unfinished ones, or any executor's handed-back ones) removed from its state and
    /// queued again, their records `queued` with where to resume (`resume`: attempts and the last
    /// checkpoint) and `runsStarted` set back so the run keeps its number.
    mutating func planReclaim(at now: ContinuousClock.Instant, wallClock: Timestamp, loaded: [String: LoadedRecord]) -> Step {
        // Round the executors from the one after the last taken back from, so one whose runs
        // cannot be taken back (left undone) does not hold up the others.
        let sorted = executors.keys.sorted()
        let start = reclaimCursor.flatMap { cursor in sorted.firstIndex { $0 > cursor } } ?? 0
        for executorID in sorted[start...] + sorted[..<start] {
            let dead = isDead(executorID, at: now)
            let isOrphan = { (task: TaskRecord) in !task.state.isFinished && (dead || task.handedBack == true) }
            guard executors[executorID]?.progressUnreadable != true, var state = executors[executorID]?.state?.document,
                state.tasks.contains(where: isOrphan)
            else { continue }
            // Dead by the registration's watch, which may lag: looked at once more first.
            if dead && executors[executorID]?.goneConfirmed != true { return .confirmGone(executorID) }
            var transaction = newTransaction(loaded: loaded)
            let orphans = Array(state.tasks.filter(isOrphan).prefix(jobLimit))
            let unread = Set(orphans.map(\.job).filter { transaction.needsRead($0, in: self) })
            if !unread.isEmpty { return .read(unread) }
            var moving: Set<String> = []
            for task in orphans {
                switch transaction.job(task.job, in: self) {
                case .found(var record) where record.spec.isWorkflow:
                    takeBackStep(task, of: &record, from: executorID, dead: dead, at: wallClock, into: &transaction)
                case .found(var record) where record.spec.overlap == .allow:
                    takeBackConcurrentRun(
                        task.run, attempts: task.attempts, checkpoint: task.checkpoint, of: &record, from: executorID, at: wallClock, into: &transaction)
                case .found(let record) where !record.isRunning(task, on: executorID):
                    break  // a stale copy of a run that moved on (see planCollection): only removed
                case .found(var record)
                where dead && task.handedBack != true && task.state == .running && record.spec.retry?.retries(.lost) == true:
                    // Lost with its executor after it started, under a policy that counts it: an
                    // attempt. With attempts left the run resumes elsewhere as below; spent, the run
                    // ends. (A run that never started is only moved.)
                    var run = RunRecord(task: task, executor: executorID, outcome: .failed, attempt: record.currentAttempt, failure: .lost)
                    run.endedAt = wallClock
                    run.error = "lost: executor \(executorID) was gone for the grace period"
                    resetAttemptsAfterALongRun(&record, started: task.startedAt, ended: wallClock)
                    run.attempt = record.currentAttempt > 1 ? record.currentAttempt : nil
                    record.appendHistory(run, limit: configuration.historyLimit)
                    transaction.ended(run)
                    if record.currentAttempt < record.spec.retry?.maxAttempts ?? 1 {
                        guard let item = try? Codec.encode(QueueOperation(.submit, job: task.job)) else { continue }
                        record.attempt = record.currentAttempt + 1
                        record.takeBack(task)
                        transaction.update(record)
                        transaction.enqueue(item)
                    } else {
                        record.runsEnded += 1
                        record.executor = nil
                        decideNext(&record, after: run, now: wallClock, into: &transaction)
                    }
                case .found(var record):
                    // The queue item first: a record `queued` with no item would never be placed.
                    guard let item = try? Codec.encode(QueueOperation(.submit, job: task.job)) else { continue }
                    record.takeBack(task)
                    transaction.update(record)
                    transaction.enqueue(item)
                case .unusable:
                    transaction.failUnusable(task.job)  // the job fails, saying why
                case .absent, .unread:
                    break  // a run of a job whose record is gone is only removed
                }
                moving.insert(task.id)
            }
            state.tasks.removeAll { moving.contains($0.id) }
            transaction.update(state, of: executorID)
            // Taken back as not ended: an end the executor recorded meanwhile must be collected instead.
            transaction.checkProgress(of: executorID)
            transaction.tookBack = (executorID, dead, orphans.map(\.id))
            reclaimCursor = executorID
            return .commit(transaction)
        }
        return planLostPlacements(wallClock: wallClock, loaded: loaded)
    }

    /// Runs this leader placed (or found running) that an executor's assignments no longer hold:
    /// they were made anew (an operator deleted garbled ones, a tree made again) or written by a
    /// version that kept them elsewhere. Nothing would ever end them: their jobs go back on the
    /// queue. In normal operation there are none — the leader removes a run from the assignments
    /// only in the transaction that also changes the job's record, and nobody else writes them.
    private mutating func planLostPlacements(wallClock: Timestamp, loaded: [String: LoadedRecord]) -> Step {
        for executorID in statesToCheck.sorted() {
            // This leader's placements there, and the running jobs it found there at start-up.
            let jobs = (runningOn[executorID] ?? []).union(adopted.values.filter { $0.executorsOfRuns.contains(executorID) }.map(\.id))
            guard let state = executors[executorID]?.state?.document, !jobs.isEmpty else {
                statesToCheck.remove(executorID)
                continue
            }
            let held = Set(state.tasks.map(\.id))
            let isLost = { (record: JobRecord) -> Bool in
                if record.spec.isWorkflow {
                    return record.placedSteps.contains { record.steps![$0].executor == executorID && !held.contains("\(record.id)#\(record.steps![$0].run ?? 0)") }
                }
                if let runs = record.concurrentRuns {
                    return runs.contains { $0.executor == executorID && !held.contains("\(record.id)#\($0.run ?? 0)") }
                }
                return record.state == .running && record.executor == executorID && !held.contains("\(record.id)#\(record.runsStarted)")
            }
            let lost = jobs.sorted().filter { id in (known[id]?.record ?? adopted[id]).map(isLost) ?? false }.prefix(jobLimit)
            guard !lost.isEmpty else {
                statesToCheck.remove(executorID)
                continue
            }
            var transaction = newTransaction(loaded: loaded)
            // An adopted job's record is read first: it is changed as it is now.
            let unread = Set(lost.filter { transaction.needsRead($0, in: self) })
            if !unread.isEmpty { return .read(unread) }
            for id in lost {
                // Checked again on the record as it is (an adopted one may have moved on since).
                guard let current = transaction.record(id, in: self), isLost(current) else {
                    adopted[id] = nil
                    continue
                }
                if var record = transaction.record(id, in: self), record.spec.isWorkflow {
                    // Its missing steps wait to be placed again, with their numbers.
                    for index in record.placedSteps
                    where record.steps![index].executor == executorID && !held.contains("\(id)#\(record.steps![index].run ?? 0)") {
                        if record.stopRequested || record.steps![index].stopRequested == true {
                            // Asked to stop, and gone from the state: it ended, stopped.
                            let run = RunRecord.stopped(
                                id, run: record.steps![index].run ?? 0, on: executorID, at: wallClock, attempt: record.steps![index].attempt ?? 1,
                                "stopped: its run left executor \(executorID)'s state while it was asked to stop")
                            endStep(index, of: &record, with: run, now: wallClock, into: &transaction)
                            continue
                        }
                        record.steps![index].executor = nil
                        record.steps![index].resume = record.steps![index].resume ?? ResumePoint(attempts: 0, checkpoint: nil)
                    }
                    if record.spec.isWorkflow && !record.state.isFinal { record.state = record.placedSteps.isEmpty ? .waiting : .running }
                    transaction.update(record)
                    continue
                }
                if var record = transaction.record(id, in: self), let runs = record.concurrentRuns {
                    // Its missing runs wait to be placed again, with their numbers.
                    for run in runs where run.executor == executorID && !held.contains("\(id)#\(run.run ?? 0)") {
                        takeBackConcurrentRun(run.run ?? 0, attempts: 0, checkpoint: nil, of: &record, from: executorID, at: wallClock, into: &transaction)
                    }
                    continue
                }
                guard var record = transaction.record(id, in: self), let item = try? Codec.encode(QueueOperation(.submit, job: id)) else { continue }
                record.runsStarted -= 1
                record.executor = nil
                record.state = .queued
                transaction.update(record)
                transaction.enqueue(item)
            }
            guard transaction.hasChanges else {
                statesToCheck.remove(executorID)
                continue
            }
            transaction.tookBack = (executorID, false, lost.map { "\($0)#\((known[$0]?.record ?? adopted[$0])?.runsStarted ?? 0)" })
            return .commit(transaction)
        }
        return .nothing
    }
}

extension LeaderState {
    /// A workflow step's run taken back from an executor that is dead past the grace period (or
    /// handed it back): it waits to be placed again with its number and checkpoint — or, lost
    /// after it started under a retry policy that counts `lost`, it is an attempt: tried again
    /// while attempts are left, else its failure applies. A run the record does not expect there
    /// is only removed.
    func takeBackStep(_ task: TaskRecord, of record: inout JobRecord, from executorID: String, dead: Bool, at wallClock: Timestamp, into transaction: inout Transaction) {
        guard let index = record.step(runningAs: task, on: executorID) else { return }
        if record.stopRequested || record.steps![index].stopRequested == true {
            // Asked to stop (a stop, an abort): taken back, it ends here, stopped.
            var run = RunRecord(task: task, executor: executorID, outcome: .stopped, attempt: record.steps![index].attempt ?? 1)
            run.endedAt = wallClock
            run.error = "stopped: taken back from executor \(executorID) while asked to stop"
            endStep(index, of: &record, with: run, now: wallClock, into: &transaction)
            return
        }
        if dead, task.handedBack != true, task.state == .running, record.retryPolicy(ofStep: index)?.retries(.lost) == true {
            var run = RunRecord(task: task, executor: executorID, outcome: .failed, attempt: record.steps![index].attempt ?? 1, failure: .lost)
            run.endedAt = wallClock
            run.error = "lost: executor \(executorID) was gone for the grace period"
            record.appendHistory(run, limit: configuration.historyLimit)
            transaction.ended(run)
            if (record.steps![index].attempt ?? 1) < record.retryPolicy(ofStep: index)?.maxAttempts ?? 1 {
                record.steps![index].attempt = min(record.steps![index].attempt ?? 1, Bounds.attempts.upperBound) + 1
                record.steps![index].resume = ResumePoint(attempts: task.attempts, checkpoint: task.checkpoint, inject: task.inject)
                record.steps![index].executor = nil
            } else {
                record.runsEnded += 1
                decideNextStep(&record, step: index, after: run, now: wallClock, into: &transaction)
                return
            }
        } else {
            record.steps![index].resume = ResumePoint(attempts: task.attempts, checkpoint: task.checkpoint, inject: task.inject)
            record.steps![index].executor = nil
        }
        record.boundWorkflowRecord()
        record.state = record.placedSteps.isEmpty ? .waiting : .running
        transaction.update(record)
    }
}

extension JobRecord {
    /// The record of a run taken back from its executor: `queued`, to be placed again with the same
    /// number, resuming from the run's attempts and last checkpoint.
    mutating func takeBack(_ task: TaskRecord) {
        runsStarted = task.run - 1
        executor = nil
        state = .queued
        resume = ResumePoint(attempts: task.attempts, checkpoint: task.checkpoint)
        if replacing == true {
            // It was being stopped for the schedule's next time: that time's run starts afresh
            // (a new run, no checkpoint), now — a resume point places it at once.
            replacing = nil
            runsStarted = task.run
            resume = ResumePoint(attempts: 0, checkpoint: nil)
        }
    }

    /// Whether this record expects `task` as its current run on `executor`.
    func isRunning(_ task: TaskRecord, on executor: String) -> Bool {
        state == .running && self.executor == executor && runsStarted == task.run
    }
}
