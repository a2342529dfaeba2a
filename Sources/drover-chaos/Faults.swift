import DroverChaos
import DroverProtocol
import Foundation
import ZooKeeper

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
}

/// Injects one fault and heals it; returns what happened, or nil when no target was free.
func inject(_ fault: Fault, cluster: Cluster, zookeeper: ZooKeeperClient, random: inout SeededRandom) async throws -> FaultRecord? {
    let start = Timestamp.now()
    let pastSession = Duration.milliseconds(Int((cluster.sessionTimeout + 1.5) * 1000))
    func pause(_ seconds: ClosedRange<Double>, _ random: inout SeededRandom) -> Duration {
        .milliseconds(Int(Double.random(in: seconds, using: &random) * 1000))
    }
    let description: String
    let target: String
    switch fault {
    case .executorRestart, .executorDead:
        guard let id = await cluster.claim(.executor, using: &random) else { return nil }
        let down = fault == .executorRestart ? pause(0.2...2, &random) : pause((cluster.grace + 2)...(cluster.grace + 5), &random)
        await cluster.crash(id)
        try await Task.sleep(for: down)
        try await cluster.restart(id)
        await cluster.release(id)
        description = "\(fault.rawValue) \(id) (down \(down))"
        target = id
    case .executorPause:
        guard let id = await cluster.claim(.executor, using: &random) else { return nil }
        await cluster.signal(id, SIGSTOP)
        try await Task.sleep(for: pastSession)
        await cluster.signal(id, SIGCONT)
        await cluster.release(id)
        description = "\(fault.rawValue) \(id) (\(pastSession))"
        target = id
    case .managerKill, .managerPause:
        let leader = await cluster.leadingManager(zookeeper)
        guard let id = await cluster.claim(.manager, preferring: leader, using: &random) else { return nil }
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
    case .zookeeperKill:
        guard await cluster.claimZooKeeper() else { return nil }
        let leader = Bool.random(using: &random) ? try? await cluster.ensemble.leader() : nil
        let node = leader ?? Int.random(in: 1...cluster.ensemble.nodes, using: &random)
        try await cluster.ensemble.kill(node: node)
        try await Task.sleep(for: pause(1...4, &random))
        try await cluster.ensemble.restart(node: node)
        await cluster.releaseZooKeeper()
        description = "\(fault.rawValue) \(node)\(leader == node ? " (the ensemble leader)" : "")"
        target = "zk\(node)"
    }
    return FaultRecord(description: description, target: target, start: start, end: Timestamp.now())
}
