import CZooKeeper
import Logging
import Synchronization

/// An asynchronous ZooKeeper client over the C library (`libzookeeper_mt`).
///
/// Every operation is `async` and answered by ZooKeeper's asynchronous C API; many may be in
/// flight at once, and ZooKeeper answers them in the order they were sent. Session changes are
/// published through ``sessionStates()``; watches through ``Watcher``.
///
/// When the server expires the session, the client by default opens a new session on its own
/// (`renewsExpiredSessions`): subscribers see `.expired` then `.connecting` and `.connected`
/// with a new session id. Everything tied to the old session (ephemeral nodes, watches) is gone,
/// and recipes rebuild it.
///
/// Call ``close()`` when done: it ends the session (deleting its ephemeral nodes) and the C
/// library's threads. A client that is never closed keeps its session until the process ends.
public final class ZooKeeperClient: Sendable {
    let core: ClientCore
    /// Called with every `multi` the server applied (see ``observeCommittedMultis(_:)``).
    let multiObservers = Mutex<[@Sendable ([MultiOperation], [MultiResult]) -> Void]>([])
    private let certificate = Mutex<String?>(nil)

    /// The subject of the client certificate this client's connections show (through a TLS
    /// bridge), as ZooKeeper's x509 provider names it (`CN=e1`): its `x509` identity. Set by
    /// whoever made the connection; this client cannot see the TLS it goes through.
    public var certificateIdentity: String? {
        get { certificate.withLock { $0 } }
        set { certificate.withLock { $0 = newValue } }
    }

    /// The connection string the client was made with (`host:port[,host:port…][/chroot]`).
    public var connectionString: String { core.connectionString }

    /// The session timeout the client asked for.
    public let sessionTimeout: Duration

    private init(core: ClientCore, sessionTimeout: Duration) {
        self.core = core
        self.sessionTimeout = sessionTimeout
    }

    /// Connects to ZooKeeper and waits until the first session is established.
    ///
    /// - Parameters:
    ///   - connectionString: `host:port[,host:port…][/chroot]`. With a chroot, every path the
    ///     client uses is relative to it (the chroot node must exist).
    ///   - sessionTimeout: how long the session survives without contact. The server clamps it
    ///     to between 2 and 20 ticks.
    ///   - connectTimeout: how long to wait for the first session before giving up.
    ///   - renewsExpiredSessions: open a new session when the server expires this one.
    /// - Throws: ``ZooKeeperError`` `.connectTimeout` when no server answered in time,
    ///   `.badArguments` for a malformed connection string, `.authFailed`.
    public static func connect(
        to connectionString: String,
        sessionTimeout: Duration = .seconds(10),
        connectTimeout: Duration = .seconds(15),
        renewsExpiredSessions: Bool = true,
        logger: Logger = Logger(label: "zookeeper")
    ) async throws -> ZooKeeperClient {
        let milliseconds = Int32(clamping: sessionTimeout.components.seconds * 1000 + sessionTimeout.components.attoseconds / 1_000_000_000_000_000)
        let core = ClientCore(
            connectionString: connectionString, sessionTimeoutMilliseconds: milliseconds,
            renewsExpiredSessions: renewsExpiredSessions, logger: logger)
        _ = core.install(try core.makeHandle(generation: 0), generation: 0)
        let client = ZooKeeperClient(core: core, sessionTimeout: sessionTimeout)
        do {
            try await client.waitUntilConnected(timeout: connectTimeout)
        } catch {
            await client.close()
            throw error
        }
        logger.debug("connected to ZooKeeper", metadata: ["zk": "\(connectionString)", "session": "\(client.sessionState)"])
        return client
    }

    /// The current session state.
    public var sessionState: SessionState { core.currentState }

    /// The current session id, when connected.
    public var sessionID: Int64? {
        if case .connected(let id) = core.currentState { return id }
        return nil
    }

    /// The session's state now, then every change, until the client is closed.
    /// Each call returns an independent stream.
    public func sessionStates() -> AsyncStream<SessionState> { core.sessionStates() }

    /// Waits until the session is connected.
    /// - Throws: `.connectTimeout` after `timeout`; `.authFailed` or `.clientClosed` when the
    ///   client can no longer connect.
    public func waitUntilConnected(timeout: Duration) async throws {
        let states = sessionStates()
        let connectionString = self.connectionString
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await state in states {
                    switch state {
                    case .connected: return
                    case .authFailed: throw ZooKeeperError(.authFailed, operation: "connect")
                    case .closed: throw ZooKeeperError(.clientClosed, operation: "connect")
                    case .connecting, .suspended, .expired: continue
                    }
                }
                try Task.checkCancellation()
                throw ZooKeeperError(.clientClosed, operation: "connect")
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw ZooKeeperError(
                    .connectTimeout, operation: "connect",
                    message: "cannot reach ZooKeeper at \(connectionString) within \(timeout): is it running, and reachable from this host? (a server cut off from the majority of its ensemble serves no one)")
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// Ends the session and stops the C library's threads. Safe to call more than once and from
    /// several tasks: every call returns once the client is closed. Pending requests fail with
    /// `.closing`; watches deliver `.lost(.clientClosed)`.
    public func close() async {
        await core.close()
    }

    /// The ZooKeeper digest ids (`user:base64(sha1(user:password))`) of the identities this client
    /// authenticated with through ``addAuth(scheme:credentials:)``.
    public var digestIDs: [String] {
        core.state.withLock { state in
            state.credentials.filter { $0.scheme == "digest" }.compactMap { entry -> String? in
                guard let colon = entry.credentials.firstIndex(of: ":") else { return nil }
                return ACL.digestID(
                    user: String(entry.credentials[..<colon]), password: String(entry.credentials[entry.credentials.index(after: colon)...]))
            }
        }
    }

    /// The session timeout the servers granted (they keep it between 2 and 20 of their ticks,
    /// whatever ``sessionTimeout`` asked for); nil until a session is established.
    public var grantedSessionTimeout: Duration? {
        withEstablishedSession { handle, _ in
            let milliseconds = zoo_recv_timeout(handle)
            return milliseconds > 0 ? .milliseconds(Int(milliseconds)) : nil
        }
    }

    /// The session id and password, for ``ZooKeeperClient/expireSessionForTesting`` style tools
    /// that need to take over this session.
    public var sessionCredentials: (id: Int64, password: [UInt8])? {
        withEstablishedSession { _, clientID in (clientID.client_id, withUnsafeBytes(of: clientID.passwd) { Array($0) }) }
    }

    /// `body` with the live handle and its session, under the lock; nil while none is established.
    private func withEstablishedSession<T>(_ body: (OpaquePointer, clientid_t) -> T?) -> T? {
        core.state.withLock { state -> T? in
            guard let generation = state.machine.liveGeneration, let handle = state.handles[generation],
                let clientID = zoo_client_id(handle.pointer)?.pointee, clientID.client_id != 0
            else { return nil }
            return body(handle.pointer, clientID)
        }
    }
}
