import DroverProtocol

/// Take-back: the unfinished runs of executors that stayed dead past the grace period, and the
/// runs an executor handed back when it stopped, go back on the queue.
extension LeaderState {
    /// Whether the executor counts as dead at `now`: unregistered for the grace period or longer.
    func isDead(_ id: String, at now: ContinuousClock.Instant) -> Bool {
        guard let entry = executors[id] else { return false }
        return entry.registration == nil && entry.goneSince.map { now - $0 >= configuration.gracePeriod } == true
    }

    /// Plans one transaction: up to ``jobLimit`` of one executor's orphaned runs (a dead
    /// executor's unfinished ones, or any executor's handed-back ones) removed from its state and
    /// queued again, their records `queued` with where to resume (`resume`: attempts and the last
    /// checkpoint) and `runsStarted` set back so the run keeps its number.
    mutating func planReclaim(at now: ContinuousClock.Instant, loaded: [String: LoadedRecord]) -> Step {
        for executorID in executors.keys.sorted() {
            let dead = isDead(executorID, at: now)
            let isOrphan = { (task: TaskRecord) in !task.state.isFinished && (dead || task.handedBack == true) }
            guard var state = executors[executorID]?.state?.document, state.tasks.contains(where: isOrphan) else { continue }
            var transaction = newTransaction(loaded: loaded)
            let orphans = Array(state.tasks.filter(isOrphan).prefix(jobLimit))
            let unread = Set(orphans.map(\.job).filter { transaction.needsRead($0) })
            if !unread.isEmpty { return .read(unread) }
            let moving = Set(orphans.map(\.id))
            state.tasks.removeAll { moving.contains($0.id) }
            transaction.update(state, of: executorID)
            for task in orphans {
                // A run of a job whose record is gone or unusable is only removed.
                guard var record = transaction.record(task.job) else { continue }
                record.runsStarted = task.run - 1
                record.executor = nil
                record.state = .queued
                record.resume = ResumePoint(attempts: task.attempts, checkpoint: task.checkpoint)
                transaction.update(record)
                if let item = try? Codec.encode(QueueOperation(.submit, job: task.job)) { transaction.enqueue(item) }
            }
            transaction.tookBack = (executorID, dead, orphans.map(\.id))
            return .commit(transaction)
        }
        return .nothing
    }
}
