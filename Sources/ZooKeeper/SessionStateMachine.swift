/// The session life cycle of a ``ZooKeeperClient``, as a state machine that does no I/O.
///
/// Inputs are the C client's session events (tagged with the handle generation they came from)
/// and the caller's close request; each returns the action the client must carry out. Handles
/// are numbered: after an expiry a new handle (generation + 1) replaces the old one, and events
/// still arriving from the old handle are ignored.
struct SessionStateMachine: Sendable {
    /// What the C client reported about a connection.
    enum ConnectionEvent: Sendable, Hashable {
        case connecting
        case connected(sessionID: Int64)
        case expired
        case authFailed
    }

    enum State: Sendable, Hashable {
        case connecting(generation: Int)
        case connected(generation: Int, sessionID: Int64)
        case suspended(generation: Int, sessionID: Int64)
        /// Expired and not renewing: terminal until closed.
        case expired(generation: Int)
        case authFailed(generation: Int)
        case closing
        case closed
    }

    enum Action: Sendable, Hashable {
        case none
        /// Tell subscribers about the new state.
        case publish(SessionState)
        /// The session of `generation` expired: publish `.expired`, fail that generation's
        /// watches, close its handle and, if `renew`, open generation `generation + 1` and
        /// publish `.connecting`.
        case sessionExpired(generation: Int, renew: Bool)
        /// Publish `.authFailed` and fail every watch; the handle stays until close.
        case authFailed
        /// Close the current handle (if any) off the cooperative pool, then call `closed()`.
        case closeHandle
        /// Close already requested or done: wait for it.
        case waitForClose
    }

    private(set) var state: State = .connecting(generation: 0)
    let renewsExpiredSessions: Bool

    init(renewsExpiredSessions: Bool) {
        self.renewsExpiredSessions = renewsExpiredSessions
    }

    /// The generation of the handle operations should use, or nil when none is usable.
    var liveGeneration: Int? {
        switch state {
        case .connecting(let g), .connected(let g, _), .suspended(let g, _): g
        case .expired, .authFailed, .closing, .closed: nil
        }
    }

    /// The state as subscribers see it.
    var publicState: SessionState {
        switch state {
        case .connecting: .connecting
        case .connected(_, let id): .connected(sessionID: id)
        case .suspended: .suspended
        case .expired: .expired
        case .authFailed: .authFailed
        case .closing, .closed: .closed
        }
    }

    mutating func connectionEvent(_ event: ConnectionEvent, generation: Int) -> Action {
        switch state {
        case .connecting(let current):
            guard current == generation else { return .none }
            switch event {
            case .connecting:
                return .none
            case .connected(let id):
                state = .connected(generation: current, sessionID: id)
                return .publish(.connected(sessionID: id))
            case .expired:
                return expire(current)
            case .authFailed:
                state = .authFailed(generation: current)
                return .authFailed
            }
        case .connected(let current, let id):
            guard current == generation else { return .none }
            switch event {
            case .connecting:
                state = .suspended(generation: current, sessionID: id)
                return .publish(.suspended)
            case .connected(let newID):
                state = .connected(generation: current, sessionID: newID)
                return newID == id ? .none : .publish(.connected(sessionID: newID))
            case .expired:
                return expire(current)
            case .authFailed:
                state = .authFailed(generation: current)
                return .authFailed
            }
        case .suspended(let current, _):
            guard current == generation else { return .none }
            switch event {
            case .connecting:
                return .none
            case .connected(let newID):
                state = .connected(generation: current, sessionID: newID)
                return .publish(.connected(sessionID: newID))
            case .expired:
                return expire(current)
            case .authFailed:
                state = .authFailed(generation: current)
                return .authFailed
            }
        case .expired, .authFailed, .closing, .closed:
            return .none
        }
    }

    private mutating func expire(_ generation: Int) -> Action {
        if renewsExpiredSessions {
            state = .connecting(generation: generation + 1)
        } else {
            state = .expired(generation: generation)
        }
        return .sessionExpired(generation: generation, renew: renewsExpiredSessions)
    }

    mutating func closeRequested() -> Action {
        switch state {
        case .connecting, .connected, .suspended, .expired, .authFailed:
            state = .closing
            return .closeHandle
        case .closing, .closed:
            return .waitForClose
        }
    }

    mutating func closed() -> Action {
        switch state {
        case .closing:
            state = .closed
            return .publish(.closed)
        case .connecting, .connected, .suspended, .expired, .authFailed, .closed:
            return .none
        }
    }
}
