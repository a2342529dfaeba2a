import DroverProtocol

/// The direct path, as the leader sees it (docs/PLACEMENT.md): executors claim a direct job's
/// tasks without the leader; the leader adopts each claim into its records and assignments, takes
/// over the tasks nobody can claim (their reservations are on executors gone or draining, or the
/// claim timeout passed) and the claims of executors that died before their progress named them,
/// and clears a finished job's reservations and claims.
extension LeaderState {
    /// A direct job whose tasks wait for claims.
    struct DirectJob: Sendable, Hashable {
        var submittedAt: Timestamp
        var reservedOn: [String]
        var tasks: Int
    }

    /// What the loop does for a direct job on the tick.
    struct TakeOver: Sendable, Hashable {
        var job: String
        var tasks: Int
        /// Tasks still claimable in the leader's record.
        var claimable: Set<Int>
    }

    /// What a direct job that ended may have left in ZooKeeper: reservations on `executors`, and
    /// claims.
    struct DirectLeftovers: Equatable {
        var executors: [String]
        var reusable: Bool
        /// Set when the record shows exactly what is left: every task ran as its own claim's run
        /// (none taken over, retried or unclaimed) and each claim used up a reservation of its
        /// own — so no reservation is left and the claims are t-0…t-(n-1). They are deleted
        /// without a read first (many jobs to a `multi`); anything else is read, then deleted.
        var exactClaims: Int?

        init(executors: [String], reusable: Bool, exactClaims: Int? = nil) {
            self.executors = executors
            self.reusable = reusable
            self.exactClaims = exactClaims
        }

        init(_ record: JobRecord) {
            let reusable = record.spec.effectivePlacement.reservationsAreReusable
            let count = record.spec.taskCount ?? 0
            let steps = record.steps ?? []
            let exact = !reusable && count > 0 && count < LeaderLoop.deletesPerMulti && steps.count == count && record.reservedOn?.count == count
                && steps.indices.allSatisfy { steps[$0].run == ClaimedTask.run(ofTask: $0) }
            self.init(executors: record.reservedOn ?? [], reusable: reusable, exactClaims: exact ? count : nil)
        }
    }

    /// Keeps ``directJobs`` and ``directEnded`` as a direct job's record is written or found.
    mutating func trackDirect(_ record: JobRecord) {
        let id = record.id
        if record.state.isFinal {
            directJobs[id] = nil
            directEnded[id] = DirectLeftovers(record)
        } else if record.claimableTasks.isEmpty {
            directJobs[id] = nil
        } else {
            directJobs[id] = DirectJob(submittedAt: record.submittedAt, reservedOn: record.reservedOn ?? [], tasks: record.spec.taskCount ?? 0)
        }
    }

    /// Collecting tasks an executor claimed: their keys go into its assignments' `collectedClaims`
    /// (so it forgets them even if it never saw them adopted), and keys its progress no longer
    /// names leave the list. Every collection of a claimed task comes through here (the ordinary
    /// one, and the adoption of a claim that ended already), so the list stays bounded.
    func noteCollectedClaims(_ collected: [TaskRecord], of executor: String, in state: inout ExecutorState) {
        let claims = collected.filter { $0.placement?.hasPrefix(ClaimedTask.placementPrefix) == true }.map(\.placementKey)
        let named = Set(executors[executor]?.progress?.document.tasks.map(\.placementKey) ?? [])
        let kept = (state.collectedClaims ?? []).filter(named.contains) + claims.filter(named.contains)
        state.collectedClaims = kept.isEmpty ? nil : kept
    }

    /// Claims in executors' progress that the leader has not answered yet, by executor.
    var unadoptedClaims: [(executor: String, progress: TaskProgress)] {
        executors.filter { !$0.value.unadopted.isEmpty }.sorted { $0.key < $1.key }.flatMap { id, entry in entry.unadopted.map { (id, $0) } }
    }

    /// Plans the adoption of claims executors made: each claimed task enters its executor's
    /// assignments under the executor's own key, and its job's record says where it runs (a task
    /// that ended already is collected in the same transaction, and its key goes to the
    /// executor's `collectedClaims` instead). A claim
    /// the record does not expect (the task was taken over, or the job ended or stops) enters the
    /// assignments asked to stop, so its executor stops it and the end is collected as a run the
    /// record does not expect. Claims of a job whose submit the leader has not taken yet wait.
    mutating func planAdoption(now: Timestamp, loaded: [String: LoadedRecord]) -> Step? {
        adoptionDue = false
        let claims = unadoptedClaims
        guard !claims.isEmpty else { return nil }
        var transaction = newTransaction(loaded: loaded)
        let unread = Set(claims.map(\.progress.job).filter { transaction.needsRead($0, in: self) })
        if !unread.isEmpty { return .read(unread) }
        for (executorID, claim) in claims {
            guard transaction.changedJobs.count < jobLimit, !transaction.atExecutorLimit, let claimed = claim.claimed else { break }
            guard var state = transaction.executorState(executorID, in: self),
                !state.tasks.contains(where: { $0.placementKey == claim.placementKey })
            else { continue }
            var task = TaskRecord(
                job: claim.job, run: claim.run, method: claimed.method, arguments: claimed.arguments, resources: claimed.resources, assignedAt: now)
            task.step = ClaimedTask.stepID(claimed.index)
            task.placement = claim.placement
            switch transaction.job(claim.job, in: self) {
            case .found(let record) where record.state == .queued:
                continue  // its submit is taken first; adopted then
            case .found(var record):
                if record.adoptClaim(claimed.index, run: claim.run, on: executorID) {
                    if let started = claim.startedAt, claimed.index == 0 { transaction.submitToPlacement.append(max(0, started - record.submittedAt)) }
                    if claim.state.isFinished {
                        // Ended already (short tasks end before the leader looks): adopted and
                        // collected at once, without a trip through the assignments.
                        var ended = task
                        claim.apply(to: &ended)
                        collectStep(ended, of: &record, on: executorID, now: now, into: &transaction)
                    }
                    transaction.update(record)
                } else {
                    task.stopRequested = true
                }
            case .unread:
                continue
            case .absent, .unusable:
                task.stopRequested = true
            }
            if claim.state.isFinished {
                // Nothing left to run or stop: collected, and the executor is told to forget it.
                noteCollectedClaims([task], of: executorID, in: &state)
            } else {
                state.tasks.append(task)
            }
            transaction.update(state, of: executorID)
        }
        guard transaction.hasChanges else {
            finished(transaction)
            return nil
        }
        return .commit(transaction)
    }

    /// Direct jobs whose unclaimed tasks the leader takes over now: every reservation is on an
    /// executor gone (its liveness read and missing), draining or unknown (not listed, for a job
    /// older than the grace period), or the claim timeout passed since the submit. An executor this leader has not read yet counts as
    /// reachable: a new leader knows nothing of the executors for a moment, and "not known yet"
    /// must not read as "gone". (Claims of executors that died before naming them in their
    /// progress are found when the loop reads the job's claims, so a job past its timeout is looked
    /// at on every tick while a task waits.)
    func directTakeOvers(now: Timestamp, claimTimeout: Duration) -> [TakeOver] {
        // Each executor is judged once per pass, not once per job reserved on it: the pass runs on
        // every tick over every direct job, and looking executors up job by job (copying their
        // entries) took a fifth of the leader's CPU with thousands of direct jobs waiting.
        var reachableExecutors: Set<String> = []
        for (id, entry) in executors {
            if !entry.livenessRead || (entry.registration != nil && entry.assignments?.document.draining != true) { reachableExecutors.insert(id) }
        }
        let timeout = claimTimeout.wholeMilliseconds
        let grace = configuration.gracePeriod.wholeMilliseconds
        return directJobs.compactMap { id, job -> TakeOver? in
            let age = now - job.submittedAt
            let timedOut = age >= timeout
            let reachable = !executorListingRead || job.reservedOn.contains { executor in
                // Not listed: gone — unless the job is younger than the grace period (an executor
                // that registered a moment ago may not be listed yet, and its claim is on its way).
                reachableExecutors.contains(executor) || (!executors.keys.contains(executor) && age < grace)
            }
            guard timedOut || !reachable else { return nil }
            let claimable: Set<Int> =
                if case .some(let known) = known[id] { Set(known.record.claimableTasks) } else { Set(0..<job.tasks) }
            return TakeOver(job: id, tasks: job.tasks, claimable: claimable)
        }.sorted { $0.job < $1.job }
    }

    /// How old an unlisted executor's claim must be before it is taken over, whatever the grace
    /// period (`--grace` may be a tenth of a second): above an executor's claim start window (2 s
    /// at most), as `--claim-timeout` is.
    static let unlistedClaimMinimumAge: Duration = .seconds(5)

    /// Whether the leader may take over executor `id`'s claim of task `index` of `job`, made by its
    /// process `instance` `age` ago, at `claimedAt` (the claim node's creation, ZooKeeper's clock).
    /// Never while this leader has not read the executor's liveness and progress (a chaos run over
    /// TLS found a new leader taking over, 3 s after it began to lead, claims whose tasks had run
    /// and ended: it had not read those executors yet) or while the progress names the claim (it
    /// is adopted instead); then when the executor can no longer run it
    /// (``lostClaims(of:instance:claimedAt:at:)``), or the claim is older than the claim timeout
    /// (the answer to it was lost). An executor the listing does not hold is gone — once the claim
    /// is older than the grace period, and 5 s at least (one that registered just now may not be
    /// listed yet, and may start a claimed task by itself up to 2 s after its claim). An
    /// executor whose progress cannot be read keeps its claims, as it keeps its tasks on the
    /// central path, until the progress reads again.
    func mayTakeOverClaim(
        of id: String, instance: String?, job: String, task index: Int, age: Duration, claimedAt: Timestamp? = nil, claimTimeout: Duration,
        at now: ContinuousClock.Instant
    ) -> Bool {
        guard let entry = executors[id] else { return executorListingRead && age >= max(configuration.gracePeriod, Self.unlistedClaimMinimumAge) }
        guard entry.livenessRead, entry.progressRead, !entry.progressUnreadable, !progressNamesClaim(of: id, job: job, task: index) else { return false }
        return age >= claimTimeout || lostClaims(of: id, instance: instance, claimedAt: claimedAt, at: now)
    }

    /// Whether executor `id` can no longer run what its process `instance` claimed at `claimedAt`:
    /// gone for the grace period, or registered since by another process (it restarted) — a claim
    /// made after the registration this leader knows is a newer process's, whose registration the
    /// leader has not read yet, not a lost one.
    func lostClaims(of id: String, instance: String?, claimedAt: Timestamp? = nil, at now: ContinuousClock.Instant) -> Bool {
        guard let entry = executors[id] else { return true }
        if let gone = entry.goneSince { return now - gone >= configuration.gracePeriod }
        if let instance, let current = entry.registration?.instance, current != instance {
            guard let claimedAt, let registeredAt = entry.registeredAt else { return true }
            return claimedAt < registeredAt
        }
        return false
    }

    /// Whether executor `id`'s progress, as the leader last read it, names its claim of task
    /// `index` of `job` (then the claim is adopted, never taken over).
    func progressNamesClaim(of id: String, job: String, task index: Int) -> Bool {
        executors[id]?.progress?.document.tasks.contains { $0.job == job && $0.claimed?.index == index } == true
    }

    /// Plans placing the tasks the leader took over (it holds their claims now): they leave the
    /// claimable ones and go to the waiting line like any workflow step. A task whose claim was
    /// an executor's (`claimedBy`) is taken over only while that executor's progress does not name
    /// it — the transaction holds to the progress version decided on, so a progress that named the
    /// claim meanwhile (the leader had not read it yet) makes it plan again, and adopt instead.
    mutating func planTakeOver(
        _ job: String, tasks: [Int], claimedBy claimants: [Int: String] = [:], now: Timestamp, loaded: [String: LoadedRecord]
    ) -> Step {
        var transaction = newTransaction(loaded: loaded)
        let indices = tasks.filter { index in claimants[index].map { !progressNamesClaim(of: $0, job: job, task: index) } ?? true }
        for claimant in Set(indices.compactMap { claimants[$0] }) { transaction.checkProgress(of: claimant) }
        switch transaction.job(job, in: self) {
        case .unread: return .read([job])
        case .found(var record) where !record.state.isFinal && indices.contains(where: record.claimableTasks.contains):
            record.takeOver(indices)
            placeWorkflow(&record, now: now, into: &transaction)
        case .found(let record):
            trackDirect(record)
        case .absent, .unusable:
            directJobs[job] = nil
        }
        return step(for: transaction)
    }

    /// The reservations and claims of a finished direct job were cleared.
    mutating func directCleared(_ job: String) { directEnded[job] = nil }
}

