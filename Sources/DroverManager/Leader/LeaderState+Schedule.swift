import DroverProtocol

/// The policies of scheduled jobs: which time the next run stands for (missed runs), and what a
/// time that comes while a run runs does (overlap).
extension LeaderState {
    /// Sets the job to wait for its first schedule time strictly after `after`.
    func waitForNextTime(_ record: inout JobRecord, _ schedule: Schedule, after: Timestamp) {
        let next = schedule.nextRunMilliseconds(after: after)
        record.state = .waiting
        record.nextRunAt = next
        record.scheduledFor = next
    }

    /// After a run of a scheduled job ended at `now`: the time the next run stands for, by the
    /// job's policy for missed runs. `runOnce` and `skip`: the first time after now (times that
    /// passed while the run ran are not made up). `catchUp`: the first time after the one this run
    /// stood for — already due if it passed — unless it is later than the starting deadline (then
    /// the oldest within it) or `maxRuns` catch-up runs came in a row (then the first after now).
    func scheduleNextRun(_ record: inout JobRecord, _ schedule: Schedule, now: Timestamp) {
        guard let policy = record.spec.missedRuns, policy.policy == .catchUp, let previous = record.scheduledFor else {
            record.caughtUp = nil
            waitForNextTime(&record, schedule, after: now)
            return
        }
        var next = schedule.nextRunMilliseconds(after: previous)
        if next <= now {
            if (record.caughtUp ?? 0) >= policy.catchUpLimit {
                record.caughtUp = nil
                waitForNextTime(&record, schedule, after: now)
                return
            }
            if now - next > policy.startingDeadlineMilliseconds {
                next = schedule.nextRunMilliseconds(after: now - policy.startingDeadlineMilliseconds - 1)
            }
        }
        record.caughtUp = next <= now ? (record.caughtUp ?? 0) + 1 : nil
        record.state = .waiting
        record.nextRunAt = next
        record.scheduledFor = next
    }

    /// A scheduled time came (`record.nextRunAt` ≤ now, or it waited for room) and its run is to
    /// be placed: what the policy for missed runs says of a late one. Returns false when the run is not to be placed
    /// now (skipped: the record waits for a later time). Only times of the schedule count, not a
    /// retry's or a back-off's due time.
    func admitDueRun(_ record: inout JobRecord, now: Timestamp) -> Bool {
        // The time it stands for: due now, or come earlier and waiting for room since (then the
        // record waits in line with no `nextRunAt`; a retry or a take-back is not a schedule time).
        guard let schedule = record.spec.schedule, let policy = record.spec.missedRuns, let due = record.scheduledFor,
            record.nextRunAt == due || (record.nextRunAt == nil && record.attempt == nil && record.resume == nil),
            now - due > policy.startingDeadlineMilliseconds
        else { return true }
        switch policy.policy {
        case .runOnce:
            return true
        case .skip:
            waitForNextTime(&record, schedule, after: now)
            record.waitingReason = "skipped the time \(due) ms: \((now - due) / 1000) s late, past the starting deadline"
            return false
        case .catchUp:
            // The oldest time within the deadline, if one has come.
            let oldest = schedule.nextRunMilliseconds(after: now - policy.startingDeadlineMilliseconds - 1)
            record.nextRunAt = oldest
            record.scheduledFor = oldest
            return oldest <= now
        }
    }

    /// After a run of a job whose overlap policy is `replace` was placed: its next time, kept
    /// while the run runs, so that the time coming stops it (``replaceRunningRun(_:into:)``).
    func keepNextTimeWhileRunning(_ record: inout JobRecord, now: Timestamp) {
        guard record.spec.overlap == .replace, let schedule = record.spec.schedule, record.state == .running else { return }
        record.nextRunAt = schedule.nextRunMilliseconds(after: max(record.scheduledFor ?? 0, now))
    }

    /// The next time of a `replace` job came while its run runs: the run is asked to stop; the
    /// run of the new time is placed once it has ended (``decideNext``).
    func replaceRunningRun(_ record: inout JobRecord, into transaction: inout Transaction) {
        guard let executor = record.executor, var state = transaction.executorState(executor, in: self),
            let index = state.tasks.firstIndex(where: { $0.job == record.id && $0.run == record.runsStarted && !$0.state.isFinished })
        else { return }
        state.tasks[index].stopRequested = true
        transaction.update(state, of: executor)
        record.replacing = true
        record.scheduledFor = record.nextRunAt
        record.nextRunAt = nil
        transaction.update(record)
    }
}
