import Foundation
import Testing

@testable import DroverProtocol

/// Numbers and sizes a user or a znode supplies: refused with the field named, never a trap
/// (issue 13, defects 1–4).
@Suite("Bounds: what a number or a size may be (no server)")
struct BoundsTests {
    func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T { try JSONDecoder().decode(type, from: Data(json.utf8)) }

    @Test(arguments: ["1e300", "9223371000000000", "1e16", "0", "-5", "0.0001"])
    func aScheduleIntervalOutsideItsRangeIsRefusedWhenRead(seconds: String) {
        let json = #"{"reference": "2021-01-31T21:01:00Z", "intervalSeconds": \#(seconds)}"#
        #expect(throws: DecodingError.self) { try decode(Schedule.self, json) }
        // In a record, the reader names the field.
        let record = #"{"format":1,"id":"j-1","spec":{"format":1,"method":"shell","kind":"infinite","schedule":\#(json)},"state":"queued","submittedAt":0,"runsStarted":0,"runsEnded":0,"history":[],"stopRequested":false}"#
        #expect {
            _ = try JobRecord.read(Array(record.utf8), job: "j-1")
        } throws: { error in
            "\(error)".contains("spec.schedule.intervalSeconds")
        }
    }

    @Test func theNextRunNeverOverflows() {
        // Schedules outside the bounds can only be made in code; they saturate, they do not trap.
        let huge = Schedule(referenceMilliseconds: 0, intervalMilliseconds: .max / 2 + 7)
        #expect(huge.nextRunMilliseconds(after: .max / 2 + 10) == .max)
        #expect(Schedule(referenceMilliseconds: .min, intervalMilliseconds: 1000).nextRunMilliseconds(after: .max) == .max)
        #expect(Schedule(referenceMilliseconds: 0, intervalMilliseconds: 0).nextRunMilliseconds(after: 5) == .max)
        #expect(Schedule(reference: Date(timeIntervalSince1970: 1e300), interval: .seconds(Int64.max)).problem != nil)
        // Within the bounds, the largest values still compute.
        let edge = Schedule(referenceMilliseconds: Bounds.timestampMilliseconds.upperBound, intervalMilliseconds: Bounds.intervalMilliseconds.upperBound)
        #expect(edge.nextRunMilliseconds(after: Bounds.timestampMilliseconds.upperBound) > Bounds.timestampMilliseconds.upperBound)
    }

    @Test func millisecondsFromAnyDoubleNeverTrap() {
        for value in [Double.nan, .infinity, -.infinity, 1e300, -1e300, Double(Int64.max), 0.0004] {
            #expect(Bounds.milliseconds(fromSeconds: value, in: Bounds.intervalMilliseconds) == nil, "\(value)")
        }
        #expect(Bounds.milliseconds(fromSeconds: 1.5, in: Bounds.intervalMilliseconds) == 1500)
    }

    @Test(arguments: [Double.nan, .infinity, 1e300, 0, -1, 40_000_000])
    func aShellTimeoutOutsideItsRangeIsRefusedAtSubmit(seconds: Double) {
        let spec = JobSpec(method: "shell", arguments: ["command": ["true"], "timeoutSeconds": .number(seconds)])
        #expect {
            try spec.validate()
        } throws: { error in
            (error as? SpecError)?.field.hasPrefix("arguments") == true
        }
    }

    @Test func aNonFiniteNumberInTheArgumentsIsNamed() {
        let spec = JobSpec(method: "sample.echo", arguments: ["a": ["b": [1, .number(.nan)]]])
        #expect(throws: SpecError(field: "arguments.a.b[1]", reason: "not a finite number (JSON has no NaN or infinity)")) { try spec.validate() }
    }

    @Test func countsAndResourcesHaveRanges() {
        #expect(throws: SpecError.self) { try JobSpec(method: "m", kind: .finite, count: 0).validate() }
        #expect(throws: SpecError.self) { try JobSpec(method: "m", kind: .finite, count: Int.max).validate() }
        #expect(throws: SpecError.self) { try JobSpec(method: "m", resources: Resources(cpu: .infinity)).validate() }
        #expect(throws: SpecError.self) { try JobSpec(method: "m", resources: Resources(slots: Int.max)).validate() }
        try? JobSpec(method: "m", kind: .finite, count: 3).validate()
    }

    @Test func longErrorsAreCutOnACharacterBoundary() {
        let text = String(repeating: "é", count: 40_000)  // 80,000 bytes
        let cut = Bounds.truncated(text, toBytes: Bounds.errorBytes)
        #expect(cut.utf8.count <= Bounds.errorBytes)
        #expect(cut.hasSuffix("[cut: 80000 bytes in all]"))
        #expect(cut.hasPrefix("éé"))
        #expect(Bounds.truncated("short", toBytes: 10) == "short")
        // A run's error and result are bounded in the history, whoever reported them.
        var task = TaskRecord(job: "j", run: 1, method: "m", arguments: nil, resources: Resources())
        task.error = String(repeating: "x", count: 50_000)
        #expect(RunRecord(task: task, executor: "e", outcome: .failed).error!.utf8.count <= Bounds.errorBytes)
        task.error = nil
        task.result = .string(String(repeating: "y", count: 20_000))
        let run = RunRecord(task: task, executor: "e", outcome: .succeeded)
        #expect(run.result == nil)
        #expect(run.outcome == .failed)
    }

    @Test func aSetAsideItemKeepsOnlyTheStartOfItsData() {
        let item = SetAsideItem(code: .unreadableItem, reason: "garbage", data: Array(repeating: UInt8(ascii: "z"), count: 1_000_000))
        #expect(item.data.utf8.count == Bounds.setAsideDataBytes)
        #expect(item.bytes == 1_000_000)
        #expect(SetAsideItem(code: .noJob, reason: "no job", data: Array("{}".utf8)).bytes == nil)
    }
}

/// Every reader reads a job record the same way, and a record that cannot be used is reported
/// with the field that is wrong (issue 14, item 4).
@Suite("Reading job records (no server)")
struct JobRecordReadingTests {
    static let good = #"{"format":1,"id":"j-1","spec":{"format":1,"method":"shell","kind":"once"},"state":"queued","submittedAt":0,"runsStarted":0,"runsEnded":0,"history":[],"stopRequested":false}"#

    func reason(_ json: String, id: String = "j-1") -> String? {
        do {
            _ = try JobRecord.read(Array(json.utf8), job: id)
            return nil
        } catch {
            return error.reason
        }
    }

    @Test func aGoodRecordReads() throws {
        #expect(reason(Self.good) == nil)
    }

    @Test func eachProblemNamesItsField() {
        #expect(reason(Self.good.replacingOccurrences(of: #""runsEnded":0,"#, with: "")) == "runsEnded: missing")
        #expect(reason(Self.good.replacingOccurrences(of: #""kind":"once""#, with: #""kind":"sometimes""#))?.hasPrefix("spec.kind:") == true)
        #expect(reason(Self.good.replacingOccurrences(of: #"{"format":1,"id""#, with: #"{"format":2,"id""#))?.hasPrefix("format: 2") == true)
        #expect(reason(Self.good.replacingOccurrences(of: #"{"format":1,"id""#, with: #"{"id""#)) == "format: missing")
        #expect(reason(Self.good.replacingOccurrences(of: #""spec":{"format":1"#, with: #""spec":{"format":7"#))?.hasPrefix("spec.format:") == true)
        #expect(reason(Self.good.replacingOccurrences(of: #""kind":"once""#, with: #""kind":"finite""#)) == "spec.count: a finite job needs a count of runs")
        #expect(reason(Self.good.replacingOccurrences(of: #""kind":"once""#, with: #""kind":"finite","count":0"#))?.hasPrefix("spec.count:") == true)
        #expect(reason(Self.good, id: "j-2") == #"id: the record says "j-1""#)
        #expect(reason("not json")?.hasPrefix("document:") == true)
        #expect(reason(String(repeating: " ", count: JobRecord.maximumEncodedBytes + 1) + Self.good)?.contains("over the limit") == true)
    }

    @Test func theLeadersStubReportsItsReason() throws {
        let stub = UnusableJobRecord(id: "j-1", reason: "spec.kind: no such kind", original: Array("garbage".utf8))
        let data = try JSONEncoder().encode(stub)
        #expect(reason(String(decoding: data, as: UTF8.self)) == "spec.kind: no such kind")
    }
}
