import Foundation
import ZooKeeper

/// Writes of the harness's own, to tell a loss by ZooKeeper from a loss by Drover: while the faults
/// run, a sequential znode is created every `interval` under `<root>/witness`; the ones ZooKeeper
/// acknowledged must all be there at the end. A missing one is a write ZooKeeper acknowledged and
/// then lost (seen with Debian's ZooKeeper 3.8.0 when its leader was killed while a follower was
/// catching up: the new leader had a shorter history and the others were truncated to it). Drover
/// cannot keep a promise over writes its store forgot; the summary then says whose loss it was.
actor Witness {
    private let zookeeper: ZooKeeperClient
    private let directory: String
    private var acknowledged: [String] = []

    init(zookeeper: ZooKeeperClient, root: String) {
        self.zookeeper = zookeeper
        self.directory = root + "/witness"
    }

    /// Creates witnesses every `interval` until cancelled. A create whose answer was lost is not
    /// counted (it may or may not exist).
    func run(every interval: Duration) async throws {
        try await zookeeper.createPath(directory)
        while !Task.isCancelled {
            if let path = try? await zookeeper.create(directory + "/w-", mode: .persistentSequential) {
                acknowledged.append(path)
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// The acknowledged witnesses that are gone, and how many were acknowledged.
    func missing() async throws -> (missing: [String], acknowledged: Int) {
        let present = Set(try await zookeeper.children(directory).names.map { directory + "/" + $0 })
        return (acknowledged.filter { !present.contains($0) }, acknowledged.count)
    }
}
