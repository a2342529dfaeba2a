import DroverProtocol
import ZooKeeper

/// The direct path's I/O on the leader's tick: taking over the tasks of direct jobs nobody can
/// claim, and clearing the reservations and claims of direct jobs that ended
/// (the decisions are `LeaderState+Direct.swift`'s).
extension LeaderLoop {
    /// The claimant a leader's own claims name: no executor can have it as its id.
    static let leaderClaimant = "(leader)"

    func directPass() async throws {
        for takeOver in state.directTakeOvers(now: .now(), claimTimeout: claimTimeout) {
            let (tasks, claimants) = try await claimForTakeOver(takeOver)
            guard !tasks.isEmpty else { continue }
            logger.info(
                "taking over direct tasks nobody can claim", metadata: ["job": "\(takeOver.job)", "tasks": "\(tasks.sorted())", "claimants": "\(claimants)"])
            _ = try await commit({ $0.planTakeOver(takeOver.job, tasks: tasks, claimedBy: claimants, now: .now(), loaded: $1) })
        }
        // Finished jobs' leftovers are cleared beside the loop, not in it, a pass's jobs together.
        let ended = state.directEnded
        guard !ended.isEmpty else { return }
        clearing?.yield(
            ended.sorted { $0.key < $1.key }.map { job, leftovers in
                DirectClearing(
                    job: job, reservations: layout.reservations(of: job, on: leftovers.executors, reusable: leftovers.reusable),
                    exactClaims: leftovers.exactClaims)
            })
        for job in ended.keys { state.directCleared(job) }
    }

    /// The tasks of `takeOver` the leader holds the claims of now: those nobody claimed (it
    /// claims them, fenced, in one `multi`) and those whose claimant can no longer run them (gone
    /// for the grace period, or registered again since it claimed) and that were never adopted —
    /// or whose claimant's progress has not named them for the claim timeout (the answer to its
    /// claim was lost, or it cannot write its progress: it runs them no more than a cut-off
    /// executor would). Returns those tasks, and the executors whose claims of them it takes over
    /// by task (``LeaderState/planTakeOver(_:tasks:claimedBy:now:loaded:)`` holds them to the
    /// progress it decided on).
    private func claimForTakeOver(_ takeOver: LeaderState.TakeOver) async throws -> (tasks: [Int], claimants: [Int: String]) {
        let directory = layout.jobClaims(takeOver.job)
        let names: [String]
        do {
            names = try await client.children(directory).names
        } catch let error as ZooKeeperError where error.code == .noNode {
            // No claims directory (removed by hand, or never made): nobody can claim, so every
            // claimable task is the leader's to place.
            return (takeOver.claimable.sorted(), [:])
        }
        let claims = names.compactMap { name in Layout.claimIndex(named: name).map { (name, $0) } }.filter { $0.1 < takeOver.tasks }
        // The notes of the claims still claimable in the record, read at once.
        let notes = await withTaskGroup(of: (Int, NodeData?).self) { group in
            for (name, index) in claims where takeOver.claimable.contains(index) {
                group.addTask { [client] in (index, try? await client.getData(directory + "/" + name)) }
            }
            return await group.reduce(into: [(Int, NodeData?)]()) { $0.append($1) }
        }
        var mine: [Int] = []
        var claimants: [Int: String] = [:]
        for (index, node) in notes {
            guard let node else { continue }
            guard let note = try? Codec.decode(ClaimNote.self, node.data), note.executor != Self.leaderClaimant else {
                mine.append(index)
                continue
            }
            let age = Duration.milliseconds(max(0, Timestamp.now() - node.stat.createdTime))
            if state.mayTakeOverClaim(
                of: note.executor, instance: note.instance, job: takeOver.job, task: index, age: age, claimedAt: node.stat.createdTime,
                claimTimeout: claimTimeout, at: clock.now)
            {
                mine.append(index)
                claimants[index] = note.executor
            }
        }
        let unclaimed = takeOver.tasks - claims.count
        if unclaimed > 0 {
            let note = try Codec.encode(ClaimNote(executor: Self.leaderClaimant, instance: nil))
            let creates = (0..<unclaimed).map { _ in
                MultiOperation.create(path: layout.claimPrefix(takeOver.job), data: note, mode: .persistentSequential, acl: access.acl(for: .claim))
            }
            do {
                for case .created(let path) in try await client.multi([leadership.fence] + creates) {
                    if let index = Layout.claimIndex(named: String(path.split(separator: "/").last ?? "")), index < takeOver.tasks {
                        mine.append(index)
                    }
                }
            } catch let error as ZooKeeperError where error.code == .noNode && error.failedOperationIndex != 0 {
                return (takeOver.claimable.sorted(), [:])
            }
        }
        return (mine.filter(takeOver.claimable.contains).sorted(), claimants.filter { takeOver.claimable.contains($0.key) })
    }

    /// A finished direct job's leftovers to delete (``LeaderState/DirectLeftovers``).
    struct DirectClearing: Sendable {
        var job: String
        var reservations: [String]
        var exactClaims: Int?
    }

    /// Deletes what is left of finished direct jobs' reservations and claims as they come (nothing
    /// reads them any more; a claim made after they go finds no directory and is answered "none").
    /// A job whose record shows exactly what is left (its claims, no reservation) costs no read:
    /// its claims and directory go in a `multi` with other such jobs'. Any other job's leftovers
    /// are read first, so what claims and cancellations removed costs no write, and deleted in
    /// `multi`s of bounded size, one at a time when something changed meanwhile (a late claim, a
    /// reservation taken); so is a job whose exact `multi` failed. Runs beside the leader's loop;
    /// a deposed leader's deletions are harmless (the jobs ended).
    static func clearFinishedDirectJobs(_ batches: AsyncStream<[DirectClearing]>, client: ZooKeeperClient, layout: Layout) async {
        for await batch in batches {
            var careful = batch.filter { $0.exactClaims == nil }
            var operations: [MultiOperation] = []
            var jobs: [DirectClearing] = []
            func flush() async {
                guard !operations.isEmpty else { return }
                do {
                    try await client.multi(operations)
                } catch {
                    careful += jobs
                }
                (operations, jobs) = ([], [])
            }
            for job in batch {
                guard let count = job.exactClaims else { continue }
                let deletes = (0..<count).map { MultiOperation.delete(path: layout.claim($0, of: job.job)) } + [.delete(path: layout.jobClaims(job.job))]
                if operations.count + deletes.count > Self.deletesPerMulti { await flush() }
                operations += deletes
                jobs.append(job)
            }
            await flush()
            for job in careful { await clearCarefully(job, client: client, layout: layout) }
        }
    }

    private static func clearCarefully(_ job: DirectClearing, client: ZooKeeperClient, layout: Layout) async {
        let left = await withTaskGroup(of: String?.self) { group in
            for path in job.reservations { group.addTask { (try? await client.exists(path)) != nil ? path : nil } }
            return await group.reduce(into: [String]()) { if let path = $1 { $0.append(path) } }
        }
        let directory = layout.jobClaims(job.job)
        let claims = ((try? await client.children(directory))?.names ?? []).map { directory + "/" + $0 }
        let paths = left + claims
        for start in stride(from: 0, to: paths.count, by: Self.deletesPerMulti) {
            let chunk = paths[start..<min(paths.count, start + Self.deletesPerMulti)]
            do {
                try await client.multi(chunk.map { .delete(path: $0) })
            } catch {
                for path in chunk { try? await client.delete(path) }
            }
        }
        try? await client.deleteRecursively(directory)
    }

    /// Deletions per `multi` when clearing: well under ZooKeeper's request size with long paths.
    static let deletesPerMulti = 500
}
