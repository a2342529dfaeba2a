import DroverProtocol

/// Collection: finished runs out of executor states into their jobs' histories, and the rule for
/// what a job does after a run.
extension LeaderState {
    /// Plans one transaction: finished runs (up to ``jobLimit`` jobs, ``Transaction/executorLimit``
    /// executors) collected, and the room they free filled from the waiting line.
    mutating func planCollection(now: Timestamp, loaded: [String: LoadedRecord]) -> Step {
        guard hasFinishedTasks else { return .nothing }
        var transaction = newTransaction(loaded: loaded)
        // Every finished run's record at once: one round of reads, not one per run.
        let unread = Set(
            executors.values.lazy.flatMap { $0.state?.document.tasks.lazy.filter(\.state.isFinished).map(\.job) ?? [] }
                .filter { transaction.needsRead($0) })
        if !unread.isEmpty { return .read(unread) }
        for (executorID, entry) in executors.sorted(by: { $0.key < $1.key }) {
            let room = jobLimit - transaction.changedJobs.count
            guard room > 0, !transaction.atExecutorLimit else { break }
            guard entry.state != nil, var state = transaction.executorState(executorID) else { continue }
            let finished = Array(state.tasks.filter { $0.state.isFinished }.prefix(room))
            guard !finished.isEmpty else { continue }
            let collected = Set(finished.map(\.id))
            state.tasks.removeAll { collected.contains($0.id) }
            transaction.update(state, of: executorID)
            for task in finished {
                // A run of a job whose record is gone leaves the executor all the same; a job
                // whose record cannot be used fails, saying why.
                guard var record = transaction.record(task.job) else {
                    transaction.failUnusable(task.job)
                    continue
                }
                let outcome: RunRecord.Outcome = task.state == .succeeded ? .succeeded : (task.stopRequested ? .stopped : .failed)
                record.history.append(RunRecord(task: task, executor: executorID, outcome: outcome))
                if record.history.count > configuration.historyLimit {
                    record.history.removeFirst(record.history.count - configuration.historyLimit)
                }
                record.runsEnded += 1
                record.executor = nil
                decideNext(&record, lastOutcome: outcome, now: now, into: &transaction)
            }
        }
        // The room the finished runs freed goes to waiting jobs in the same transaction.
        placeDueAndWaiting(into: &transaction, now: now)
        return step(for: transaction)
    }

    /// What a job does after a run ended — the rule for each kind:
    /// - stopped (asked to, or the run was stopped): `stopped`;
    /// - `once`, and `finite` with every run done: `succeeded` or `failed` as the last run went;
    /// - `finite` with runs left, `infinite`: the next run — placed now, or, for a scheduled
    ///   job, waiting for the first grid point after now (runs never overlap).
    func decideNext(_ record: inout JobRecord, lastOutcome: RunRecord.Outcome, now: Timestamp, into transaction: inout Transaction) {
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
            record.state = .waiting
            record.nextRunAt = schedule.nextRunMilliseconds(after: now)
        } else {
            place(&record, into: &transaction)
            return
        }
        transaction.update(record)
    }
}
