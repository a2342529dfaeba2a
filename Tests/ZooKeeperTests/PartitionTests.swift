import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// The chaos harness's network partition (``LinkProxy``), tested on its own: cutting a client's
/// link must look to both sides like a partition — the server expires the session while the
/// client is cut off, and the client hears of it only once healed.
@Suite("Network partitions through a link proxy", .timeLimit(.minutes(1)))
struct PartitionTests {
    @Test func aCutLinkExpiresTheSessionAndHealingBringsTheNews() async throws {
        let ensemble = try await LocalEnsemble.shared()
        let root = try await ensemble.makeChroot("partition")
        let chroot = String(root[root.firstIndex(of: "/")!...])
        let link = try LinkProxy(servers: ensemble.connectionString.split(separator: ",").map(String.init))
        let zk = try await ZooKeeperClient.connect(to: link.connectionString(chroot: chroot), sessionTimeout: .seconds(2))
        let observer = try await ZooKeeperClient.connect(to: root)
        try await closing(zk, observer) {
            // The partition is what this test is about: a stall of a loaded machine before it is
            // waited out — the create repeated (a lost answer may have created the node already)
            // until the node is there and belongs to the session the cut is to end.
            let (events, watcher) = Watcher.makeStream()
            var session: Int64 = 0
            while true {
                try await zk.waitUntilConnected(timeout: .seconds(30))
                guard let current = zk.sessionID else { continue }
                session = current
                do {
                    _ = try await zk.create("/eph", mode: .ephemeral)
                } catch let error as ZooKeeperError where error.code == .nodeExists || error.isRetryable {}
                if try await observer.exists("/eph", watcher: watcher)?.ephemeralOwner == session { break }
            }
            var states = zk.sessionStates().makeAsyncIterator()
            #expect(await states.next(skipping: [.suspended, .connecting]) == .connected(sessionID: session))

            link.cut()
            // The client hears nothing and gives up on its connection...
            #expect(await states.next() == .suspended)
            // ...and the server, hearing nothing either, ends the session: its ephemeral node goes.
            var deletions = events.makeAsyncIterator()
            #expect(await deletions.next()?.kind == .deleted)
            #expect(zk.sessionState == .suspended)

            link.heal()
            #expect(await states.next(skipping: [.suspended]) == .expired)
            #expect(await states.next() == .connecting)
            guard case .connected(let renewed) = await states.next() else {
                Issue.record("expected a new session after the partition healed")
                return
            }
            #expect(renewed != session)
            #expect(try await zk.exists("/eph") == nil)
        }
    }
}
