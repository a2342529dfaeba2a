/// An executor as the manager sees it when placing a task.
public struct ExecutorView: Sendable, Hashable {
    public var id: String
    public var capacity: Resources
    public var labels: [String: String]
    /// Resources held by its unfinished tasks (including ones placed earlier in this batch).
    public var used: Resources
    public var alive: Bool
    public var draining: Bool

    public init(id: String, capacity: Resources, labels: [String: String], used: Resources, alive: Bool, draining: Bool) {
        self.id = id
        self.capacity = capacity
        self.labels = labels
        self.used = used
        self.alive = alive
        self.draining = draining
    }

    /// The fullest dimension after adding `extra`, from 0 (idle) to 1 (full).
    func utilisation(adding extra: Resources) -> Double {
        let total = used + extra
        func ratio(_ used: Double, _ capacity: Double) -> Double { capacity > 0 ? used / capacity : (used > 0 ? .infinity : 0) }
        return max(
            ratio(total.cpu, capacity.cpu), ratio(Double(total.memoryMB), Double(capacity.memoryMB)),
            ratio(Double(total.slots), Double(capacity.slots)))
    }

    func matches(_ constraints: [String: String]) -> Bool {
        constraints.allSatisfy { labels[$0.key] == $0.value }
    }
}

/// Where a task goes, or why it cannot go anywhere.
public enum PlacementDecision: Sendable, Hashable {
    case place(executor: String)
    /// No executor has room now; one may later.
    case wait(reason: String)
    /// No registered executor could ever run it (capacity or labels).
    case impossible(reason: String)
}

/// Chooses executors for tasks: one whose labels match and whose free resources fit, the least
/// utilised after placement first (ties: the id, so placement is deterministic).
public enum Placement {
    public static func decide(resources: Resources, constraints: [String: String], among executors: [ExecutorView]) -> PlacementDecision {
        if let id = choose(resources: resources, constraints: constraints, among: executors) { return .place(executor: id) }
        return whyNot(resources: resources, constraints: constraints, among: executors)
    }

    /// The executor ``decide(resources:constraints:among:)`` would place on, or nil — in one pass
    /// without allocating, and without working out why not: the leader asks this for job after
    /// job of a long waiting line, over every executor.
    public static func choose(resources: Resources, constraints: [String: String], among executors: [ExecutorView]) -> String? {
        var best: (id: String, utilisation: Double)?
        for executor in executors where executor.alive && !executor.draining && executor.matches(constraints) {
            guard resources.fits(in: executor.capacity - executor.used) else { continue }
            let utilisation = executor.utilisation(adding: resources)
            if let current = best, (current.utilisation, current.id) <= (utilisation, executor.id) { continue }
            best = (executor.id, utilisation)
        }
        return best?.id
    }

    /// Why no executor can take the task now: it must wait, or it never can.
    static func whyNot(resources: Resources, constraints: [String: String], among executors: [ExecutorView]) -> PlacementDecision {
        let matching = executors.filter { $0.matches(constraints) }
        guard !matching.isEmpty else {
            if executors.isEmpty { return .wait(reason: "no executor is registered") }
            let wanted = constraints.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            return .impossible(reason: "no executor has the labels \(wanted)")
        }
        guard matching.contains(where: { resources.fits(in: $0.capacity) }) else {
            return .impossible(reason: "needs \(describe(resources)); the largest matching executor has \(describe(largest(matching)))")
        }
        let candidates = matching.filter { $0.alive && !$0.draining && resources.fits(in: $0.capacity - $0.used) }
        guard let best = candidates.min(by: { a, b in
            let (ua, ub) = (a.utilisation(adding: resources), b.utilisation(adding: resources))
            return ua != ub ? ua < ub : a.id < b.id
        }) else {
            let alive = matching.filter(\.alive)
            let accepting = alive.filter { !$0.draining }.count
            if alive.isEmpty { return .wait(reason: "no matching executor is alive") }
            if accepting == 0 {
                return .wait(reason: "every matching executor is draining (\(alive.map(\.id).sorted().joined(separator: ", ")))")
            }
            return .wait(reason: "every matching executor is full (\(accepting) busy)")
        }
        return .place(executor: best.id)
    }

    static func describe(_ r: Resources) -> String { "cpu \(r.cpu), memory \(r.memoryMB) MB, \(r.slots) slot(s)" }

    static func largest(_ executors: [ExecutorView]) -> Resources {
        Resources(
            cpu: executors.map(\.capacity.cpu).max() ?? 0, memoryMB: executors.map(\.capacity.memoryMB).max() ?? 0,
            slots: executors.map(\.capacity.slots).max() ?? 0)
    }
}
