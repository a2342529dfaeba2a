import DroverProtocol

/// The jobs waiting for room, by priority (higher first) and, within a priority, in the order
/// they began to wait, with what placement needs to know about them — so the leader reads a job's
/// record only when the job fits somewhere. Scheduled runs that came due without room go ahead of
/// the jobs of their priority: their window is passing.
///
/// Removal is lazy: the order keeps stale entries (told apart by a ticket number) until they
/// reach the front, where they are dropped at once, or until the line is compacted. Adding and
/// removing stay O(1) however deep the backlog, and a scan never walks over the jobs already
/// placed from the front of the line.
struct WaitingLine {
    /// Entries in order; those before `start` are gone.
    private struct Order {
        var entries: [(id: String, ticket: Int)] = []
        var start = 0

        var live: ArraySlice<(id: String, ticket: Int)> { entries[start...] }

        mutating func dropFront(while isStale: ((id: String, ticket: Int)) -> Bool) {
            while start < entries.count && isStale(entries[start]) { start += 1 }
            if start > 64 && start * 2 > entries.count {
                entries.removeFirst(start)
                start = 0
            }
        }

        mutating func compact(keeping isLive: ((id: String, ticket: Int)) -> Bool) {
            entries = entries[start...].filter(isLive)
            start = 0
        }
    }

    /// The line of one priority: due scheduled runs that found no room, then the rest.
    private struct Line {
        var urgent = Order()
        var order = Order()
        var count = 0
    }

    private var entries: [String: (demand: Demand, priority: Int, ticket: Int)] = [:]
    /// Jobs in line per demand: a scan can stop once every demand in line found no room.
    private(set) var jobsPerDemand: [Demand: Int] = [:]
    private var lines: [Int: Line] = [:]
    /// The priorities with jobs in line, highest first (a handful, however long the line).
    private var priorities: [Int] = []
    private var nextTicket = 0

    var count: Int { entries.count }
    /// How many different demands the jobs in line have (usually a handful, however long the line).
    var distinctDemands: Int { jobsPerDemand.count }
    var isEmpty: Bool { entries.isEmpty }

    /// Adds the job at the back of its priority's line, or ahead of that line when `urgent` (a job
    /// already in line keeps its place).
    mutating func add(_ record: JobRecord, urgent isUrgent: Bool = false) {
        guard entries[record.id] == nil else { return }
        nextTicket += 1
        // A workflow waits with its current step's demand.
        let demand = (record.runSpec ?? record.spec).demand
        let priority = record.spec.effectivePriority
        entries[record.id] = (demand, priority, nextTicket)
        jobsPerDemand[demand, default: 0] += 1
        if lines[priority] == nil {
            lines[priority] = Line()
            priorities.insert(priority, at: priorities.firstIndex { $0 < priority } ?? priorities.endIndex)
        }
        lines[priority]!.count += 1
        if isUrgent {
            lines[priority]!.urgent.entries.append((record.id, nextTicket))
        } else {
            lines[priority]!.order.entries.append((record.id, nextTicket))
        }
    }

    mutating func remove(_ id: String) {
        guard let removed = entries.removeValue(forKey: id) else { return }
        if jobsPerDemand[removed.demand, default: 0] > 1 {
            jobsPerDemand[removed.demand]! -= 1
        } else {
            jobsPerDemand[removed.demand] = nil
        }
        guard var line = lines.removeValue(forKey: removed.priority) else { return }
        line.count -= 1
        guard line.count > 0 else {
            priorities.removeAll { $0 == removed.priority }
            return
        }
        let isStale = { [entries] (entry: (id: String, ticket: Int)) in entries[entry.id]?.ticket != entry.ticket }
        line.urgent.dropFront(while: isStale)
        line.order.dropFront(while: isStale)
        if line.order.live.count > 64 && line.order.live.count + line.urgent.live.count > 2 * line.count {
            line.order.compact { !isStale($0) }
            line.urgent.compact { !isStale($0) }
        }
        lines[removed.priority] = line
    }

    /// The jobs in line: by priority, highest first; within one, urgent ones first, then first
    /// come first. Lazy: a scan that stops when the executors are full costs only what it looked
    /// at, however long the line. (Remove what the scan finds stale after it, not during it: that
    /// would copy the line.)
    var inOrder: some Sequence<(id: String, demand: Demand)> {
        priorities.lazy.flatMap { [lines] priority in
            [lines[priority]!.urgent.live, lines[priority]!.order.live].joined()
        }.compactMap { [entries] id, ticket in
            guard let entry = entries[id], entry.ticket == ticket else { return nil }
            return (id, entry.demand)
        }
    }
}
