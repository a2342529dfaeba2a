@testable import DroverExecutor
import DroverProtocol
import Testing

/// When a unit worker writes the ends of a segment: once no unit of that segment runs in it, or
/// once the first end waiting has waited `endsLinger` — one write per claim of short units.
@Suite("Unit worker: when ends are written")
struct UnitWorkerEndsTests {
    let segment = UnitWorker.SegmentID(spec: "s", bucket: 0, segment: "s0")
    let other = UnitWorker.SegmentID(spec: "s", bucket: 1, segment: "s0")
    let linger = Duration.milliseconds(100)

    func end(_ key: String) -> UnitSegment.End { UnitSegment.End(key: key, claim: "c", outcome: .finished, at: 0) }

    @Test func aSegmentsEndsWaitForItsOtherUnitsThenGoTogether() {
        var ends = UnitWorker.Ends()
        let start = ContinuousClock.now
        ends.started(3, in: segment)
        // The first end: the writer is told to look (to learn when it is due), nothing is due yet.
        var look = ends.stopped(in: segment, end: end("a"), maxRetries: 0, now: start)
        #expect(look)
        var taken = ends.takeDue(now: start, linger: linger, all: false)
        #expect(taken.due.isEmpty && taken.next == start + linger)
        look = ends.stopped(in: segment, end: end("b"), maxRetries: 0, now: start + .milliseconds(1))
        #expect(!look)
        // The last unit of the segment ends: all three are due at once, in one write.
        look = ends.stopped(in: segment, end: end("c"), maxRetries: 0, now: start + .milliseconds(2))
        #expect(look)
        taken = ends.takeDue(now: start + .milliseconds(2), linger: linger, all: false)
        #expect(taken.due[segment]?.ends.map(\.key) == ["a", "b", "c"] && taken.next == nil)
        #expect(ends.unwritten.isEmpty && ends.unended.isEmpty)
    }

    @Test func endsThatWaitedTheLingerAreDueThoughUnitsStillRun() {
        var ends = UnitWorker.Ends()
        let start = ContinuousClock.now
        ends.started(2, in: segment)
        ends.started(1, in: other)
        _ = ends.stopped(in: segment, end: end("a"), maxRetries: 2, now: start)
        var taken = ends.takeDue(now: start + .milliseconds(99), linger: linger, all: false)
        #expect(taken.due.isEmpty)
        taken = ends.takeDue(now: start + linger, linger: linger, all: false)
        #expect(taken.due[segment]?.ends.map(\.key) == ["a"] && taken.due[segment]?.maxRetries == 2)
        // The other segment had no end: nothing of it is due, and nothing is left waiting.
        #expect(taken.due[other] == nil && taken.next == nil)
    }

    @Test func aUnitStoppedWithoutAnEndLetsTheOthersGoAndEverythingGoesAtTheEnd() {
        var ends = UnitWorker.Ends()
        let start = ContinuousClock.now
        ends.started(2, in: segment)
        _ = ends.stopped(in: segment, end: end("a"), maxRetries: 0, now: start)
        // The other unit was handed back: nothing more will end there, so "a" is written now.
        let look = ends.stopped(in: segment, end: nil, maxRetries: 0, now: start)
        #expect(look)
        let due = ends.takeDue(now: start, linger: linger, all: false).due
        #expect(due[segment]?.ends.count == 1)
        // At the worker's end, everything waiting goes, whatever still counts as running.
        ends.started(5, in: other)
        _ = ends.stopped(in: other, end: end("b"), maxRetries: 0, now: start)
        let last = ends.takeDue(now: start, linger: linger, all: true).due
        #expect(last[other]?.ends.count == 1)
    }
}
