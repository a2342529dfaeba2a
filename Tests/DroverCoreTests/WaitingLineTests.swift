@testable import DroverManager
import DroverProtocol
import Testing

/// The leader's line of waiting jobs: pure logic, no server.
@Suite struct WaitingLineTests {
    private func record(_ id: String) -> JobRecord { JobRecord(id: id, spec: JobSpec(method: "m")) }

    @Test func keepsArrivalOrderWithUrgentJobsFirst() {
        var line = WaitingLine()
        for id in ["a", "b", "c"] { line.add(record(id)) }
        line.add(record("due"), urgent: true)
        line.add(record("b"))  // already waiting: keeps its place
        #expect(line.inOrder.map(\.id) == ["due", "a", "b", "c"])
        #expect(line.count == 4)
    }

    @Test func removedJobsLeaveTheLineWhereverTheyStand() {
        var line = WaitingLine()
        for index in 0..<1_000 { line.add(record("j\(index)")) }
        // From the front (placed in order), from the middle (placed because they fit), and again.
        for index in 0..<300 { line.remove("j\(index)") }
        for index in stride(from: 500, to: 1_000, by: 2) { line.remove("j\(index)") }
        line.remove("j0")
        let expected = (300..<500).map { "j\($0)" } + stride(from: 501, to: 1_000, by: 2).map { "j\($0)" }
        #expect(line.inOrder.map(\.id) == expected)
        #expect(line.count == expected.count)
        // A job that left and comes back waits at the back, once.
        line.add(record("j10"))
        line.add(record("j301"))
        #expect(line.inOrder.map(\.id) == expected + ["j10"])
    }

    @Test func emptiesCompletely() {
        var line = WaitingLine()
        for index in 0..<200 { line.add(record("j\(index)"), urgent: index % 3 == 0) }
        for index in (0..<200).reversed() { line.remove("j\(index)") }
        #expect(line.isEmpty)
        #expect(Array(line.inOrder).isEmpty)
        line.add(record("again"))
        #expect(line.inOrder.map(\.id) == ["again"])
    }

    /// The leader ends a scan once every demand in line found no room: the count must follow
    /// adds and removals exactly, or a scan would stop early (jobs left waiting) or never.
    @Test func countsTheDemandsInLine() {
        var line = WaitingLine()
        func job(_ id: String, pool: String? = nil, slots: Int = 1) -> JobRecord {
            JobRecord(id: id, spec: JobSpec(method: "m", resources: Resources(slots: slots), constraints: pool.map { ["pool": $0] } ?? [:]))
        }
        #expect(line.distinctDemands == 0)
        for index in 0..<100 { line.add(job("plain\(index)")) }
        line.add(job("gpu", pool: "gpu"))
        line.add(job("wide", slots: 4))
        line.add(job("plain3"))  // already in line: counted once
        #expect(line.distinctDemands == 3)
        line.remove("gpu")
        line.remove("gpu")  // not in line any more: changes nothing
        #expect(line.distinctDemands == 2)
        for index in 0..<99 { line.remove("plain\(index)") }
        #expect(line.distinctDemands == 2)
        line.remove("plain99")
        #expect(line.distinctDemands == 1)
        line.remove("wide")
        #expect(line.distinctDemands == 0 && line.isEmpty)
    }
}
