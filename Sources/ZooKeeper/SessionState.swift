/// The state of a client's ZooKeeper session, as seen by the client.
public enum SessionState: Sendable, Hashable, CustomStringConvertible {
    /// Looking for a server; no session established yet (or a new one is being made after expiry).
    case connecting
    /// Connected, with this session id. Ephemeral nodes and watches of this session are live.
    case connected(sessionID: Int64)
    /// The connection was lost; the session may still be alive on the server (until its timeout).
    /// Recipes must not act as leader while suspended: they may have been replaced already.
    case suspended
    /// The server expired the session: its ephemeral nodes and watches are gone.
    /// A client made with `renewsExpiredSessions` moves on to `connecting` with a new session.
    case expired
    /// The server rejected the credentials. The client cannot be used any more.
    case authFailed
    /// The client was closed.
    case closed

    public var description: String {
        switch self {
        case .connecting: "connecting"
        case .connected(let id): "connected(0x\(String(UInt64(bitPattern: id), radix: 16)))"
        case .suspended: "suspended"
        case .expired: "expired"
        case .authFailed: "authFailed"
        case .closed: "closed"
        }
    }

    /// True for states after which this client is unusable.
    public var isTerminal: Bool {
        switch self {
        case .authFailed, .closed: true
        case .connecting, .connected, .suspended, .expired: false
        }
    }
}
