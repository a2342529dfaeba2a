import DroverChaos
import DroverProtocol
import Testing

@Suite("The chaos checker")
struct ChaosCheckerTests {
    func record(_ id: String, _ spec: JobSpec, state: JobState, runsEnded: Int, history: [Int] = [], attempts: Int = 1, executor: String = "e1") -> JobRecord {
        var record = JobRecord(id: id, spec: spec)
        record.state = state
        record.runsStarted = runsEnded
        record.runsEnded = runsEnded
        record.history = history.map { run in
            var task = TaskRecord(job: id, run: run, method: spec.method, arguments: spec.arguments, resources: spec.resources)
            task.state = .succeeded
            task.attempts = attempts
            return RunRecord(task: task, executor: executor, outcome: .succeeded)
        }
        return record
    }

    func end(_ job: String, _ run: Int, attempt: Int = 1, executor: String = "e1", at time: Timestamp = 1_000) -> [LedgerEntry] {
        [
            LedgerEntry(kind: .start, job: job, run: run, attempt: attempt, executor: executor, startedAt: time),
            LedgerEntry(kind: .end, job: job, run: run, attempt: attempt, executor: executor, startedAt: time, endedAt: time + 50),
        ]
    }

    @Test func aCleanRunPasses() {
        let once = JobSpec(method: "sample.ledger")
        let finite = JobSpec(method: "sample.ledger", kind: .finite, count: 2)
        let report = ChaosChecker.check(
            accepted: ["a", "b"], jobs: [record("a", once, state: .succeeded, runsEnded: 1, history: [1]), record("b", finite, state: .succeeded, runsEnded: 2, history: [1, 2])],
            scheduled: [], ledger: end("a", 1) + end("b", 1) + end("b", 2),
            writes: [FencedWrite(zxid: 5, term: 1, process: "m1"), FencedWrite(zxid: 9, term: 2, process: "m2")], faults: [])
        #expect(report.passed)
        #expect(report.summary(seed: 7) == "chaos: tasks 2, runs 3, faults 0, lost 0, over-run 0, duplicates 0 (unexplained 0), fenced-writes 0, scheduled windows 0 (missed 0, 0 without a fault), concurrent copies 1 (longest overlap 0 ms, unexplained 0), seed 7")
    }

    @Test func aWorkflowsStepsMustRunAfterTheirDependenciesAndEachComplete() {
        let spec = JobSpec.workflow(steps: [
            WorkflowStep(id: "a", method: "sample.ledger"), WorkflowStep(id: "b", method: "sample.ledger", after: []),
            WorkflowStep(id: "c", method: "sample.ledger", after: ["a", "b"]),
        ])
        var workflow = record("w", spec, state: .succeeded, runsEnded: 3)
        workflow.steps = ["a", "b", "c"].enumerated().map { index, id in
            var step = StepProgress(id: id, state: .succeeded)
            step.run = index + 1
            return step
        }
        let inOrder = ChaosChecker.check(
            accepted: ["w"], jobs: [workflow], scheduled: [], ledger: end("w", 1, at: 1_000) + end("w", 2, at: 1_100) + end("w", 3, at: 1_200),
            writes: [], faults: [])
        #expect(inOrder.passed)
        #expect(inOrder.workflows == 1)
        // c started before b ended (b: 1,100 to 1,150).
        let early = ChaosChecker.check(
            accepted: ["w"], jobs: [workflow], scheduled: [], ledger: end("w", 1, at: 1_000) + end("w", 2, at: 1_100) + end("w", 3, at: 1_120),
            writes: [], faults: [])
        #expect(!early.passed)
        #expect(early.workflowOrderViolations == 1)
        #expect(early.details.first == "workflow order: w step c (run 3) started at 1120, before step b (run 2) ended at 1150")
        // A step recorded succeeded whose run no handler ended, and a run that is no step's.
        let lost = ChaosChecker.check(
            accepted: ["w"], jobs: [workflow], scheduled: [], ledger: end("w", 1) + end("w", 3, at: 2_000) + end("w", 4, at: 3_000), writes: [], faults: [])
        #expect(lost.lost == 1)
        #expect(lost.overRun == 1)

        // A workflow whose first step injects two more must end with them among its steps.
        var injecting = workflow
        injecting.spec.name = "workflow-inject"
        let withoutThem = ChaosChecker.check(
            accepted: ["w"], jobs: [injecting], scheduled: [], ledger: end("w", 1, at: 1_000) + end("w", 2, at: 1_100) + end("w", 3, at: 1_200),
            writes: [], faults: [])
        #expect(withoutThem.lost == 1)
        injecting.spec.steps! += [
            WorkflowStep(id: "extra", method: "sample.ledger", after: ["a"]), WorkflowStep(id: "extra-after", method: "sample.ledger", after: ["extra"]),
        ]
        for (run, id) in [(4, "extra"), (5, "extra-after")] {
            var step = StepProgress(id: id, state: .succeeded)
            step.run = run
            injecting.steps!.append(step)
        }
        let withThem = ChaosChecker.check(
            accepted: ["w"], jobs: [injecting], scheduled: [],
            ledger: end("w", 1, at: 1_000) + end("w", 2, at: 1_100) + end("w", 3, at: 1_200) + end("w", 4, at: 1_100) + end("w", 5, at: 1_200),
            writes: [], faults: [])
        #expect(withThem.passed, "\(withThem.details)")
    }

    @Test func findsLostOverRunDuplicatesAndRestarts() {
        let finite = JobSpec(method: "sample.ledger", kind: .finite, count: 2)
        let ledger =
            end("a", 1) + end("a", 2) + end("a", 3)  // one run too many
            + end("b", 1) + end("b", 1, attempt: 2)  // ran twice; run 2 never
            + [LedgerEntry(kind: .start, job: "c", run: 1, attempt: 1, executor: "e2", startedAt: 10)] + end("c", 1, attempt: 2)
        let report = ChaosChecker.check(
            accepted: ["a", "b", "c", "d"], jobs: [
                record("a", finite, state: .succeeded, runsEnded: 3),
                record("b", finite, state: .running, runsEnded: 1),
                record("c", JobSpec(method: "sample.ledger"), state: .succeeded, runsEnded: 1, history: [1]),
                // Recorded succeeded with no handler end: lost too.
                record("d", JobSpec(method: "sample.ledger"), state: .succeeded, runsEnded: 1, history: [1]),
            ],
            scheduled: [], ledger: ledger, writes: [], faults: [])
        #expect(report.overRun == 1)
        #expect(report.unsettled == 1)  // b is still running
        #expect(report.lost == 3)  // b#2, d#1 never ran, d#1 recorded without running
        #expect(report.duplicates == 1)
        #expect(report.unexplainedDuplicates == 1)  // no fault hit e1 when b#1's first attempt ended
        #expect(!report.passed)
    }

    @Test func aDeposedLeadersWriteAfterTheNewTermIsAFencingFailure() {
        let report = ChaosChecker.check(
            accepted: [], jobs: [], scheduled: [], ledger: [],
            writes: [
                FencedWrite(zxid: 1, term: 3, process: "m1"), FencedWrite(zxid: 2, term: 4, process: "m2"),
                FencedWrite(zxid: 3, term: 3, process: "m1"),
            ], faults: [])
        #expect(report.fencedWrites == 1)
        #expect(!report.passed)
    }

    @Test func scheduledWindowsMatchDistinctRunsAndMissesAreExplained() {
        let schedule = Schedule(referenceMilliseconds: 10_000, intervalMilliseconds: 2_000)
        // Windows at 10, 12, 14, 16 s are owed before the stop at 18.5 s; the 14 s one had no run.
        let ledger = end("s", 1, at: 10_010) + end("s", 2, at: 12_005) + end("s", 3, at: 16_100)
        let report = ChaosChecker.check(
            accepted: [], jobs: [], scheduled: [.init(id: "s", schedule: schedule, stoppedAt: 18_500)], ledger: ledger, writes: [],
            faults: [FaultRecord(description: "kill -9 leading manager m1", target: "m1", start: 13_500, end: 15_000)])
        #expect(report.scheduledWindows == 4)
        #expect(report.missedWindows == 1)
        #expect(report.missedWithoutFault == 0)
        #expect(report.details.contains { $0.contains("+4s (m1)") }, "\(report.details)")
        #expect(report.passed)
    }
}

extension ChaosCheckerTests {
    @Test func aDuplicateIsExplainedByAFaultOnTheEarlierExecutor() {
        let ledger = end("a", 1, attempt: 1, executor: "e2", at: 5_000) + end("a", 1, attempt: 2, executor: "e1", at: 9_000)
        let job = record("a", JobSpec(method: "sample.ledger"), state: .succeeded, runsEnded: 1, history: [1], attempts: 2)
        let explained = ChaosChecker.check(
            accepted: ["a"], jobs: [job], scheduled: [], ledger: ledger, writes: [],
            faults: [FaultRecord(description: "SIGSTOP executor e2", target: "e2", start: 4_000, end: 7_500)])
        #expect(explained.duplicates == 1)
        #expect(explained.unexplainedDuplicates == 0)
        #expect(explained.passed)
        let elsewhere = ChaosChecker.check(
            accepted: ["a"], jobs: [job], scheduled: [], ledger: ledger, writes: [],
            faults: [FaultRecord(description: "SIGSTOP executor e3", target: "e3", start: 4_000, end: 7_500)])
        #expect(elsewhere.unexplainedDuplicates == 1)
        #expect(!elsewhere.passed)
        // A fault after the end but before the next copy started lost the end (writes had been
        // failing meanwhile); one after the next copy started did not.
        let laterKill = FaultRecord(description: "kill -9 e2", target: "e2", start: 7_400, end: 8_000)
        #expect(ChaosChecker.check(accepted: ["a"], jobs: [job], scheduled: [], ledger: ledger, writes: [], faults: [laterKill]).passed)
        let afterTheRerun = FaultRecord(description: "kill -9 e2", target: "e2", start: 9_500, end: 10_000)
        #expect(ChaosChecker.check(accepted: ["a"], jobs: [job], scheduled: [], ledger: ledger, writes: [], faults: [afterTheRerun]).unexplainedDuplicates == 1)
        // Packet loss slows a link but does not sever it: it explains nothing.
        let loss = FaultRecord(description: "packet loss", target: "e2", start: 4_000, end: 7_500, network: true, severs: false)
        #expect(ChaosChecker.check(accepted: ["a"], jobs: [job], scheduled: [], ledger: ledger, writes: [], faults: [loss]).unexplainedDuplicates == 1)
        // Nor does a kill long after the end (an end left unrecorded for 10 s with no fault is a defect).
        let lateLedger = end("a", 1, attempt: 1, executor: "e2", at: 5_000) + end("a", 1, attempt: 2, executor: "e1", at: 30_000)
        let muchLater = FaultRecord(description: "kill -9 e2", target: "e2", start: 20_000, end: 21_000)
        #expect(ChaosChecker.check(accepted: ["a"], jobs: [job], scheduled: [], ledger: lateLedger, writes: [], faults: [muchLater]).unexplainedDuplicates == 1)
    }
}

extension ChaosCheckerTests {
    @Test func anAcceptedJobWithoutARecordIsLost() {
        let report = ChaosChecker.check(
            accepted: ["a", "gone"], jobs: [record("a", JobSpec(method: "sample.ledger"), state: .succeeded, runsEnded: 1, history: [1])],
            scheduled: [], ledger: end("a", 1), writes: [], faults: [])
        #expect(report.lost == 1)
        #expect(report.tasks == 2)
        #expect(!report.passed)
    }
}

extension ChaosCheckerTests {
    @Test func aRecordedEndNoHandlerMadeIsAFencingFailure() {
        // The history says e1 ended attempt 1, but e1's attempt 1 never ended: only e2's attempt 2 did.
        let ledger = [LedgerEntry(kind: .start, job: "a", run: 1, attempt: 1, executor: "e1", startedAt: 10)] + end("a", 1, attempt: 2, executor: "e2")
        let job = record("a", JobSpec(method: "sample.ledger"), state: .succeeded, runsEnded: 1, history: [1])
        let report = ChaosChecker.check(accepted: ["a"], jobs: [job], scheduled: [], ledger: ledger, writes: [], faults: [])
        #expect(report.staleEnds == 1)
        #expect(!report.passed)
    }

    /// `make chaos-long` checks ~100,000 jobs against ~220,000 ledger lines; the checker must be
    /// linear in them (a filter per job over every run never finished). 1,000,000 lines here.
    /// A job whose runs before `failUntilRun` fail, retried: attempts within maxAttempts, success
    /// at the first run that succeeds, failure only with every attempt spent.
    @Test func retriedJobsAreCheckedAgainstTheirPolicy() {
        func retried(_ id: String, failUntil: Int, maxAttempts: Int, state: JobState, runs: [(Int, RunRecord.Outcome, FailureKind?)]) -> JobRecord {
            let spec = JobSpec(
                method: "sample.ledger", arguments: ["failUntilRun": .number(Double(failUntil))], retry: RetryPolicy(maxAttempts: maxAttempts))
            var record = JobRecord(id: id, spec: spec)
            record.state = state
            record.history = runs.map { run, outcome, failure in
                var task = TaskRecord(job: id, run: run, method: spec.method, arguments: spec.arguments, resources: spec.resources)
                task.state = outcome == .succeeded ? .succeeded : .failed
                task.attempts = 1
                return RunRecord(task: task, executor: "e1", outcome: outcome, failure: failure)
            }
            return record
        }
        func check(_ job: JobRecord, ended: [Int]) -> ChaosReport {
            ChaosChecker.check(accepted: [job.id], jobs: [job], scheduled: [], ledger: ended.flatMap { end(job.id, $0) }, writes: [], faults: [])
        }
        // Succeeds at run 3 after two failures; fails with 2 of 2 attempts spent (one lost): both fine.
        #expect(check(retried("a", failUntil: 3, maxAttempts: 3, state: .succeeded, runs: [(1, .failed, nil), (2, .failed, nil), (3, .succeeded, nil)]), ended: [1, 2, 3]).passed)
        #expect(check(retried("b", failUntil: 2, maxAttempts: 2, state: .failed, runs: [(1, .failed, .lost), (1, .failed, nil)]), ended: [1]).passed)
        // A run beyond the attempts, or after the success: over-run.
        let beyond = check(retried("c", failUntil: 5, maxAttempts: 2, state: .failed, runs: [(1, .failed, nil), (2, .failed, nil)]), ended: [1, 2, 3])
        #expect(beyond.overRun == 1)
        // Failed with attempts left, or succeeded at the wrong run: lost.
        let early = check(retried("d", failUntil: 2, maxAttempts: 3, state: .failed, runs: [(1, .failed, nil)]), ended: [1])
        #expect(early.lost == 1)
        #expect(early.details.first?.contains("failed after 1 of 3 attempts") == true)
        let tooMany = check(
            retried("e", failUntil: 1, maxAttempts: 2, state: .succeeded, runs: [(1, .failed, nil), (2, .failed, nil), (3, .succeeded, nil)]), ended: [1, 2, 3])
        #expect(tooMany.overRun >= 2)
        #expect(!tooMany.passed)
    }

    /// A run in which ZooKeeper forgot writes it had acknowledged fails, and its summary says whose loss it was.
    @Test func writesZooKeeperLostAreNamedInTheVerdict() {
        var report = ChaosChecker.check(accepted: [], jobs: [], scheduled: [], ledger: [], writes: [], faults: [])
        report.witnesses = 300
        #expect(report.passed)
        #expect(!report.summary(seed: 1).contains("zookeeper-lost-writes"))
        report.zookeeperLostWrites = 4
        #expect(!report.passed)
        #expect(report.summary(seed: 1).contains("zookeeper-lost-writes 4 of 300"))
    }

    // Alone it takes about 9 s in a debug build; in a full run on 2 cores, 80. The limit is there
    // to catch a quadratic check (hours), not to time this one.
    @Test(.timeLimit(.minutes(3))) func aMillionLedgerLinesAreCheckedAtScale() {
        let jobCount = 100_000
        let finite = JobSpec(method: "sample.ledger", kind: .finite, count: 5)
        var jobs: [JobRecord] = []
        var ledger: [LedgerEntry] = []
        jobs.reserveCapacity(jobCount)
        ledger.reserveCapacity(jobCount * 10)
        for index in 0..<jobCount {
            let id = "j-\(index)"
            jobs.append(record(id, finite, state: .succeeded, runsEnded: 5, history: [1, 2, 3, 4, 5]))
            for run in 1...5 { ledger += end(id, run, at: Timestamp(index * 10 + run)) }
        }
        // One over-run and one duplicate among them: found at scale as in the small cases.
        ledger += end("j-7", 6) + end("j-9", 2, attempt: 2, executor: "e2", at: 5_000)
        let scheduledSpec = JobSpec(method: "sample.ledger", kind: .infinite, schedule: Schedule(referenceMilliseconds: 0, intervalMilliseconds: 1_000))
        jobs.append(record("s-1", scheduledSpec, state: .stopped, runsEnded: 100))
        for window in 0..<100 { ledger += end("s-1", window + 1, at: Timestamp(window * 1_000 + 10)) }
        #expect(ledger.count >= 1_000_000)
        let report = ChaosChecker.check(
            accepted: jobs.map(\.id), jobs: jobs,
            scheduled: [ChaosChecker.ScheduledJob(id: "s-1", schedule: scheduledSpec.schedule!, stoppedAt: 100_000)],
            ledger: ledger, writes: (0..<20_000).map { FencedWrite(zxid: Int64($0), term: Int64($0 / 100), process: "m") },
            faults: (0..<900).map { FaultRecord(description: "kill", target: "e\($0 % 4)", start: Timestamp($0 * 2_000), end: Timestamp($0 * 2_000 + 500)) })
        #expect(report.runs == jobCount * 5 + 1 + 100)
        #expect(report.overRun == 1)
        #expect(report.duplicates == 1)
        #expect(report.lost == 0)
        #expect(report.scheduledWindows == 100)
        #expect(report.missedWindows == 0)
        #expect(report.fencedWrites == 0)
    }
}

extension ChaosCheckerTests {
    /// A copy on a cut-off executor may run on beside the copy that replaced it until the executor
    /// hears its session is gone; a copy running beside another with nothing wrong with its
    /// executor is a defect. A copy that never ended runs until its executor was killed.
    /// An `overlap: allow` job runs at most its `maxConcurrentRuns` at once; more is a defect
    /// unless a fault on an executor running one of them explains it (a copy left running).
    @Test func anAllowJobsRunsAtOnceAreBoundedByItsMaximum() {
        let spec = JobSpec(
            method: "sample.ledger", kind: .infinite, schedule: Schedule(referenceMilliseconds: 0, intervalMilliseconds: 1_000), overlap: .allow,
            maxConcurrentRuns: 2)
        let job = record("a", spec, state: .stopped, runsEnded: 3)
        func span(_ run: Int, _ executor: String, _ start: Timestamp, _ end: Timestamp) -> [LedgerEntry] {
            [
                LedgerEntry(kind: .start, job: "a", run: run, attempt: 1, executor: executor, startedAt: start),
                LedgerEntry(kind: .end, job: "a", run: run, attempt: 1, executor: executor, startedAt: start, endedAt: end),
            ]
        }
        // Two at once (1 with 2, then 2 with 3): within the maximum.
        let two = span(1, "e1", 1_000, 2_500) + span(2, "e2", 2_000, 3_500) + span(3, "e1", 3_000, 4_500)
        let within = ChaosChecker.check(accepted: ["a"], jobs: [job], scheduled: [], ledger: two, writes: [], faults: [])
        #expect(within.passed)
        #expect(within.mostRunsAtOnce == 2)
        #expect(within.summary(seed: 1).contains("overlap-allow jobs 1 (most runs at once 2, beyond the maximum unexplained 0)"))
        // Three at once with no fault: a defect.
        let three = span(1, "e1", 1_000, 3_200) + span(2, "e2", 2_000, 3_500) + span(3, "e1", 3_000, 4_500)
        let beyond = ChaosChecker.check(accepted: ["a"], jobs: [job], scheduled: [], ledger: three, writes: [], faults: [])
        #expect(beyond.mostRunsAtOnce == 3)
        #expect(beyond.unexplainedRunsAtOnce == 1)
        #expect(!beyond.passed)
        // The same with run 1's executor frozen from 1,500 ms: its run was taken back and its copy ran on.
        let frozen = ChaosChecker.check(
            accepted: ["a"], jobs: [job], scheduled: [], ledger: three, writes: [],
            faults: [FaultRecord(description: "SIGSTOP executor e1", target: "e1", start: 1_500, end: 3_100)])
        #expect(frozen.unexplainedRunsAtOnce == 0)
        #expect(frozen.passed)
    }

    @Test func concurrentCopiesOfARunAreCountedAndExplainedByAFaultOnTheOlderExecutor() {
        let job = record("a", JobSpec(method: "sample.ledger"), state: .succeeded, runsEnded: 1, history: [1], attempts: 2)
        // e2 runs 1,000–9,000 ms; e1 takes over at 6,000 and ends at 6,500.
        let ledger = [
            LedgerEntry(kind: .start, job: "a", run: 1, attempt: 1, executor: "e2", startedAt: 1_000),
            LedgerEntry(kind: .end, job: "a", run: 1, attempt: 1, executor: "e2", startedAt: 1_000, endedAt: 9_000),
        ] + end("a", 1, attempt: 2, executor: "e1", at: 6_000)
        let cut = ChaosChecker.check(
            accepted: ["a"], jobs: [job], scheduled: [], ledger: ledger, writes: [],
            faults: [FaultRecord(description: "partition executor e2", target: "e2", start: 2_000, end: 7_000)])
        #expect(cut.maxConcurrentCopies == 2)
        #expect(cut.longestOverlapMilliseconds == 50)
        #expect(cut.unexplainedOverlaps == 0)
        #expect(cut.summary(seed: 1).contains("concurrent copies 2 (longest overlap 50 ms, unexplained 0)"))

        let nothingWrong = ChaosChecker.check(accepted: ["a"], jobs: [job], scheduled: [], ledger: ledger, writes: [], faults: [])
        #expect(nothingWrong.unexplainedOverlaps == 1)
        #expect(!nothingWrong.passed)

        // An executor frozen while it was about to start attempt 1 starts it after attempt 2 began
        // elsewhere, once it thaws, and stops it at once: its freeze explains it (CI, seed 571469).
        let thawed = [
            LedgerEntry(kind: .start, job: "a", run: 1, attempt: 2, executor: "e2", startedAt: 1_000),
            LedgerEntry(kind: .end, job: "a", run: 1, attempt: 2, executor: "e2", startedAt: 1_000, endedAt: 9_000),
            LedgerEntry(kind: .start, job: "a", run: 1, attempt: 1, executor: "e4", startedAt: 1_500),
            LedgerEntry(kind: .stopped, job: "a", run: 1, attempt: 1, executor: "e4", startedAt: 1_500, endedAt: 1_500),
        ]
        let frozen = ChaosChecker.check(
            accepted: ["a"], jobs: [job], scheduled: [], ledger: thawed, writes: [],
            faults: [FaultRecord(description: "SIGSTOP executor e4", target: "e4", start: 0, end: 1_400)])
        #expect(frozen.unexplainedOverlaps == 0, "\(frozen.details)")
        let unfrozen = ChaosChecker.check(accepted: ["a"], jobs: [job], scheduled: [], ledger: thawed, writes: [], faults: [])
        #expect(unfrozen.unexplainedOverlaps == 1 && unfrozen.details.contains { $0.contains("NOT explained by a fault on e4") }, "\(unfrozen.details)")

        // Three copies: one never ended (its executor was killed at 8,000), so it counts until then.
        let killed = [LedgerEntry(kind: .start, job: "a", run: 1, attempt: 3, executor: "e3", startedAt: 5_900)]
        let three = ChaosChecker.check(
            accepted: ["a"], jobs: [job], scheduled: [], ledger: ledger + killed, writes: [],
            faults: [
                FaultRecord(description: "partition executor e2", target: "e2", start: 2_000, end: 7_000),
                FaultRecord(description: "kill -9 executor e3", target: "e3", start: 8_000, end: 8_500),
            ])
        #expect(three.maxConcurrentCopies == 3)
        #expect(three.longestOverlapMilliseconds == 2_100)
        // e3 beside e1 (6,000–6,050) had nothing wrong with e3 yet: not explained.
        #expect(three.unexplainedOverlaps == 1)

        // A copy its executor stopped (taken back: `X` in the ledger) ran until the stop, not until
        // the executor's next fault: a later copy on the same executor does not overlap it.
        let stopped = [
            LedgerEntry(kind: .start, job: "a", run: 1, attempt: 3, executor: "e3", startedAt: 5_900),
            LedgerEntry(kind: .stopped, job: "a", run: 1, attempt: 3, executor: "e3", startedAt: 5_900, endedAt: 5_950),
        ]
        let stoppedThenAgain = ChaosChecker.check(
            accepted: ["a"], jobs: [job], scheduled: [], ledger: ledger + stopped, writes: [],
            faults: [
                FaultRecord(description: "partition executor e2", target: "e2", start: 2_000, end: 7_000),
                FaultRecord(description: "kill -9 executor e3", target: "e3", start: 8_000, end: 8_500),
            ])
        #expect(stoppedThenAgain.unexplainedOverlaps == 0)
        #expect(stoppedThenAgain.runs == 1, "a stop is not an end")
        #expect(LedgerEntry(line: "X a 1 3 42 5900 5950", executor: "e3") == stopped[1])
        #expect(LedgerEntry(line: "X a 1 3 42 5900", executor: "e3") == nil, "a stop without its time")
    }

    @Test func theTimeFromAHealToTheExecutorsNextRunIsMeasured() {
        let once = JobSpec(method: "sample.ledger")
        let faults = [
            FaultRecord(description: "cut h1", target: "e1", start: 1_000, end: 4_000, network: true),
            FaultRecord(description: "cut h1", target: "zk1", start: 1_000, end: 4_000, network: true),
            // Not a network fault: no measure.
            FaultRecord(description: "kill -9", target: "e2", start: 1_000, end: 2_000),
        ]
        let ledger = end("a", 1, at: 500) + end("b", 1, at: 4_700) + end("c", 1, at: 9_000) + end("d", 1, executor: "e2", at: 2_500)
        let jobs = ["a", "b", "c"].map { record($0, once, state: .succeeded, runsEnded: 1, history: [1]) }
            + [record("d", once, state: .succeeded, runsEnded: 1, history: [1], executor: "e2")]
        let report = ChaosChecker.check(accepted: ["a", "b", "c", "d"], jobs: jobs, scheduled: [], ledger: ledger, writes: [], faults: faults)
        #expect(report.backToWorkMilliseconds == [700])
        #expect(report.faults == 2)
        #expect(report.summary(seed: 1).contains("back to work after a heal 700 ms median, 700 ms max (1 heals)"))
    }

    /// Work units: a clean run passes; a unit gone, one left unfinished, one recorded finished
    /// with no handler's end, one finished by an attempt the ledgers never ended, and one that
    /// ran twice with no fault each fail it; the same double run with a kill of the earlier
    /// executor right after its end is the documented at-least-once window.
    @Test func workUnitsAreCheckedAgainstTheLedgers() {
        func unit(_ key: String, _ state: UnitState = .finished, attempts: Int = 1, executor: String = "e1") -> WorkUnit {
            var unit = WorkUnit(key: key)
            unit.state = state
            unit.attempts = attempts
            unit.last = UnitAttempt(executor: executor, startedAt: 1_000, endedAt: 1_050, outcome: state == .finished ? .finished : nil)
            return unit
        }
        func ran(_ key: String, attempt: Int = 1, executor: String = "e1", at time: Timestamp = 1_000) -> [LedgerEntry] {
            end(LedgerEntry.unitJob(spec: "s", key: key), 1, attempt: attempt, executor: executor, at: time)
        }
        func check(_ units: [WorkUnit], _ ledger: [LedgerEntry], added: [String] = ["a", "b"], faults: [FaultRecord] = []) -> ChaosReport {
            var report = ChaosReport()
            ChaosChecker.checkUnits(added: ["s": added], units: ["s": units], ledger: ledger, faults: faults, into: &report)
            return report
        }
        let clean = check([unit("a"), unit("b")], ran("a") + ran("b"))
        #expect(clean.passed && clean.units == 2 && clean.unitRuns == 2 && clean.maxConcurrentCopies == 1)
        #expect(clean.summary(seed: 1).contains("units 2 (ran 2, lost 0, stuck 0, finished twice 0 (unexplained 0), stale ends 0)"))
        // Unit lines are the unit check's alone: the job check does not count them as runs.
        #expect(ChaosChecker.check(accepted: [], jobs: [], scheduled: [], ledger: ran("a"), writes: [], faults: []).runs == 0)

        let gone = check([unit("a")], ran("a") + ran("b"))
        #expect(!gone.passed && gone.unitsLost == 1)
        let unfinished = check([unit("a"), unit("b", .retryable, attempts: 3)], ran("a"))
        #expect(!unfinished.passed && unfinished.unitsStuck == 1)
        #expect(unfinished.details.contains { $0.contains("s/b is retryable after 3 attempts") })
        let neverRan = check([unit("a"), unit("b")], ran("a"))
        #expect(!neverRan.passed && neverRan.unitsLost == 1)
        let stale = check([unit("a"), unit("b", attempts: 2, executor: "e2")], ran("a") + ran("b", attempt: 1, executor: "e1"))
        #expect(!stale.passed && stale.unitStaleEnds == 1)

        let twice = ran("b", attempt: 1, executor: "e1", at: 1_000) + ran("b", attempt: 2, executor: "e2", at: 8_000)
        let unexplained = check([unit("a"), unit("b", attempts: 2, executor: "e2")], ran("a") + twice)
        #expect(!unexplained.passed && unexplained.unitsFinishedTwice == 1 && unexplained.unexplainedUnitsFinishedTwice == 1)
        let killed = FaultRecord(description: "kill -9 e1", target: "e1", start: 1_100, end: 1_200)
        let explained = check([unit("a"), unit("b", attempts: 2, executor: "e2")], ran("a") + twice, faults: [killed])
        #expect(explained.passed && explained.unitsFinishedTwice == 1 && explained.unexplainedUnitsFinishedTwice == 0)
        // Packet loss on the earlier executor's host explains it too (its renewals and end were held
        // back past the lease), though it does not explain a job's duplicate run.
        let lossy = FaultRecord(description: "packet loss on h1", target: "e1", start: 900, end: 6_000, network: true, severs: false)
        let lost = check([unit("a"), unit("b", attempts: 2, executor: "e2")], ran("a") + twice, faults: [lossy])
        #expect(lost.passed && lost.unexplainedUnitsFinishedTwice == 0)
    }
}
