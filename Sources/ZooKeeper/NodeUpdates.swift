/// A node as a stream of versions: what a watcher of one znode sees.
public enum NodeUpdate<Value: Sendable>: Sendable {
    /// The node exists with this content.
    case present(Value)
    /// The node does not exist (yet, or any more).
    case missing
}

extension NodeUpdate: Equatable where Value: Equatable {}

/// A re-arming watch: the node's current state first, then its state after every change.
///
/// ZooKeeper watches fire once; this sequence reads the node again with a new watch each time
/// one fires, so changes that happen between a watch firing and the re-read arrive as one
/// update (the latest), never out of order. It continues across an expired session (reading the
/// node again in the new session) and ends with `.clientClosed` when the client is closed.
public struct NodeUpdates<Value: Sendable>: AsyncSequence, Sendable {
    public typealias Element = NodeUpdate<Value>
    typealias Read = @Sendable (Watcher) async throws -> Value?
    let read: Read
    let version: @Sendable (Value) -> Int64

    let client: ZooKeeperClient

    public func makeAsyncIterator() -> Iterator { Iterator(client: client, read: read, version: version) }

    public struct Iterator: AsyncIteratorProtocol {
        let client: ZooKeeperClient
        let read: Read
        let version: @Sendable (Value) -> Int64
        let subscription = Subscription()
        var last: Int64?? = .none

        public mutating func next() async throws -> NodeUpdate<Value>? {
            if last != nil {
                guard let event = await subscription.nextEvent() else { return nil }
                if case .lost(let reason) = event.kind, reason != .sessionExpired {
                    throw ZooKeeperError(reason, operation: "watch", path: event.path)
                }
            }
            while true {
                let value: Value?
                do {
                    value = try await read(subscription.watcher)
                } catch let error as ZooKeeperError where error.isRetryable || error.code == .sessionExpired {
                    // Between connections or sessions: read again once connected.
                    try await client.waitUntilConnected(timeout: .seconds(3600))
                    continue
                }
                let current: Int64? = value.map(version)
                if let last, last == current {
                    // Nothing new (an event for a change already seen): wait for the next one.
                    guard let event = await subscription.nextEvent() else { return nil }
                    if case .lost(let reason) = event.kind, reason != .sessionExpired {
                        throw ZooKeeperError(reason, operation: "watch", path: event.path)
                    }
                    continue
                }
                last = .some(current)
                return value.map { .present($0) } ?? .missing
            }
        }
    }

    /// The watcher behind one iterator; ends its stream when the iterator is dropped.
    public final class Subscription: Sendable {
        let watcher: Watcher
        let events: AsyncStream<WatchedEvent>

        init() { (events, watcher) = Watcher.makeStream() }
        deinit { watcher.finish() }

        func nextEvent() async -> WatchedEvent? {
            var iterator = events.makeAsyncIterator()
            return await iterator.next()
        }
    }
}

extension ZooKeeperClient {
    /// The node's data now and after every change (see ``NodeUpdates``).
    public func dataUpdates(of path: String) -> NodeUpdates<NodeData> {
        NodeUpdates(
            read: { [self] watcher in
                while true {
                    do {
                        return try await getData(path, watcher: watcher)
                    } catch let error as ZooKeeperError where error.code == .noNode {
                        // A data watch is not left on a missing node: wait for its creation instead.
                        if try await exists(path, watcher: watcher) == nil { return nil }
                    }
                }
            },
            version: { Int64($0.stat.modifiedZxid) }, client: self)
    }

    /// The node's children now and after every change to them (see ``NodeUpdates``).
    public func childrenUpdates(of path: String) -> NodeUpdates<NodeChildren> {
        NodeUpdates(
            read: { [self] watcher in
                while true {
                    do {
                        return try await children(path, watcher: watcher)
                    } catch let error as ZooKeeperError where error.code == .noNode {
                        if try await exists(path, watcher: watcher) == nil { return nil }
                    }
                }
            },
            version: { $0.stat.childrenZxid }, client: self)
    }
}

/// A node's data as a watcher that also writes it sees it: read, or known to be a version the
/// watcher holds already (its own write) — then only its ``Stat`` was read.
public enum WatchedData: Sendable {
    /// The data was read.
    case read(NodeData)
    /// The node is at a version the watcher said it holds: its data was not read.
    case held(Stat)

    public var stat: Stat {
        switch self {
        case .read(let node): node.stat
        case .held(let stat): stat
        }
    }
}

extension ZooKeeperClient {
    /// The node's data now and after every change, like ``dataUpdates(of:)``, but for a watcher that
    /// writes the node itself: each change is first looked at with `exists` (which re-arms the
    /// watch and returns only the ``Stat``), and the data is read only when `held` says the
    /// watcher does not already hold that version. A writer's own writes then cost a stat each
    /// instead of a read of the whole document (its echo).
    public func dataUpdates(of path: String, unlessHeld held: @escaping @Sendable (Stat) async -> Bool) -> NodeUpdates<WatchedData> {
        NodeUpdates(
            read: { [self] watcher in
                guard let stat = try await exists(path, watcher: watcher) else { return nil }
                if await held(stat) { return .held(stat) }
                do {
                    // No second watch: the `exists` above armed it, and a change since fires it.
                    return .read(try await getData(path))
                } catch let error as ZooKeeperError where error.code == .noNode {
                    return nil  // deleted meanwhile: the watch fires for it too
                }
            },
            version: { Int64($0.stat.modifiedZxid) }, client: self)
    }
}
