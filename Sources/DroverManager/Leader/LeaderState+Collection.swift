import DroverProtocol
import Foundation

/// Collection: finished runs out of executor states into their jobs' histories, and the rule for
/// what a job does after a run.
extension LeaderState {
    /// Plans one transaction: finished runs (up to ``jobLimit`` jobs, ``Transaction/executorLimit``
    /// executors) collected, and the room they free filled from the waiting line.
    /// Drains queued before the executor's state was read, applied now that it is.
    mutating func planDeferredDrains(loaded: [String: LoadedRecord]) -> Step? {
        var transaction = newTransaction(loaded: loaded)
        for (id, draining) in pendingDrains.sorted(by: { $0.key < $1.key }) {
            guard var state = transaction.executorState(id, in: self) else { continue }
            transaction.settledDrains.insert(id)
            guard state.draining != draining else { continue }
            state.draining = draining
            transaction.update(state, of: id)
        }
        guard !transaction.settledDrains.isEmpty else { return nil }
        guard !transaction.changedStates.isEmpty else {
            for id in transaction.settledDrains { pendingDrains[id] = nil }
            return nil
        }
        return .commit(transaction)
    }

    mutating func planCollection(now: Timestamp, loaded: [String: LoadedRecord]) -> Step {
        if let drains = planDeferredDrains(loaded: loaded) { return drains }
        guard hasFinishedTasks else { return .nothing }
        var transaction = newTransaction(loaded: loaded)
        // Every finished run's record at once: one round of reads, not one per run.
        var unread: Set<String> = []
        for entry in executors.values {
            for task in entry.state?.document.tasks ?? [] where task.state.isFinished && transaction.needsRead(task.job, in: self) {
                unread.insert(task.job)
            }
        }
        if !unread.isEmpty { return .read(unread) }
        for (executorID, entry) in executors.sorted(by: { $0.key < $1.key }) {
            let room = jobLimit - transaction.changedJobs.count
            guard room > 0, !transaction.atExecutorLimit else { break }
            guard entry.state != nil, var state = transaction.executorState(executorID, in: self) else { continue }
            let finished = Array(state.tasks.filter { $0.state.isFinished }.prefix(room))
            guard !finished.isEmpty else { continue }
            let collected = Set(finished.map(\.id))
            state.tasks.removeAll { collected.contains($0.id) }
            noteCollectedClaims(finished, of: executorID, in: &state)
            transaction.update(state, of: executorID)
            for task in finished {
                // A run of a job whose record is gone leaves the executor all the same; a job
                // whose record cannot be used fails, saying why.
                guard var record = transaction.record(task.job, in: self) else {
                    transaction.failUnusable(task.job)
                    continue
                }
                // A run the record no longer expects here — collected already, or moved elsewhere —
                // can only come back in assignments another program wrote: it is removed, and
                // the job is left as it is (collecting it again would run a finished job again).
                if record.spec.isWorkflow {
                    collectStep(task, of: &record, on: executorID, now: now, into: &transaction)
                    continue
                }
                if record.spec.overlap == .allow {
                    collectConcurrentRun(task, of: &record, on: executorID, now: now, into: &transaction)
                    continue
                }
                guard record.isRunning(task, on: executorID) else { continue }
                let outcome: RunRecord.Outcome = task.state == .succeeded ? .succeeded : (task.stopRequested ? .stopped : .failed)
                var run = RunRecord(task: task, executor: executorID, outcome: outcome, attempt: record.currentAttempt)
                if outcome == .stopped && record.replacing == true && !record.stopRequested {
                    run.error = "stopped: replaced by the run of the schedule's next time (overlap: replace)"
                }
                record.appendHistory(run, limit: configuration.historyLimit)
                transaction.ended(run)
                if run.run == 1, record.currentAttempt == 1, record.spec.schedule == nil, record.spec.notBefore == nil, let started = run.startedAt {
                    transaction.submitToStart.append(max(0, started - record.submittedAt))
                }
                record.runsEnded += 1
                record.executor = nil
                decideNext(&record, after: run, now: now, into: &transaction)
            }
        }
        // The room the finished runs freed goes to waiting jobs in the same transaction.
        placeDueAndWaiting(into: &transaction, now: now)
        return step(for: transaction)
    }

    /// What a job does after a run ended — the rule for each kind:
    /// - stopped (asked to, or the run was stopped): `stopped`;
    /// - a failed run whose kind of failure the job's retry policy names, with attempts left: the
    ///   run is tried again, as a new run, after the policy's delay (a due time in the record);
    /// - `once`; `finite` with every run done (retried runs do not count), or after a run that
    ///   failed for good unless `onFailure: continue`: `succeeded`, or `failed` if a run failed
    ///   for good;
    /// - `infinite` whose retry policy names the failure and whose attempts are spent: `failed`;
    /// - `finite` with runs left, `infinite`: the next run — placed now, or, for a scheduled
    ///   job, waiting for its next time by its policy for missed runs (``scheduleNextRun``), or
    ///   placed now when the run was stopped to make way for that time (overlap `replace`);
    /// - suspended, when it would go on: `waiting` for `resume`, nothing due;
    /// - `infinite` after a failed run without a retry policy for it: the next run waits a back-off
    ///   that doubles with each failure in a row (``restartDelay(after:)``), so a command that fails
    ///   at once costs one write per step, not a spin.
    func decideNext(_ record: inout JobRecord, after run: RunRecord, now: Timestamp, into transaction: inout Transaction) {
        let spec = record.spec
        // A run stopped to make way for the next time of its schedule (overlap `replace`) ended:
        // that time's run starts now.
        let replaced = record.replacing == true
        record.replacing = nil
        if record.stopRequested || (run.outcome == .stopped && !replaced) {
            record.state = .stopped
            record.attempt = nil
            record.finishedAt = now
            transaction.update(record)
            return
        }
        var failedForGood = false
        if run.outcome == .failed {
            let failure = run.failure ?? .failed
            resetAttemptsAfterALongRun(&record, started: run.startedAt, ended: run.endedAt)
            if let retry = spec.retry, retry.retries(failure), record.currentAttempt < retry.maxAttempts {
                let attempt = record.currentAttempt + 1
                record.attempt = attempt
                record.runsRetried = (record.runsRetried ?? 0) + 1
                record.state = .waiting
                record.nextRunAt = now.addingClamped(retry.delayMilliseconds(beforeAttempt: attempt, job: record.id))
                record.waitingReason = "retrying: attempt \(attempt) of \(retry.maxAttempts) after run \(run.run) \(failure == .failed ? "failed" : failure.rawValue)"
                if record.suspended == true { record.park() }  // the retry waits for `resume`
                transaction.update(record)
                return
            }
            failedForGood = true
            record.runsFailed = (record.runsFailed ?? 0) + 1
            if spec.kind == .infinite, let retry = spec.retry, retry.retries(failure) {
                record.state = .failed
                record.attempt = nil
                record.waitingReason = nil
                record.finishedAt = now
                transaction.update(record)
                return
            }
        }
        record.attempt = nil
        let goesOn: Bool =
            switch spec.kind {
            case .once: false
            case .finite: (!failedForGood || spec.onFailure == .continue) && record.runsDone < (spec.count ?? 1)
            case .infinite: true
            }
        if !goesOn {
            record.state = (record.runsFailed ?? 0) > 0 ? .failed : .succeeded
            record.suspended = nil
            record.finishedAt = now
        } else if record.suspended == true {
            record.park()
        } else if let schedule = spec.schedule, !replaced {
            scheduleNextRun(&record, schedule, now: now)
        } else if spec.kind == .infinite, failedForGood, let delay = restartDelay(after: record.history) {
            record.state = .waiting
            record.nextRunAt = now.addingClamped(delay)
            record.waitingReason = "restarting after \(Self.failuresInARow(record.history)) failed run(s) in a row"
        } else {
            place(&record, now: now, into: &transaction)
            return
        }
        transaction.update(record)
    }

    /// A workflow step's run ended: recorded in the history (with the steps its handler injected,
    /// or its failure when they were refused), then what the workflow does next.
    func collectStep(_ task: TaskRecord, of record: inout JobRecord, on executorID: String, now: Timestamp, into transaction: inout Transaction) {
        // A run the record does not expect there (collected already, moved) is only removed.
        guard let index = record.step(runningAs: task, on: executorID) else { return }
        let outcome: RunRecord.Outcome = task.state == .succeeded ? .succeeded : (task.stopRequested ? .stopped : .failed)
        var run = RunRecord(task: task, executor: executorID, outcome: outcome, attempt: record.steps![index].attempt ?? 1)
        // Steps its handler injected count only when it succeeded (a retry injects them again).
        if let injected = task.inject, !injected.isEmpty, run.outcome == .succeeded {
            do {
                try record.inject(injected, by: record.steps![index].id)
            } catch {
                run.outcome = .failed
                run.failure = .failed
                run.result = nil
                run.error = "the steps it injected were refused: \(error.field): \(error.reason)"
            }
        }
        endStep(index, of: &record, with: run, now: now, into: &transaction)
    }

    /// A service's run that lasted ``RestartBackoff/resetAfter`` or longer starts its count of
    /// attempts again: "failures in a row" are those of a service that does not stay up.
    func resetAttemptsAfterALongRun(_ record: inout JobRecord, started: Timestamp?, ended: Timestamp) {
        if record.spec.kind == .infinite, Self.lasted(from: started, to: ended, atLeast: configuration.restartBackoff.resetAfter) {
            record.attempt = nil
        }
    }

    /// Runs that failed in a row at the end of `history`, each shorter than
    /// ``Configuration/restartBackoff``'s reset time (a run that lasted longer starts the count again).
    static func failuresInARow(_ history: [RunRecord], resetAfter: Duration = .seconds(60)) -> Int {
        var count = 0
        for run in history.reversed() {
            guard run.outcome == .failed, !lasted(from: run.startedAt, to: run.endedAt, atLeast: resetAfter) else { break }
            count += 1
        }
        return count
    }

    /// Whether a run that started at `started` (if it did) and ended at `ended` lasted `duration`
    /// or longer: the rule by which a long run starts a count of failures or attempts again.
    static func lasted(from started: Timestamp?, to ended: Timestamp, atLeast duration: Duration) -> Bool {
        guard let started else { return false }
        return ended - started >= duration.wholeMilliseconds
    }

    /// How long an infinite job waits before its next run after failures in a row, in
    /// milliseconds: the initial back-off doubled per further failure, capped; nil for none.
    func restartDelay(after history: [RunRecord]) -> Int64? {
        let failures = Self.failuresInARow(history, resetAfter: configuration.restartBackoff.resetAfter)
        guard failures > 0 else { return nil }
        let initial = Double(configuration.restartBackoff.initial.wholeMilliseconds)
        let maximum = Double(configuration.restartBackoff.maximum.wholeMilliseconds)
        let delay = min(maximum, initial * pow(2, Double(min(failures - 1, 62))))
        return delay > 0 ? Int64(delay) : nil
    }
}

extension JobRecord {
    /// Appends a run's outcome to the history, dropping the oldest beyond `limit`.
    mutating func appendHistory(_ run: RunRecord, limit: Int) {
        history.append(run)
        if history.count > limit { history.removeFirst(history.count - limit) }
    }
}

extension Timestamp {
    /// `self + milliseconds`, at most ``Bounds/timestampMilliseconds``' end (never traps).
    func addingClamped(_ milliseconds: Int64) -> Timestamp {
        let (sum, overflow) = addingReportingOverflow(milliseconds)
        return overflow ? Bounds.timestampMilliseconds.upperBound : Swift.min(sum, Bounds.timestampMilliseconds.upperBound)
    }
}

