import DroverProtocol
import ZooKeeper

/// The direct path's I/O on the leader's tick: taking over the tasks of direct jobs nobody can
/// claim, and clearing the reservations and claims of direct jobs that ended
/// (the decisions are `LeaderState+Direct.swift`'s).
extension LeaderLoop {
    /// The claimant a leader's own claims name: no executor can have it as its id.
    static let leaderClaimant = "(leader)"

    func directPass() async throws {
        for takeOver in state.directTakeOvers(now: .now(), at: clock.now, claimTimeout: claimTimeout) {
            let tasks = try await claimForTakeOver(takeOver)
            guard !tasks.isEmpty else { continue }
            logger.info("taking over direct tasks nobody can claim", metadata: ["job": "\(takeOver.job)", "tasks": "\(tasks.sorted())"])
            _ = try await commit({ $0.planTakeOver(takeOver.job, tasks: tasks, now: .now(), loaded: $1) })
        }
        let ended = state.directEnded.sorted(by: { $0.key < $1.key }).prefix(100)
        guard !ended.isEmpty else { return }
        // What is left of each, read at once; then deleted in one multi (one at a time if something
        // changed meanwhile: a late claim, a reservation taken).
        let found = await withTaskGroup(of: (String, [String]).self) { group in
            for (job, reservedOn) in ended {
                group.addTask { [client, layout] in
                    (job, await Self.leftovers(of: job, reservedOn: reservedOn.executors, reusable: reservedOn.reusable, client: client, layout: layout))
                }
            }
            return await group.reduce(into: [(String, [String])]()) { $0.append($1) }
        }
        let deletes = found.flatMap { $0.1.map { MultiOperation.delete(path: $0) } }
        do {
            if !deletes.isEmpty { try await client.multi(deletes) }
        } catch {
            for (job, _) in found {
                for (index, executor) in (state.directEnded[job]?.executors ?? []).enumerated() {
                    try? await client.delete(layout.reservation(job: job, index: index, on: executor, reusable: state.directEnded[job]?.reusable ?? false))
                }
                try? await client.deleteRecursively(layout.jobClaims(job))
            }
        }
        for (job, _) in ended { state.directCleared(job) }
    }

    /// The tasks of `takeOver` the leader holds the claims of now: those nobody claimed (it
    /// claims them, fenced, in one `multi`) and those whose claimant can no longer run them (gone
    /// for the grace period, or registered again since it claimed) and that were never adopted —
    /// or whose claimant's progress has not named them for the claim timeout (the answer to its
    /// claim was lost, or it cannot write its progress: it runs them no more than a cut-off
    /// executor would).
    private func claimForTakeOver(_ takeOver: LeaderState.TakeOver) async throws -> [Int] {
        let directory = layout.jobClaims(takeOver.job)
        let names: [String]
        do {
            names = try await client.children(directory).names
        } catch let error as ZooKeeperError where error.code == .noNode {
            // No claims directory (removed by hand, or never made): nobody can claim, so every
            // claimable task is the leader's to place.
            return takeOver.claimable.sorted()
        }
        var mine: [Int] = []
        var claimed = 0
        for name in names {
            guard let index = Layout.claimIndex(named: name), index < takeOver.tasks else { continue }
            claimed += 1
            guard takeOver.claimable.contains(index) else { continue }
            guard let node = try? await client.getData(directory + "/" + name) else { continue }
            guard let note = try? Codec.decode(ClaimNote.self, node.data), note.executor != Self.leaderClaimant else {
                mine.append(index)
                continue
            }
            guard !state.progressNamesClaim(of: note.executor, job: takeOver.job, task: index) else { continue }
            let abandoned = Timestamp.now() - node.stat.createdTime >= claimTimeout.wholeMilliseconds
            if abandoned || state.lostClaims(of: note.executor, instance: note.instance, at: clock.now) { mine.append(index) }
        }
        let unclaimed = takeOver.tasks - claimed
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
                return takeOver.claimable.sorted()
            }
        }
        return mine.filter(takeOver.claimable.contains).sorted()
    }

    /// What is left of a finished direct job's reservations and claims, to delete, children first
    /// (nothing reads them any more; a claim made after they go finds no directory and is answered
    /// "none"). Read first, so what claims and cancellations removed costs no write.
    private static func leftovers(of job: String, reservedOn: [String], reusable: Bool, client: ZooKeeperClient, layout: Layout) async -> [String] {
        let reservations = reservedOn.enumerated().map { layout.reservation(job: job, index: $0.offset, on: $0.element, reusable: reusable) }
        let left = await withTaskGroup(of: String?.self) { group in
            for path in reservations { group.addTask { [client] in (try? await client.exists(path)) != nil ? path : nil } }
            return await group.reduce(into: [String]()) { if let path = $1 { $0.append(path) } }
        }
        let directory = layout.jobClaims(job)
        guard let claims = try? await client.children(directory).names else { return left }
        return left + claims.map { directory + "/" + $0 } + [directory]
    }
}
