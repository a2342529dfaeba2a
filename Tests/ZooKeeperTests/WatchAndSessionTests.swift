import Foundation
import Synchronization
import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

@Suite("Watches and sessions against a real ZooKeeper", .timeLimit(.minutes(2)))
struct WatchAndSessionTests {
    @Test func watchesFireOncePerChangeInServerOrder() async throws {
        try await LocalEnsemble.shared().withClient(chroot: "watch-order") { zk in
            let paths = (0..<10).map { "/w\($0)" }
            for path in paths { _ = try await zk.create(path, data: [0]) }
            _ = try await zk.create("/sentinel")

            let (events, watcher) = Watcher.makeStream()
            var iterator = events.makeAsyncIterator()
            for path in paths { _ = try await zk.getData(path, watcher: watcher) }

            // One transaction changes the nodes in reverse order: the events come in that order.
            try await zk.multi(paths.reversed().map { .setData(path: $0, data: [1]) })
            for path in paths.reversed() {
                #expect(await iterator.next() == WatchedEvent(kind: .dataChanged, path: path))
            }

            // The watches were used up: a second change of the same nodes fires nothing, so the
            // next event is the sentinel's.
            try await zk.multi(paths.map { .setData(path: $0, data: [2]) })
            _ = try await zk.getData("/sentinel", watcher: watcher)
            try await zk.setData("/sentinel", data: [1])
            #expect(await iterator.next() == WatchedEvent(kind: .dataChanged, path: "/sentinel"))

            // exists on a missing node, children, and deletion.
            #expect(try await zk.exists("/later", watcher: watcher) == nil)
            _ = try await zk.create("/later")
            #expect(await iterator.next() == WatchedEvent(kind: .created, path: "/later"))
            _ = try await zk.children("/later", watcher: watcher)
            _ = try await zk.create("/later/child")
            #expect(await iterator.next() == WatchedEvent(kind: .childrenChanged, path: "/later"))
            _ = try await zk.getData("/later/child", watcher: watcher)
            try await zk.delete("/later/child")
            #expect(await iterator.next() == WatchedEvent(kind: .deleted, path: "/later/child"))

            // A read that fails leaves no watch behind (nothing fires for it later).
            _ = await codeOf { try await zk.getData("/ghost", watcher: watcher) }
            _ = try await zk.create("/ghost")
            try await zk.setData("/ghost", data: [1])
            _ = try await zk.getData("/sentinel", watcher: watcher)
            try await zk.setData("/sentinel", data: [2])
            #expect(await iterator.next() == WatchedEvent(kind: .dataChanged, path: "/sentinel"))
        }
    }

    @Test func dataUpdatesSeeEveryVersionInOrder() async throws {
        try await LocalEnsemble.shared().withTwoClients(chroot: "updates") { reader, writer in
            var updates = reader.dataUpdates(of: "/doc").makeAsyncIterator()
            #expect(try await updates.next() == .missing)
            _ = try await writer.create("/doc", data: [0])
            for value in 1...20 {
                // Lock step: each version is seen exactly once before the next is written.
                guard case .present(let node) = try await updates.next() else {
                    Issue.record("expected the document")
                    return
                }
                #expect(node.data == [UInt8(value - 1)])
                try await writer.setData("/doc", data: [UInt8(value)], version: node.stat.version)
            }
            guard case .present(let last) = try await updates.next() else {
                Issue.record("expected the document")
                return
            }
            #expect(last.data == [20])
            try await writer.delete("/doc")
            #expect(try await updates.next() == .missing)
        }
    }

    @Test func aWriterWatchingItsOwnNodeReadsOnlyTheVersionsItDoesNotHold() async throws {
        try await LocalEnsemble.shared().withTwoClients(chroot: "updates-held") { own, other in
            _ = try await own.create("/doc", data: [0])
            // The versions this writer wrote itself, as it would remember them.
            let written = Mutex<Set<Int32>>([])
            var updates = own.dataUpdates(of: "/doc", unlessHeld: { stat in written.withLock { $0.contains(stat.version) } }).makeAsyncIterator()
            guard case .present(.read(let first)) = try await updates.next() else {
                Issue.record("expected the document read")
                return
            }
            #expect(first.data == [0])
            // Its own write: seen, not read.
            let mine = try await own.setData("/doc", data: [1])
            written.withLock { _ = $0.insert(mine.version) }
            guard case .present(.held(let stat)) = try await updates.next() else {
                Issue.record("expected its own version, not read")
                return
            }
            #expect(stat.version == mine.version)
            // Another client's write: read.
            _ = try await other.setData("/doc", data: [2])
            guard case .present(.read(let theirs)) = try await updates.next() else {
                Issue.record("expected the other client's version read")
                return
            }
            #expect(theirs.data == [2])
            try await other.delete("/doc")
            guard case .missing = try await updates.next() else {
                Issue.record("expected the node gone")
                return
            }
        }
    }

    /// The servers keep a session between 2 and 20 of their ticks (500 ms here), whatever is asked:
    /// what they granted is what bounds anything timed by the session (an executor's claim window).
    @Test func theGrantedSessionTimeoutIsTheServersNotTheOneAskedFor() async throws {
        let ensemble = try await LocalEnsemble.start(nodes: 1)
        do {
            let long = try await ZooKeeperClient.connect(to: ensemble.connectionString, sessionTimeout: .seconds(60))
            try await closing(long) { #expect(long.grantedSessionTimeout == .seconds(10)) }
            let short = try await ZooKeeperClient.connect(to: ensemble.connectionString, sessionTimeout: .milliseconds(100))
            try await closing(short) { #expect(short.grantedSessionTimeout == .seconds(1)) }
        } catch {
            await ensemble.stop()
            throw error
        }
        await ensemble.stop()
    }

    @Test func aWatchSetBeforeADisconnectStillFires() async throws {
        let ensemble = try await LocalEnsemble.start(nodes: 1)
        do {
            let zk = try await ZooKeeperClient.connect(to: ensemble.connectionString, sessionTimeout: .seconds(20))
            try await closing(zk) {
                _ = try await zk.create("/n", data: [0])
                let (events, watcher) = Watcher.makeStream()
                _ = try await zk.getData("/n", watcher: watcher)
                var states = zk.sessionStates().makeAsyncIterator()
                #expect(await states.next() == .connected(sessionID: zk.sessionID!))
                let session = zk.sessionID

                try await ensemble.kill(node: 1)
                #expect(await states.next() == .suspended)
                try await ensemble.restart(node: 1)
                #expect(await states.next() == .connected(sessionID: session!))

                let other = try await ZooKeeperClient.connect(to: ensemble.connectionString)
                try await closing(other) { try await other.setData("/n", data: [1]) }
                var iterator = events.makeAsyncIterator()
                #expect(await iterator.next() == WatchedEvent(kind: .dataChanged, path: "/n"))
            }
        } catch {
            await ensemble.stop()
            throw error
        }
        await ensemble.stop()
    }

    @Test func aForcedExpiryIsReportedAndANewSessionFollows() async throws {
        try await LocalEnsemble.shared().withClient(chroot: "expiry") { zk in
            _ = try await zk.create("/eph", mode: .ephemeral)
            let (events, watcher) = Watcher.makeStream()
            _ = try await zk.getData("/eph", watcher: watcher)
            let oldSession = try #require(zk.sessionID)
            var states = zk.sessionStates().makeAsyncIterator()
            #expect(await states.next() == .connected(sessionID: oldSession))

            try await zk.expireSessionForTesting()

            // The intruder's connection first pushes this client off (suspended; it may even
            // reconnect to the old session once), then the server reports the session gone.
            #expect(await states.next(skipping: [.suspended, .connected(sessionID: oldSession)]) == .expired)
            #expect(await states.next() == .connecting)
            guard case .connected(let newSession) = await states.next() else {
                Issue.record("expected a new session")
                return
            }
            #expect(newSession != oldSession)
            // Either the deletion of the ephemeral node reached the client before the session
            // ended, or the watch was lost with the session: it fires exactly one of the two.
            var iterator = events.makeAsyncIterator()
            let event = try #require(await iterator.next())
            #expect(event.path == "/eph")
            #expect(event.kind == .deleted || event.kind == .lost(.sessionExpired))
            #expect(try await zk.exists("/eph") == nil)
            _ = try await zk.create("/eph", mode: .ephemeral)
        }
    }

    @Test func withoutRenewalAnExpiredClientStaysExpired() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("no-renew")
        let zk = try await ZooKeeperClient.connect(to: root, renewsExpiredSessions: false)
        try await closing(zk) {
            var states = zk.sessionStates().makeAsyncIterator()
            let session = await states.next()
            try await zk.expireSessionForTesting()
            #expect(await states.next(skipping: [.suspended, session!]) == .expired)
            #expect(await codeOf { try await zk.getData("/") } == .sessionExpired)
        }
    }
}

extension AsyncStream<SessionState>.Iterator {
    /// The next state that is not one of `skipped`.
    mutating func next(skipping skipped: [SessionState]) async -> SessionState? {
        while let state = await next() {
            if !skipped.contains(state) { return state }
        }
        return nil
    }
}
