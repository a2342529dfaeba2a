import CZooKeeper

/// The version argument that matches any version (no compare-and-set).
public let anyVersion: Int32 = -1

extension ZooKeeperClient {
    /// Creates a node and returns its path (with the sequence number, for sequential modes).
    /// - Throws: `.nodeExists`, `.noNode` (the parent is missing), `.noChildrenForEphemerals`,
    ///   `.noAuth`, `.requestTooLarge`.
    public func create(
        _ path: String, data: [UInt8] = [], mode: CreateMode = .persistent, acl: [ACL] = ACL.openUnsafe
    ) async throws -> String {
        try checkSize("create", path: path, bytes: path.utf8.count + data.count + acl.encodedSize)
        return try await core.request("create", path: path) { handle, context, _ in
            data.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { chars in
                    acl.withCVector { vector in
                        zoo_acreate(
                            handle, path, chars.baseAddress, Int32(data.count), vector, mode.flags, stringCompletion,
                            context)
                    }
                }
            }
        }
    }

    /// Reads a node's data and metadata, optionally leaving a watch for its next change or
    /// deletion.
    /// - Throws: `.noNode` (no watch is left then: use ``exists(_:watcher:)`` to wait for a
    ///   node to appear).
    public func getData(_ path: String, watcher: Watcher? = nil) async throws -> NodeData {
        try await core.request("getData", path: path, watcher: watcher, watchKind: .data) { handle, context, watchID in
            if let watchID {
                zoo_awget(handle, path, nodeWatcher, watchContext(watchID), dataCompletion, context)
            } else {
                zoo_aget(handle, path, 0, dataCompletion, context)
            }
        }
    }

    /// Replaces a node's data if its version is `version` (or any version with ``anyVersion``),
    /// and returns the new metadata.
    /// - Throws: `.badVersion` when the node changed since it was read, `.noNode`.
    @discardableResult
    public func setData(_ path: String, data: [UInt8], version: Int32 = anyVersion) async throws -> Stat {
        try checkSize("setData", path: path, bytes: path.utf8.count + data.count + 16)
        return try await core.request("setData", path: path) { handle, context, _ in
            data.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { chars in
                    zoo_aset(handle, path, chars.baseAddress, Int32(data.count), version, statCompletion, context)
                }
            }
        }
    }

    /// Deletes a node if its version is `version` (or any version with ``anyVersion``).
    /// - Throws: `.noNode`, `.badVersion`, `.notEmpty`.
    public func delete(_ path: String, version: Int32 = anyVersion) async throws {
        let _: Void = try await core.request("delete", path: path) { handle, context, _ in
            zoo_adelete(handle, path, version, voidCompletion, context)
        }
    }

    /// The node's metadata, or nil when it does not exist. With a watcher, leaves a watch that
    /// fires when the node is created (if missing), changed or deleted.
    public func exists(_ path: String, watcher: Watcher? = nil) async throws -> Stat? {
        try await core.request("exists", path: path, watcher: watcher, watchKind: .exists) { handle, context, watchID in
            if let watchID {
                zoo_awexists(handle, path, nodeWatcher, watchContext(watchID), optionalStatCompletion, context)
            } else {
                zoo_aexists(handle, path, 0, optionalStatCompletion, context)
            }
        }
    }

    /// The names of a node's children and the node's metadata, optionally leaving a watch for
    /// the next change of the children (or deletion of the node).
    public func children(_ path: String, watcher: Watcher? = nil) async throws -> NodeChildren {
        try await core.request("getChildren", path: path, watcher: watcher, watchKind: .children) {
            handle, context, watchID in
            if let watchID {
                zoo_awget_children2(handle, path, nodeWatcher, watchContext(watchID), childrenCompletion, context)
            } else {
                zoo_aget_children2(handle, path, 0, childrenCompletion, context)
            }
        }
    }

    /// Waits until the server this client reads from has caught up with the leader for `path`,
    /// so a following read sees every write committed before the call.
    public func sync(_ path: String = "/") async throws {
        let _: String = try await core.request("sync", path: path) { handle, context, _ in
            zoo_async(handle, path, stringCompletion, context)
        }
    }

    /// Authenticates this session, e.g. `addAuth(scheme: "digest", credentials: "user:password")`.
    /// The credentials are re-sent on every later session of this client.
    /// - Throws: `.authFailed` (the client is then unusable).
    public func addAuth(scheme: String = "digest", credentials: String) async throws {
        let _: Void = try await core.request("addAuth", path: nil) { handle, context, _ in
            zoo_add_auth(handle, scheme, credentials, Int32(credentials.utf8.count), voidCompletion, context)
        }
        core.remember(credentials: credentials, scheme: scheme)
    }

    /// A node's access control list and metadata.
    public func getACL(_ path: String) async throws -> (acl: [ACL], stat: Stat) {
        try await core.request("getACL", path: path) { handle, context, _ in
            zoo_aget_acl(handle, path, aclCompletion, context)
        }
    }

    /// Replaces a node's access control list if its ACL version is `version`.
    public func setACL(_ path: String, acl: [ACL], version: Int32 = anyVersion) async throws {
        let _: Void = try await core.request("setACL", path: path) { handle, context, _ in
            acl.withCVector { vector in zoo_aset_acl(handle, path, version, vector, voidCompletion, context) }
        }
    }

    func checkSize(_ operation: String, path: String?, bytes: Int) throws {
        guard bytes < zooKeeperMaxRequestBytes - 1024 else {
            throw ZooKeeperError(
                .requestTooLarge, operation: operation, path: path,
                message: "the request is \(bytes) bytes, over ZooKeeper's limit of about \(zooKeeperMaxRequestBytes) (jute.maxbuffer) — keep node data small or split the work")
        }
    }
}

/// A watch id travels through the C client as the watcher context: a number, not a pointer,
/// so nothing has to be retained for watches that may never fire.
func watchContext(_ id: UInt64) -> UnsafeMutableRawPointer? {
    UnsafeMutableRawPointer(bitPattern: UInt(id))
}
