import CZooKeeper
import Logging

extension ZooKeeperClient {
    /// Makes the server expire this client's session, as fault tests need, and returns once
    /// this client has seen `.expired` (it then opens a new session if it renews sessions).
    ///
    /// A second connection takes over the session and closes it. This client, reconnecting
    /// meanwhile, can take its session back before the close and keep it (the race kazoo's and
    /// Curator's old helpers retry around with sleeps). So this client is first pointed at a
    /// closed port, which keeps it off the servers most of the time, and the takeover is repeated
    /// until a second connection is told the session no longer exists — the server's own word,
    /// not a guess. Then this client gets its servers back, reconnects and hears `.expired`.
    /// `timeout` only bounds a hang: on a loaded 2-core machine the takeovers passed 15 s.
    /// `whileGone` runs once the session is gone and before this client can reach a server again:
    /// what it changes, this client learns of only in its new session. It must use another client
    /// (this one is pointed at a closed port until it returns).
    public func expireSessionForTesting(timeout: Duration = .seconds(60), whileGone: (@Sendable () async throws -> Void)? = nil) async throws {
        guard let credentials = sessionCredentials else {
            throw ZooKeeperError(.invalidState, operation: "expireSession", message: "the client has no live session to expire")
        }
        let states = sessionStates()
        let servers = connectionString.split(separator: "/", maxSplits: 1).first.map(String.init) ?? connectionString
        try core.setServersForTesting("127.0.0.1:1")
        do {
            // Each takeover ends with the session closed, unless the server said it was already
            // gone: only that answer proves it.
            let deadline = ContinuousClock.now + timeout
            while try await takeOverAndClose(credentials, timeout: timeout) {
                guard ContinuousClock.now < deadline else {
                    throw ZooKeeperError(
                        .invalidState, operation: "expireSession", message: "the session still existed after \(timeout) of takeovers")
                }
            }
            try await whileGone?()
        } catch {
            try? core.setServersForTesting(servers)
            throw error
        }
        // The client may already have heard of the expiry (its handle is then expired, and a
        // renewed session's handle has the full list): only a live old handle needs its servers.
        do {
            try core.setServersForTesting(servers)
        } catch let error as ZooKeeperError where error.code == .invalidState {}
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await state in states where state == .expired { return true }
                return false
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return false
            }
            defer { group.cancelAll() }
            guard try await group.next() == true else {
                throw ZooKeeperError(
                    .invalidState, operation: "expireSession",
                    message: "the server ended the session but the client did not hear of it within \(timeout)")
            }
        }
    }

    /// Connects a second handle with `credentials`: returns true when it got the session (and
    /// has closed it), false when the server said the session no longer exists.
    private func takeOverAndClose(_ credentials: (id: Int64, password: [UInt8]), timeout: Duration) async throws -> Bool {
        let intruder = ClientCore(
            connectionString: connectionString, sessionTimeoutMilliseconds: core.sessionTimeoutMilliseconds,
            renewsExpiredSessions: false, logger: Logger(label: "zookeeper.testing"), resumedSession: credentials)
        _ = intruder.install(try intruder.makeHandle(generation: 0), generation: 0)
        let states = intruder.sessionStates()
        let connected = try await withThrowingTaskGroup(of: Bool?.self) { group in
            group.addTask {
                for await state in states {
                    if case .connected = state { return true }
                    if state == .expired { return false }
                }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        // Closing a connected handle sends closeSession, and the server ends the session.
        await intruder.close()
        guard let connected else {
            throw ZooKeeperError(
                .connectTimeout, operation: "expireSession",
                message: "no server answered a second connection to the session within \(timeout)")
        }
        return connected
    }
}

extension ClientCore {
    /// Replaces the live handle's server list (`zoo_set_servers`); the connection drops when
    /// its server is not in the new list.
    func setServersForTesting(_ hosts: String) throws {
        let rc = state.withLock { state -> Int32 in
            guard let generation = state.machine.liveGeneration, let handle = state.handles[generation] else {
                return ZINVALIDSTATE.rawValue
            }
            return zoo_set_servers(handle.pointer, hosts)
        }
        guard rc == ZOK.rawValue else {
            throw ZooKeeperError(.init(rawValue: rc), operation: "zoo_set_servers", message: "could not set the servers to \(hosts)")
        }
    }
}
