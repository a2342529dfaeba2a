import Foundation
import Testing
import ZKRecipes
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

struct Counter: Codable, Sendable, Equatable {
    var value: Int
}

@Suite("zkstate: versioned documents", .timeLimit(.minutes(2)))
struct VersionedDocumentTests {
    @Test func concurrentCompareAndSetIncrementsAddUp() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("zkstate")
        let clients = 4
        let increments = 1_000
        let conflicts = LockedValue(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<clients {
                group.addTask {
                    let zk = try await ZooKeeperClient.connect(to: root)
                    try await closing(zk) {
                        let document = VersionedDocument<Counter>(client: zk, path: "/counter")
                        for _ in 0..<increments {
                            var attempts = 0
                            try await document.update { current in
                                attempts += 1
                                return Counter(value: (current?.value ?? 0) + 1)
                            }
                            conflicts.update { $0 += attempts - 1 }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let zk = try await ZooKeeperClient.connect(to: root)
        try await closing(zk) {
            let final = try #require(try await VersionedDocument<Counter>(client: zk, path: "/counter").read())
            #expect(final.document.value == clients * increments)
            #expect(final.version == Int32(clients * increments - 1))  // one create, then 3,999 sets
        }
        print("zkstate: \(clients * increments) increments by \(clients) clients, \(conflicts.value) version conflicts retried")
    }

    @Test func anUpdateFromAKnownVersionSavesTheReadAndNeverActsOnStaleContent() async throws {
        try await LocalEnsemble.shared().withClient(chroot: "zkstate-known") { zk in
            let document = VersionedDocument<Counter>(client: zk, path: "/doc")
            let first = try await document.create(Counter(value: 1))
            let second = try #require(try await document.update { _ in Counter(value: 2) })
            // Current: applied on it, one write.
            let third = try #require(try await document.update(startingFrom: second) { Counter(value: ($0?.value ?? 0) + 1) })
            #expect(third == Versioned(document: Counter(value: 3), version: 2))
            // Stale, and the change applies to it: the compare-and-set fails, it is read again.
            let fourth = try #require(try await document.update(startingFrom: first) { Counter(value: ($0?.value ?? 0) + 1) })
            #expect(fourth == Versioned(document: Counter(value: 4), version: 3))
            // Stale, and the change declines on it (value 1 is odd) but not on what is there now:
            // it must be decided on the current document, not skipped.
            let fifth = try #require(try await document.update(startingFrom: first) { current in
                guard let current, current.value.isMultiple(of: 2) else { return nil }
                return Counter(value: current.value + 1)
            })
            #expect(fifth == Versioned(document: Counter(value: 5), version: 4))
        }
    }

    @Test func watchersSeeNewVersionsAndMalformedDataIsNamed() async throws {
        try await LocalEnsemble.shared().withClient(chroot: "zkstate-watch") { zk in
            let document = VersionedDocument<Counter>(client: zk, path: "/doc")
            var updates = document.updates().makeAsyncIterator()
            #expect(try await updates.next() == .some(nil))
            try await document.create(Counter(value: 1))
            #expect(try await updates.next() == Versioned(document: Counter(value: 1), version: 0))
            try await document.update { _ in Counter(value: 2) }
            #expect(try await updates.next() == Versioned(document: Counter(value: 2), version: 1))

            // Another program writes garbage: readers get an error that names the node.
            try await zk.setData("/doc", data: Array("not json".utf8))
            let error = await #expect(throws: MalformedDocument.self) { try await document.read() }
            #expect(error?.path == "/doc")
            #expect(error?.version == 2)

            // A document over the size limit is refused before anything is written.
            let small = VersionedDocument<[String]>(client: zk, path: "/list", maximumBytes: 100)
            await #expect(throws: ZooKeeperError.self) { try await small.create(Array(repeating: "xxxxxxxx", count: 50)) }
            #expect(try await zk.exists("/list") == nil)
        }
    }
}
