import Testing

@testable import DroverProtocol

/// The direct path's rules without a server: sampling, claims in the record, names.
@Suite("Direct placement rules (no server)")
struct DirectPlacementRulesTests {
    static let idle = (1...10).map { LoadSample(executor: "e\($0)", slots: 4, load: 0) }

    @Test func randomAndLateBindingReserveAsManyAsTheirRulesSay() {
        var random = SeededRandom(seed: 7)
        #expect(DirectSampling.reservations(for: .random, tasks: 5, among: Self.idle, using: &random).count == 5)
        // d·m reservations on distinct executors while there are enough.
        let late = DirectSampling.reservations(for: .batchLateBinding, tasks: 3, probeRatio: 2, among: Self.idle, using: &random)
        #expect(late.count == 6)
        #expect(Set(late).count == 6)
        // A ratio that is not whole rounds up; never fewer than one per task.
        #expect(DirectSampling.probes(tasks: 3, ratio: 1.5) == 5)
        #expect(DirectSampling.probes(tasks: 3, ratio: 1) == 3)
        // Fewer executors than probes: each of them once (a late-binding reservation is reusable).
        let few = DirectSampling.reservations(for: .batchLateBinding, tasks: 4, probeRatio: 2, among: Array(Self.idle.prefix(3)), using: &random)
        #expect(few.sorted() == ["e1", "e2", "e3"])
        #expect(PlacementPolicy.batchLateBinding.reservationsAreReusable && !PlacementPolicy.batch.reservationsAreReusable)
        #expect(DirectSampling.reservations(for: .random, tasks: 4, among: [], using: &random).isEmpty)
        #expect(DirectSampling.reservations(for: .central, tasks: 4, among: Self.idle, using: &random).isEmpty)
    }

    @Test func powerOfTwoTakesTheLessLoadedOfEachPair() {
        // Two executors: every pair is both, so each task goes to the one with less load per slot,
        // counting the tasks this job put there already.
        let pair = [LoadSample(executor: "busy", slots: 2, load: 6), LoadSample(executor: "idle", slots: 2, load: 0)]
        var random = SeededRandom(seed: 1)
        let chosen = DirectSampling.reservations(for: .powerOfTwo, tasks: 4, among: pair, using: &random)
        // idle: 0/2, 1/2, 2/2, 3/2 — all below busy's 6/2.
        #expect(chosen == ["idle", "idle", "idle", "idle"])
    }

    @Test func batchSpreadsTheTasksOverTheLeastLoadedProbed() {
        let samples = [
            LoadSample(executor: "a", slots: 4, load: 0), LoadSample(executor: "b", slots: 4, load: 2), LoadSample(executor: "c", slots: 4, load: 8),
        ]
        var random = SeededRandom(seed: 3)
        // Probing all three (ratio 1 × 3 tasks): a, then a or b as their load evens out, never c.
        let chosen = DirectSampling.reservations(for: .batch, tasks: 3, probeRatio: 1, among: samples, using: &random)
        #expect(chosen.count == 3)
        #expect(!chosen.contains("c"))
        #expect(chosen.filter { $0 == "a" }.count >= 2)
        // Over many jobs on a loaded and an idle executor, batch sampling sends work to the idle one.
        var counts: [String: Int] = [:]
        let loaded = [LoadSample(executor: "x", slots: 4, load: 40)] + (1...3).map { LoadSample(executor: "y\($0)", slots: 4, load: 0) }
        for _ in 0..<100 {
            for executor in DirectSampling.reservations(for: .batch, tasks: 1, probeRatio: 2, among: loaded, using: &random) { counts[executor, default: 0] += 1 }
        }
        #expect(counts["x", default: 0] == 0)
    }

    static func directRecord(tasks: Int) -> JobRecord {
        var record = JobRecord(id: "j-1", spec: JobSpec(method: "work", tasks: tasks, placement: .batchLateBinding))
        record.reservedOn = ["a", "b"]
        record.state = .waiting
        _ = record.advanceWorkflow(now: 0)
        return record
    }

    @Test func claimsOpenOnceAndAreAdoptedOrTakenOverNeverBoth() {
        var record = Self.directRecord(tasks: 3)
        let opened = record.openClaims()
        let again = record.openClaims()
        #expect(opened)
        #expect(!again)  // once
        #expect(record.claimableTasks == [0, 1, 2])
        #expect(record.runsStarted == 3)  // runs 1…3 are the claims'
        #expect(record.stepsToPlace(now: 0).isEmpty)  // the leader places none of them
        let adopted = record.adoptClaim(1, run: 2, on: "a")
        #expect(adopted)
        #expect(record.state == .running)
        #expect(record.steps?[1].executor == "a")
        let twice = record.adoptClaim(1, run: 2, on: "b")
        let wrongRun = record.adoptClaim(2, run: 1, on: "b")
        #expect(!twice)  // adopted already
        #expect(!wrongRun)  // not task 2's run
        record.takeOver([2])
        #expect(record.stepsToPlace(now: 0) == [2])
        let late = record.adoptClaim(2, run: 3, on: "b")
        #expect(!late)  // taken over: a late claim is not adopted
        #expect(record.claimableTasks == [0])
        var stopped = record
        stopped.stopRequested = true
        let whileStopping = stopped.adoptClaim(0, run: 1, on: "a")
        #expect(!whileStopping)
    }

    @Test func namesOfReservationsAndClaimsReadBack() {
        let layout = Layout(root: "/d")
        #expect(layout.reservation(job: "j-abc-1", index: 3, on: "e1") == "/d/inbox/e1/j-abc-1~3")
        #expect(Layout.reservation(named: "j-abc-1~3")! == ("j-abc-1", 3, false))
        #expect(layout.reservation(job: "j-abc-1", index: 3, on: "e1", reusable: true) == "/d/inbox/e1/j-abc-1~3r")
        #expect(Layout.reservation(named: "j-abc-1~3r")! == ("j-abc-1", 3, true))
        #expect(Layout.reservation(named: "j-abc-1~r") == nil)
        #expect(Layout.reservation(named: "j-abc-1") == nil)
        #expect(Layout.reservation(named: "../x~1") == nil)
        #expect(Layout.claimIndex(named: "t-0000000012") == 12)
        #expect(Layout.claimIndex(named: "x-1") == nil)
        let record = Self.directRecord(tasks: 2)
        let task = ClaimedTask.task(1, of: record.id, spec: record.spec, claimedAt: 5)!
        #expect(task.run == 2 && task.step == "task-1" && task.arguments["taskIndex"] == 1)
        #expect(ClaimedTask.task(2, of: record.id, spec: record.spec, claimedAt: 5) == nil)
    }
}
