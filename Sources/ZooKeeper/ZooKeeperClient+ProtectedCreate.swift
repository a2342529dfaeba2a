import Foundation

extension ZooKeeperClient {
    /// Creates a node whose name starts with a unique marker (`_c_<uuid>-<name>`), retrying
    /// after a lost connection without ever making two nodes.
    ///
    /// A plain sequential create that fails with `.connectionLoss` may have succeeded: retrying
    /// would leave an orphan. Here the retry first looks for a child carrying the marker and
    /// returns it if the first attempt got through (Curator's "protected" mode).
    ///
    /// - Parameter maximumAttempts: creates tried before the connection-loss error is rethrown.
    /// - Returns: the path of the created node.
    public func createProtected(
        _ path: String, data: [UInt8] = [], mode: CreateMode = .ephemeralSequential, acl: [ACL] = ACL.openUnsafe,
        maximumAttempts: Int = 10
    ) async throws -> String {
        let parent = parentPath(of: path)
        let name = path[path.index(after: path.lastIndex(of: "/") ?? path.startIndex)...]
        let marker = Self.protectedMarker()
        let protectedPath = (parent == "/" ? "" : parent) + "/" + marker + name
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await create(protectedPath, data: data, mode: mode, acl: acl)
            } catch let error as ZooKeeperError where error.isRetryable && attempt < maximumAttempts {
                if let existing = try await findProtectedChild(parent: parent, marker: marker) { return existing }
            } catch let error as ZooKeeperError where error.code == .nodeExists && attempt > 1 && !mode.isSequential {
                return protectedPath  // the lost first attempt made it
            }
        }
    }

    /// The unique marker a protected create puts in front of the node name.
    static func protectedMarker() -> String { "_c_\(UUID().uuidString.lowercased())-" }

    /// Strips a protected create's marker from a node name (`_c_<uuid>-lock-0000000001` → `lock-0000000001`).
    public static func unprotectedName(_ name: String) -> String {
        guard name.hasPrefix("_c_"), name.count > 40 else { return name }
        let afterMarker = name.index(name.startIndex, offsetBy: 40)
        return name[name.index(before: afterMarker)] == "-" ? String(name[afterMarker...]) : name
    }

    private func findProtectedChild(parent: String, marker: String) async throws -> String? {
        while true {
            do {
                let names = try await children(parent).names
                return names.first { $0.hasPrefix(marker) }.map { (parent == "/" ? "" : parent) + "/" + $0 }
            } catch let error as ZooKeeperError where error.isRetryable {
                // Disconnected, the C client fails requests at once: wait for the connection
                // instead of spinning.
                try await waitUntilConnected(timeout: sessionTimeout * 2)
            }
        }
    }
}
