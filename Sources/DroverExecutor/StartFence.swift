import Synchronization

/// When an executor may write a task's start: in the session it registered in, once it has written
/// its progress and read its assignments again after registering, and only on assignments at
/// least that new (``Executor/allowStartsAfterRegistering()`` says why). Closed until then, and
/// again when its registration is removed; a new session is another session, so closed for it too.
final class StartFence: Sendable {
    private struct Opening {
        var session: Int64
        var assignmentsZxid: Int64
    }
    private let state = Mutex<(generation: Int, opening: Opening?)>((0, nil))

    /// Closes the fence; an opening begun before does not open it.
    func close() {
        state.withLock {
            $0.generation += 1
            $0.opening = nil
        }
    }

    /// The generation an opening begins at (see ``open(session:assignmentsZxid:ifStill:)``).
    var generation: Int { state.withLock { $0.generation } }

    /// Opens for `session` and assignments written by transaction `assignmentsZxid` or later,
    /// unless closed since `generation` was read.
    func open(session: Int64, assignmentsZxid: Int64, ifStill generation: Int) {
        state.withLock {
            guard $0.generation == generation else { return }
            $0.opening = Opening(session: session, assignmentsZxid: assignmentsZxid)
        }
    }

    /// Whether a start may be written now, in `session` (the client's, connected or not), going
    /// by assignments written by transaction `assignmentsZxid` (0: none).
    func allows(session: Int64?, assignmentsZxid: Int64) -> Bool {
        guard let session else { return false }
        return state.withLock { state in
            guard let opening = state.opening else { return false }
            return opening.session == session && assignmentsZxid >= opening.assignmentsZxid
        }
    }
}

/// Set by the writer when a start was not written because the start fence was closed.
final class StartDeferral: Sendable {
    private let value = Mutex(false)
    func set(_ deferred: Bool) { value.withLock { $0 = deferred } }
    var isSet: Bool { value.withLock { $0 } }
}
