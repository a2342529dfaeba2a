import Testing

@testable import DroverProtocol

@Suite("Placement (no server)")
struct PlacementTests {
    func executor(
        _ id: String, cpu: Double = 4, memoryMB: Int = 4096, slots: Int = 4, used: Resources = .zero,
        labels: [String: String] = [:], alive: Bool = true, draining: Bool = false
    ) -> ExecutorView {
        ExecutorView(id: id, capacity: Resources(cpu: cpu, memoryMB: memoryMB, slots: slots), labels: labels, used: used, alive: alive, draining: draining)
    }

    @Test func prefersTheLeastUtilised() {
        let executors = [
            executor("a", used: Resources(cpu: 2, memoryMB: 0, slots: 2)),
            executor("b", used: Resources(cpu: 1, memoryMB: 0, slots: 1)),
            executor("c", used: Resources(cpu: 3, memoryMB: 0, slots: 3)),
        ]
        #expect(Placement.decide(Demand(resources: Resources(cpu: 1, slots: 1), constraints: [:]), among: executors) == .place(executor: "b"))
    }

    @Test func honoursLabelsAndFreeResources() {
        let executors = [
            executor("gpu-full", used: Resources(cpu: 4, memoryMB: 0, slots: 1), labels: ["gpu": "yes"]),
            executor("gpu-free", labels: ["gpu": "yes"]),
            executor("plain"),
        ]
        #expect(Placement.decide(Demand(resources: Resources(cpu: 1), constraints: ["gpu": "yes"]), among: executors) == .place(executor: "gpu-free"))
    }

    /// `choose` is `decide` without the reason: the same executor, or nil exactly when decide
    /// would not place.
    @Test func chooseAgreesWithDecide() {
        let executors = [
            executor("a", slots: 2, used: Resources(cpu: 1, memoryMB: 0, slots: 1), labels: ["pool": "x"]),
            executor("b", slots: 2, used: Resources(cpu: 0, memoryMB: 0, slots: 2)),
            executor("c", cpu: 1, slots: 8),
            executor("d", draining: true),
            executor("e", alive: false),
        ]
        let demands: [(Resources, [String: String])] = [
            (Resources(), [:]), (Resources(cpu: 2), [:]), (Resources(), ["pool": "x"]), (Resources(slots: 2), ["pool": "x"]),
            (Resources(), ["pool": "none"]), (Resources(cpu: 8), [:]),
        ]
        for (resources, constraints) in demands {
            let decision = Placement.decide(Demand(resources: resources, constraints: constraints), among: executors)
            let chosen = Placement.choose(Demand(resources: resources, constraints: constraints), among: executors)
            if case .place(let id) = decision { #expect(chosen == id) } else { #expect(chosen == nil, "\(decision)") }
        }
        #expect(Placement.choose(Demand(resources: Resources(), constraints: [:]), among: executors) == "c")  // least utilised after placement
    }

    @Test func waitsWhenFullAndSaysWhy() {
        let executors = [executor("a", slots: 1, used: Resources(cpu: 0, memoryMB: 0, slots: 1))]
        #expect(Placement.decide(Demand(resources: Resources(), constraints: [:]), among: executors) == .wait(reason: "every matching executor is full (1 busy)"))
    }

    @Test func skipsDeadAndDrainingExecutors() {
        let executors = [executor("dead", alive: false), executor("draining", draining: true)]
        #expect(Placement.decide(Demand(resources: Resources(), constraints: [:]), among: executors) == .wait(reason: "every matching executor is draining (draining)"))
        #expect(Placement.decide(Demand(resources: Resources(), constraints: [:]), among: [executor("dead", alive: false)]) == .wait(reason: "no matching executor is alive"))
        #expect(Placement.decide(Demand(resources: Resources(), constraints: [:]), among: executors + [executor("ok")]) == .place(executor: "ok"))
    }

    @Test func impossibleWhenNothingCouldEverFit() {
        let executors = [executor("small", cpu: 2, memoryMB: 512)]
        guard case .impossible(let reason) = Placement.decide(Demand(resources: Resources(cpu: 8), constraints: [:]), among: executors) else {
            Issue.record("expected impossible")
            return
        }
        #expect(reason.contains("cpu 8.0"))
        guard case .impossible = Placement.decide(Demand(resources: Resources(), constraints: ["zone": "mars"]), among: executors) else {
            Issue.record("expected impossible")
            return
        }
        #expect(Placement.decide(Demand(resources: Resources(), constraints: [:]), among: []) == .wait(reason: "no executor is registered"))
    }

    @Test func onlyExecutorsThatRunTheMethodAreOffered() {
        let shell = ExecutorView(id: "shell", capacity: Resources(slots: 4), labels: [:], methods: ["shell"], used: .zero, alive: true, draining: false)
        let resize = ExecutorView(id: "resize", capacity: Resources(slots: 4), labels: [:], methods: ["resize"], used: .zero, alive: true, draining: false)
        let older = ExecutorView(id: "older", capacity: Resources(slots: 4), labels: [:], methods: nil, used: .zero, alive: true, draining: false)
        #expect(Placement.decide(Demand(method: "resize"), among: [shell, resize]) == .place(executor: "resize"))
        #expect(Placement.decide(Demand(method: "resize"), among: [shell]) == .impossible(reason: "no executor runs the method resize"))
        // An executor whose registration lists no methods (older than the field) is offered all.
        #expect(Placement.decide(Demand(method: "resize"), among: [shell, older]) == .place(executor: "older"))
    }
}
