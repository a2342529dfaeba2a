/// What a task asks of an executor: the resources, the labels, and the method that runs it.
public struct Demand: Sendable, Hashable {
    public var resources: Resources
    public var constraints: [String: String]
    /// The method; nil asks for no particular one.
    public var method: String?

    public init(resources: Resources = Resources(), constraints: [String: String] = [:], method: String? = nil) {
        self.resources = resources
        self.constraints = constraints
        self.method = method
    }
}

extension JobSpec {
    /// What each of this job's runs asks of an executor.
    public var demand: Demand { Demand(resources: resources, constraints: constraints, method: method) }
}

/// An executor as the manager sees it when placing a task.
public struct ExecutorView: Sendable, Hashable {
    public var id: String
    public var capacity: Resources
    public var labels: [String: String]
    /// The methods it runs; nil when its registration does not say (an executor older than the
    /// `methods` field): it is offered every method.
    public var methods: Set<String>?
    /// Resources held by its unfinished tasks (including ones placed earlier in this batch).
    public var used: Resources
    public var alive: Bool
    public var draining: Bool

    public init(
        id: String, capacity: Resources, labels: [String: String], methods: Set<String>? = nil, used: Resources, alive: Bool, draining: Bool
    ) {
        self.id = id
        self.capacity = capacity
        self.labels = labels
        self.methods = methods
        self.used = used
        self.alive = alive
        self.draining = draining
    }

    /// A registered executor as what it could ever run: its capacity, labels and methods, idle.
    public init(registration: ExecutorRegistration) {
        self.init(
            id: registration.id, capacity: registration.capacity, labels: registration.labels, methods: registration.methods.map(Set.init),
            used: .zero, alive: true, draining: false)
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

    func offers(_ method: String?) -> Bool {
        guard let method, let methods else { return true }
        return methods.contains(method)
    }

    /// The placement rule, part 1: whether this executor could ever run the task — its labels,
    /// its methods and its whole capacity.
    public func couldRun(_ demand: Demand) -> Bool {
        matches(demand.constraints) && offers(demand.method) && demand.resources.fits(in: capacity)
    }

    /// The placement rule, part 2: whether it can take the task now — alive, not draining, and
    /// with the room free.
    public func canTake(_ demand: Demand) -> Bool {
        alive && !draining && couldRun(demand) && demand.resources.fits(in: capacity - used)
    }
}

/// Where a task goes, or why it cannot go anywhere.
public enum PlacementDecision: Sendable, Hashable {
    case place(executor: String)
    /// No executor has room now; one may later.
    case wait(reason: String)
    /// No registered executor could ever run it (capacity, labels or methods).
    case impossible(reason: String)

    public var isImpossible: Bool {
        if case .impossible = self { return true }
        return false
    }
}

/// Chooses executors for tasks: among those that can take the task now
/// (``ExecutorView/canTake(_:)``), the least utilised after placement (ties: the id, so placement
/// is deterministic). The one place the placement rule lives.
public enum Placement {
    public static func decide(_ demand: Demand, among executors: [ExecutorView]) -> PlacementDecision {
        if let id = choose(demand, among: executors) { return .place(executor: id) }
        return whyNot(demand, among: executors)
    }

    /// The executor ``decide(_:among:)`` would place on, or nil — in one pass without allocating,
    /// and without working out why not: the leader asks this for job after job of a long waiting
    /// line, over every executor.
    public static func choose(_ demand: Demand, among executors: [ExecutorView]) -> String? {
        var best: (id: String, utilisation: Double)?
        for executor in executors where executor.canTake(demand) {
            let utilisation = executor.utilisation(adding: demand.resources)
            if let current = best, (current.utilisation, current.id) <= (utilisation, executor.id) { continue }
            best = (executor.id, utilisation)
        }
        return best?.id
    }

    /// Why no executor can take the task (``choose(_:among:)`` found none): it must wait, or it
    /// never can. Each step narrows the executors by one part of the same rule.
    static func whyNot(_ demand: Demand, among executors: [ExecutorView]) -> PlacementDecision {
        guard !executors.isEmpty else { return .wait(reason: "no executor is registered") }
        let matching = executors.filter { $0.matches(demand.constraints) }
        guard !matching.isEmpty else {
            let wanted = demand.constraints.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            return .impossible(reason: "no executor has the labels \(wanted)")
        }
        let offering = matching.filter { $0.offers(demand.method) }
        guard !offering.isEmpty else {
            return .impossible(reason: "no executor\(demand.constraints.isEmpty ? "" : " with those labels") runs the method \(demand.method ?? "-")")
        }
        let fitting = offering.filter { $0.couldRun(demand) }
        guard !fitting.isEmpty else {
            return .impossible(reason: "needs \(describe(demand.resources)); the largest matching executor has \(describe(largest(offering)))")
        }
        let alive = fitting.filter(\.alive)
        if alive.isEmpty { return .wait(reason: "no matching executor is alive") }
        let accepting = alive.filter { !$0.draining }
        if accepting.isEmpty {
            return .wait(reason: "every matching executor is draining (\(alive.map(\.id).sorted().joined(separator: ", ")))")
        }
        return .wait(reason: "every matching executor is full (\(accepting.count) busy)")
    }

    static func describe(_ r: Resources) -> String { "cpu \(r.cpu), memory \(r.memoryMB) MB, \(r.slots) slot(s)" }

    static func largest(_ executors: [ExecutorView]) -> Resources {
        Resources(
            cpu: executors.map(\.capacity.cpu).max() ?? 0, memoryMB: executors.map(\.capacity.memoryMB).max() ?? 0,
            slots: executors.map(\.capacity.slots).max() ?? 0)
    }
}
