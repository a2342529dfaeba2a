import Synchronization

/// Group commit of concurrent submits: while one submit's `multi` is on its way to ZooKeeper, the
/// submits that arrive meanwhile wait and then go together in the next one — up to a bulk
/// submit's limits. A lone submit goes at once, as before; a program that fires submits without
/// waiting for each (as Celery users do with `apply_async`) pays a round trip per group instead of
/// per job. Each caller returns once its own job is committed, so a returned submit is durable.
final class SubmitGroup<Item: Sendable>: Sendable {
    private struct Waiting {
        let items: [Item]
        let bytes: Int
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var waiting: [Waiting] = []
        var committing = false
    }

    private let state = Mutex(State())
    let maximumItems: Int
    let maximumBytes: Int
    /// Whether an error a commit threw is one item's fault: the group is then committed again one
    /// caller at a time, so a bad item fails only its caller. Any other error — ZooKeeper
    /// unreachable — fails the whole group at once rather than once per caller, one after another.
    let isItemError: @Sendable (any Error) -> Bool
    /// Told how many callers wait once one more does (tests wait on it instead of sleeping).
    let waited: (@Sendable (Int) -> Void)?

    init(
        maximumItems: Int, maximumBytes: Int, isItemError: @escaping @Sendable (any Error) -> Bool = { _ in true },
        waited: (@Sendable (Int) -> Void)? = nil
    ) {
        self.maximumItems = maximumItems
        self.maximumBytes = maximumBytes
        self.isItemError = isItemError
        self.waited = waited
    }

    /// Commits `items` (of `bytes` in all) with `commit`, alone or with those of other callers
    /// (whose `commit` is the same work: the caller that finds nobody committing commits for all).
    /// - Throws: What `commit` threw for the group holding these items (or for them alone).
    func submit(_ items: [Item], bytes: Int, commit: @escaping @Sendable ([Item]) async throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let (leads, count) = state.withLock { state -> (Bool, Int) in
                state.waiting.append(Waiting(items: items, bytes: bytes, continuation: continuation))
                guard !state.committing else { return (false, state.waiting.count) }
                state.committing = true
                return (true, state.waiting.count)
            }
            waited?(count)
            // The caller that found nobody committing commits for everybody until none wait. It
            // runs beside its caller, which waits on its continuation like everyone else.
            if leads { Task { await self.commitWhileWaiting(commit) } }
        }
    }

    private func commitWhileWaiting(_ commit: @Sendable ([Item]) async throws -> Void) async {
        while true {
            let group = state.withLock { state -> [Waiting] in
                var taken: [Waiting] = []
                var items = 0
                var bytes = 0
                while let next = state.waiting.first,
                    taken.isEmpty || (items + next.items.count <= maximumItems && bytes + next.bytes <= maximumBytes)
                {
                    taken.append(state.waiting.removeFirst())
                    items += next.items.count
                    bytes += next.bytes
                }
                if taken.isEmpty { state.committing = false }
                return taken
            }
            guard !group.isEmpty else { return }
            do {
                try await commit(group.flatMap(\.items))
                for waiting in group { waiting.continuation.resume() }
            } catch where group.count > 1 && isItemError(error) {
                for waiting in group {
                    do {
                        try await commit(waiting.items)
                        waiting.continuation.resume()
                    } catch {
                        waiting.continuation.resume(throwing: error)
                    }
                }
            } catch {
                for waiting in group { waiting.continuation.resume(throwing: error) }
            }
        }
    }
}
