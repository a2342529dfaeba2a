import DroverChaos
import DroverClient
import DroverProtocol
import DroverStore
import Foundation

/// The work specs of a chaos run: two specs of equal priority (weights 1 and 2) whose units run
/// `sample.ledger`, added in batches while the faults go on, so that units are claimed, leased,
/// run and ended across every kind of fault.
struct UnitWorkload: Sendable {
    static let specs = [
        WorkSpec(name: "chaos-light", method: "sample.ledger", arguments: ["milliseconds": 40], weight: 1, maxRetries: 50, leaseSeconds: 15, maxGetwork: 20, buckets: 4),
        WorkSpec(name: "chaos-heavy", method: "sample.ledger", arguments: ["milliseconds": 40], weight: 2, maxRetries: 50, leaseSeconds: 15, maxGetwork: 20, buckets: 4),
    ]
    /// Units to add, in all.
    var count: Int

    /// Creates the specs and adds `count` units to them (a third to the first, the rest to the
    /// second) in 20 batches spread over `period`. An add that ZooKeeper does not answer is made
    /// again (an add can be repeated: keys already present are left as they were). Returns each
    /// spec's keys.
    func add(with client: DroverClient, over period: Duration) async throws -> [String: [String]] {
        guard count > 0 else { return [:] }
        let store = client.workSpecs
        for spec in Self.specs {
            try await DroverChaosCommand.throughTheLastFaults(client, "creating spec \(spec.name)") {
                if try await store.spec(spec.name) == nil { try await store.create(spec) }
            }
        }
        var added: [String: [String]] = [:]
        let batches = 20
        let start = ContinuousClock.now
        for batch in 0..<batches {
            let due = start + period / batches * batch
            if due > ContinuousClock.now { try await Task.sleep(until: due) }
            let range = (count * batch / batches)..<(count * (batch + 1) / batches)
            let keys = range.map { String(format: "u%07d", $0) }
            // One key in three to the light spec: the weights are 1 and 2.
            for (spec, specKeys) in Dictionary(grouping: keys, by: { Int($0.dropFirst())! % 3 == 0 ? Self.specs[0].name : Self.specs[1].name }) {
                let units = specKeys.map { WorkUnit(key: $0) }
                try await DroverChaosCommand.throughTheLastFaults(client, "adding units to \(spec)") { _ = try await store.add(units, to: spec) }
                added[spec, default: []] += specKeys
            }
        }
        say("all \(count) units added to \(Self.specs.map(\.name).joined(separator: " and "))")
        return added
    }

    /// Waits until no unit of `specs` is still to run (or `deadline`), then reads every unit.
    static func settle(_ client: DroverClient, specs names: [String], deadline: ContinuousClock.Instant) async throws -> [String: [WorkUnit]] {
        let store = client.workSpecs
        var lastProgress = ContinuousClock.now
        while true {
            var open = 0
            var total = 0
            for name in names {
                let counts = try await DroverChaosCommand.throughTheLastFaults(client, "counting \(name)'s units") { () -> UnitCounts in
                    guard let spec = try await store.spec(name)?.document else { return UnitCounts() }
                    return try await store.counts(of: spec)
                }
                open += counts.available + counts.pending + counts.retryable
                total += counts.total
            }
            if open == 0 || ContinuousClock.now > deadline {
                if open > 0 { say("settle timeout: \(open) units still to run") }
                break
            }
            if ContinuousClock.now - lastProgress > .seconds(5) {
                say("settling: \(total - open)/\(total) units done")
                lastProgress = ContinuousClock.now
            }
            try await Task.sleep(for: .seconds(1))
        }
        var units: [String: [WorkUnit]] = [:]
        for name in names {
            guard let spec = try await store.spec(name)?.document else { continue }
            var cursor: String?
            repeat {
                let page = try await DroverChaosCommand.throughTheLastFaults(client, "listing \(name)'s units") {
                    try await store.units(of: spec, state: nil, limit: 1_000, after: cursor)
                }
                units[name, default: []] += page.units
                cursor = page.next
            } while cursor != nil
        }
        return units
    }
}
