import DroverProtocol
import Foundation

/// One line of a task ledger: a handler started or ended a run (written outside ZooKeeper).
public struct LedgerEntry: Sendable, Hashable {
    /// A run's start, its end, or its handler stopped before the end (taken away or cancelled).
    public enum Kind: String, Sendable { case start = "S", end = "E", stopped = "X" }
    public var kind: Kind
    public var job: String
    public var run: Int
    public var attempt: Int
    /// The executor whose ledger file holds the line.
    public var executor: String
    public var startedAt: Timestamp
    public var endedAt: Timestamp?

    public init(kind: Kind, job: String, run: Int, attempt: Int, executor: String, startedAt: Timestamp, endedAt: Timestamp? = nil) {
        self.kind = kind
        self.job = job
        self.run = run
        self.attempt = attempt
        self.executor = executor
        self.startedAt = startedAt
        self.endedAt = endedAt
    }

    /// Parses `S <job> <run> <attempt> <pid> <start>`, `E <job> <run> <attempt> <pid> <start> <end>` or
    /// `X …` as `E` (stopped at that time without an end); nil for anything else (a line cut short
    /// cannot happen: each is one `write`).
    public init?(line: Substring, executor: String) {
        let fields = line.split(separator: " ")
        guard fields.count >= 6, let kind = Kind(rawValue: String(fields[0])), let run = Int(fields[2]), let attempt = Int(fields[3]),
            let started = Timestamp(fields[5])
        else { return nil }
        let ended = fields.count >= 7 ? Timestamp(fields[6]) : nil
        if kind != .start && ended == nil { return nil }
        self.init(kind: kind, job: String(fields[1]), run: run, attempt: attempt, executor: executor, startedAt: started, endedAt: ended)
    }
}

extension LedgerEntry {
    /// The ledger's job field for a work unit's attempt: `unit:<spec>/<key>` (keys without spaces).
    public static func unitJob(spec: String, key: String) -> String { "unit:\(spec)/\(key)" }
    /// Whether the line is a work unit's (its run is 1 and its attempt the unit's attempt).
    public var isUnit: Bool { job.hasPrefix("unit:") }
}

/// A write a manager got committed: the transaction's zxid and the leadership term that fenced it.
public struct FencedWrite: Sendable, Hashable {
    public var zxid: Int64
    public var term: Int64
    public var process: String

    public init(zxid: Int64, term: Int64, process: String) {
        self.zxid = zxid
        self.term = term
        self.process = process
    }

    /// Parses `W <zxid> <term> <pid>`.
    public init?(line: Substring, process: String) {
        let fields = line.split(separator: " ")
        guard fields.count >= 3, fields[0] == "W", let zxid = Int64(fields[1]), let term = Int64(fields[2]) else { return nil }
        self.init(zxid: zxid, term: term, process: process)
    }
}

/// A fault the harness injected, from `start` until it was healed.
public struct FaultRecord: Sendable, Hashable {
    public var description: String
    /// The process the fault hit (an executor or manager id, or `zk<n>`).
    public var target: String
    public var start: Timestamp
    public var end: Timestamp
    /// A fault on the network between hosts: at `end` the target had its network back.
    public var network: Bool
    /// Whether the fault can cut a process off long enough to lose a write or its session (a cut,
    /// a kill, a pause), and so explain a run done twice; packet loss only slows it.
    public var severs: Bool

    public init(description: String, target: String, start: Timestamp, end: Timestamp, network: Bool = false, severs: Bool = true) {
        self.description = description
        self.target = target
        self.start = start
        self.end = end
        self.network = network
        self.severs = severs
    }

    /// How many faults the records are: a fault on a host is a record per process it hit.
    public static func distinctFaults(_ records: [FaultRecord]) -> Int {
        Set(records.map { "\($0.start) \($0.end) \($0.description)" }).count
    }
}

/// What the chaos run found.
public struct ChaosReport: Sendable, Hashable {
    /// Accepted jobs.
    public var tasks = 0
    /// Runs that completed (distinct job and run with an end in a ledger).
    public var runs = 0
    public var faults = 0
    /// Runs owed (a once run, a finite job's runs) that never completed, and runs the job's
    /// history calls succeeded without a ledger end. Must be 0.
    public var lost = 0
    /// Completed runs beyond a finite job's count. Must be 0.
    public var overRun = 0
    /// Runs that completed more than once (the at-least-once window: the executor died or was
    /// frozen after the handler ended and before its state write reached ZooKeeper).
    public var duplicates = 0
    /// Duplicates with no fault on the earlier attempt's executor around its end: outside the
    /// documented window. Must be 0.
    public var unexplainedDuplicates = 0
    /// Scheduled windows due while the jobs were active, and those no run matched.
    public var scheduledWindows = 0
    public var missedWindows = 0
    /// Missed windows with no fault anywhere around them (a slow machine, or a scheduling bug).
    public var missedWithoutFault = 0
    /// Writes committed under a leadership term older than one that already wrote. Must be 0.
    public var fencedWrites = 0
    /// Accepted jobs that had not reached a final state when the run ended. Must be 0.
    public var unsettled = 0
    /// Runs whose recorded end (executor and attempt, in the job's history) no handler on that
    /// executor made in that attempt: an executor's write based on a stale view. Must be 0.
    public var staleEnds = 0
    /// Bad documents the harness wrote as another program would, and those not set aside or
    /// failed with a reason. Unaccounted must be 0.
    public var garbage = 0
    public var unaccountedGarbage = 0
    /// Writes of the harness's own that ZooKeeper acknowledged, and those it lost afterwards (it
    /// forgot committed transactions: Drover's promises cannot hold over that). Must be 0.
    public var witnesses = 0
    public var zookeeperLostWrites = 0
    /// Transactions on which ZooKeeper's servers found their data trees differ ("digest
    /// mismatch" in their logs): after a kill -9, ZooKeeper 3.8.0 can truncate acknowledged
    /// writes on some servers and not others. Reported (the losses then may be ZooKeeper's).
    public var zookeeperDivergences = 0
    /// The most copies of one run whose handlers ran at the same time (1: never two at once),
    /// and the longest time two copies overlapped.
    public var maxConcurrentCopies = 0
    public var longestOverlapMilliseconds: Int64 = 0
    /// Overlaps with no fault on the older copy's executor to explain why it ran on (its host
    /// cut off, frozen or killed): an executor ran a task it no longer held. Must be 0.
    public var unexplainedOverlaps = 0
    /// For each network fault that cut off an executor: milliseconds from the heal to the
    /// executor's next run start (how long until it was back at work; reported).
    public var backToWorkMilliseconds: [Int64] = []
    /// Workflows accepted, and the times one of their steps started before a step it runs after
    /// had ended (by the ledgers). Must be 0.
    public var workflows = 0
    public var workflowOrderViolations = 0
    /// Jobs with `overlap: allow`, the most of one's runs that ran at once, and the times more
    /// than its `maxConcurrentRuns` did with no fault to explain it (a copy left running on an
    /// executor cut off or frozen, its run moved on and ended). Must be 0.
    public var allowJobs = 0
    /// Jobs placed by the direct path (reservations and claims), and their tasks taken over by
    /// the leader (reported: a task whose reservations' executors were cut off or killed).
    public var directJobs = 0
    public var directTasksTakenOver = 0
    /// Runs of a direct job's claims that went on after the leader took them over, explained by a
    /// fault on their executor (unexplained ones count as over-run).
    public var directRunsBeyondTheRecord = 0
    public var mostRunsAtOnce = 0
    public var unexplainedRunsAtOnce = 0
    /// Work units added (every spec), and units whose attempt ended in a ledger.
    public var units = 0
    public var unitRuns = 0
    /// Units added that are gone from their spec, or recorded finished though no handler ended
    /// them. Must be 0.
    public var unitsLost = 0
    /// Units not finished when the run ended (still available, pending or retryable, or out of
    /// tries: the handler never fails, so only a defect or faults beyond every retry do that). Must be 0.
    public var unitsStuck = 0
    /// Units whose handler ended more than once (the at-least-once window: the executor died,
    /// froze or was cut off after the handler ended and before the end reached ZooKeeper), and
    /// those with no fault on the earlier attempt's executor to explain it. Unexplained must be 0.
    public var unitsFinishedTwice = 0
    public var unexplainedUnitsFinishedTwice = 0
    /// Units recorded finished by an executor and attempt whose handler never ended them (a
    /// write from a lease that had run out). Must be 0.
    public var unitStaleEnds = 0
    /// One line per problem or explanation, for the log.
    public var details: [String] = []

    /// An empty report (every count 0).
    public init() {}

    public var passed: Bool {
        lost == 0 && overRun == 0 && fencedWrites == 0 && staleEnds == 0 && unexplainedDuplicates == 0 && unsettled == 0
            && unaccountedGarbage == 0 && zookeeperLostWrites == 0 && unexplainedOverlaps == 0 && workflowOrderViolations == 0
            && unexplainedRunsAtOnce == 0 && unitsLost == 0 && unitsStuck == 0 && unexplainedUnitsFinishedTwice == 0 && unitStaleEnds == 0
    }

    private var backToWork: String {
        let sorted = backToWorkMilliseconds.sorted()
        guard let max = sorted.last else { return "" }
        return ", back to work after a heal \(sorted[sorted.count / 2]) ms median, \(max) ms max (\(sorted.count) heals)"
    }

    public func summary(seed: UInt64) -> String {
        "chaos: tasks \(tasks), runs \(runs), faults \(faults), lost \(lost), over-run \(overRun), duplicates \(duplicates) "
            + "(unexplained \(unexplainedDuplicates)), fenced-writes \(fencedWrites + staleEnds), scheduled windows \(scheduledWindows) "
            + "(missed \(missedWindows), \(missedWithoutFault) without a fault)\(unsettled > 0 ? ", unsettled \(unsettled)" : "")"
            + ", concurrent copies \(maxConcurrentCopies) (longest overlap \(longestOverlapMilliseconds) ms, unexplained \(unexplainedOverlaps))"
            + (garbage > 0 ? ", garbage \(garbage) (unaccounted \(unaccountedGarbage))" : "")
            + (workflows > 0 ? ", workflows \(workflows) (steps out of order \(workflowOrderViolations))" : "")
            + (directJobs > 0
                ? ", direct jobs \(directJobs) (tasks taken over \(directTasksTakenOver), runs beyond the record explained by a fault \(directRunsBeyondTheRecord))"
                : "")
            + (allowJobs > 0 ? ", overlap-allow jobs \(allowJobs) (most runs at once \(mostRunsAtOnce), beyond the maximum unexplained \(unexplainedRunsAtOnce))" : "")
            + (units > 0
                ? ", units \(units) (ran \(unitRuns), lost \(unitsLost), stuck \(unitsStuck), finished twice \(unitsFinishedTwice) "
                    + "(unexplained \(unexplainedUnitsFinishedTwice)), stale ends \(unitStaleEnds))" : "")
            + backToWork
            + (zookeeperLostWrites > 0 ? ", zookeeper-lost-writes \(zookeeperLostWrites) of \(witnesses)" : "")
            + (zookeeperDivergences > 0 ? ", zookeeper-divergences \(zookeeperDivergences)" : "") + ", seed \(seed)"
    }
}

/// Checks a chaos run's outcome against its ledgers (pure: no ZooKeeper, no processes).
public enum ChaosChecker {
    /// A scheduled job and the time the harness asked it to stop.
    public struct ScheduledJob: Sendable {
        public var id: String
        public var schedule: Schedule
        public var stoppedAt: Timestamp
        public init(id: String, schedule: Schedule, stoppedAt: Timestamp) {
            self.id = id
            self.schedule = schedule
            self.stoppedAt = stoppedAt
        }
    }

    /// - Parameters:
    ///   - accepted: The ids of every job whose submit was acknowledged.
    ///   - jobs: The job records found at the end.
    public static func check(
        accepted: [String], jobs: [JobRecord], scheduled: [ScheduledJob], ledger: [LedgerEntry], writes: [FencedWrite], faults: [FaultRecord]
    ) -> ChaosReport {
        var report = ChaosReport()
        let ledger = ledger.filter { !$0.isUnit }  // checkUnits reads those
        report.tasks = accepted.count
        let found = Set(jobs.map(\.id))
        for id in accepted where !found.contains(id) {
            report.lost += 1
            report.details.append("lost: \(id) was accepted but its record is gone")
        }
        for job in jobs where !job.state.isFinal {
            report.unsettled += 1
            report.details.append("unsettled: \(job.id) is still \(job.state.rawValue) (\(job.runsEnded) runs ended)")
        }
        report.faults = FaultRecord.distinctFaults(faults)
        let ends = Dictionary(grouping: ledger.filter { $0.kind == .end }, by: { RunKey(job: $0.job, run: $0.run) })
        let starts = Dictionary(grouping: ledger.filter { $0.kind == .start }, by: { RunKey(job: $0.job, run: $0.run) })
        report.runs = ends.count
        // Indexed by job once, so the checks below are linear in ledger lines + jobs + writes (a
        // filter over every run inside the loop over jobs took hours at 100,000 jobs).
        var endedRunsByJob: [String: [Int]] = [:]
        for key in ends.keys { endedRunsByJob[key.job, default: []].append(key.run) }
        var firstStartsByJob: [String: [Timestamp]] = [:]
        for (key, entries) in starts {
            if let first = entries.map(\.startedAt).min() { firstStartsByJob[key.job, default: []].append(first) }
        }
        let faultsByTarget = Dictionary(grouping: faults.filter(\.severs), by: \.target)
        for (key, entries) in ends where entries.count > 1 {
            report.duplicates += entries.count - 1
            // Every end but the last was lost before it reached ZooKeeper: a fault on its executor
            // must have hit between the end (2 s earlier at most: a write in flight) and the next
            // copy's start, and within 10 s of the end — the executor was killed, frozen or cut off
            // before it could record the end (under network faults its writes can fail for seconds
            // after the end; an end left unrecorded for longer, with no fault, is a defect).
            let unexplained = unexplainedEarlierEnds(entries, faultsByTarget: faultsByTarget)
            report.unexplainedDuplicates += unexplained.count
            let attempts = entries.map { "\($0.attempt) on \($0.executor)" }.sorted().joined(separator: ", ")
            report.details.append(
                "duplicate: \(key) ended \(entries.count) times (attempts \(attempts))"
                    + (unexplained.isEmpty ? ", a fault hit the earlier executor" : " — NOT explained by a fault"))
        }

        for job in jobs {
            if job.spec.effectivePlacement.isDirect {
                checkDirect(job, starts: starts, ends: ends, endedRuns: endedRunsByJob[job.id] ?? [], faultsByTarget: faultsByTarget, into: &report)
                continue
            }
            if let steps = job.spec.steps {
                report.workflows += 1
                checkWorkflow(job, steps: steps, starts: starts, ends: ends, endedRuns: endedRunsByJob[job.id] ?? [], into: &report)
                continue
            }
            let owed: ClosedRange<Int>? =
                switch job.spec.kind {
                case .once: 1...1
                case .finite: 1...(job.spec.count ?? 1)
                case .infinite: nil
                }
            if let retry = job.spec.retry, job.spec.kind == .once, let until = job.spec.arguments["failUntilRun"]?.numberValue {
                checkRetried(job, retry: retry, failUntilRun: Int(until), endedRuns: endedRunsByJob[job.id] ?? [], into: &report)
            } else if let owed, job.spec.schedule == nil {
                for run in owed where ends[RunKey(job: job.id, run: run)] == nil {
                    report.lost += 1
                    report.details.append("lost: \(job.id) run \(run) never completed (job \(job.state.rawValue), \(job.runsEnded) runs ended)")
                }
                if job.state != .succeeded && owed.allSatisfy({ ends[RunKey(job: job.id, run: $0)] != nil }) {
                    report.lost += 1
                    report.details.append("lost: \(job.id) ran every run but ended \(job.state.rawValue)")
                }
                let beyond = (endedRunsByJob[job.id] ?? []).filter { !owed.contains($0) }
                if !beyond.isEmpty || job.runsEnded > owed.upperBound {
                    report.overRun += max(beyond.count, job.runsEnded - owed.upperBound)
                    report.details.append("over-run: \(job.id) owed \(owed.upperBound) runs, ran \(beyond.sorted()) beyond, recorded \(job.runsEnded)")
                }
            }
            for entry in job.history where entry.outcome == .succeeded {
                guard let runEnds = ends[RunKey(job: job.id, run: entry.run)] else {
                    report.lost += 1
                    report.details.append("lost: \(job.id) run \(entry.run) is recorded succeeded but no handler ended it")
                    continue
                }
                if !runEnds.contains(where: { $0.executor == entry.executor && $0.attempt == entry.attempts }) {
                    report.staleEnds += 1
                    let seen = runEnds.map { "attempt \($0.attempt) on \($0.executor)" }.joined(separator: ", ")
                    report.details.append(
                        "fencing: \(job.id) run \(entry.run) is recorded as ended by attempt \(entry.attempts) on \(entry.executor); the ledgers show \(seen)")
                }
            }
        }

        let stops = Dictionary(grouping: ledger.filter { $0.kind == .stopped }, by: { RunKey(job: $0.job, run: $0.run) })
        checkConcurrentCopies(starts: starts, ends: ends, stops: stops, faultsByTarget: faultsByTarget, into: &report)
        checkRunsAtOnce(jobs.filter { $0.spec.overlap == .allow }, starts: starts, ends: ends, stops: stops, faultsByTarget: faultsByTarget, into: &report)
        measureBackToWork(ledger: ledger, faults: faults, into: &report)

        for job in scheduled {
            let runStarts = (firstStartsByJob[job.id] ?? []).sorted()
            let interval = job.schedule.intervalMilliseconds
            var window = job.schedule.referenceMilliseconds
            var used = 0
            var missed: [String] = []
            // A window is owed if it opened at least one interval before the stop: its run has had time to start.
            while window + interval <= job.stoppedAt {
                report.scheduledWindows += 1
                while used < runStarts.count && runStarts[used] < window { used += 1 }
                if used < runStarts.count && runStarts[used] < window + interval {
                    used += 1
                } else {
                    report.missedWindows += 1
                    // A fault within two intervals before the window can still delay its run (fail-over).
                    let during = faults.filter { $0.start <= window + interval && $0.end >= window - 2 * interval }.map(\.target)
                    if during.isEmpty { report.missedWithoutFault += 1 }
                    missed.append("+\((window - job.schedule.referenceMilliseconds) / 1000)s " + (during.isEmpty ? "(no fault)" : "(\(Set(during).sorted().joined(separator: ",")))"))
                }
                window += interval
            }
            if !missed.isEmpty {
                report.details.append("scheduled \(job.id): missed \(missed.count) windows: \(missed.joined(separator: " "))")
            }
        }

        var highestTerm = Int64.min
        for write in writes.sorted(by: { $0.zxid < $1.zxid }) {
            if write.term < highestTerm {
                report.fencedWrites += 1
                report.details.append("fencing: zxid \(write.zxid) committed under term \(write.term) after term \(highestTerm) wrote (\(write.process))")
            }
            highestTerm = max(highestTerm, write.term)
        }
        return report
    }

    /// A job placed by the direct path is a job of tasks, checked as any workflow
    /// (``checkWorkflow``): every task succeeded by the run its step records (a claim's, 1…tasks,
    /// or a later one the leader placed after taking the task over), and no run is no task's —
    /// except a claim's run that went on after the leader took the claim over because its executor
    /// was cut off, frozen or killed (docs/PLACEMENT.md's window): a fault on that executor around
    /// the run explains it, as it explains a duplicate.
    static func checkDirect(
        _ job: JobRecord, starts: [RunKey: [LedgerEntry]], ends: [RunKey: [LedgerEntry]], endedRuns: [Int],
        faultsByTarget: [String: [FaultRecord]], into report: inout ChaosReport
    ) {
        report.directJobs += 1
        let recorded = Set((job.steps ?? []).compactMap(\.run))
        let explained = Set(
            endedRuns.filter { run in
                !recorded.contains(run)
                    && (ends[RunKey(job: job.id, run: run)] ?? []).allSatisfy { entry in
                        let end = entry.endedAt ?? entry.startedAt
                        return (faultsByTarget[entry.executor] ?? []).contains { $0.start <= end + 10_000 && $0.end >= entry.startedAt - 2_000 }
                    }
            })
        report.directRunsBeyondTheRecord += explained.count
        checkWorkflow(
            job, steps: job.spec.workflowSteps ?? [], starts: starts, ends: ends, endedRuns: endedRuns.filter { !explained.contains($0) }, into: &report)
        report.directTasksTakenOver += recorded.filter { $0 > (job.spec.taskCount ?? 1) }.count
    }

    /// A workflow of the harness's: `workflow` must end succeeded with every step succeeded;
    /// `workflow-inject` too, with the two steps its first step injected among them;
    /// `workflow-compensate` failed, its `check` step failed, `cleanup` (the compensation)
    /// succeeded and the step after `check` skipped. Either way every step recorded succeeded has
    /// its run in a ledger, no run is no step's, and no step started before every step it runs
    /// after had ended.
    static func checkWorkflow(
        _ job: JobRecord, steps: [WorkflowStep], starts: [RunKey: [LedgerEntry]], ends: [RunKey: [LedgerEntry]], endedRuns: [Int],
        into report: inout ChaosReport
    ) {
        let progress = job.steps ?? []
        let states = Dictionary(progress.map { ($0.id, $0.state) }) { first, _ in first }
        let expected: Bool =
            job.spec.name == "workflow-compensate"
            ? job.state == .failed && states["check"] == .failed && states["cleanup"] == .succeeded && states["after-check"] == .skipped
            : job.state == .succeeded && progress.count == steps.count && progress.allSatisfy { $0.state == .succeeded }
                && (job.spec.name != "workflow-inject" || ["extra", "extra-after"].allSatisfy { id in steps.contains { $0.id == id } })
        guard expected, progress.count == steps.count else {
            report.lost += 1
            let listed = progress.map { "\($0.id) \($0.state.rawValue)" }.joined(separator: ", ")
            report.details.append("lost: workflow \(job.id) (\(job.spec.name ?? "")) ended \(job.state.rawValue) with steps [\(listed)], not as its spec says")
            return
        }
        for (index, step) in progress.enumerated() where step.state == .succeeded {
            guard let run = step.run, ends[RunKey(job: job.id, run: run)] != nil else {
                report.lost += 1
                report.details.append("lost: workflow \(job.id) step \(steps[index].id) (run \(step.run ?? 0)) is recorded succeeded but no handler ended it")
                continue
            }
        }
        let runs = progress.map(\.run)
        let beyond = Set(endedRuns).subtracting(runs.compactMap { $0 })
        if !beyond.isEmpty {
            report.overRun += beyond.count
            report.details.append("over-run: workflow \(job.id) ran runs \(beyond.sorted()) that are no step's")
        }
        let dependencies = WorkflowGraph.dependencies(of: steps)
        for (index, run) in runs.enumerated() {
            guard let run, let started = starts[RunKey(job: job.id, run: run)]?.map(\.startedAt).min() else { continue }
            for before in dependencies[index] {
                guard let earlier = runs[before], let ended = ends[RunKey(job: job.id, run: earlier)]?.compactMap(\.endedAt).min(), started < ended
                else { continue }
                report.workflowOrderViolations += 1
                report.details.append(
                    "workflow order: \(job.id) step \(steps[index].id) (run \(run)) started at \(started), before step \(steps[before].id) (run \(earlier)) ended at \(ended)")
            }
        }
    }

    /// A once job whose runs before `failUntilRun` fail, under a retry policy. Each attempt is a
    /// run of its own (a lost one keeps its number and counts in the history): the runs that ended
    /// are 1…k with k ≤ maxAttempts and k ≤ failUntilRun; the job succeeded at run failUntilRun, or
    /// failed with every attempt spent.
    static func checkRetried(_ job: JobRecord, retry: RetryPolicy, failUntilRun: Int, endedRuns: [Int], into report: inout ChaosReport) {
        let succeedsAt = max(1, failUntilRun)
        let beyond = endedRuns.filter { $0 > min(succeedsAt, retry.maxAttempts) }
        if !beyond.isEmpty {
            report.overRun += beyond.count
            report.details.append(
                "over-run: \(job.id) (retry: \(retry.maxAttempts) attempts, runs before \(succeedsAt) fail) ran \(beyond.sorted()) beyond")
        }
        let attempts = job.history.count
        if attempts > retry.maxAttempts {
            report.overRun += attempts - retry.maxAttempts
            report.details.append("over-run: \(job.id) recorded \(attempts) attempts, over its maxAttempts \(retry.maxAttempts)")
        }
        switch job.state {
        case .succeeded:
            if job.history.last?.run != succeedsAt {
                report.lost += 1
                report.details.append("lost: \(job.id) succeeded at run \(job.history.last?.run ?? 0), not at run \(succeedsAt) (the first that succeeds)")
            }
        case .failed:
            // Legitimate only with every attempt spent, each of them failed or lost.
            if attempts != retry.maxAttempts || job.history.contains(where: { $0.outcome != .failed }) {
                report.lost += 1
                report.details.append(
                    "lost: \(job.id) failed after \(attempts) of \(retry.maxAttempts) attempts (\(job.history.map { "\($0.run):\($0.failure?.rawValue ?? $0.outcome.rawValue)" }))")
            }
        default:
            break  // unsettled, counted above
        }
    }

    /// For each network fault that cut off an executor, the time from its heal to that
    /// executor's next run start (none when it started nothing afterwards: no work was left).
    static func measureBackToWork(ledger: [LedgerEntry], faults: [FaultRecord], into report: inout ChaosReport) {
        let startsByExecutor = Dictionary(grouping: ledger.filter { $0.kind == .start }, by: \.executor).mapValues { $0.map(\.startedAt).sorted() }
        for fault in faults where fault.network && fault.severs {
            guard let starts = startsByExecutor[fault.target], let next = starts.first(where: { $0 >= fault.end }) else { continue }
            report.backToWorkMilliseconds.append(next - fault.end)
        }
    }

    /// How many copies of each run ran at once. A copy runs from its handler's start to its end, or
    /// to its stop (its executor stopped it: taken away); one that did neither (its executor was
    /// killed) runs until the first fault on its executor after it started. Two copies may overlap only while the executor of the
    /// earlier attempt was cut off, frozen or killed (and a few seconds after, until it hears its session is gone).
    static func checkConcurrentCopies(
        starts: [RunKey: [LedgerEntry]], ends: [RunKey: [LedgerEntry]], stops: [RunKey: [LedgerEntry]] = [:],
        faultsByTarget: [String: [FaultRecord]], into report: inout ChaosReport
    ) {
        /// Time an executor takes to notice its session is gone once it hears from ZooKeeper again.
        let noticeMilliseconds: Int64 = 5_000
        let lastLedgerTime = (starts.values.joined().map(\.startedAt) + ends.values.joined().compactMap(\.endedAt)).max() ?? 0
        for (key, started) in starts {
            let ended = (ends[key] ?? []) + (stops[key] ?? [])
            var copies: [(start: Timestamp, end: Timestamp, executor: String, attempt: Int)] = ended.compactMap { entry in
                entry.endedAt.map { (entry.startedAt, $0, entry.executor, entry.attempt) }
            }
            for entry in started where !ended.contains(where: { $0.executor == entry.executor && $0.attempt == entry.attempt }) {
                // Killed: until the kill. Otherwise (still running at the end, or stopped by the
                // harness) until the last line of any ledger.
                let cutShort = (faultsByTarget[entry.executor] ?? []).map(\.start).filter { $0 >= entry.startedAt }.min()
                copies.append((entry.startedAt, cutShort ?? max(lastLedgerTime, entry.startedAt), entry.executor, entry.attempt))
            }
            report.maxConcurrentCopies = max(report.maxConcurrentCopies, copies.isEmpty ? 0 : 1)
            guard copies.count > 1 else { continue }
            copies.sort { $0.start < $1.start }
            // A sweep over starts and ends (an end before a start at the same instant).
            var events: [(time: Timestamp, change: Int)] = []
            for copy in copies {
                events.append((copy.start, 1))
                events.append((copy.end, -1))
            }
            events.sort { $0.time != $1.time ? $0.time < $1.time : $0.change < $1.change }
            var running = 0
            for (_, change) in events {
                running += change
                report.maxConcurrentCopies = max(report.maxConcurrentCopies, running)
            }
            for (index, older) in copies.enumerated() {
                for newer in copies[(index + 1)...] where newer.start < older.end {
                    let overlapEnd = min(older.end, newer.end)
                    let overlap = overlapEnd - newer.start
                    report.longestOverlapMilliseconds = max(report.longestOverlapMilliseconds, overlap)
                    // The superseded copy is the earlier attempt (the leader moved the run on
                    // from it), whichever started first: an executor frozen while it was about
                    // to start an attempt starts it late, after its successor, once it thaws.
                    let stale = newer.attempt < older.attempt ? newer : older
                    let explained = (faultsByTarget[stale.executor] ?? []).contains {
                        $0.start <= newer.start && overlapEnd <= $0.end + noticeMilliseconds
                    }
                    if !explained {
                        report.unexplainedOverlaps += 1
                        report.details.append(
                            "concurrent copies: \(key) ran on \(older.executor) and \(newer.executor) at once for \(overlap) ms — NOT explained by a fault on \(stale.executor)")
                    } else {
                        report.details.append("concurrent copies: \(key) ran on \(older.executor) and \(newer.executor) at once for \(overlap) ms (\(stale.executor) was cut off)")
                    }
                }
            }
        }
    }

    /// Jobs with `overlap: allow`: at no time more of one's runs ran than its `maxConcurrentRuns`
    /// — unless a fault explains it: a copy of one of them ran on an executor cut off or frozen
    /// at the time (its run was taken back and may have ended elsewhere, the leader counting it
    /// gone). A copy without an end runs until its executor's next fault, or the ledgers' end.
    static func checkRunsAtOnce(
        _ jobs: [JobRecord], starts: [RunKey: [LedgerEntry]], ends: [RunKey: [LedgerEntry]], stops: [RunKey: [LedgerEntry]],
        faultsByTarget: [String: [FaultRecord]], into report: inout ChaosReport
    ) {
        guard !jobs.isEmpty else { return }
        report.allowJobs += jobs.count
        let lastLedgerTime = (starts.values.joined().map(\.startedAt) + ends.values.joined().compactMap(\.endedAt)).max() ?? 0
        var startsByJob: [String: [RunKey]] = [:]
        for key in starts.keys { startsByJob[key.job, default: []].append(key) }
        for job in jobs {
            let maximum = job.spec.effectiveMaxConcurrentRuns
            // Every copy of every run: when and where it ran.
            var copies: [(run: Int, start: Timestamp, end: Timestamp, executor: String)] = []
            for key in startsByJob[job.id] ?? [] {
                let ended = (ends[key] ?? []) + (stops[key] ?? [])
                for entry in starts[key] ?? [] {
                    let end =
                        ended.first { $0.executor == entry.executor && $0.attempt == entry.attempt }?.endedAt
                        ?? (faultsByTarget[entry.executor] ?? []).map(\.start).filter { $0 >= entry.startedAt }.min()
                        ?? max(lastLedgerTime, entry.startedAt)
                    copies.append((key.run, entry.startedAt, end, entry.executor))
                }
            }
            // A sweep over starts and ends (an end before a start at the same instant), counting
            // runs, not copies: two copies of one run are the concurrent-copies check's.
            var events = copies.indices.flatMap { [(time: copies[$0].start, change: 1, copy: $0), (time: copies[$0].end, change: -1, copy: $0)] }
            events.sort { $0.time != $1.time ? $0.time < $1.time : $0.change < $1.change }
            var copiesOfRun: [Int: Int] = [:]
            var running: Set<Int> = []
            var reported = false
            var noted = false
            for event in events {
                let run = copies[event.copy].run
                copiesOfRun[run, default: 0] += event.change
                if copiesOfRun[run]! > 0 { running.insert(run) } else { running.remove(run) }
                report.mostRunsAtOnce = max(report.mostRunsAtOnce, running.count)
                guard running.count > maximum else { continue }
                // Explained when a copy running now is on an executor a fault hit while it ran.
                let now = event.time
                let explained = copies.contains { copy in
                    running.contains(copy.run) && copy.start <= now && copy.end >= now
                        && (faultsByTarget[copy.executor] ?? []).contains { $0.start <= now && $0.end >= copy.start - 2_000 }
                }
                if explained {
                    guard !noted else { continue }
                    noted = true
                    report.details.append("runs at once: \(job.id) ran runs \(running.sorted()) at once, beyond its \(maximum) (a fault on their executors)")
                } else if !reported {
                    reported = true
                    report.unexplainedRunsAtOnce += 1
                    report.details.append("runs at once: \(job.id) ran runs \(running.sorted()) at once, beyond its maximum \(maximum) — NOT explained by a fault")
                }
            }
        }
    }

    /// The ends of one run (or unit) but the last whose loss no fault explains. Every end but the
    /// last was lost before it reached ZooKeeper: a fault on its executor must have hit between
    /// the end (2 s earlier at most: a write in flight) and the next copy's start, and within 10 s
    /// of the end — the executor was killed, frozen or cut off before it could record the end
    /// (under network faults its writes can fail for seconds after the end; an end left
    /// unrecorded for longer, with no fault, is a defect).
    static func unexplainedEarlierEnds(_ entries: [LedgerEntry], faultsByTarget: [String: [FaultRecord]]) -> [LedgerEntry] {
        let sorted = entries.sorted { $0.endedAt ?? 0 < $1.endedAt ?? 0 }
        return sorted.dropLast().filter { entry in
            let end = entry.endedAt ?? 0
            let nextStart = sorted.map(\.startedAt).filter { $0 > entry.startedAt }.min() ?? end
            let latest = min(max(end + 2_000, nextStart), end + 10_000)
            return !(faultsByTarget[entry.executor] ?? []).contains { $0.start <= latest && $0.end >= end - 2_000 }
        }
    }

    /// Checks the work units of a run against the ledgers' unit lines (``LedgerEntry/isUnit``):
    /// every unit added is still in its spec and finished, by an attempt whose handler ended it;
    /// a unit whose handler ended twice is explained by a fault, as a job's duplicate run is;
    /// copies of one unit that ran at once count in ``ChaosReport/maxConcurrentCopies``.
    ///
    /// Any fault on the earlier executor explains a unit's second run, packet loss included: a
    /// unit's hold is a lease in wall-clock time, not a session, and a lossy link delays the
    /// renewals and the end (TCP's retransmissions back off to seconds) past a short lease, so
    /// another executor takes the unit — the documented at-least-once window. A job's run is held
    /// by its executor's session instead, which packet loss alone does not end.
    /// - Parameters:
    ///   - added: Each spec's unit keys, as added.
    ///   - units: Each spec's units as read at the end.
    public static func checkUnits(
        added: [String: [String]], units: [String: [WorkUnit]], ledger: [LedgerEntry], faults: [FaultRecord], into report: inout ChaosReport
    ) {
        let lines = ledger.filter(\.isUnit)
        let ends = Dictionary(grouping: lines.filter { $0.kind == .end }, by: { RunKey(job: $0.job, run: $0.run) })
        let starts = Dictionary(grouping: lines.filter { $0.kind == .start }, by: { RunKey(job: $0.job, run: $0.run) })
        let stops = Dictionary(grouping: lines.filter { $0.kind == .stopped }, by: { RunKey(job: $0.job, run: $0.run) })
        let faultsByTarget = Dictionary(grouping: faults, by: \.target)
        report.unitRuns += ends.count
        for (spec, keys) in added.sorted(by: { $0.key < $1.key }) {
            report.units += keys.count
            let found = Dictionary((units[spec] ?? []).map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
            for key in keys {
                let job = LedgerEntry.unitJob(spec: spec, key: key)
                let unitEnds = ends[RunKey(job: job, run: 1)] ?? []
                guard let unit = found[key] else {
                    report.unitsLost += 1
                    report.details.append("unit lost: \(spec)/\(key) was added but is gone (\(unitEnds.count) ends in the ledgers)")
                    continue
                }
                guard unit.state == .finished else {
                    report.unitsStuck += 1
                    let last = unit.last.map { ", last attempt on \($0.executor): \($0.outcome?.rawValue ?? "running")\($0.error.map { " (\($0))" } ?? "")" } ?? ""
                    report.details.append("unit stuck: \(spec)/\(key) is \(unit.state.rawValue) after \(unit.attempts) attempts\(last)")
                    continue
                }
                guard !unitEnds.isEmpty else {
                    report.unitsLost += 1
                    report.details.append("unit lost: \(spec)/\(key) is recorded finished but no handler ended it")
                    continue
                }
                if let last = unit.last, !unitEnds.contains(where: { $0.executor == last.executor && $0.attempt == unit.attempts }) {
                    report.unitStaleEnds += 1
                    let seen = unitEnds.map { "attempt \($0.attempt) on \($0.executor)" }.joined(separator: ", ")
                    report.details.append(
                        "unit fencing: \(spec)/\(key) is recorded finished by attempt \(unit.attempts) on \(last.executor); the ledgers show \(seen)")
                }
                if unitEnds.count > 1 {
                    report.unitsFinishedTwice += 1
                    let unexplained = unexplainedEarlierEnds(unitEnds, faultsByTarget: faultsByTarget)
                    report.unexplainedUnitsFinishedTwice += unexplained.isEmpty ? 0 : 1
                    let attempts = unitEnds.map { "\($0.attempt) on \($0.executor)" }.sorted().joined(separator: ", ")
                    report.details.append(
                        "unit finished twice: \(spec)/\(key) ended \(unitEnds.count) times (attempts \(attempts))"
                            + (unexplained.isEmpty ? ", a fault hit the earlier executor" : " — NOT explained by a fault"))
                }
            }
        }
        checkConcurrentCopies(starts: starts, ends: ends, stops: stops, faultsByTarget: faultsByTarget, into: &report)
    }

    struct RunKey: Hashable, CustomStringConvertible {
        var job: String
        var run: Int
        var description: String { "\(job)#\(run)" }
    }
}
