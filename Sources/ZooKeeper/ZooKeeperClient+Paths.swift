extension ZooKeeperClient {
    /// Creates `path` and any missing ancestors as persistent nodes; existing ones are left alone
    /// (also those whose parent would not let this client create them).
    public func createPath(_ path: String, acl: [ACL] = ACL.openUnsafe) async throws {
        try await createPath(path, acl: { _ in acl })
    }

    /// ``createPath(_:acl:)`` with each node's ACL chosen by its path (a missing parent gets its
    /// own, not the leaf's).
    public func createPath(_ path: String, acl: (String) -> [ACL]) async throws {
        guard path != "/" else { return }
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            do {
                _ = try await create(current, acl: acl(current))
            } catch let error as ZooKeeperError where error.code == .nodeExists {
                continue
            } catch let error as ZooKeeperError where error.code == .noAuth {
                // ZooKeeper checks the parent's ACL before it looks for the node.
                guard try await exists(current) != nil else { throw error }
            }
        }
    }

    /// Deletes `path` and everything below it. Missing nodes are not an error.
    public func deleteRecursively(_ path: String) async throws {
        let names: [String]
        do {
            names = try await children(path).names
        } catch let error as ZooKeeperError where error.code == .noNode {
            return
        }
        let prefix = path == "/" ? "" : path
        for name in names where !(path == "/" && name == "zookeeper") {
            try await deleteRecursively(prefix + "/" + name)
        }
        guard path != "/" else { return }
        do {
            try await delete(path)
        } catch let error as ZooKeeperError where error.code == .noNode {
        } catch let error as ZooKeeperError where error.code == .notEmpty {
            try await deleteRecursively(path)  // a child appeared meanwhile
        }
    }
}
