import ArgumentParser
import Foundation
import Logging
import ZKRecipes
import ZooKeeper

/// A short tour of Drover's foundation against a real ZooKeeper: leader election with a
/// fenced write, the durable queue and a compare-and-set document.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show Drover's ZooKeeper foundation working: election, fencing, queue, versioned state.",
        discussion: "Works under its own path (/drover-demo/<random>) and deletes it at the end.")

    @OptionGroup var zookeeper: ZooKeeperOptions

    @Option(help: "Items to send through the queue.")
    var items: Int = 10_000

    func validate() throws {
        guard items > 0 else { throw ValidationError("--items must be positive") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        let hosts = zookeeper.resolvedConnectionString
        let clock = ContinuousClock()
        let base = "/drover-demo/\(UUID().uuidString.prefix(8).lowercased())"

        step("Connecting to ZooKeeper at \(hosts)")
        let admin: ZooKeeperClient
        do {
            applyCLibraryLogLevel()
            admin = try await ZooKeeperClient.connect(to: hosts, connectTimeout: .seconds(zookeeper.connectTimeout))
        } catch let error as ZooKeeperError {
            throw ExitMessage(error.message)
        }
        try await admin.createPath(base)
        let chroot = hosts + base
        detail("session \(admin.sessionState); working under \(base)")

        do {
            try await electionTour(chroot: chroot, clock: clock)
            try await queueTour(chroot: chroot, clock: clock)
            try await documentTour(chroot: chroot)
        } catch {
            try? await admin.deleteRecursively(base)
            await admin.close()
            throw error
        }
        try await admin.deleteRecursively(base)
        await admin.close()
        step("Done: everything the demo made is deleted.")
    }

    private func electionTour(chroot: String, clock: ContinuousClock) async throws {
        step("Leader election: two managers stand, one leads")
        let first = try await ZooKeeperClient.connect(to: chroot, sessionTimeout: .seconds(4))
        let second = try await ZooKeeperClient.connect(to: chroot, sessionTimeout: .seconds(4))
        let (terms, termStarted) = AsyncStream.makeStream(of: (String, Leadership).self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (name, client) in [("manager-a", first), ("manager-b", second)] {
                group.addTask {
                    let election = LeaderElection(client: client, path: "/election", participantID: name)
                    try await election.leadUntilCancelled { leadership in
                        termStarted.yield((name, leadership))
                        try await Task.sleep(for: .seconds(3600))
                    }
                }
            }
            var iterator = terms.makeAsyncIterator()
            guard let (leader, term) = await iterator.next() else { return }
            detail("\(leader) leads (term \(term.term))")
            let leaderClient = leader == "manager-a" ? first : second
            let started = clock.now
            try await leaderClient.expireSessionForTesting()
            guard let (next, nextTerm) = await iterator.next() else { return }
            detail("\(leader)'s session expired; \(next) leads (term \(nextTerm.term)) after \(format(clock.now - started))")
            // On its new session (a connection loss proves nothing either way: try again).
            try await leaderClient.waitUntilConnected(timeout: .seconds(30))
            while true {
                do {
                    try await leaderClient.multi([term.fence, .create(path: "/placement-by-\(leader)")])
                    detail("UNEXPECTED: the deposed leader's write went through")
                } catch let error as ZooKeeperError where error.isRetryable {
                    continue
                } catch let error as ZooKeeperError {
                    detail("the deposed \(leader)'s fenced write was refused: \(error.code) (its election node is gone)")
                }
                break
            }
            group.cancelAll()
        }
        await first.close()
        await second.close()
    }

    private func queueTour(chroot: String, clock: ContinuousClock) async throws {
        step("zkmq: \(items) operations through the durable queue")
        let zk = try await ZooKeeperClient.connect(to: chroot)
        let queue = DurableQueue(client: zk, root: "/queue")
        let started = clock.now
        for start in stride(from: 0, to: items, by: 100) {
            try await queue.put((start..<min(start + 100, items)).map { Array("op-\($0)".utf8) })
        }
        let put = clock.now - started
        detail("put \(items) in batches of 100: \(format(put)) (\(rate(items, put))/s)")
        var consumed = 0
        var commits = 0
        let consumeStarted = clock.now
        while true {
            let batch = try await queue.consume(maxItems: 500) { _ in [] }
            if batch.isEmpty { break }
            consumed += batch.count
            commits += 1
        }
        let took = clock.now - consumeStarted
        detail("consumed \(consumed) in \(commits) atomic commits: \(format(took)) (\(rate(consumed, took))/s)")
        detail("largest segment \(queue.stats.largestSegmentSeen) items (capacity \(queue.segmentCapacity))")
        await zk.close()
    }

    private func documentTour(chroot: String) async throws {
        struct Load: Codable, Sendable { var runningTasks: Int }
        step("zkstate: two writers, one document, compare-and-set")
        let a = try await ZooKeeperClient.connect(to: chroot)
        let b = try await ZooKeeperClient.connect(to: chroot)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in [a, b] {
                group.addTask {
                    let document = VersionedDocument<Load>(client: client, path: "/executor-state")
                    for _ in 0..<100 { try await document.update { Load(runningTasks: ($0?.runningTasks ?? 0) + 1) } }
                }
            }
            try await group.waitForAll()
        }
        let final = try await VersionedDocument<Load>(client: a, path: "/executor-state").read()
        detail("200 concurrent increments → runningTasks = \(final?.document.runningTasks ?? -1), znode version \(final?.version ?? -1)")
        await a.close()
        await b.close()
    }

    private func rate(_ count: Int, _ duration: Duration) -> Int {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return seconds > 0 ? Int(Double(count) / seconds) : 0
    }
}

/// An error whose message is all the user needs to see.
struct ExitMessage: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// The narration `drover demo` and `drover tour` share.
func step(_ text: String) { print("==> \(text)") }
func detail(_ text: String) { print("    \(text)") }
/// "38 ms", "2.6 s".
func format(_ duration: Duration) -> String {
    let ms = duration.seconds * 1000
    return ms >= 1000 ? String(format: "%.1f s", ms / 1000) : String(format: "%.0f ms", ms)
}
