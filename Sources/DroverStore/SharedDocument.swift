import DroverProtocol
import Foundation
import ZooKeeper

/// A workflow's shared data: one JSON object per job at `shared/<shard>/<job>`, which its steps'
/// handlers read and update with compare-and-set (`context.shared` in the executor library), and
/// clients read. Made by the first update; removed with the job's record by retention.
public struct SharedDocument: Sendable {
    /// The largest document, encoded.
    public static let maximumBytes = 64 * 1024
    /// Tries of one update before it gives up (each lost to another writer's update).
    static let maximumTries = 200

    let zookeeper: ZooKeeperClient
    let layout: Layout
    let acl: @Sendable (String) -> [ACL]

    /// - Parameter acl: The ACL of a node this creates, by its path (the deployment's role table).
    public init(zookeeper: ZooKeeperClient, layout: Layout, acl: @escaping @Sendable (String) -> [ACL] = { _ in ACL.openUnsafe }) {
        self.zookeeper = zookeeper
        self.layout = layout
        self.acl = acl
    }

    /// The job's shared data: `{}` when none was written.
    /// - Throws: ``DroverError`` `.invalidSpec` when another program left something that is not a JSON object.
    public func read(_ job: String) async throws -> JSONValue {
        try await current(job)?.value ?? .object([:])
    }

    /// Applies `change` to the job's shared data and writes it back if nobody wrote in between;
    /// otherwise reads again and applies `change` again (so `change` must only depend on the value
    /// it is given). Returns the value written.
    /// - Throws: ``DroverError`` `.invalidSpec` when the result is not a JSON object or is over
    ///   ``maximumBytes``; what `change` throws.
    @discardableResult
    public func update(_ job: String, _ change: (inout JSONValue) throws -> Void) async throws -> JSONValue {
        guard Layout.isValidID(job) else { throw DroverError(.invalidSpec, "\(job) is not a job id") }
        let path = layout.sharedDocument(job)
        for attempt in 0..<Self.maximumTries {
            // Lost to other writers: wait a little, at random, so a crowd of steps spreads out.
            if attempt > 0 { try await Task.sleep(for: .milliseconds(Int.random(in: 0...min(1 << min(attempt, 6), 50)))) }
            let found = try await current(job)
            var value = found?.value ?? .object([:])
            try change(&value)
            guard case .object = value else { throw DroverError(.invalidSpec, "shared data must stay a JSON object") }
            let data = try Codec.encode(value)
            guard data.count <= Self.maximumBytes else {
                throw DroverError(.invalidSpec, "shared data would be \(data.count) bytes, over the limit of \(Self.maximumBytes): keep references in it, not the data")
            }
            do {
                if let found {
                    _ = try await zookeeper.setData(path, data: data, version: found.version)
                } else {
                    try await zookeeper.createPath(layout.sharedShard(Layout.shard(of: job)), acl: acl)
                    _ = try await zookeeper.create(path, data: data, acl: acl(path))
                }
                return value
            } catch let error as ZooKeeperError where error.code == .badVersion || error.code == .nodeExists || error.code == .noNode {
                continue  // another step wrote first: apply the change to what it wrote
            }
        }
        throw DroverError(.invalidSpec, "shared data of \(job): \(Self.maximumTries) tries lost to other writers; try again")
    }

    private func current(_ job: String) async throws -> (value: JSONValue, version: Int32)? {
        let node: NodeData
        do {
            node = try await zookeeper.getData(layout.sharedDocument(job))
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil
        }
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(node.data)), case .object = value else {
            throw DroverError(.invalidSpec, "the shared data of \(job) is not a JSON object (written by another program?)")
        }
        return (value, node.stat.version)
    }
}
