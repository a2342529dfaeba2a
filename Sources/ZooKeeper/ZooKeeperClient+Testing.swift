import Logging

extension ZooKeeperClient {
    /// Makes the server expire this client's session, as fault tests need, and returns once
    /// this client has seen `.expired` (it then opens a new session if it renews sessions).
    ///
    /// A second connection takes over the session and closes it. That races with this client
    /// reconnecting to its session in between (the session then survives), so it is tried up to
    /// `attempts` times until the expiry is observed.
    public func expireSessionForTesting(attempts: Int = 5, timeout: Duration = .seconds(15)) async throws {
        let states = sessionStates()
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await state in states where state == .expired { return true }
                return false
            }
            group.addTask { [self] in
                for _ in 0..<attempts {
                    if let credentials = sessionCredentials {
                        try await closeSession(credentials, timeout: timeout)
                    }
                    // The client notices on its next reconnect attempt, about half a second later;
                    // if it got its session back first, the attempt is repeated.
                    try await Task.sleep(for: .milliseconds(1500))
                }
                return false
            }
            defer { group.cancelAll() }
            guard try await group.next() == true else {
                throw ZooKeeperError(
                    .invalidState, operation: "expireSession",
                    message: "the session did not expire after \(attempts) attempts")
            }
        }
    }

    private func closeSession(_ credentials: (id: Int64, password: [UInt8]), timeout: Duration) async throws {
        let intruder = ClientCore(
            connectionString: connectionString, sessionTimeoutMilliseconds: core.sessionTimeoutMilliseconds,
            renewsExpiredSessions: false, logger: Logger(label: "zookeeper.testing"), resumedSession: credentials)
        _ = intruder.install(try intruder.makeHandle(generation: 0), generation: 0)
        let states = intruder.sessionStates()
        // Closing a connected handle sends closeSession, and the server ends the session.
        _ = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await state in states {
                    if case .connected = state { return true }
                    if state == .expired { return false }
                }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            defer { group.cancelAll() }
            return await group.next() ?? false
        }
        await intruder.close()
    }
}
