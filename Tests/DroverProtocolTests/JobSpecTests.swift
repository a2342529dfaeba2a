import Foundation
import Testing

@testable import DroverProtocol

@Suite("Job specs: JSON and validation (no server)")
struct JobSpecTests {
    @Test func decodesTheDocumentedShapeWithDefaults() throws {
        let json = #"{"method":"shell","arguments":{"command":["bash","x.sh"]},"kind":"finite","count":3}"#
        let spec = try JSONDecoder().decode(JobSpec.self, from: Data(json.utf8))
        #expect(spec.format == 1)
        #expect(spec.kind == .finite)
        #expect(spec.count == 3)
        #expect(spec.resources == Resources(cpu: 0, memoryMB: 0, slots: 1))
        #expect(spec.arguments["command"] == ["bash", "x.sh"])
        #expect(spec.schedule == nil)
        try spec.validate()
        let again = try JSONDecoder().decode(JobSpec.self, from: JSONEncoder().encode(spec))
        #expect(again == spec)
    }

    @Test(arguments: [
        (JobSpec(method: ""), "method"),
        (JobSpec(method: "has space"), "method"),
        (JobSpec(method: "m", kind: .finite), "count"),
        (JobSpec(method: "m", kind: .finite, count: 0), "count"),
        (JobSpec(method: "m", kind: .finite, count: -2), "count"),
        (JobSpec(method: "m", kind: .once, count: 2), "count"),
        (JobSpec(method: "m", resources: Resources(cpu: -1)), "resources.cpu"),
        (JobSpec(method: "m", resources: Resources(memoryMB: -5)), "resources.memoryMB"),
        (JobSpec(method: "m", resources: Resources(slots: 0)), "resources.slots"),
        (JobSpec(method: "m", schedule: Schedule(referenceMilliseconds: 0, intervalMilliseconds: 0)), "schedule.intervalSeconds"),
    ])
    func badSpecsNameTheField(spec: JobSpec, field: String) {
        #expect(throws: SpecError.self) { try spec.validate() }
        do {
            try spec.validate()
        } catch {
            #expect(error.field == field, "\(error)")
        }
    }

    /// What format 2 added (retries, failure policy, priority, cron) is written as format 2, so a
    /// leader that reads only format 1 fails the job saying "upgrade Drover" rather than run it
    /// without them; everything else stays format 1, which every leader reads.
    @Test func aSpecIsWrittenInTheOldestFormatThatHoldsIt() throws {
        func writtenFormat(_ spec: JobSpec) throws -> Int {
            let object = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(spec))
            return Int(object["format"]?.numberValue ?? 0)
        }
        #expect(try writtenFormat(JobSpec(method: "m", kind: .finite, count: 2)) == 1)
        #expect(try writtenFormat(JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 2))) == 2)
        #expect(try writtenFormat(JobSpec(method: "m", priority: 60)) == 2)
        #expect(try writtenFormat(JobSpec(method: "m", kind: .infinite, schedule: Schedule(cron: "@daily"))) == 2)
        var changed = JobSpec(method: "m")
        changed.onFailure = .continue
        #expect(try writtenFormat(changed) == 2)
        let full = JobSpec(
            method: "m", kind: .finite, count: 3, schedule: Schedule(cron: "*/5 9-17 * * mon-fri", timeZone: "Europe/Berlin"),
            retry: RetryPolicy(maxAttempts: 3, initialDelaySeconds: 2, jitter: 0.25, on: [.timedOut]), onFailure: .continue, priority: 90)
        #expect(try JSONDecoder().decode(JobSpec.self, from: JSONEncoder().encode(full)) == full)
        try full.validate()
    }

    @Test func aLeaderLetsPassKindsOfFailureANewerClientNames() {
        let spec = JobSpec(method: "m", retry: RetryPolicy(maxAttempts: 2, on: [.failed, FailureKind(rawValue: "oom")]))
        #expect(throws: SpecError.self) { try spec.validate() }
        #expect(throws: Never.self) { try spec.validate(asReader: true) }
    }

    @Test func anOversizedSpecIsRefused() {
        // Built here, not passed as a test argument: the test's name would carry all 70,000 bytes.
        let spec = JobSpec(method: "m", arguments: .string(String(repeating: "x", count: 70_000)))
        #expect(throws: SpecError.self) { try spec.validate() }
        do {
            try spec.validate()
        } catch {
            #expect(error.field == "arguments")
        }
    }

    @Test func aNewerFormatIsRefusedWithAdvice() {
        var spec = JobSpec(method: "m")
        spec.format = 99
        #expect(throws: SpecError(field: "format", reason: "format 99 is not one this Drover reads (1...5) — upgrade Drover")) {
            try spec.validate()
        }
    }

    @Test func resourcesFit() {
        let capacity = Resources(cpu: 2, memoryMB: 1024, slots: 4)
        #expect(Resources(cpu: 2, memoryMB: 1024, slots: 4).fits(in: capacity))
        #expect(!Resources(cpu: 2.5, memoryMB: 10, slots: 1).fits(in: capacity))
        #expect(!Resources(cpu: 0, memoryMB: 2048, slots: 1).fits(in: capacity))
        #expect((capacity - Resources(cpu: 0.5, memoryMB: 24, slots: 1)) == Resources(cpu: 1.5, memoryMB: 1000, slots: 3))
    }

    /// A submit's carried record round-trips; one that does not decode is dropped, not the submit.
    @Test func aQueueOperationsCarriedRecordIsOptionalAndNeverCostsTheOperation() throws {
        let record = JobRecord(id: "j-1", spec: JobSpec(method: "echo"))
        let encoded = try JSONEncoder().encode(QueueOperation(.submit, job: "j-1", record: record))
        let decoded = try JSONDecoder().decode(QueueOperation.self, from: encoded)
        #expect(decoded == QueueOperation(.submit, job: "j-1", record: record))

        let plain = try JSONDecoder().decode(QueueOperation.self, from: Data(#"{"format":1,"op":"cancel","job":"j-2"}"#.utf8))
        #expect(plain == QueueOperation(.cancel, job: "j-2"))

        let garbled = #"{"format":1,"op":"submit","job":"j-3","record":{"id":7}}"#
        let kept = try JSONDecoder().decode(QueueOperation.self, from: Data(garbled.utf8))
        #expect(kept == QueueOperation(.submit, job: "j-3"))

        #expect(throws: DecodingError.self) { try JSONDecoder().decode(QueueOperation.self, from: Data(#"{"format":1,"job":"j-4"}"#.utf8)) }
    }

    /// A queue item is one operation (format 1) or a bulk submit's batch (format 2); a bad
    /// operation in a batch is nil there and does not hide the others; newer formats are refused.
    @Test func aQueueItemIsOneOperationOrABatchWhoseBadOperationsDoNotHideTheRest() throws {
        let single = try JSONDecoder().decode(QueueItemContent.self, from: Data(#"{"format":1,"op":"cancel","job":"j-1"}"#.utf8))
        #expect(single == .operation(QueueOperation(.cancel, job: "j-1")))

        let record = JobRecord(id: "j-2", spec: JobSpec(method: "echo"))
        let operations = try [QueueOperation(.submit, job: "j-2", record: record), QueueOperation(.stop, job: "j-3")].map { Array(try JSONEncoder().encode($0)) }
        let item = QueueItemContent.batchItem(operations)
        let batch = try JSONDecoder().decode(QueueItemContent.self, from: Data(item))
        #expect(batch.operations == [QueueOperation(.submit, job: "j-2", record: record), QueueOperation(.stop, job: "j-3")])

        let mixed = QueueItemContent.batchItem([
            Array(#"{"format":1,"op":"explode","job":"j-4"}"#.utf8), Array(#"{"format":1,"op":"cancel","job":"j-5"}"#.utf8),
            Array(#"{"format":2,"op":"cancel","job":"j-6"}"#.utf8), Array("17".utf8),
        ])
        // The cancel counts; the unreadable elements are kept as they were, and only those.
        #expect(
            try JSONDecoder().decode(QueueItemContent.self, from: Data(mixed))
                == .batch(
                    [QueueOperation(.cancel, job: "j-5")],
                    unreadable: [["format": 1, "op": "explode", "job": "j-4"], ["format": 2, "op": "cancel", "job": "j-6"], 17]))

        #expect(throws: DecodingError.self) { try JSONDecoder().decode(QueueItemContent.self, from: Data(#"{"format":3,"operations":[]}"#.utf8)) }
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(QueueItemContent.self, from: Data(#"{"format":2,"op":"submit","job":"j-7"}"#.utf8)) }
    }
}

@Suite("Admission")
struct AdmissionRuleTests {
    /// Full from the limit; open again only below nine tenths of it, so a line at the limit does
    /// not flip with every job.
    @Test func theLineIsFullFromTheLimitUntilItIsBackUnderNineTenths() {
        #expect(!Admission.isFull(waiting: 99, maxWaiting: 100, wasFull: false))
        #expect(Admission.isFull(waiting: 100, maxWaiting: 100, wasFull: false))
        #expect(Admission.isFull(waiting: 91, maxWaiting: 100, wasFull: true))
        #expect(!Admission.isFull(waiting: 90, maxWaiting: 100, wasFull: true))
        // A limit of one: full with one waiting, open with none.
        #expect(Admission.isFull(waiting: 1, maxWaiting: 1, wasFull: false))
        #expect(Admission.isFull(waiting: 1, maxWaiting: 1, wasFull: true))
        #expect(!Admission.isFull(waiting: 0, maxWaiting: 1, wasFull: true))
    }
}
