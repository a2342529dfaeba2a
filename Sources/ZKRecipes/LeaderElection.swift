import Logging
import Synchronization
import ZooKeeper

/// Proof of leadership, to attach to every write the leader makes.
///
/// The leader's election node exists exactly as long as its leadership can be valid: if its
/// session expires the node is deleted and a successor may be elected. A `multi` that starts
/// with ``fence`` therefore fails (`.noNode`) once the leader has been deposed, however long it
/// was paused or partitioned (ARCHITECTURE.md, promise 2).
public struct Leadership: Sendable, Hashable {
    /// The leader's election node.
    public let nodePath: String
    /// The session that owns the node.
    public let sessionID: Int64
    /// The leader's term: the election node's sequence number, increasing with every election.
    public let term: Int64

    /// A `check` of the election node. Put it first in every `multi` the leader writes.
    public var fence: MultiOperation { .check(path: nodePath) }
}

/// Leader election among any number of participants (ZooKeeper's ephemeral-sequential recipe).
///
/// Each participant creates an ephemeral sequential node under the election path; the lowest
/// sequence number leads; every other participant watches only its predecessor (no herd effect
/// when the leader goes). Leadership is given up — the body is cancelled — as soon as the
/// connection is suspended, the session expires or the election node disappears, because from
/// then on another participant may lead (Curator's rule).
public final class LeaderElection: Sendable {
    /// Why a term of leadership ended other than by its body returning.
    public struct LeadershipLost: Error, Sendable, CustomStringConvertible {
        public let reason: String
        public var description: String { "leadership lost: \(reason)" }
    }

    public let client: ZooKeeperClient
    /// The election directory, e.g. `/drover/election`.
    public let path: String
    /// Stored in the election node so others can see who leads (e.g. a host name).
    public let participantID: String
    /// The ACLs of the election directory and of the participants' nodes.
    public let directoryACL: [ACL]
    public let nodeACL: [ACL]
    let logger: Logger
    private let staleNodes = Mutex<[String]>([])

    public init(
        client: ZooKeeperClient, path: String, participantID: String, directoryACL: [ACL] = ACL.openUnsafe, nodeACL: [ACL] = ACL.openUnsafe,
        logger: Logger = Logger(label: "zookeeper.election")
    ) {
        self.client = client
        self.path = path
        self.participantID = participantID
        self.directoryACL = directoryACL
        self.nodeACL = nodeACL
        self.logger = logger
    }

    /// Waits until this participant leads, then runs `body` for as long as it leads.
    ///
    /// Returns what `body` returns (and resigns). Throws ``LeadershipLost`` when leadership ends
    /// first: `body` has been cancelled by then. Call it again to stand for the next term.
    public func withLeadership<T: Sendable>(_ body: @Sendable @escaping (Leadership) async throws -> T) async throws -> T {
        let leadership = try await campaign()
        // However the term ends, its node is to be deleted (now, or by the next campaign).
        staleNodes.withLock { $0.append(leadership.nodePath) }
        logger.info("leading", metadata: ["node": "\(leadership.nodePath)", "term": "\(leadership.term)"])
        let result: T
        do {
            result = try await lead(leadership, body)
        } catch {
            await resignEvenIfCancelled()
            throw error
        }
        await resign()
        return result
    }

    private func lead<T: Sendable>(_ leadership: Leadership, _ body: @Sendable @escaping (Leadership) async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body(leadership) }
            group.addTask { [self] in
                try await watchUntilLost(leadership)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw LeadershipLost(reason: "the body ended without a result")
            }
            return value
        }
    }

    /// Gives up the election node even when the calling task is cancelled (a cancelled task's
    /// requests are not sent), so the next participant need not wait for the session to end.
    private func resignEvenIfCancelled() async {
        await Task { await resign() }.value
    }

    /// Stands for election again and again until the task is cancelled: every time this
    /// participant is elected, `body` runs for that term (and is cancelled when the term ends).
    /// Lost terms and connection problems just lead to the next campaign.
    public func leadUntilCancelled(_ body: @Sendable @escaping (Leadership) async throws -> Void) async throws {
        while !Task.isCancelled {
            do {
                try await withLeadership(body)
            } catch let lost as LeadershipLost {
                logger.info("leadership lost; standing again", metadata: ["reason": "\(lost.reason)"])
            } catch is CancellationError {
                return
            } catch let error as ZooKeeperError where error.isRetryable || error.code == .sessionExpired || error.code == .noNode {
                logger.info("election interrupted; standing again once connected", metadata: ["error": "\(error)"])
                // While ZooKeeper is unreachable every request fails at once: without this wait
                // the campaign would spin.
                do {
                    try await client.waitUntilConnected(timeout: .seconds(3600))
                    try await Task.sleep(for: .milliseconds(100))
                } catch is CancellationError {
                    return
                } catch let error as ZooKeeperError where error.code == .connectTimeout {
                    continue
                }
            }
        }
    }

    /// Who leads now (the participant id stored in the lowest election node), if anyone.
    public func currentLeader() async throws -> String? {
        let nodes: [ElectionNode]
        do {
            nodes = try await sortedNodes()
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil  // no participant has stood yet
        }
        for node in nodes {
            if let data = try? await client.getData(path + "/" + node.name) { return String(decoding: data.data, as: UTF8.self) }
        }
        return nil
    }

    /// Who leads, once someone does: waits on a watch of the election's nodes, not in a poll.
    public func awaitLeader() async throws -> String {
        for try await _ in client.childrenUpdates(of: path) {
            if let leader = try await currentLeader() { return leader }
        }
        throw CancellationError()  // the client closed, or the task was cancelled
    }

    /// Deletes the election nodes this participant left behind (best effort).
    public func resign() async {
        _ = await deleteStaleNodes()
    }

    /// Deletes the election nodes this participant left behind; the first failure that leaves
    /// one in place (it is kept, to be deleted next time).
    private func deleteStaleNodes() async -> ZooKeeperError? {
        let nodes = staleNodes.withLock { nodes in
            defer { nodes = [] }
            return nodes
        }
        var failure: ZooKeeperError?
        for node in nodes {
            do {
                try await client.delete(node)
            } catch let error as ZooKeeperError where error.code == .noNode {
            } catch let error as ZooKeeperError {
                staleNodes.withLock { $0.append(node) }
                failure = failure ?? error
            } catch {
                staleNodes.withLock { $0.append(node) }  // cancelled: deleted next time
            }
        }
        return failure
    }

    // MARK: Campaign

    private func campaign() async throws -> Leadership {
        // Nodes of an earlier term of this session would stand in our own way — and in everyone's:
        // a new node behind one of them waits for a participant that waits for the old one (seen
        // when a delete's answer was lost on a flapping link: no manager led again). Stand only
        // once they are gone.
        if let failure = await deleteStaleNodes(), failure.isRetryable { throw failure }
        try await client.createPath(path, acl: directoryACL)
        let nodePath = try await client.createProtected(path + "/n-", data: Array(participantID.utf8), mode: .ephemeralSequential, acl: nodeACL)
        let ownName = String(nodePath.split(separator: "/").last!)
        do {
            while true {
                // A lagging server could still list a predecessor that is gone: sync first.
                try await client.sync(path)
                let nodes = try await sortedNodes()
                guard let index = nodes.firstIndex(where: { $0.name == ownName }) else {
                    throw LeadershipLost(reason: "the election node \(nodePath) disappeared (session expired)")
                }
                let own = nodes[index]
                if index == 0 {
                    guard let sessionID = client.sessionID,
                        let stat = try await client.exists(nodePath), stat.ephemeralOwner == sessionID
                    else {
                        try await client.waitUntilConnected(timeout: client.sessionTimeout)
                        continue
                    }
                    return Leadership(nodePath: nodePath, sessionID: sessionID, term: own.sequence)
                }
                // A node of this session's ahead of ours (of an earlier term, or of a create whose
                // answer was lost) would stand in our way forever, and in the way of everyone
                // between: delete it, wherever it is in the line.
                var ownAhead = false
                for node in nodes[..<index] {
                    let other = path + "/" + node.name
                    if let stat = try await client.exists(other), stat.ephemeralOwner == client.sessionID {
                        do {
                            try await client.delete(other)
                        } catch let error as ZooKeeperError where error.code == .noNode {}
                        ownAhead = true
                    }
                }
                if ownAhead { continue }
                // Watch only the predecessor: when it goes, this participant may be next.
                let predecessor = path + "/" + nodes[index - 1].name
                let (events, watcher) = Watcher.makeStream()
                guard try await client.exists(predecessor, watcher: watcher) != nil else { continue }
                for await _ in events { break }
                try Task.checkCancellation()
            }
        } catch {
            staleNodes.withLock { $0.append(nodePath) }
            await resignEvenIfCancelled()
            throw error
        }
    }

    /// Returns when leadership can no longer be trusted.
    private func watchUntilLost(_ leadership: Leadership) async throws {
        let (events, watcher) = Watcher.makeStream()
        let states = client.sessionStates()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await state in states {
                    switch state {
                    case .connected(let id) where id == leadership.sessionID: continue
                    case .connected: throw LeadershipLost(reason: "the session changed")
                    case .connecting, .suspended, .expired, .authFailed, .closed:
                        throw LeadershipLost(reason: "the ZooKeeper session is \(state)")
                    }
                }
                throw LeadershipLost(reason: "the client was closed")
            }
            group.addTask { [client] in
                guard try await client.exists(leadership.nodePath, watcher: watcher) != nil else {
                    throw LeadershipLost(reason: "the election node is gone")
                }
                for await event in events {
                    throw LeadershipLost(reason: "the election node changed (\(event.kind))")
                }
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    struct ElectionNode {
        let name: String
        let sequence: Int64
    }

    private func sortedNodes() async throws -> [ElectionNode] {
        try await client.children(path).names.compactMap { name -> ElectionNode? in
            Self.term(ofNode: name).map { ElectionNode(name: name, sequence: $0) }
        }.sorted { $0.sequence < $1.sequence }
    }

    /// The term (sequence number) an election node's name or path carries, e.g. the `7` of
    /// `…/_c_<uuid>-n-0000000007`; nil for anything else.
    public static func term(ofNode nameOrPath: some StringProtocol) -> Int64? {
        guard let dash = nameOrPath.lastIndex(of: "-") else { return nil }
        return Int64(nameOrPath[nameOrPath.index(after: dash)...])
    }
}
