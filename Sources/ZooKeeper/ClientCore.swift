import CZooKeeper
import Foundation
import Logging
import Synchronization

/// The C handle(s) of one client and everything the C callbacks need: the session state
/// machine, session subscribers and registered watches. All of it lives behind one lock.
///
/// Lock, decide, unlock, act — with one deliberate exception: events are yielded to
/// `AsyncStream` continuations while the lock is held, because yielding only enqueues (it runs
/// no user code: the client installs no `onTermination` handlers), and doing it under the lock
/// is what keeps every subscriber's events in the order ZooKeeper produced them.
final class ClientCore: Sendable {
    /// A live `zhandle_t` and the context object the C client hands back to the watchers.
    struct Handle: @unchecked Sendable {
        // Safe to send: the pointer is only used under `ClientCore.state`'s lock (requests) or
        // by the single closer after the handle left the table (`zookeeper_close`).
        let pointer: OpaquePointer
        let context: Unmanaged<HandleContext>
    }

    struct WatchRegistration {
        let generation: Int
        let path: String
        let watcher: Watcher
    }

    struct InflightRequest {
        let generation: Int
        /// Fails the request and releases the C client's reference to it.
        let abandon: @Sendable (ZooKeeperError.Code) -> Void
    }

    struct State {
        var machine: SessionStateMachine
        var handles: [Int: Handle] = [:]
        var subscribers: [UInt64: AsyncStream<SessionState>.Continuation] = [:]
        var watches: [UInt64: WatchRegistration] = [:]
        var nextID: UInt64 = 1
        var credentials: [(scheme: String, credentials: String)] = []
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
        /// Requests sent and not yet answered. The C client may drop the answers of requests
        /// in flight when a handle closes (ZOOKEEPER-2894), so whatever is left here after
        /// `zookeeper_close` returned is failed by the client itself.
        var inflight: [UInt64: InflightRequest] = [:]
        /// Retired handles still being closed; `close()` waits for them.
        var retiringHandles = 0
        var retiredWaiters: [CheckedContinuation<Void, Never>] = []

        mutating func makeID() -> UInt64 {
            defer { nextID += 1 }
            return nextID
        }
    }

    let connectionString: String
    let sessionTimeoutMilliseconds: Int32
    let logger: Logger
    let state: Mutex<State>
    private let requestIDs = Atomic<UInt64>(1)
    /// A session to take over instead of starting a new one (for the first handle only).
    let resumedSession: (id: Int64, password: [UInt8])?

    init(
        connectionString: String, sessionTimeoutMilliseconds: Int32, renewsExpiredSessions: Bool, logger: Logger,
        resumedSession: (id: Int64, password: [UInt8])? = nil
    ) {
        self.resumedSession = resumedSession
        self.connectionString = connectionString
        self.sessionTimeoutMilliseconds = sessionTimeoutMilliseconds
        self.logger = logger
        self.state = Mutex(State(machine: SessionStateMachine(renewsExpiredSessions: renewsExpiredSessions)))
    }

    // MARK: Handles

    /// Opens the C handle of `generation`. Not under the lock: `zookeeper_init2` resolves the
    /// host names, which can take as long as DNS does.
    func makeHandle(generation: Int) throws(ZooKeeperError) -> Handle {
        configureCLibrary
        let context = Unmanaged.passRetained(HandleContext(core: self, generation: generation))
        var clientID = clientid_t()
        if generation == 0, let resumedSession {
            clientID.client_id = resumedSession.id
            withUnsafeMutableBytes(of: &clientID.passwd) { $0.copyBytes(from: resumedSession.password.prefix(16)) }
        }
        let resumes = clientID.client_id != 0
        let handle = withUnsafePointer(to: &clientID) { clientIDPointer in
            zookeeper_init2(
                connectionString, sessionWatcher, sessionTimeoutMilliseconds,
                resumes ? clientIDPointer : nil, context.toOpaque(), ZOO_NO_LOG_CLIENTENV, forwardCLog)
        }
        guard let pointer = handle else {
            context.release()
            throw ZooKeeperError(
                .badArguments, operation: "connect", path: nil,
                message: "cannot use the connection string \"\(connectionString)\" (\(String(cString: strerror(errno)))) — expected host:port[,host:port...][/chroot]")
        }
        // By default the C client resolves the host list again before nearly every wait for the
        // network (a socket, bind and lookup per request): measured, it cost most of the CPU of
        // a write-heavy client and held throughput down by a third. Resolve at most every 10 s.
        zoo_set_servers_resolution_delay(pointer, 10_000)
        return Handle(pointer: pointer, context: context)
    }

    /// Makes `handle` the live one if its generation still is; false when it came too late
    /// (the client was closed meanwhile) and must be closed by the caller.
    func install(_ handle: Handle, generation: Int) -> Bool {
        state.withLock { state in
            guard state.machine.liveGeneration == generation, state.handles[generation] == nil else { return false }
            state.handles[generation] = handle
            for credential in state.credentials {
                _ = zoo_add_auth(
                    handle.pointer, credential.scheme, credential.credentials, Int32(credential.credentials.utf8.count),
                    ignoredCompletion, nil)
            }
            return true
        }
    }

    /// Opens the handle of a new session after an expiry, retrying while the hosts cannot be
    /// resolved, until it is installed or the client is closed.
    private func renew(generation: Int) {
        Thread { [self] in
            var delay: UInt32 = 100_000
            while state.withLock({ $0.machine.liveGeneration == generation }) {
                do {
                    let handle = try makeHandle(generation: generation)
                    if !install(handle, generation: generation) { retire(handle, generation: generation) }
                    return
                } catch {
                    logger.warning("cannot open a new ZooKeeper session; retrying", metadata: ["error": "\(error)"])
                    usleep(delay)
                    delay = min(delay * 2, 5_000_000)
                }
            }
        }.start()
    }

    /// Closes a handle that left the table, on a thread of its own (`zookeeper_close` joins
    /// the handle's threads, one of which may be the caller), then fails what it dropped.
    private func retire(_ handle: Handle, generation: Int) {
        state.withLock { $0.retiringHandles += 1 }
        Thread { [self] in
            zookeeper_close(handle.pointer)
            handle.context.release()
            abandonInflight(ofGeneration: generation, code: .sessionExpired)
            let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.retiringHandles -= 1
                guard state.retiringHandles == 0 else { return [] }
                defer { state.retiredWaiters = [] }
                return state.retiredWaiters
            }
            waiters.forEach { $0.resume() }
        }.start()
    }

    /// Fails the requests of `generation` that the C client will never answer. Only after
    /// `zookeeper_close` returned: from then on no completion of that handle can run.
    private func abandonInflight(ofGeneration generation: Int, code: ZooKeeperError.Code) {
        let abandoned = state.withLock { state -> [InflightRequest] in
            let matching = state.inflight.filter { $0.value.generation == generation }
            for id in matching.keys { state.inflight[id] = nil }
            return Array(matching.values)
        }
        for request in abandoned { request.abandon(code) }
    }

    func finishInflight(_ id: UInt64) {
        state.withLock { _ = $0.inflight.removeValue(forKey: id) }
    }

    /// Closes a handle that has already left the table. `zookeeper_close` blocks until the
    /// C client's threads have ended, so it runs on a thread of its own.
    private func closeHandle(_ handle: Handle, generation: Int) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                zookeeper_close(handle.pointer)
                handle.context.release()
                done.resume()
            }
            thread.start()
        }
        abandonInflight(ofGeneration: generation, code: .closing)
    }

    // MARK: Session events (C completion thread)

    func sessionEvent(state cState: Int32, generation: Int, handle: OpaquePointer?) {
        let event: SessionStateMachine.ConnectionEvent
        switch cState {
        case ZOO_CONNECTED_STATE, ZOO_READONLY_STATE:
            event = .connected(sessionID: handle.flatMap { zoo_client_id($0)?.pointee.client_id } ?? 0)
        case ZOO_EXPIRED_SESSION_STATE:
            event = .expired
        case ZOO_AUTH_FAILED_STATE:
            event = .authFailed
        default:
            event = .connecting
        }
        var retired: Handle?
        var renewal: Int?
        state.withLock { state in
            let action = state.machine.connectionEvent(event, generation: generation)
            switch action {
            case .none, .closeHandle, .waitForClose:
                break
            case .publish(let sessionState):
                publish(sessionState, in: &state)
            case .authFailed:
                publish(.authFailed, in: &state)
                loseWatches(ofGeneration: nil, reason: .authFailed, in: &state)
            case .sessionExpired(let expired, let renew):
                logger.info("ZooKeeper session expired", metadata: ["generation": "\(expired)", "renew": "\(renew)"])
                publish(.expired, in: &state)
                loseWatches(ofGeneration: expired, reason: .sessionExpired, in: &state)
                retired = state.handles.removeValue(forKey: expired)
                if renew {
                    renewal = expired + 1
                    publish(.connecting, in: &state)
                }
            }
        }
        if let retired { retire(retired, generation: generation) }
        if let renewal { renew(generation: renewal) }
    }

    private func publish(_ sessionState: SessionState, in state: inout State) {
        ZooKeeperMetrics.session(sessionState)
        for (id, subscriber) in state.subscribers {
            if case .terminated = subscriber.yield(sessionState) { state.subscribers[id] = nil }
        }
    }

    private func loseWatches(ofGeneration generation: Int?, reason: ZooKeeperError.Code, in state: inout State) {
        for (id, watch) in state.watches where generation == nil || watch.generation == generation {
            watch.watcher.continuation.yield(WatchedEvent(kind: .lost(reason), path: watch.path))
            state.watches[id] = nil
        }
    }

    // MARK: Watches (C completion thread)

    func watchEvent(id: UInt64, type: Int32, path: String) {
        let kind: WatchedEvent.Kind
        switch type {
        case ZOO_CREATED_EVENT: kind = .created
        case ZOO_DELETED_EVENT: kind = .deleted
        case ZOO_CHANGED_EVENT: kind = .dataChanged
        case ZOO_CHILD_EVENT: kind = .childrenChanged
        default: return  // session events reach every watcher too; `sessionEvent` handles them
        }
        state.withLock { state in
            guard let watch = state.watches.removeValue(forKey: id) else { return }
            watch.watcher.continuation.yield(WatchedEvent(kind: kind, path: watch.path.isEmpty ? path : watch.path))
        }
    }

    func removeWatch(_ id: UInt64) {
        state.withLock { _ = $0.watches.removeValue(forKey: id) }
    }

    // MARK: Subscribers

    func sessionStates() -> AsyncStream<SessionState> {
        let (stream, continuation) = AsyncStream.makeStream(of: SessionState.self)
        state.withLock { state in
            continuation.yield(state.machine.publicState)
            if state.machine.publicState == .closed {
                continuation.finish()
            } else {
                state.subscribers[state.makeID()] = continuation
            }
        }
        return stream
    }

    var currentState: SessionState { state.withLock { $0.machine.publicState } }

    // MARK: Requests

    /// Sends one request on the live handle and awaits its reply.
    ///
    /// `send` runs with the lock held, so the handle cannot be closed under it; it must only
    /// queue the request (every `zoo_a*` call does) and return the C client's return code.
    func request<Value: Sendable>(
        _ operation: String, path: String?, watcher: Watcher? = nil, watchKind: WatchKind? = nil,
        attachment: (any Sendable & AnyObject)? = nil,
        send: (OpaquePointer, UnsafeMutableRawPointer, UInt64?) -> Int32
    ) async throws -> Value {
        if let path, let problem = pathProblem(path) {
            throw ZooKeeperError(.badArguments, operation: operation, path: path, message: "invalid path \"\(path)\": \(problem)")
        }
        // The watch id is reserved up front so the box can name it.
        let watchID: UInt64? = watcher == nil ? nil : state.withLock { $0.makeID() }
        let token = watchID.map { WatchRegistrationToken(core: self, id: $0, keptOnNoNode: watchKind == .exists) }
        let requestID = requestIDs.wrappingAdd(1, ordering: .relaxed).oldValue
        let reply = PendingReply<Value>(
            operation: operation, path: path, watch: token, attachment: attachment, inflight: (self, requestID))
        let started = ContinuousClock.now
        defer { ZooKeeperMetrics.request(operation, took: ContinuousClock.now - started) }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard reply.install(continuation) else { return }
                let context = reply.retainedContext()
                let rc = state.withLock { state -> Int32 in
                    guard let generation = state.machine.liveGeneration else {
                        return unusableCode(state.machine.publicState)
                    }
                    guard let handle = state.handles[generation] else {
                        return ZCONNECTIONLOSS.rawValue  // a new session is being opened
                    }
                    let handleState = zoo_state(handle.pointer)
                    if handleState == ZOO_EXPIRED_SESSION_STATE { return ZSESSIONEXPIRED.rawValue }
                    if handleState < 0 { return ZINVALIDSTATE.rawValue }
                    if let watchID, let watcher, let path {
                        state.watches[watchID] = WatchRegistration(generation: generation, path: path, watcher: watcher)
                    }
                    let rc = send(handle.pointer, context, watchID)
                    if rc == ZOK.rawValue {
                        state.inflight[requestID] = InflightRequest(generation: generation) { code in
                            // Gives back the reference `retainedContext()` handed to the C client.
                            Unmanaged.passUnretained(reply).release()
                            reply.fail(code)
                        }
                    }
                    return rc
                }
                if rc != ZOK.rawValue {
                    Unmanaged<PendingReply<Value>>.fromOpaque(context).release()
                    reply.fail(.init(rawValue: rc))
                }
            }
        } onCancel: {
            reply.cancel()
        }
    }

    private func unusableCode(_ state: SessionState) -> Int32 {
        switch state {
        case .expired: ZSESSIONEXPIRED.rawValue
        case .authFailed: ZAUTHFAILED.rawValue
        case .closed, .connecting, .connected, .suspended: ZooKeeperError.Code.clientClosed.rawValue
        }
    }

    func remember(credentials: String, scheme: String) {
        state.withLock { $0.credentials.append((scheme, credentials)) }
    }

    // MARK: Close

    func close() async {
        let (action, handles) = state.withLock { state -> (SessionStateMachine.Action, [(Int, Handle)]) in
            let action = state.machine.closeRequested()
            guard case .closeHandle = action else { return (action, []) }
            let handles = state.handles.map { ($0.key, $0.value) }
            state.handles = [:]
            return (action, handles)
        }
        switch action {
        case .closeHandle:
            for (generation, handle) in handles { await closeHandle(handle, generation: generation) }
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let done = state.withLock { state -> Bool in
                    if state.retiringHandles == 0 { return true }
                    state.retiredWaiters.append(waiter)
                    return false
                }
                if done { waiter.resume() }
            }
            let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                _ = state.machine.closed()
                publish(.closed, in: &state)
                loseWatches(ofGeneration: nil, reason: .clientClosed, in: &state)
                state.subscribers.values.forEach { $0.finish() }
                state.subscribers = [:]
                defer { state.closeWaiters = [] }
                return state.closeWaiters
            }
            waiters.forEach { $0.resume() }
        case .waitForClose:
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let done = state.withLock { state -> Bool in
                    if case .closed = state.machine.state { return true }
                    state.closeWaiters.append(waiter)
                    return false
                }
                if done { waiter.resume() }
            }
        case .none, .publish, .sessionExpired, .authFailed:
            break
        }
    }
}

/// Why ZooKeeper would reject `path`, or nil when it is valid. Checked here because the C
/// client silently glues a relative path onto the chroot.
func pathProblem(_ path: String) -> String? {
    guard path.hasPrefix("/") else { return "paths are absolute: start it with /" }
    guard path == "/" || !path.hasSuffix("/") else { return "remove the trailing /" }
    guard !path.contains("//") else { return "empty path component (//)" }
    guard !path.contains("\0") else { return "contains a NUL character" }
    for component in path.split(separator: "/") where component == "." || component == ".." {
        return "\".\" and \"..\" are not allowed as path components"
    }
    return nil
}

/// What the C client hands back to the session watcher: which client and which of its handles.
final class HandleContext: Sendable {
    let core: ClientCore
    let generation: Int
    init(core: ClientCore, generation: Int) {
        self.core = core
        self.generation = generation
    }
}

// MARK: - C callbacks

/// The handle's global watcher: receives the session events.
func sessionWatcher(
    _ handle: OpaquePointer?, _ type: Int32, _ state: Int32, _ path: UnsafePointer<CChar>?, _ context: UnsafeMutableRawPointer?
) {
    guard type == ZOO_SESSION_EVENT, let context else { return }
    let handleContext = Unmanaged<HandleContext>.fromOpaque(context).takeUnretainedValue()
    handleContext.core.sessionEvent(state: state, generation: handleContext.generation, handle: handle)
}

/// The watcher of every node watch; its context is the watch's id, not a pointer.
func nodeWatcher(
    _ handle: OpaquePointer?, _ type: Int32, _ state: Int32, _ path: UnsafePointer<CChar>?, _ watchID: UnsafeMutableRawPointer?
) {
    guard type != ZOO_SESSION_EVENT, let handle, let raw = zoo_get_context(handle) else { return }
    let handleContext = Unmanaged<HandleContext>.fromOpaque(raw).takeUnretainedValue()
    handleContext.core.watchEvent(
        id: UInt64(UInt(bitPattern: watchID)), type: type, path: path.map { String(cString: $0) } ?? "")
}

/// The C library logs through this (its messages carry their own level); it has no context
/// and runs on the library's threads.
func forwardCLog(_ message: UnsafePointer<CChar>?) {
    guard let message else { return }
    // Asked for (a level above `error`): show it; otherwise only for debug logging.
    cLibraryLogger.log(level: cLibraryLogRequested ? .notice : .debug, "\(String(cString: message))")
}

let cLibraryLogger = Logger(label: "zookeeper.c")
/// Whether a level above `error` was asked for (read once, at the first message).
let cLibraryLogRequested = ZooKeeperClient.cLibraryLogLevel.withLock { $0 } != .error

/// Process-wide settings of the C library, applied once before the first handle.
let configureCLibrary: Void = {
    let level = ZooKeeperClient.cLibraryLogLevel.withLock { $0 }
    let cLevel: ZooLogLevel =
        switch level {
        case .debug: ZOO_LOG_LEVEL_DEBUG
        case .info: ZOO_LOG_LEVEL_INFO
        case .warn: ZOO_LOG_LEVEL_WARN
        case .error: ZOO_LOG_LEVEL_ERROR
        }
    zoo_set_debug_level(cLevel)
}()

extension ZooKeeperClient {
    /// How much the C library itself logs (its messages go to the `zookeeper.c` logger, at notice
    /// level when asked for, else at debug). Set it before the first connection; later changes
    /// have no effect.
    public enum CLibraryLogLevel: String, Sendable, CaseIterable {
        case error, warn, info, debug
    }

    /// The C library's log level, read when the first connection is made.
    public static let cLibraryLogLevel = Mutex(CLibraryLogLevel.error)
}
