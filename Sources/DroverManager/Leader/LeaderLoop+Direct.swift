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
        for (job, reservedOn) in state.directEnded.sorted(by: { $0.key < $1.key }).prefix(100) {
            await clearDirect(job, reservedOn: reservedOn)
            state.directCleared(job)
        }
    }

    /// The tasks of `takeOver` the leader holds the claims of now: those nobody claimed (it
    /// claims them, fenced, in one `multi`) and those whose claimant can no longer run them (gone
    /// for the grace period, or registered again since it claimed) and that were never adopted.
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
            let note = try? Codec.decode(ClaimNote.self, try await client.getData(directory + "/" + name).data)
            if note == nil || note!.executor == Self.leaderClaimant
                || state.lostClaims(of: note!.executor, instance: note!.instance, at: clock.now)
            {
                mine.append(index)
            }
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

    /// Deletes what is left of a finished direct job's reservations and claims (nothing reads
    /// them any more; a claim made after this finds no directory and is answered "none").
    private func clearDirect(_ job: String, reservedOn: [String]) async {
        await withTaskGroup(of: Void.self) { group in
            for (index, executor) in reservedOn.enumerated() {
                group.addTask { [client, layout] in try? await client.delete(layout.reservation(job: job, index: index, on: executor)) }
            }
        }
        try? await client.deleteRecursively(layout.jobClaims(job))
    }
}
