@testable import DroverCore
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
}
