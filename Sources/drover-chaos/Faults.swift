import DroverChaos
import DroverProtocol
import Foundation
import Logging
import ZKRecipes
import ZooKeeper
import ZooKeeperServers

/// The faults the harness injects, each healed by the harness after a while.
enum Fault: String, CaseIterable {
    /// kill -9 an executor, restart it with the same id soon after.
    case executorRestart = "kill -9 executor, restart"
    /// kill -9 an executor and leave it dead past the grace period (its tasks must move).
    case executorDead = "kill -9 executor, left dead"
    /// kill -9 the leading manager, restart it later.
    case managerKill = "kill -9 leading manager"
    /// kill -9 a ZooKeeper server (the ensemble leader half the time), restart it.
    case zookeeperKill = "kill -9 ZooKeeper server"
    /// SIGSTOP an executor past its session timeout, then SIGCONT: a zombie.
    case executorPause = "SIGSTOP executor past its session"
    /// SIGSTOP the leading manager past its session timeout, then SIGCONT: a deposed leader.
    case managerPause = "SIGSTOP leading manager past its session"
    /// Cut an executor off from ZooKeeper past its session timeout, then heal: its session
    /// expires while it and its running tasks go on (a network partition, not a stopped process).
    case executorPartition = "network partition: executor cut off from ZooKeeper"
    /// Cut the leading manager off from ZooKeeper past its session timeout, then heal: it must
    /// stop acting as the leader, and its writes must not land.
    case managerPartition = "network partition: leading manager cut off from ZooKeeper"
    /// 50–400 ms more each way on a daemon's link for a few seconds: a slow or distant host.
    case slowLink = "slow link"
    /// Another program writes garbage: a bad queue item, a job record that cannot be used with
    /// its submit (each must be set aside or failed with a reason, and nothing else disturbed), or
    /// a live executor's state (it keeps the garbage aside and writes back the last state it saw;
    /// the leader takes back what that state lost).
    case garbage = "garbage written into ZooKeeper"
    /// On simulated hosts: cut a host off from every other past the session timeout, then heal.
    /// What runs there goes on without ZooKeeper (an executor's tasks move; a ZooKeeper server
    /// there is the minority of a split ensemble and stops serving).
    case hostCut = "network partition: a host cut off from every other"
    /// The same, on the leading manager's host: it must stop leading, and none of its writes land.
    case leaderHostCut = "network partition: the leading manager's host cut off"
    /// The same, on the ZooKeeper leader's host: the ensemble splits 2/1, the leader alone.
    case zookeeperLeaderHostCut = "network partition: the ZooKeeper leader's host cut off (the ensemble splits 2/1)"
    /// Everything a host sends, or everything it receives, dropped past the session timeout.
    case oneWayCut = "one-way partition"
    /// A host's link cut and healed every 0.3–1.5 s for two session timeouts.
    case flappingLink = "flapping link"
    /// 5–30% of a host's packets dropped, both ways, for a few seconds.
    case packetLoss = "packet loss"

    /// The faults of a run on loopback (each daemon behind a link of its own), or on simulated
    /// hosts (the network between hosts fails instead).
    static func available(onHosts: Bool) -> [Fault] {
        let linkFaults: [Fault] = [.executorPartition, .managerPartition, .slowLink]
        let hostFaults: [Fault] = [.hostCut, .leaderHostCut, .zookeeperLeaderHostCut, .oneWayCut, .flappingLink, .packetLoss]
        return allCases.filter { !(onHosts ? linkFaults : hostFaults).contains($0) }
    }
}

/// What the garbage writer wrote, to be accounted for at the end.
actor GarbageLog {
    private(set) var queueItems = 0
    private(set) var jobs: [String] = []
    private(set) var executorStates: Set<String> = []
    func wroteQueueItem() { queueItems += 1 }
    func wroteJob(_ id: String) { jobs.append(id) }
    func wroteExecutorState(_ id: String) { executorStates.insert(id) }
    var count: Int { queueItems + jobs.count + executorStates.count }
}

/// Bad documents of every kind the leader reads from another program.
enum Garbage {
    static let queueItems: [String] = [
        "not json", #"{"format": 3, "op": "submit", "job": "j-x"}"#, #"{"format": 2, "operations": []}"#,
        #"{"format": 2, "operations": [7, {"format": 1, "op": "explode", "job": "j-y"}]}"#, #"{"format": 1, "op": "cancel", "job": "../.."}"#,
        String(repeating: "[", count: 5_000), String(repeating: "z", count: 300_000),
    ]
    static let records: [String] = [
        #"{"format": 1, "id": "ID", "spec": {"format": 1, "method": "sample.ledger", "kind": "sometimes"}, "state": "queued", "submittedAt": 0, "runsStarted": 0, "runsEnded": 0, "history": [], "stopRequested": false}"#,
        #"{"format": 99, "id": "ID", "spec": {"format": 1, "method": "sample.ledger"}, "state": "queued", "submittedAt": 0, "runsStarted": 0, "runsEnded": 0, "history": [], "stopRequested": false}"#,
        #"{"format": 1, "id": "ID", "spec": {"format": 1, "method": "sample.ledger", "kind": "infinite", "schedule": {"reference": "2021-01-31T21:01:00Z", "intervalSeconds": 1e300}}, "state": "queued", "submittedAt": 0, "runsStarted": 0, "runsEnded": 0, "history": [], "stopRequested": false}"#,
        #"{"format": 1, "id": "ID", "spec": {"format": 1, "method": "sample.ledger", "kind": "finite", "count": 0}, "state": "queued", "submittedAt": 0, "runsStarted": 0, "runsEnded": 0, "history": [], "stopRequested": false}"#,
        "{\"format\": 1, \"id\": \"ID\", \"spec\": ",
    ]
    static let executorStates: [String] = [
        "not json", #"{"format": 99, "executor": "ID", "tasks": []}"#, #"{"format": 1, "executor": "ID", "tasks": 7}"#, "",
    ]
}

/// A random length of time within `seconds`.
private func pause(_ seconds: ClosedRange<Double>, _ random: inout SeededRandom) -> Duration {
    .milliseconds(Int(Double.random(in: seconds, using: &random) * 1000))
}

/// Injects one fault and heals it; returns what happened (a record per process or ZooKeeper
/// node it hit), or nothing when no target was free.
func inject(
    _ fault: Fault, cluster: Cluster, zookeeper: ZooKeeperClient, garbage: GarbageLog, random: inout SeededRandom
) async throws -> [FaultRecord] {
    let start = Timestamp.now()
    let pastSession = Duration.milliseconds(Int((cluster.sessionTimeout + 1.5) * 1000))
    let description: String
    let target: String
    switch fault {
    case .executorRestart, .executorDead:
        guard let id = await cluster.claim(.executor, using: &random) else { return [] }
        let down = fault == .executorRestart ? pause(0.2...2, &random) : pause((cluster.grace + 2)...(cluster.grace + 5), &random)
        await cluster.crash(id)
        try await Task.sleep(for: down)
        try await cluster.restart(id)
        await cluster.release(id)
        description = "\(fault.rawValue) \(id) (down \(down))"
        target = id
    case .executorPause:
        guard let id = await cluster.claim(.executor, using: &random) else { return [] }
        await cluster.signal(id, SIGSTOP)
        try await Task.sleep(for: pastSession)
        await cluster.signal(id, SIGCONT)
        await cluster.release(id)
        description = "\(fault.rawValue) \(id) (\(pastSession))"
        target = id
    case .executorPartition:
        guard let id = await cluster.claim(.executor, using: &random) else { return [] }
        await cluster.cut(id)
        try await Task.sleep(for: pastSession)
        await cluster.heal(id)
        await cluster.release(id)
        description = "\(fault.rawValue) \(id) (\(pastSession))"
        target = id
    case .slowLink:
        let role: Cluster.Role = Bool.random(using: &random) ? .manager : .executor
        guard let id = await cluster.claim(role, using: &random) else { return [] }
        let latency = Duration.milliseconds(Int.random(in: 50...400, using: &random))
        let length = pause(2...8, &random)
        await cluster.setLatency(id, latency)
        try await Task.sleep(for: length)
        await cluster.setLatency(id, .zero)
        await cluster.release(id)
        description = "\(fault.rawValue): \(latency) each way to and from \(id) for \(length)"
        target = id
    case .managerPartition:
        let leader = await cluster.leadingManager(zookeeper)
        guard let id = await cluster.claim(.manager, preferring: leader, using: &random) else { return [] }
        await cluster.cut(id)
        try await Task.sleep(for: pastSession)
        await cluster.heal(id)
        await cluster.release(id)
        description = "\(fault.rawValue) \(id)\(id == leader ? " (the leader)" : "") (\(pastSession))"
        target = id
    case .managerKill, .managerPause:
        let leader = await cluster.leadingManager(zookeeper)
        guard let id = await cluster.claim(.manager, preferring: leader, using: &random) else { return [] }
        if fault == .managerKill {
            await cluster.crash(id)
            try await Task.sleep(for: pause(0.5...3, &random))
            try await cluster.restart(id)
        } else {
            await cluster.signal(id, SIGSTOP)
            try await Task.sleep(for: pastSession)
            await cluster.signal(id, SIGCONT)
        }
        await cluster.release(id)
        description = "\(fault.rawValue) \(id)\(id == leader ? " (the leader)" : "")"
        target = id
    case .garbage:
        let layout = Layout()
        let kind = Int.random(in: 0..<3, using: &random)
        // A garbled state may cost a run a second start: the fault is on that executor.
        var hit = "garbage"
        if kind == 2 {
            // A live executor's progress; claimed, so no other fault kills it meanwhile (a dead
            // executor whose state is garbage refuses to start, by design: an operator must look).
            guard let id = await cluster.claim(.executor, using: &random) else { return [] }
            // Only once the process running now has registered, which it does after reading its
            // state: a restart still starting up would find the garbage and (rightly) refuse.
            guard await cluster.isRegistered(id, zookeeper) else {
                await cluster.release(id)
                return []
            }
            let text = Garbage.executorStates.randomElement(using: &random)!.replacingOccurrences(of: "ID", with: id)
            _ = try await repeatingAfterLostAnswers(zookeeper, logger: Logger(label: "chaos"), "garbage") {
                try await zookeeper.setData(layout.executorProgress(id), data: Array(text.utf8))
            }
            await garbage.wroteExecutorState(id)
            // Held until the executor has repaired it (seen on a watch): killed before, it would
            // refuse to start on the garbage, as designed, and the run would wait for an operator.
            // At most 30 s: a repair that never comes is reported at the end, not a hang.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await update in zookeeper.dataUpdates(of: layout.executorProgress(id)) {
                        if case .present(let node) = update, (try? Codec.decode(ExecutorProgress.self, node.data)) != nil { return }
                    }
                }
                group.addTask { try await Task.sleep(for: .seconds(30)) }
                defer { group.cancelAll() }
                try await group.next()
            }
            await cluster.release(id)
            description = "\(fault.rawValue): executor \(id)'s progress overwritten with \(text.utf8.count) bytes"
            hit = id
        } else if kind == 0 {
            // Without Drover's limit on item size: another program's put.
            let queue = DurableQueue(client: zookeeper, root: layout.queue, maximumItemBytes: 1_000_000)
            let item = Garbage.queueItems.randomElement(using: &random)!
            _ = try await repeatingAfterLostAnswers(zookeeper, logger: Logger(label: "chaos"), "garbage") { try await queue.put(Array(item.utf8)) }
            await garbage.wroteQueueItem()
            description = "\(fault.rawValue): a queue item of \(item.utf8.count) bytes"
        } else {
            let id = "g-\(random.next() % 1_000_000_000)"
            let record = Garbage.records.randomElement(using: &random)!.replacingOccurrences(of: "\"ID\"", with: "\"\(id)\"")
            let queue = DurableQueue(client: zookeeper, root: layout.queue)
            _ = try await repeatingAfterLostAnswers(zookeeper, logger: Logger(label: "chaos"), "garbage") {
                // Record and submit together, as a client would (a retry finds the record made).
                do {
                    _ = try await queue.put(
                        Array(#"{"format":1,"op":"submit","job":"\#(id)"}"#.utf8),
                        alongWith: [.create(path: layout.job(id), data: Array(record.utf8))])
                } catch let error as ZooKeeperError where error.code == .nodeExists {}
            }
            await garbage.wroteJob(id)
            description = "\(fault.rawValue): an unusable job record \(id)"
        }
        target = hit
    case .zookeeperKill:
        guard await cluster.claimZooKeeper() else { return [] }
        let leader = Bool.random(using: &random) ? try? await cluster.ensemble.leader() : nil
        let node = leader ?? Int.random(in: 1...cluster.ensemble.nodes, using: &random)
        try await cluster.ensemble.kill(node: node)
        try await Task.sleep(for: pause(1...4, &random))
        try await cluster.ensemble.restart(node: node)
        await cluster.releaseZooKeeper()
        description = "\(fault.rawValue) \(node)\(leader == node ? " (the ensemble leader)" : "")"
        target = "zk\(node)"
    case .hostCut, .leaderHostCut, .zookeeperLeaderHostCut, .oneWayCut, .flappingLink, .packetLoss:
        return try await injectOnHost(fault, cluster: cluster, zookeeper: zookeeper, pastSession: pastSession, random: &random)
    }
    return [
        FaultRecord(
            description: description, target: target, start: start, end: Timestamp.now(),
            network: fault == .executorPartition || fault == .managerPartition)
    ]
}

/// A network fault on a simulated host, healed before it returns (also when it fails).
private func injectOnHost(
    _ fault: Fault, cluster: Cluster, zookeeper: ZooKeeperClient, pastSession: Duration, random: inout SeededRandom
) async throws -> [FaultRecord] {
    guard let hosts = await cluster.hosts else { return [] }
    let start = Timestamp.now()
    // The leader's host, or no fault when it cannot be found or is busy with another fault.
    var only: String?
    if fault == .leaderHostCut {
        guard let leader = await cluster.leadingManager(zookeeper), let host = await cluster.host(of: leader) else { return [] }
        only = host
    } else if fault == .zookeeperLeaderHostCut {
        guard let node = try? await cluster.ensemble.leader(), let host = await cluster.host(ofZooKeeperNode: node) else { return [] }
        only = host
    }
    guard let claim = await cluster.claimHost(only: only, using: &random) else { return [] }
    let host = claim.host
    let hit = "\(host) (\(claim.contents))"
    let description: String
    do {
        switch fault {
        case .oneWayCut:
            let direction: SimulatedHosts.Direction = Bool.random(using: &random) ? .incoming : .outgoing
            try await hosts.drop(host, direction, percent: 100)
            try await Task.sleep(for: pastSession)
            try await hosts.clear(host)
            description = "\(fault.rawValue): everything \(hit) \(direction == .incoming ? "receives" : "sends") dropped for \(pastSession)"
        case .flappingLink:
            let until = ContinuousClock.now + pastSession * 2
            var cuts = 0
            while ContinuousClock.now < until {
                try await hosts.cut(host)
                try await Task.sleep(for: pause(0.3...1.5, &random))
                try await hosts.heal(host)
                cuts += 1
                try await Task.sleep(for: pause(0.3...1.5, &random))
            }
            description = "\(fault.rawValue): \(hit) cut and healed \(cuts) times over \(pastSession * 2)"
        case .packetLoss:
            let percent = Int.random(in: 5...30, using: &random)
            let length = pause(3...8, &random)
            try await hosts.drop(host, .both, percent: percent)
            try await Task.sleep(for: length)
            try await hosts.clear(host)
            description = "\(fault.rawValue): \(percent)% of the packets of \(hit) dropped for \(length)"
        default:
            // Half the cuts outlast the grace period too: the cut-off executor's tasks move while
            // it still runs them (the copies the checker must find explained).
            let pastGrace = pastSession + .milliseconds(Int((cluster.grace + Double.random(in: 1...3, using: &random)) * 1000))
            let length = Bool.random(using: &random) ? pastSession : pastGrace
            try await hosts.cut(host)
            try await Task.sleep(for: length)
            try await hosts.heal(host)
            description = "\(fault.rawValue): \(hit) for \(length)"
        }
    } catch {
        try? await hosts.heal(host)
        try? await hosts.clear(host)
        await cluster.release(claim)
        throw error
    }
    await cluster.release(claim)
    let end = Timestamp.now()
    return claim.targets.map {
        FaultRecord(description: description, target: $0, start: start, end: end, network: true, severs: fault != .packetLoss)
    }
}
