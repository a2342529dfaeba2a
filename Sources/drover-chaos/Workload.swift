import DroverClient
import DroverChaos
import DroverProtocol
import Foundation
import ZooKeeper

/// The jobs a chaos run submits, all running `sample.ledger`.
struct Workload: Sendable {
    var specs: [JobSpec]

    static func make(
        once: Int, finite: Int, infinite: Int, scheduled: Int, retrying: Int, workflows: Int = 0, directEvery: Int = 0, scheduleInterval: Double,
        random: inout SeededRandom
    ) -> Workload {
        func ledger(_ milliseconds: Int) -> JSONValue { ["milliseconds": .number(Double(milliseconds))] }
        var specs: [JobSpec] = []
        // One once job in `directEvery` goes the direct path (reservations, claims, no leader
        // between submit and start), each policy in turn, with 1 to 3 tasks — the count from a
        // random stream of its own, so the rest of the run (its faults) draws the same with or without.
        let policies: [PlacementPolicy] = [.random, .powerOfTwo, .batch, .batchLateBinding]
        var taskCounts = SeededRandom(seed: UInt64(once) &* 7919)
        for index in 0..<once {
            if directEvery > 0, index % directEvery == directEvery - 1 {
                specs.append(
                    JobSpec(
                        name: "direct", method: "sample.ledger", arguments: ledger(Int.random(in: 20...200, using: &random)),
                        priority: Int.random(in: Bounds.priority, using: &random), tasks: Int.random(in: 1...3, using: &taskCounts),
                        placement: policies[(index / directEvery) % policies.count]))
                continue
            }
            specs.append(
                JobSpec(
                    name: "once", method: "sample.ledger", arguments: ledger(Int.random(in: 20...200, using: &random)),
                    priority: Int.random(in: Bounds.priority, using: &random)))
        }
        // Jobs whose first runs fail, under a retry policy that may or may not have attempts enough.
        for _ in 0..<retrying {
            let failUntil = Int.random(in: 1...4, using: &random)
            let retry = RetryPolicy(
                maxAttempts: Int.random(in: 1...4, using: &random), initialDelaySeconds: 0.2, maxDelaySeconds: 1, jitter: 0.5,
                on: Bool.random(using: &random) ? [.failed, .lost] : [.failed])
            specs.append(
                JobSpec(
                    name: "retrying", method: "sample.ledger",
                    arguments: ["milliseconds": .number(Double(Int.random(in: 20...200, using: &random))), "failUntilRun": .number(Double(failUntil))],
                    retry: retry, priority: Int.random(in: Bounds.priority, using: &random)))
        }
        // Workflows of five steps, a fan-out and a fan-in (prepare; left and right after it; join
        // after both; report after join), results passed on by reference. One in four instead has a
        // step that fails and calls a compensation step: it must end failed, with the clean-up run.
        // Another one in four has its first step inject two more from its handler (one after it,
        // one after that): the workflow must end with them run too.
        for index in 0..<workflows {
            func step(_ id: String, after: [String]?, _ extra: [String: JSONValue] = [:]) -> WorkflowStep {
                var arguments: [String: JSONValue] = ["milliseconds": .number(Double(Int.random(in: 20...200, using: &random))), "returns": ["step": .string(id)]]
                arguments.merge(extra) { _, new in new }
                return WorkflowStep(id: id, method: "sample.ledger", arguments: .object(arguments), after: after)
            }
            if index % 4 == 3 {
                var check = step("check", after: ["prepare"], ["failUntilRun": 1_000_000])
                check.onFailure = .compensate("cleanup")
                specs.append(
                    .workflow(
                        name: "workflow-compensate",
                        steps: [
                            step("prepare", after: nil), check, step("after-check", after: ["check"]),
                            step("cleanup", after: nil, ["from": ["$from": "prepare.result.step"]]),
                        ], priority: Int.random(in: Bounds.priority, using: &random)))
                continue
            }
            let injecting = index % 4 == 1
            let injected: [String: JSONValue] =
                injecting
                ? ["injects": [
                    ["id": "extra", "method": "sample.ledger", "arguments": ["milliseconds": 50, "returns": ["step": "extra"]]],
                    // (No `$from` in here: the leader would resolve it as one of `prepare`'s own.)
                    ["id": "extra-after", "method": "sample.ledger", "after": ["extra"], "arguments": ["milliseconds": 50]],
                ]] : [:]
            specs.append(
                .workflow(
                    name: injecting ? "workflow-inject" : "workflow",
                    steps: [
                        step("prepare", after: nil, injected), step("left", after: ["prepare"], ["from": ["$from": "prepare.result.step"]]),
                        step("right", after: ["prepare"]), step("join", after: ["left", "right"], ["from": ["$from": "left.result.step"]]),
                        step("report", after: nil, ["state": ["$from": "join.state"]]),
                    ], priority: Int.random(in: Bounds.priority, using: &random)))
        }
        for _ in 0..<finite {
            specs.append(
                JobSpec(
                    name: "finite", method: "sample.ledger", arguments: ledger(Int.random(in: 20...200, using: &random)), kind: .finite,
                    count: Int.random(in: 2...5, using: &random)))
        }
        for _ in 0..<infinite {
            specs.append(JobSpec(name: "infinite", method: "sample.ledger", arguments: ledger(300), kind: .infinite))
        }
        // Scheduled jobs start on the next whole interval a few seconds from now.
        let interval = Int64(scheduleInterval * 1000)
        let reference = (Timestamp.now() / interval + 3) * interval
        // Above the once jobs' priorities (random, 1-100, 50 on average): a time that comes while
        // the executors are full waits ahead of its priority only. Most are quick; some run longer than their interval, to exercise the schedule policies
        // under faults: `replace` stops each run when the next time comes, `catchUp` makes up the
        // times a run went past, `allow` runs the next time's run beside it (two at most).
        for index in 0..<scheduled {
            let schedule = Schedule(referenceMilliseconds: reference, intervalMilliseconds: interval)
            let slow = ledger(Int(interval) * 3 / 2)
            switch index % 4 {
            case 1:
                specs.append(
                    JobSpec(
                        name: "scheduled-replace", method: "sample.ledger", arguments: slow, kind: .infinite, schedule: schedule, priority: 80,
                        overlap: .replace))
            case 2:
                specs.append(
                    JobSpec(
                        name: "scheduled-catchup", method: "sample.ledger", arguments: slow, kind: .infinite, schedule: schedule, priority: 80,
                        missedRuns: MissedRunPolicy(policy: .catchUp, startingDeadlineSeconds: scheduleInterval * 4, maxRuns: 3)))
            case 3:
                specs.append(
                    JobSpec(
                        name: "scheduled-allow", method: "sample.ledger", arguments: slow, kind: .infinite, schedule: schedule, priority: 80,
                        overlap: .allow, maxConcurrentRuns: 2))
            default:
                specs.append(
                    JobSpec(name: "scheduled", method: "sample.ledger", arguments: ledger(50), kind: .infinite, schedule: schedule, priority: 80))
            }
        }
        specs.shuffle(using: &random)
        // The long-lived jobs first: they should live through the faults.
        specs.sort { ($0.kind == .infinite ? 0 : 1) < ($1.kind == .infinite ? 0 : 1) }
        return Workload(specs: specs)
    }

    /// Submits every job, spread evenly over `period`, 8 at a time; returns the accepted ones.
    /// A submit that fails even after the client's retries is not accepted (and reported).
    func submit(with client: DroverClient, over period: Duration) async throws -> [(id: String, spec: JobSpec)] {
        let start = ContinuousClock.now
        let spacing = period / max(specs.count, 1)
        var accepted: [(String, JobSpec)] = []
        var refused = 0
        try await withThrowingTaskGroup(of: (String, JobSpec)?.self) { group in
            var inFlight = 0
            for (index, spec) in specs.enumerated() {
                if inFlight >= 8, let result = try await group.next() {
                    inFlight -= 1
                    if let result { accepted.append(result) } else { refused += 1 }
                }
                let due = start + spacing * index
                if due > ContinuousClock.now { try await Task.sleep(until: due) }
                inFlight += 1
                group.addTask {
                    do {
                        return (try await client.submit(spec), spec)
                    } catch {
                        say("submit not accepted: \(error)")
                        return nil
                    }
                }
                if index > 0 && index % 500 == 0 { say("submitted \(index)/\(specs.count)") }
            }
            for try await result in group {
                if let result { accepted.append(result) } else { refused += 1 }
            }
        }
        say("all submitted: \(accepted.count) accepted, \(refused) not accepted (not counted as lost)")
        return accepted
    }
}
