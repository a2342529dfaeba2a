import DroverProtocol

/// The jobs waiting for room, in the order they began to wait, with what placement needs to
/// know about them — so the leader reads a job's record only when the job fits somewhere.
///
/// Removal is lazy: the order keeps removed ids until it is compacted, which keeps adding and
/// removing O(1) however deep the backlog.
struct WaitingLine {
    struct Demand: Hashable {
        var resources: Resources
        var constraints: [String: String]
    }

    private var demands: [String: Demand] = [:]
    private var order: [String] = []

    var count: Int { demands.count }
    var isEmpty: Bool { demands.isEmpty }

    func contains(_ id: String) -> Bool { demands[id] != nil }

    /// Adds the job at the back of the line (a job already in line keeps its place).
    mutating func add(_ record: JobRecord) {
        guard demands[record.id] == nil else { return }
        demands[record.id] = Demand(resources: record.spec.resources, constraints: record.spec.constraints)
        order.append(record.id)
    }

    mutating func remove(_ id: String) {
        guard demands.removeValue(forKey: id) != nil else { return }
        if order.count > 64 && order.count > 2 * demands.count { order.removeAll { demands[$0] == nil } }
    }

    /// The jobs in line, first come first.
    var inOrder: [(id: String, demand: Demand)] {
        order.compactMap { id in demands[id].map { (id, $0) } }
    }
}
