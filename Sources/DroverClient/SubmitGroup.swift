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
    /// Told how many callers wait once one more does (tests wait on it instead of sleeping).
    let waited: (@Sendable (Int) -> Void)?

    init(maximumItems: Int, maximumBytes: Int, waited: (@Sendable (Int) -> Void)? = nil) {
        self.maximumItems = maximumItems
        self.maximumBytes = maximumBytes
        self.waited = waited
    }

    /// Commits `items` (of `bytes` in all) with `commit`, alone or with those of other callers.
    /// - Throws: What `commit` threw for a group holding these items; a group that failed is
    ///   committed again one caller at a time, so one caller's bad item fails only that caller.
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
            } catch where group.count > 1 {
                for waiting in group {
                    do {
                        try await commit(waiting.items)
                        waiting.continuation.resume()
                    } catch {
                        waiting.continuation.resume(throwing: error)
                    }
                }
            } catch {
                group[0].continuation.resume(throwing: error)
            }
        }
    }
}
