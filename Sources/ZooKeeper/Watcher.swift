/// A change ZooKeeper reported for a watched node.
public struct WatchedEvent: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The node was created (watches set by `exists` on a missing node).
        case created
        /// The node was deleted.
        case deleted
        /// The node's data changed.
        case dataChanged
        /// A child was added or removed.
        case childrenChanged
        /// The watch will never fire: its session expired (`.sessionExpired`) or the client was
        /// closed (`.clientClosed`). Read the node again to find out what changed meanwhile.
        case lost(ZooKeeperError.Code)
    }

    public let kind: Kind
    /// The watched path (relative to the client's chroot).
    public let path: String

    public init(kind: Kind, path: String) {
        self.kind = kind
        self.path = path
    }

    public var description: String { "\(kind) \(path)" }
}

/// Where the events of one-shot watches are delivered.
///
/// Pass a watcher to a read (`getData`, `exists`, `children`) to leave a watch on the node.
/// ZooKeeper fires each watch at most once, for the first change after the read; it survives a
/// lost connection (the client re-registers it when it reconnects) but not an expired session,
/// for which it delivers `.lost(.sessionExpired)`. Many watches may share one watcher: their
/// events arrive in the order ZooKeeper sent them.
///
/// ```swift
/// let (events, watcher) = Watcher.makeStream()
/// let current = try await zk.getData("/config", watcher: watcher)
/// for await event in events { ... }
/// ```
public struct Watcher: Sendable {
    let continuation: AsyncStream<WatchedEvent>.Continuation

    /// A new watcher and the stream its events arrive on.
    public static func makeStream() -> (events: AsyncStream<WatchedEvent>, watcher: Watcher) {
        let (stream, continuation) = AsyncStream.makeStream(of: WatchedEvent.self)
        return (stream, Watcher(continuation: continuation))
    }

    /// Ends the stream of events (pending watches then deliver nothing).
    public func finish() { continuation.finish() }
}

/// What kind of watch a read leaves, which decides which C call makes it.
enum WatchKind: Sendable {
    case data, exists, children
}
