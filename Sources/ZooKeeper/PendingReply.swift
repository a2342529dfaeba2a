import CZooKeeper
import Synchronization

/// One request in flight through the C client: the continuation of the task awaiting it.
///
/// The C client hands the box's address back to exactly one completion call. The box is
/// retained for the C side when the request is sent and released by that completion, or by the
/// sender when the `zoo_a*` call itself fails (then no completion comes). Cancellation resumes
/// the awaiting task early; the completion that arrives later finds nothing to resume.
final class PendingReply<Value: Sendable>: Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<Value, any Error>)
        case cancelledBeforeStart
        case finished
    }

    let operation: String
    let path: String?
    /// A watch registered with this request, removed again if the request fails (the C client
    /// registers a watch only on success — and for `exists`, also on "no node").
    let watch: WatchRegistrationToken?
    /// Request buffers that must live as long as the request (a `multi`'s results).
    let attachment: (any Sendable & AnyObject)?
    /// The client's record of this request while the C client has it.
    let inflight: (core: ClientCore, id: UInt64)?
    private let state = Mutex<State>(.idle)

    init(
        operation: String, path: String?, watch: WatchRegistrationToken? = nil, attachment: (any Sendable & AnyObject)? = nil,
        inflight: (core: ClientCore, id: UInt64)? = nil
    ) {
        self.operation = operation
        self.path = path
        self.watch = watch
        self.attachment = attachment
        self.inflight = inflight
    }

    /// Stores the continuation. Returns false (having resumed it with `CancellationError`)
    /// when the task was cancelled before the request could start.
    func install(_ continuation: CheckedContinuation<Value, any Error>) -> Bool {
        let cancelled = state.withLock { state -> Bool in
            switch state {
            case .idle:
                state = .waiting(continuation)
                return false
            case .cancelledBeforeStart:
                state = .finished
                return true
            case .waiting, .finished:
                preconditionFailure("a PendingReply is installed once")
            }
        }
        if cancelled { continuation.resume(throwing: CancellationError()) }
        return !cancelled
    }

    func cancel() {
        let continuation = state.withLock { state -> CheckedContinuation<Value, any Error>? in
            switch state {
            case .idle:
                state = .cancelledBeforeStart
                return nil
            case .waiting(let continuation):
                state = .finished
                return continuation
            case .cancelledBeforeStart, .finished:
                return nil
            }
        }
        continuation?.resume(throwing: CancellationError())
    }

    func succeed(_ value: Value) { resume(.success(value)) }

    func fail(_ code: ZooKeeperError.Code) {
        var code = code
        // The C client answers what it still held with ZCLOSING when its handle is closed. While
        // this client lives, a handle is closed only because its session expired (a new one is
        // being opened): say so. "The client was closed" made callers give up for good — an
        // executor stopped taking work after a session expiry on a flapping link.
        if code == .closing, let inflight, inflight.core.currentState != .closed { code = .sessionExpired }
        resume(.failure(ZooKeeperError(code, operation: operation, path: path)))
    }

    func resume(_ result: Result<Value, ZooKeeperError>) {
        if let inflight { inflight.core.finishInflight(inflight.id) }
        if case .failure(let error) = result, let watch {
            let keepsWatch = watch.keptOnNoNode && error.code == .noNode
            if !keepsWatch { watch.core.removeWatch(watch.id) }
        }
        let continuation = state.withLock { state -> CheckedContinuation<Value, any Error>? in
            switch state {
            case .waiting(let continuation):
                state = .finished
                return continuation
            case .idle, .cancelledBeforeStart, .finished:
                state = .finished
                return nil
            }
        }
        continuation?.resume(with: result.mapError { $0 as any Error })
    }

    /// The retained address handed to the C client as the request's `data`.
    func retainedContext() -> UnsafeMutableRawPointer { Unmanaged.passRetained(self).toOpaque() }

    /// Takes back the reference given to the C client, exactly once per request.
    static func takeContext(_ data: UnsafeRawPointer?) -> PendingReply<Value> {
        Unmanaged<PendingReply<Value>>.fromOpaque(data!).takeRetainedValue()
    }
}

/// Identifies a watch registered with a request, so a failed request can remove it.
struct WatchRegistrationToken: Sendable {
    let core: ClientCore
    let id: UInt64
    /// `exists` on a missing node still sets a watch (for the node's creation).
    let keptOnNoNode: Bool
}

// MARK: - C completion trampolines. Each takes back the reference of its request's box.

func voidCompletion(_ rc: Int32, _ data: UnsafeRawPointer?) {
    let reply = PendingReply<Void>.takeContext(data)
    rc == ZOK.rawValue ? reply.succeed(()) : reply.fail(.init(rawValue: rc))
}

func statCompletion(_ rc: Int32, _ stat: UnsafePointer<CZooKeeper.Stat>?, _ data: UnsafeRawPointer?) {
    let reply = PendingReply<Stat>.takeContext(data)
    guard rc == ZOK.rawValue else { return reply.fail(.init(rawValue: rc)) }
    guard let stat else { return reply.fail(.unexpectedResponse) }
    reply.succeed(Stat(stat.pointee))
}

/// For `exists`: "no node" is an answer, not an error.
func optionalStatCompletion(_ rc: Int32, _ stat: UnsafePointer<CZooKeeper.Stat>?, _ data: UnsafeRawPointer?) {
    let reply = PendingReply<Stat?>.takeContext(data)
    if rc == ZNONODE.rawValue { return reply.succeed(nil) }
    guard rc == ZOK.rawValue else { return reply.fail(.init(rawValue: rc)) }
    guard let stat else { return reply.fail(.unexpectedResponse) }
    reply.succeed(Stat(stat.pointee))
}

func dataCompletion(
    _ rc: Int32, _ value: UnsafePointer<CChar>?, _ length: Int32, _ stat: UnsafePointer<CZooKeeper.Stat>?,
    _ data: UnsafeRawPointer?
) {
    let reply = PendingReply<NodeData>.takeContext(data)
    guard rc == ZOK.rawValue else { return reply.fail(.init(rawValue: rc)) }
    guard let stat else { return reply.fail(.unexpectedResponse) }
    reply.succeed(NodeData(data: bytes(value, length), stat: Stat(stat.pointee)))
}

func stringCompletion(_ rc: Int32, _ value: UnsafePointer<CChar>?, _ data: UnsafeRawPointer?) {
    let reply = PendingReply<String>.takeContext(data)
    guard rc == ZOK.rawValue else { return reply.fail(.init(rawValue: rc)) }
    reply.succeed(value.map { String(cString: $0) } ?? "")
}

func childrenCompletion(
    _ rc: Int32, _ strings: UnsafePointer<String_vector>?, _ stat: UnsafePointer<CZooKeeper.Stat>?,
    _ data: UnsafeRawPointer?
) {
    let reply = PendingReply<NodeChildren>.takeContext(data)
    guard rc == ZOK.rawValue else { return reply.fail(.init(rawValue: rc)) }
    guard let stat else { return reply.fail(.unexpectedResponse) }
    var names: [String] = []
    if let strings, let items = strings.pointee.data {
        names.reserveCapacity(Int(strings.pointee.count))
        for index in 0..<Int(strings.pointee.count) {
            if let name = items[index] { names.append(String(cString: name)) }
        }
    }
    reply.succeed(NodeChildren(names: names, stat: Stat(stat.pointee)))
}

func aclCompletion(
    _ rc: Int32, _ acl: UnsafeMutablePointer<ACL_vector>?, _ stat: UnsafeMutablePointer<CZooKeeper.Stat>?,
    _ data: UnsafeRawPointer?
) {
    let reply = PendingReply<([ACL], Stat)>.takeContext(data)
    guard rc == ZOK.rawValue else { return reply.fail(.init(rawValue: rc)) }
    guard let stat else { return reply.fail(.unexpectedResponse) }
    var entries: [ACL] = []
    if let acl, let items = acl.pointee.data {
        for index in 0..<Int(acl.pointee.count) { entries.append(ACL(items[index])) }
    }
    reply.succeed((entries, Stat(stat.pointee)))
}

/// The completion for requests whose answer nobody awaits (credentials re-sent on a new session).
func ignoredCompletion(_ rc: Int32, _ data: UnsafeRawPointer?) {}

func bytes(_ value: UnsafePointer<CChar>?, _ length: Int32) -> [UInt8] {
    guard let value, length > 0 else { return [] }
    return value.withMemoryRebound(to: UInt8.self, capacity: Int(length)) {
        Array(UnsafeBufferPointer(start: $0, count: Int(length)))
    }
}
