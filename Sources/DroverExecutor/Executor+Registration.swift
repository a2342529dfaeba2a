import DroverProtocol
import DroverStore
import Foundation
import Logging
import Synchronization
import ZKRecipes
import ZooKeeper

/// Registration: the liveness node, made again in a new session or when removed, and the start
/// fence opened after each (``allowStartsAfterRegistering()``).
extension Executor {
    /// Creates the ephemeral liveness node (replacing one left by an earlier session of ours).
    func register() async throws {
        var registration = ExecutorRegistration(
            id: configuration.id, capacity: configuration.capacity, labels: configuration.labels, address: configuration.address,
            methods: handlers.keys.sorted())
        registration.instance = ProcessInstance.current.description
        registration.sessionTimeoutMilliseconds = client.sessionTimeout.wholeMilliseconds
        let path = layout.executorAlive(configuration.id)
        let data = try Codec.encode(registration)
        let clock = ContinuousClock()
        var patience: ContinuousClock.Instant?
        while true {
            do {
                _ = try await client.create(path, data: data, mode: .ephemeral, acl: acl(.executorNode(configuration.id)))
                // The session that owns the node, not the one current after the answer (another, if
                // the session changed meanwhile): the start fence opens only for the owner.
                guard let stat = try await client.exists(path) else { continue }
                registeredSession.withLock { $0 = stat.ephemeralOwner }
                return
            } catch let error as ZooKeeperError where error.code == .nodeExists {
                let node: Versioned<[UInt8]>
                do {
                    let read = try await client.getData(path)
                    node = Versioned(document: read.data, version: read.stat.version)
                    if read.stat.ephemeralOwner == client.sessionCredentials?.id {
                        registeredSession.withLock { $0 = read.stat.ephemeralOwner }
                        return
                    }
                } catch let error as ZooKeeperError where error.code == .noNode {
                    continue
                }
                let holding = try? Codec.decode(ExecutorRegistration.self, node.document)
                let holder = holding?.instance.flatMap(ProcessInstance.init)
                // This very process, registered under an earlier session whose node the server
                // has not removed yet (the expiry is still being applied): its own, taken over.
                let ours = holder == ProcessInstance.current
                switch ours ? false : holder?.isRunning {
                case true?:
                    throw DroverError(
                        .executorInUse,
                        "executor id \(configuration.id) is in use by process \(holder!.pid) on this host: two executors must not share an id — stop that one, or give this one another --id")
                case nil where holder != nil:
                    // Registered from another machine (or where this process cannot tell): wait for it
                    // to go — a dead process's session ends within its timeout (with a margin, as the
                    // server may have granted more than was asked).
                    if patience == nil {
                        let holderTimeout = Duration.milliseconds(holding?.sessionTimeoutMilliseconds ?? 0)
                        patience = clock.now + max(holderTimeout, client.sessionTimeout, .seconds(10)) * 3 / 2
                        logger.notice(
                            "this executor's id is registered by another process that this one cannot see: waiting for that registration to end",
                            metadata: ["host": "\(holder!.host)", "pid": "\(holder!.pid)"])
                    }
                    guard clock.now < patience! else {
                        throw DroverError(
                            .executorInUse,
                            "executor id \(configuration.id) is registered by a live process on \(holder!.host) (pid \(holder!.pid)): two executors must not share an id — stop that one, or give this one another --id")
                    }
                    try await waitForRemoval(of: path)
                default:
                    // An earlier incarnation of this executor on this host, killed before its session
                    // timed out (or an executor older than the `instance` field): taken over at once.
                    try? await client.delete(path, version: node.version)
                }
            }
        }
    }

    /// Waits until the node at `path` is gone, or a second has passed.
    func waitForRemoval(of path: String) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [client] in
                for try await update in client.dataUpdates(of: path) {
                    if case .missing = update { return }
                }
            }
            group.addTask { try await Task.sleep(for: .seconds(1)) }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Registers again when the liveness node disappears while the session lives on — deleted by
    /// an operator or another program, or with the whole tree (`/drover` deleted and created again
    /// by the managers) — so the executor does not sit outside the pool unnoticed.
    func watchRegistration() async throws {
        for try await update in client.dataUpdates(of: layout.executorAlive(configuration.id)) {
            // The session of the live handle, connected or not (`sessionID` is nil while disconnected).
            guard case .missing = update, registeredSession.withLock({ $0 }) == client.sessionCredentials?.id, !deregistering.withLock({ $0 }) else {
                continue
            }
            logger.warning("this executor's registration was removed by someone else: registering again")
            try await registerAgain()
        }
    }

    /// Registers again whenever the session changes (the old liveness node went with it).
    func keepRegistered() async throws {
        for await state in client.sessionStates() {
            guard case .connected(let session) = state, session != registeredSession.withLock({ $0 }) else { continue }
            logger.info("new ZooKeeper session: registering again")
            try await registerAgain()
        }
    }

    /// Registers again while running (a new session, or the registration removed), the way
    /// ``run()`` registered first. Unregistered, the executor looks dead to the leader, which may
    /// take its tasks back: none starts until it has registered again
    /// (``allowStartsAfterRegistering()``), and the main loop looks again after. A lost answer is
    /// tried again here: left for the next session, the executor would stay unregistered until
    /// one comes (the registration's own watch skips a session that is not the registered one).
    func registerAgain() async throws {
        writer.startFence.close()
        var repairs = 0
        while true {
            do {
                try await repeatingAfterLostAnswers(client, logger: logger, "registering again") { try await registerWithEverythingItNeeds() }
                break
            } catch let error as MalformedDocument where error.path == document.path && repairs < 10 {
                // Garbled by another program while this executor runs (seen in a chaos run: it exited,
                // and its tasks stayed where the leader would not take them back from unreadable
                // progress). It holds the last good progress: written back as its watch does, and
                // registered again.
                repairs += 1
                try await repairProgress(garbled: error)
            } catch {
                throw explainedRegistrationFailure(error)
            }
        }
        stateChanged()
    }

    /// Reads the progress found garbled and, unless it reads well now, keeps it aside and writes
    /// back the last good progress (``repairUnreadableProgress(_:_:)``).
    func repairProgress(garbled error: MalformedDocument) async throws {
        let node = try await repeatingAfterLostAnswers(client, logger: logger, "reading the executor's progress to repair it") { () async throws -> NodeData? in
            do {
                return try await client.getData(document.path)
            } catch let error as ZooKeeperError where error.code == .noNode {
                return nil
            }
        }
        guard let node, (try? document.decode(node)) == nil else { return }
        await repairUnreadableProgress(node, error)
    }

    /// Every step of registering, each safe to repeat: the executor's directory and its progress
    /// (made again when gone with the tree: whatever it held went with it, and the job records
    /// say so), the liveness node, the inbox where clients put reservations on the direct path,
    /// and then the start fence opened (``allowStartsAfterRegistering()``).
    func registerWithEverythingItNeeds() async throws {
        let id = configuration.id
        try await client.createPath(layout.executor(id)) { [layout] in acl(layout.node(at: $0)) }
        try await createProgressIfMissing()
        try await register()
        try await client.createPath(layout.executorInbox(id)) { [layout] in acl(layout.node(at: $0)) }
        try await allowStartsAfterRegistering()
    }

    /// A registration's failure that trying again cannot cure, said with what to do about it.
    func explainedRegistrationFailure(_ error: any Error) -> any Error {
        let id = configuration.id
        switch error {
        case let error as ZooKeeperError where error.code == .noAuth && access.withLock({ $0 }).isSecured:
            return DroverError(
                .notPermitted,
                "executor \(id) may not register: ZooKeeper refused \(error.operation) on \(error.path ?? layout.executor(id)). Its directory "
                    + "\(layout.executor(id)) is made by the admin (`drover init --credentials admin.json --executor \(id)`, again after "
                    + "`drover forget \(id)`), and its credentials must be executor \(id)'s", cause: error)
        case let error as MalformedDocument:
            // Without progress it can read, it cannot know which tasks it started: starting empty
            // would run them again from scratch. Say so, and what to do; the document stays as it is.
            return DroverError(
                .unreadableState,
                "\(error). The executor does not start on progress it cannot read (what its tasks did is in it). "
                    + "Look at it with `zkCli.sh get \(error.path)`; fix it, or delete it to start this executor's tasks "
                    + "afresh (they run again from their start).", cause: error)
        default:
            return error
        }
    }

    /// Wakes the main loop to look at its tasks again (``wakeLoop``).
    func stateChanged() { wakeLoop.withLock { $0 }?() }

    /// After registering: writes the progress (its version moves on), reads the assignments again,
    /// and only then lets tasks start, in this session.
    ///
    /// The fence against the leader taking back a task this executor starts (PROTOCOL.md,
    /// "Executor registration"). The leader takes back a dead executor's tasks only when a read
    /// after its last look at the progress finds no registration, in a `multi` that checks the
    /// progress's version. So either the take-back lands before the progress write here — and the
    /// assignments read after it no longer hold the tasks — or this write changes the version
    /// the take-back checks, or the leader's read comes after the registration and finds it. A
    /// start decided on assignments read before registering (in an earlier session, or while the
    /// registration was gone) would have none of these: it could run a task the leader had just
    /// placed elsewhere (seen in a chaos run: a task started 0.9 s after its executor's new
    /// session, and again on another executor 0.9 s later).
    func allowStartsAfterRegistering() async throws {
        let fence = writer.startFence
        let generation = fence.generation
        // Registered in this very session (not one that ended meanwhile): else registered again first.
        guard let session = registeredSession.withLock({ $0 }), session == client.sessionCredentials?.id else {
            throw ZooKeeperError(.connectionLoss, operation: "register", message: "the session changed while registering")
        }
        if let granted = client.grantedSessionTimeout { await writer.sessionGranted(granted) }
        try await writer.touchProgress()
        let node = try await repeatingAfterLostAnswers(client, logger: logger, "reading the assignments after registering") { () async throws -> NodeData? in
            do {
                return try await client.getData(layout.executorAssignments(configuration.id))
            } catch let error as ZooKeeperError where error.code == .noNode {
                return nil
            }
        }
        await observeAssignments(node)
        guard client.sessionCredentials?.id == session else {
            throw ZooKeeperError(.connectionLoss, operation: "register", message: "the session changed while registering")
        }
        // By the transaction that last wrote them, not their version: a node deleted and made again
        // starts its versions again, its transaction ids go on.
        fence.open(session: session, assignmentsZxid: await writer.assignmentsZxid, ifStill: generation)
    }

    /// Hands the assignments as read (nil: missing, not made yet by the leader or gone with the
    /// tree) to the writer. Garbled ones — only the leader writes them, so another program did —
    /// are logged and left out: the tasks running here go on with the last good ones, and the
    /// leader's next write repairs them (it leaves this executor out of placement until then).
    /// Returns whether they were taken.
    @discardableResult
    func observeAssignments(_ node: NodeData?) async -> Bool {
        guard let node else {
            await writer.observed(assignments: nil)
            return true
        }
        do {
            let assignments = try Codec.decode(ExecutorState.self, node.data)
            await writer.observed(assignments: Versioned(document: assignments, version: node.stat.version), modifiedZxid: node.stat.modifiedZxid)
            return true
        } catch {
            logger.error(
                "the leader's assignments to this executor are not a valid document: running on with the last good ones",
                metadata: [
                    "path": "\(layout.executorAssignments(configuration.id))", "version": "\(node.stat.version)", "error": "\(error)",
                ])
            return false
        }
    }
}
