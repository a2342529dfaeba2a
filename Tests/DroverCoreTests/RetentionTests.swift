import DroverClient
import DroverExecutor
import DroverProtocol
import DroverStore
import Foundation
import Testing
import ZooKeeper

@testable import DroverManager

/// Finished jobs are removed after the retention period (issue 15): the rule without a server,
/// and the leader's sweep against a real one.
@Suite("Retention of finished jobs", .timeLimit(.minutes(3)))
struct RetentionTests {
    let now: Timestamp = 1_800_000_000_000

    func record(_ state: JobState, endedAt: Timestamp?, submittedAt: Timestamp) -> JobRecord {
        var record = JobRecord(id: "j-1", spec: JobSpec(method: "m"), submittedAt: submittedAt)
        record.state = state
        if let endedAt {
            var task = TaskRecord(job: "j-1", run: 1, method: "m", arguments: nil, resources: Resources())
            task.endedAt = endedAt
            record.history = [RunRecord(task: task, executor: "e1", outcome: state == .succeeded ? .succeeded : .failed)]
        }
        return record
    }

    @Test func onlyFinalJobsThatEndedAPeriodAgoAreDue() {
        let rule = RetentionRule(periodMilliseconds: 60_000)
        #expect(rule.isDue(record(.succeeded, endedAt: now - 60_000, submittedAt: now - 90_000), now: now))
        #expect(!rule.isDue(record(.succeeded, endedAt: now - 59_999, submittedAt: now - 90_000), now: now))
        #expect(rule.isDue(record(.cancelled, endedAt: nil, submittedAt: now - 60_000), now: now))
        for state in [JobState.queued, .waiting, .running] {
            #expect(!rule.isDue(record(state, endedAt: now - 600_000, submittedAt: now - 900_000), now: now), "\(state)")
        }
        // The note the leader wrote over a record it could not use goes the same way.
        #expect(rule.isDue(UnusableJobRecord(id: "j-1", reason: "x", original: [], at: now - 60_000), now: now))
        #expect(!rule.isDue(UnusableJobRecord(id: "j-1", reason: "x", original: [], at: now - 1), now: now))
    }

    @Test func anIdSaysWhetherItsJobCanBeDueWithoutAReadOfItsRecord() {
        let rule = RetentionRule(periodMilliseconds: 60_000)
        let old = "j-\(String(now - 61_000, radix: 36))-abc"
        let young = "j-\(String(now - 1_000, radix: 36))-abc"
        #expect(Layout.submissionTime(ofJobID: old) == now - 61_000)
        #expect(rule.mayBeDue(id: old, now: now))
        #expect(!rule.mayBeDue(id: young, now: now))
        // An id of another shape (another program's) is read to know.
        #expect(rule.mayBeDue(id: "nightly-report-7", now: now))
        #expect(Layout.submissionTime(ofJobID: "j-zzzzzzzzzzzzzzzzzz-1") == nil)
        // Garbage is never due; a leader's note is.
        #expect(!RetentionSweep.isDue(Array("garbage".utf8), id: "j-1", rule: rule, now: now))
        let note = try! Codec.encode(UnusableJobRecord(id: "j-1", reason: "spec.kind: …", original: [], at: now - 61_000))
        #expect(RetentionSweep.isDue(note, id: "j-1", rule: rule, now: now))
    }

    @Test func aFinishedWorkflowsSharedDataGoesWithItsRecord() async throws {
        let cluster = try await Cluster.start("retention-shared")
        let handlers: [String: TaskHandler] = ["note": { context in
            try await context.shared.update { $0 = ["noted": true] }
            return nil
        }]
        try await cluster.with(handlers: handlers, retention: .seconds(1)) { client in
            let id = try await client.submit(JobSpec.workflow(steps: [WorkflowStep(id: "note", method: "note")]))
            #expect(try await finalRecord(client, id).state == .succeeded)
            #expect(try await client.sharedData(of: id) == ["noted": true])
            try await withDiagnosis(client, id) {
                for try await update in client.zookeeper.dataUpdates(of: client.layout.sharedDocument(id)) {
                    if case .missing = update { break }
                }
            }
            #expect(try await client.zookeeper.exists(client.layout.job(id)) == nil, "the record went first")
            // Shared data left behind without a record (a leader stopped between the two
            // deletions, another program) goes on a later pass.
            try await SharedDocument(zookeeper: client.zookeeper, layout: client.layout).update("j-orphan") { $0 = ["left": true] }
            try await withDiagnosis(client, id) {
                for try await update in client.zookeeper.dataUpdates(of: client.layout.sharedDocument("j-orphan")) {
                    if case .missing = update { break }
                }
            }
        }
        await cluster.close()
    }

    @Test func theLeaderRemovesFinishedJobsAfterThePeriodAndClientsSaySo() async throws {
        let cluster = try await Cluster.start("retention")
        try await cluster.with(handlers: SchedulerTests.handlers, retention: .seconds(1)) { client in
            let service = try await client.submit(JobSpec(method: "count", kind: .infinite))
            var finished: [String] = []
            for _ in 0..<3 { finished.append(try await client.submit(JobSpec(method: "echo", arguments: ["x": 1]))) }
            for id in finished {
                #expect(try await withDiagnosis(client, id) { try await finalRecord(client, id) }.state == .succeeded)
            }
            // Each record goes (seen on a watch of its node), a second or so after its job ended.
            for id in finished {
                try await withDiagnosis(client, id) {
                    for try await update in client.zookeeper.dataUpdates(of: client.layout.job(id)) {
                        if case .missing = update { break }
                    }
                }
            }
            let asked = await #expect(throws: DroverError.self) { try await client.status(finished[0]) }
            #expect(asked?.code == .unknownJob)
            #expect(asked?.message.contains("the manager removes jobs 1s after they finish") == true, "\(String(describing: asked))")
            // A job that has not finished stays, however old.
            #expect(try await client.status(service).state.isFinal == false)
            try await client.stop(service)
        }
        await cluster.close()
    }
}
