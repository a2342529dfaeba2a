import DroverClient
import DroverExecutor
import DroverProtocol
import Foundation
import Testing

/// Retries, failure policies and priorities with a real ZooKeeper, manager and executor (issue 15).
@Suite("Retries, priorities and schedule policies end to end", .timeLimit(.minutes(3)))
struct RetryAndPrioritySchedulerTests {
    static func handlers(gate: Gate = Gate()) -> [String: TaskHandler] {
        [
            // Fails until its run number reaches `succeedFrom` (each retry is a new run).
            "flaky": { context in
                let from = Int(context.arguments["succeedFrom"]?.numberValue ?? 1)
                guard context.run >= from else { throw DroverError(.jobFailed, "run \(context.run) fails on purpose") }
                return .number(Double(context.run))
            },
            "timeout": { _ in throw DroverError(.timedOut, "timed out on purpose") },
            "hold": { _ in
                await gate.wait()
                return nil
            },
            // Long enough that runs one after another on one slot start at different milliseconds.
            "forever": { _ in
                try await Task.sleep(for: .seconds(3_600))
                return nil
            },
            "quick": { _ in
                try await Task.sleep(for: .milliseconds(5))
                return nil
            },
        ]
    }

    @Test func aFailedRunIsRetriedAndCallWaitsForTheAttemptThatSucceeds() async throws {
        let cluster = try await Cluster.start("retry")
        try await cluster.with(handlers: Self.handlers()) { client in
            let retry = RetryPolicy(maxAttempts: 3, initialDelaySeconds: 0.05)
            #expect(try await client.call(JobSpec(method: "flaky", arguments: ["succeedFrom": 3], retry: retry)) == 3)

            // Attempts spent: the job fails, and its history shows each attempt.
            let id = try await client.submit(JobSpec(method: "flaky", arguments: ["succeedFrom": 9], retry: retry))
            let record = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
            #expect(record.state == .failed)
            #expect(record.history.map(\.run) == [1, 2, 3])
            #expect(record.history.map(\.attempt) == [nil, 2, 3])
            #expect(record.history.map(\.failure) == [.failed, .failed, .failed])
            #expect(record.runsRetried == 2)
        }
        await cluster.close()
    }

    @Test func aTimeoutIsToldFromAFailureAndRetriedOnlyWhenThePolicySaysSo() async throws {
        let cluster = try await Cluster.start("retry-timeout")
        try await cluster.with(handlers: Self.handlers()) { client in
            let notRetried = try await client.submit(JobSpec(method: "timeout", retry: RetryPolicy(maxAttempts: 3, on: [.failed])))
            let once = try await withDiagnosis(client, notRetried) { try await finalRecord(client, notRetried) }
            #expect(once.state == .failed)
            #expect(once.history.map(\.failure) == [.timedOut])
            let retried = try await client.submit(
                JobSpec(method: "timeout", retry: RetryPolicy(maxAttempts: 2, initialDelaySeconds: 0.05, on: [.timedOut])))
            let twice = try await withDiagnosis(client, retried) { try await finalRecord(client, retried) }
            #expect(twice.history.map(\.failure) == [.timedOut, .timedOut])
        }
        await cluster.close()
    }

    @Test func aFiniteJobWithOnFailureContinueRunsItsWholeCount() async throws {
        let cluster = try await Cluster.start("continue")
        try await cluster.with(handlers: Self.handlers()) { client in
            let id = try await client.submit(JobSpec(method: "flaky", arguments: ["succeedFrom": 3], kind: .finite, count: 4, onFailure: .continue))
            let record = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
            #expect(record.state == .failed)
            #expect(record.history.map(\.outcome) == [.failed, .failed, .succeeded, .succeeded])
            #expect(record.runsFailed == 2)
        }
        await cluster.close()
    }

    @Test func whenASlotFreesTheHighestPriorityWaitingJobRunsFirst() async throws {
        let cluster = try await Cluster.start("priority")
        let gate = Gate()
        try await cluster.with(
            executors: [("e1", Resources(cpu: 1, memoryMB: 1024, slots: 1), [:])], handlers: Self.handlers(gate: gate)
        ) { client in
            let holder = try await client.submit(JobSpec(method: "hold"))
            try await withDiagnosis(client, holder) {
                for try await record in client.updates(holder) where record.state == .running { break }
            }
            var ids: [(String, Int)] = []
            for priority in [10, 50, 90, 50] {
                ids.append((try await client.submit(JobSpec(method: "quick", priority: priority)), priority))
            }
            for (id, _) in ids {
                try await withDiagnosis(client, id) {
                    for try await record in client.updates(id) where record.state == .waiting { break }
                }
            }
            gate.open()
            var started: [(start: Timestamp, id: String)] = []
            for (id, _) in ids {
                let record = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
                started.append((try #require(record.history.first?.startedAt), id))
            }
            // One slot: they ran one after another, highest first, equal ones in the order they came.
            let order = started.sorted { $0.start < $1.start }.map(\.id)
            #expect(order == [ids[2].0, ids[1].0, ids[3].0, ids[0].0])
        }
        await cluster.close()
    }

    @Test func aScheduledRunStillRunningIsReplacedWhenItsNextTimeComes() async throws {
        let cluster = try await Cluster.start("replace")
        try await cluster.with(handlers: Self.handlers()) { client in
            let schedule = Schedule(reference: Date().addingTimeInterval(0.5), interval: .seconds(1))
            let id = try await client.submit(JobSpec(method: "forever", kind: .infinite, schedule: schedule, overlap: .replace))
            let record = try await withDiagnosis(client, id) {
                for try await record in client.updates(id) where record.history.count >= 2 { return record }
                throw CancellationError()
            }
            #expect(record.history.allSatisfy { $0.outcome == .stopped }, "\(record.history)")
            #expect(record.history.first?.error?.contains("replaced by the run of the schedule's next time") == true)
            #expect(record.state == .running)
            try await client.stop(id)
            #expect(try await withDiagnosis(client, id) { try await finalRecord(client, id) }.state == .stopped)
        }
        await cluster.close()
    }
}
