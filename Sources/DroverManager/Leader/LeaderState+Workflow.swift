import DroverProtocol
import Foundation

/// Workflows: each step is a run of the workflow's job, and every step whose dependencies ended
/// runs at once, each placed on its own (the rules of the graph are in DroverProtocol's
/// `Workflow.swift`; this is where they meet executors).
extension LeaderState {
    /// Places every current step that waits to be placed, as room allows; passes stop requests to
    /// the runs of a workflow that is stopped or aborted; files the record (`running` while a step
    /// runs, `waiting` while steps wait for room or a retry's time, or final).
    func placeWorkflow(_ record: inout JobRecord, now: Timestamp, into transaction: inout Transaction) {
        record.executor = nil
        record.nextRunAt = nil
        if case .finished(let outcome) = record.advanceWorkflow(now: now) {
            record.waitingReason = nil
            if record.spec.kind != .once || record.spec.schedule != nil, !record.stopRequested, outcome != .stopped {
                nextIteration(&record, after: outcome, now: now, into: &transaction)
                return
            }
            transaction.update(record)
            return
        }
        passStopRequests(of: record, into: &transaction)
        // A direct job's tasks wait in executors' inboxes for claims; the leader adopts each claim,
        // and places itself only what it takes over (`LeaderState+Direct.swift`).
        if record.openClaims() { transaction.opensClaims = true }
        var reason: String?
        // Demands that found no room: the steps behind with the same one wait without a look at
        // every executor (a job of a thousand tasks would otherwise cost a thousand looks per end).
        var noRoom: Set<Demand> = []
        for index in record.stepsToPlace(now: now) {
            guard !noRoom.contains(record.spec.stepSpec(index).demand) else { continue }
            guard let run = record.stepRunSpec(index) else { continue }  // advanceWorkflow resolved it
            // What its handler may inject waits in the executor's state too.
            let taskBytes = Transaction.estimatedBytes(ofTaskFor: run) + Bounds.injectedStepsBytes
            switch decide(run.demand, taskBytes: taskBytes, in: &transaction) {
            case .place(let executor):
                guard var state = transaction.executorState(executor, in: self) else { continue }
                let resumed = record.steps![index].resume
                // A run taken back keeps its number; a new one (first, or a retry) takes the next.
                let number = resumed != nil ? (record.steps![index].run ?? record.runsStarted + 1) : record.runsStarted + 1
                var task = TaskRecord(job: record.id, run: number, method: run.method, arguments: run.arguments, resources: run.resources)
                task.attempts = resumed?.attempts ?? 0
                task.checkpoint = resumed?.checkpoint
                task.inject = resumed?.inject
                task.step = record.steps![index].id
                task.placement = transaction.newPlacement()
                if record.runsStarted == 0, record.spec.notBefore == nil { transaction.submitToPlacement.append(max(0, now - record.submittedAt)) }
                record.runsStarted = max(record.runsStarted, number)
                state.tasks.append(task)
                transaction.update(state, of: executor)
                record.steps![index].run = number
                record.steps![index].executor = executor
                record.steps![index].resume = nil
                record.steps![index].nextRunAt = nil
                record.steps![index].waitingReason = nil
            case .wait(let why), .impossible(let why):
                let why = transaction.atExecutorLimit ? "waiting for the next placement round" : why
                noRoom.insert(run.demand)
                record.steps![index].waitingReason = why
                // Its time came: it waits for room now, in the line, not among the due times.
                record.steps![index].nextRunAt = nil
                reason = reason ?? "step \(record.steps![index].id): \(why)"
            }
        }
        let placed = !record.placedSteps.isEmpty
        record.state = placed ? .running : .waiting
        if placed {
            record.waitingReason = nil
        } else if let reason {
            record.waitingReason = reason
        } else if let due = record.nextStepDue {
            record.waitingReason = "a step waits to be retried at \(due)"
        } else if !record.claimableTasks.isEmpty {
            record.waitingReason = "reserved on \(Set(record.reservedOn ?? []).count) executors: waiting for their claims"
        }
        transaction.update(record)
    }

    /// A repeating workflow's graph ended: it runs again — now, at its schedule's next time, or
    /// after a back-off when an infinite one failed — or it ends: a finite one after `count` times
    /// (or its first failed time, unless `onFailure: continue`), `failed` if any time failed.
    func nextIteration(_ record: inout JobRecord, after outcome: JobState, now: Timestamp, into transaction: inout Transaction) {
        let spec = record.spec
        let failed = outcome == .failed
        record.iterations = (record.iterations ?? 0) + 1
        if failed {
            record.iterationsFailed = (record.iterationsFailed ?? 0) + 1
            record.iterationsFailedInARow = min((record.iterationsFailedInARow ?? 0) + 1, 1_000)
        } else {
            record.iterationsFailedInARow = nil
        }
        let goesOn: Bool =
            switch spec.kind {
            case .once: false
            case .finite: (!failed || spec.onFailure == .continue) && record.iterations! < (spec.count ?? 1)
            case .infinite: true
            }
        guard goesOn else {
            record.state = (record.iterationsFailed ?? 0) > 0 ? .failed : .succeeded
            record.finishedAt = now
            transaction.update(record)
            return
        }
        // The next time starts afresh: its steps' progress is new (the history keeps the runs).
        record.steps = nil
        record.finishedAt = nil
        record.state = .waiting
        record.triggered = nil
        if record.suspended == true {
            record.park()  // suspended: the next time waits for `resume`
            transaction.update(record)
            return
        }
        if let schedule = spec.schedule {
            scheduleNextRun(&record, schedule, now: now)
            transaction.update(record)
            return
        }
        if spec.kind == .infinite, failed, let inARow = record.iterationsFailedInARow {
            let initial = Double(configuration.restartBackoff.initial.wholeMilliseconds)
            let delay = min(Double(configuration.restartBackoff.maximum.wholeMilliseconds), initial * pow(2, Double(min(inARow - 1, 62))))
            record.nextRunAt = now.addingClamped(Int64(delay))
            record.waitingReason = "restarting after \(inARow) failed time(s) of its graph in a row"
            transaction.update(record)
            return
        }
        placeWorkflow(&record, now: now, into: &transaction)
    }

    /// Sets `stopRequested` on the runs of the workflow's steps that are asked to stop.
    func passStopRequests(of record: JobRecord, into transaction: inout Transaction) {
        for index in record.placedSteps where record.steps![index].stopRequested == true || record.stopRequested {
            _ = requestStop(of: record.id, run: record.steps![index].run, on: record.steps![index].executor, into: &transaction)
        }
    }

    /// Step `index`'s run ended as `run` says: into the history and the count of ended runs, then
    /// what the workflow does next.
    func endStep(_ index: Int, of record: inout JobRecord, with run: RunRecord, now: Timestamp, into transaction: inout Transaction) {
        record.appendHistory(run, limit: configuration.historyLimit)
        transaction.ended(run)
        record.runsEnded += 1
        decideNextStep(&record, step: index, after: run, now: now, into: &transaction)
    }

    /// What a workflow does after step `index`'s run ended: the step tried again under its retry
    /// policy (a due time of its own), or its end recorded — with its failure action — and every
    /// step that can start now placed.
    func decideNextStep(_ record: inout JobRecord, step index: Int, after run: RunRecord, now: Timestamp, into transaction: inout Transaction) {
        record.steps![index].executor = nil
        let stopping = record.stopRequested || record.steps![index].stopRequested == true
        if run.outcome == .failed, !stopping, let retry = record.retryPolicy(ofStep: index), retry.retries(run.failure ?? .failed) {
            // (Clamped: a record another program wrote may hold any number.)
            let attempt = min(record.steps![index].attempt ?? 1, Bounds.attempts.upperBound) + 1
            if attempt <= retry.maxAttempts {
                record.steps![index].attempt = attempt
                record.steps![index].nextRunAt = now.addingClamped(retry.delayMilliseconds(beforeAttempt: attempt, job: "\(record.id)/\(record.steps![index].id)"))
                record.steps![index].resume = nil
                record.runsRetried = (record.runsRetried ?? 0) + 1
                placeWorkflow(&record, now: now, into: &transaction)
                return
            }
        }
        if run.outcome == .failed, !stopping { record.runsFailed = (record.runsFailed ?? 0) + 1 }
        _ = record.workflowStepEnded(index, run, now: now)
        record.boundWorkflowRecord()
        placeWorkflow(&record, now: now, into: &transaction)
    }

    /// Where a workflow waits: in the line while a step can be placed now, among the scheduled
    /// jobs while a step waits for a retry's time (both can hold).
    mutating func fileWorkflow(_ record: JobRecord) {
        let id = record.id
        if record.isDirect { trackDirect(record) }
        guard !record.state.isFinal else {
            waiting.remove(id)
            scheduled[id] = nil
            return
        }
        // Removed and added again: the demand it waits with is its first step's to place now.
        waiting.remove(id)
        if !record.stepsToPlace(now: 0).isEmpty { waiting.add(record) }
        // Not started yet and waiting for its `notBefore`: its time is the record's.
        scheduled[id] = record.nextStepDue ?? (record.steps == nil ? record.nextRunAt : nil)
    }
}
