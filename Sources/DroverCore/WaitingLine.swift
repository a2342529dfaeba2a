import DroverProtocol

/// The jobs waiting for room, in the order they began to wait, with what placement needs to
/// know about them — so the leader reads a job's record only when the job fits somewhere.
/// Scheduled runs that came due without room go ahead of everything else: their window is
/// passing.
///
/// Removal is lazy: the order keeps stale entries (told apart by a ticket number) until it is
/// compacted, which keeps adding and removing O(1) however deep the backlog.
struct WaitingLine {
    struct Demand: Hashable {
        var resources: Resources
        var constraints: [String: String]
    }

    private var entries: [String: (demand: Demand, ticket: Int)] = [:]
    private var urgent: [(id: String, ticket: Int)] = []
    private var order: [(id: String, ticket: Int)] = []
    private var nextTicket = 0

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }

    func contains(_ id: String) -> Bool { entries[id] != nil }

    /// Adds the job at the back of the line, or ahead of it when `urgent` (a job already in
    /// line keeps its place).
    mutating func add(_ record: JobRecord, urgent isUrgent: Bool = false) {
        guard entries[record.id] == nil else { return }
        nextTicket += 1
        entries[record.id] = (Demand(resources: record.spec.resources, constraints: record.spec.constraints), nextTicket)
        if isUrgent { urgent.append((record.id, nextTicket)) } else { order.append((record.id, nextTicket)) }
    }

    mutating func remove(_ id: String) {
        guard entries.removeValue(forKey: id) != nil else { return }
        if order.count > 64 && order.count + urgent.count > 2 * entries.count {
            order.removeAll { entries[$0.id]?.ticket != $0.ticket }
            urgent.removeAll { entries[$0.id]?.ticket != $0.ticket }
        }
    }

    /// The jobs in line: urgent ones first, then first come first. Lazy: a scan that stops
    /// when the executors are full costs only what it looked at, however long the line.
    /// (Remove what the scan finds stale after it, not during it: that would copy the line.)
    var inOrder: some Sequence<(id: String, demand: Demand)> {
        [urgent, order].joined().lazy.compactMap { [entries] id, ticket in
            guard let entry = entries[id], entry.ticket == ticket else { return nil }
            return (id, entry.demand)
        }
    }
}
