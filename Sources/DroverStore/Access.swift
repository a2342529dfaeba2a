import DroverProtocol
import Foundation
import ZooKeeper

/// Who a process is in a secured deployment: a role, and the ZooKeeper digest identity
/// (user and password) that proves it. Kept in a credentials file of mode 0600 that
/// `drover init` writes, one per role (and one per executor).
public struct Credentials: Sendable, Hashable, Codable {
    /// What a role may do is the table in docs/SECURITY.md (``AccessPolicy/permissions(of:on:)``).
    public enum Role: String, Sendable, Hashable, Codable, CaseIterable {
        case admin, manager, executor, client, reader
    }

    public var role: Role
    /// The executor these credentials are for (role `executor` only).
    public var executor: String?
    public var user: String
    public var password: String

    public init(role: Role, executor: String? = nil, user: String, password: String) {
        self.role = role
        self.executor = executor
        self.user = user
        self.password = password
    }

    /// New credentials with a random password (24 random bytes).
    public static func generate(_ role: Role, executor: String? = nil) -> Credentials {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<24).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let user = executor.map { "drover-executor-\($0)" } ?? "drover-\(role.rawValue)"
        return Credentials(role: role, executor: executor, user: user, password: Data(bytes).base64EncodedString())
    }

    /// ZooKeeper's name for this identity in ACLs: `user:base64(sha1(user:password))`.
    public var digestID: String { ACL.digestID(user: user, password: password) }

    /// What `addAuth(scheme: "digest", …)` takes.
    public var authentication: String { "\(user):\(password)" }

    /// Who these credentials make a process, for messages: "manager", "executor e1".
    public var roleDescription: String { executor.map { "executor \($0)" } ?? role.rawValue }

    /// Reads a credentials file.
    /// - Throws: ``SecretFileError`` when the file cannot be read, is readable by others, or does
    ///   not hold credentials.
    public static func read(file path: String) throws -> Credentials {
        let bytes = try SecretFile.read(path, what: "credentials")
        let credentials: Credentials
        do {
            credentials = try Codec.decode(Credentials.self, bytes)
        } catch {
            throw SecretFileError("\(path) does not hold Drover credentials (the JSON `drover init` writes): \(error)")
        }
        guard !credentials.user.isEmpty, !credentials.user.contains(":"), !credentials.password.isEmpty else {
            throw SecretFileError("\(path): the user must be a non-empty name without ':' and the password must not be empty")
        }
        if credentials.role == .executor {
            guard let id = credentials.executor, Layout.isValidID(id) else {
                throw SecretFileError("\(path): executor credentials must name their executor (\"executor\": \"e1\")")
            }
        }
        return credentials
    }
}

/// The identities of a secured deployment, kept at `<root>/access` (digest ids only, never a
/// password), and the role table every node's ACL follows. Every process that creates nodes reads
/// it once and gives each node the ACL ``acl(for:)`` says.
public struct AccessPolicy: Sendable, Hashable, Codable {
    public var format = 1
    /// Digest ids (``Credentials/digestID``) by role.
    public var admin: String
    public var manager: String
    public var client: String
    public var reader: String
    /// Digest ids of the executors, by executor id.
    public var executors: [String: String]
    /// During a rotation, the identities being replaced (by role: `manager`, `executor:e1`): they
    /// keep their rights until every node has the new ones, then they are dropped.
    public var retiring: [String: String]?
    /// Client certificates that hold a role (by role: `manager`, `executor:e1`), as ZooKeeper's
    /// x509 provider names the session that shows one: the certificate's subject, e.g.
    /// `CN=drover-manager`. A process connected over TLS with such a certificate has the role's
    /// rights without digest credentials (`drover init --certificate ROLE=SUBJECT`).
    public var certificates: [String: String]?

    public init(admin: String, manager: String, client: String, reader: String, executors: [String: String] = [:]) {
        self.admin = admin
        self.manager = manager
        self.client = client
        self.reader = reader
        self.executors = executors
    }

    /// The policy naming these identities (each executor's by the executor its credentials are for).
    public init(admin: Credentials, manager: Credentials, client: Credentials, reader: Credentials, executors: [Credentials]) {
        self.init(
            admin: admin.digestID, manager: manager.digestID, client: client.digestID, reader: reader.digestID,
            executors: Dictionary(executors.compactMap { credentials in credentials.executor.map { ($0, credentials.digestID) } }) { _, last in last })
    }

    /// The kinds of node under a deployment's root, as the role table names them.
    public enum Node: Hashable, Sendable {
        case root, access, queue, queueSegment, queueItem, jobs, jobShard, jobRecord, executors
        /// `executors/<id>`, its directory.
        case executor(String)
        /// `executors/<id>/progress`, `alive` and `unreadable-progress`: the executor's own.
        case executorNode(String)
        /// `assignments`, the directory of the leader's assignments.
        case assignments
        /// `assignments/<id>`: the leader's assignments to executor `<id>`.
        case assignment(String)
        case election, electionNode, setAside, setAsideItem, retention, admission, unitCounts
        /// The active-job index: its directory (whose data says it is complete), shards, entries.
        case active, activeShard, activeEntry
        /// Workflows' shared data: its directory, shards, documents.
        case shared, sharedShard, sharedDocument
        /// Work specs: their directory, a spec, a bucket's index, a segment of units.
        case specs, spec, specBucket, specSegment
        /// The direct path: the inboxes' directory, executor `<id>`'s inbox, a reservation in one.
        case inbox
        case executorInbox(String)
        case reservation
        /// The direct path: the claims' directory, its shards, a job's claims, a claim.
        case claims, claimsShard, jobClaims, claim
        /// Anything else under the root (not Drover's).
        case other
    }

    private static let readWriteCreateDelete: ACL.Permissions = [.read, .write, .create, .delete]

    /// The role table (docs/SECURITY.md): what `role` may do on `node`. `executor` is the
    /// executor's id for the executor role.
    public static func permissions(of role: Credentials.Role, executor: String? = nil, on node: Node) -> ACL.Permissions {
        switch role {
        case .admin:
            return .all
        case .reader:
            return .read
        case .manager:
            switch node {
            // The tree is the admin's: with DELETE on the root, a manager could remove it all.
            case .root, .access, .other, .executors, .executor: return .read
            // New shards; retention deletes records inside them, never a shard.
            case .jobs: return [.read, .create]
            // What an executor writes (its registration, its progress) the manager only reads.
            case .executorNode: return .read
            // It makes an executor's assignments document when the executor appears.
            case .assignments: return [.read, .create]
            case .assignment, .retention, .admission, .unitCounts: return [.read, .write]
            // New index shards, and the document saying the entries are complete.
            case .active: return [.read, .write, .create]
            case .activeShard, .activeEntry, .queue, .queueSegment, .queueItem, .jobShard, .jobRecord, .election, .electionNode, .setAside, .setAsideItem:
                return readWriteCreateDelete
            // Retention removes a finished workflow's shared data with its record.
            case .shared, .sharedDocument: return .read
            case .sharedShard: return [.read, .delete]
            // It frees the units of executors gone for the grace period, and its API writes specs
            // and units for the clients it authenticates: a client's rights.
            case .specs: return [.read, .create, .delete]
            case .spec, .specBucket: return readWriteCreateDelete
            case .specSegment: return [.read, .write]
            // It makes the inboxes of executors that did not, clears a finished job's reservations
            // and claims, and claims the tasks it takes over.
            case .inbox, .claims: return [.read, .create]
            case .executorInbox, .claimsShard, .jobClaims: return readWriteCreateDelete
            case .reservation, .claim: return .read
            }
        case .client:
            switch node {
            case .queue, .jobShard: return [.read, .create]
            // A producer seals a full segment (the queue's protocol).
            case .queueSegment: return [.read, .create, .write]
            // Clients create, change and delete work specs and add their units.
            case .specs: return [.read, .create, .delete]
            case .spec, .specBucket: return readWriteCreateDelete
            case .specSegment: return [.read, .write]
            // A direct submit reserves executors and makes the job's claims directory.
            case .executorInbox, .claims, .claimsShard: return [.read, .create]
            default: return .read
            }
        case .executor:
            switch node {
            case .access: return .read
            case .executor(let id) where id == executor: return readWriteCreateDelete
            case .executorNode(let id) where id == executor: return [.read, .write]
            // Its assignments are the leader's: it reads them, never writes them.
            case .assignment(let id) where id == executor: return .read
            // A workflow's steps share a document: any executor may run a step, so every one
            // reads, makes and updates them (no executor can delete one; the shards are init's).
            case .shared: return .read
            case .sharedShard: return [.read, .create]
            case .sharedDocument: return [.read, .write]
            // Any executor with the method may claim a spec's units, so every one writes the
            // buckets' indexes and segments (never the spec, never a delete); it creates segments
            // when a finished unit feeds its spec's `then` spec.
            case .spec, .specs: return .read
            case .specBucket: return [.read, .write, .create]
            case .specSegment: return [.read, .write]
            // Its own inbox it makes and empties; a claim of a job's last task removes the job's
            // reservations from other executors' inboxes (cancellation), so every one may delete there.
            case .inbox: return [.read, .create]
            case .executorInbox(let id) where id == executor: return [.read, .create, .delete]
            case .executorInbox: return [.read, .delete]
            case .reservation, .claims, .claimsShard, .claim: return .read
            // Any executor with a reservation may claim one of the job's tasks.
            case .jobClaims: return [.read, .create]
            default: return []
            }
        }
    }

    /// The ACL a node of this kind gets: one entry per identity the role table lets do anything.
    public func acl(for node: Node) -> [ACL] {
        var acl: [ACL] = []
        func add(_ role: Credentials.Role, _ executor: String?, _ id: String) {
            let permissions = Self.permissions(of: role, executor: executor, on: node)
            if !permissions.isEmpty, !acl.contains(where: { $0.id == id }) { acl.append(ACL(permissions: permissions, scheme: "digest", id: id)) }
        }
        for (role, id) in [(Credentials.Role.admin, admin), (.manager, manager), (.client, client), (.reader, reader)] { add(role, nil, id) }
        for (executor, id) in executors.sorted(by: { $0.key < $1.key }) { add(.executor, executor, id) }
        for (key, id) in (retiring ?? [:]).sorted(by: { $0.key < $1.key }) {
            if let (role, executor) = Self.role(named: key) { add(role, executor, id) }
        }
        for (key, subject) in (certificates ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let (role, executor) = Self.role(named: key) else { continue }
            let permissions = Self.permissions(of: role, executor: executor, on: node)
            if !permissions.isEmpty, !acl.contains(where: { $0.scheme == "x509" && $0.id == subject }) {
                acl.append(ACL(permissions: permissions, scheme: "x509", id: subject))
            }
        }
        return acl
    }

    /// `admin`, `manager`, `client`, `reader` or `executor:<id>` as a role (and executor id).
    public static func role(named name: String) -> (Credentials.Role, String?)? {
        if name.hasPrefix("executor:") {
            let id = String(name.dropFirst("executor:".count))
            return Layout.isValidID(id) ? (.executor, id) : nil
        }
        guard let role = Credentials.Role(rawValue: name), role != .executor else { return nil }
        return (role, nil)
    }

    /// The executors the policy names, by password or by certificate.
    public var executorIDs: [String] {
        let certified = (certificates ?? [:]).keys.compactMap { key in Self.role(named: key).flatMap { $0.1 } }
        return Set(executors.keys).union(certified).sorted()
    }

    /// Every identity the policy gives rights to: digest ids, and `x509:<subject>` for certificates.
    public var identities: Set<String> {
        Set([admin, manager, client, reader] + Array(executors.values) + Array((retiring ?? [:]).values))
            .union((certificates ?? [:]).values.map { "x509:" + $0 })
    }

    /// The roles that may do `permission` on `node`, for messages ("manager or admin").
    public static func roles(allowedTo permission: ACL.Permissions, on node: Node) -> [String] {
        var roles = Credentials.Role.allCases.filter { $0 != .executor && permissions(of: $0, on: node).contains(permission) }.map(\.rawValue)
        switch node {
        case .executor(let id), .executorNode(let id), .assignment(let id), .executorInbox(let id):
            if permissions(of: .executor, executor: id, on: node).contains(permission) { roles.append("executor \(id)") }
        default: break
        }
        return roles
    }
}

/// How a deployment is protected: open (every node `world:anyone`, as before `drover init`) or
/// secured by an ``AccessPolicy``.
public enum Access: Sendable, Hashable {
    case open
    case secured(AccessPolicy)

    /// The ACL a new node of this kind gets.
    public func acl(for node: AccessPolicy.Node) -> [ACL] {
        switch self {
        case .open: ACL.openUnsafe
        case .secured(let policy): policy.acl(for: node)
        }
    }

    /// The ACL for a new node at `path` (its kind told by its place in `layout`).
    public func acl(at path: String, in layout: Layout) -> [ACL] { acl(for: layout.node(at: path)) }

    public var isSecured: Bool { if case .secured = self { true } else { false } }

    /// The deployment's access policy: `.open` when it has none (`drover init` never ran).
    /// - Throws: ``DroverError`` `.notPermitted` when the policy cannot be read without
    ///   credentials, saying how to give them.
    public static func load(_ zookeeper: ZooKeeperClient, layout: Layout) async throws -> Access {
        do {
            let node = try await zookeeper.getData(layout.access)
            return .secured(try Codec.decode(AccessPolicy.self, node.data))
        } catch let error as ZooKeeperError where error.code == .noNode {
            return .open
        } catch let error as ZooKeeperError where error.code == .noAuth {
            throw DroverError(
                .notPermitted,
                "this Drover deployment is secured and these credentials may not read it: give credentials with --credentials FILE "
                    + "or $DROVER_CREDENTIALS (the files `drover init` wrote; see docs/SECURITY.md)", cause: error)
        } catch let error as DecodingError {
            throw DroverError(.notPermitted, "\(layout.access) is not an access policy Drover can read (\(error)); an admin can rewrite it with drover init", cause: error)
        }
    }

    /// Throws once the deployment's policy no longer names any identity
    /// `zookeeper` authenticated with (its credentials were rotated away, `drover init --rotate`)
    /// or `zookeeper` may no longer read it. A daemon runs it beside its work and exits with the
    /// error: locked out, it would otherwise sit idle — ZooKeeper does not even deliver watches on
    /// nodes a client may no longer read — holding its election node or its executor id.
    ///
    /// Returns the deployment's policy once it differs from `current` (an executor added, a role
    /// rotated): a process gives what it creates from then on the new ACLs.
    public static func nextChange(after current: AccessPolicy, _ zookeeper: ZooKeeperClient, layout: Layout) async throws -> AccessPolicy {
        let mine = Set(zookeeper.digestIDs + (zookeeper.certificateIdentity.map { ["x509:" + $0] } ?? []))
        do {
            for try await update in zookeeper.dataUpdates(of: layout.access) {
                guard case .present(let node) = update, let policy = try? Codec.decode(AccessPolicy.self, node.data) else { continue }
                if mine.isDisjoint(with: policy.identities) { throw revoked(nil) }
                if policy != current { return policy }
            }
        } catch let error as ZooKeeperError where error.code == .noAuth {
            throw revoked(error)
        }
        throw CancellationError()
    }

    private static func revoked(_ cause: ZooKeeperError?) -> DroverError {
        DroverError(
            .notPermitted,
            "the credentials this process runs with are no longer part of the deployment (replaced with drover init --rotate, "
                + "or removed): restart it with its new credentials file", cause: cause)
    }

    /// A ``DroverError`` that says who may do what ZooKeeper refused, for a `noAuth` error;
    /// other errors come back unchanged.
    public static func explain(_ error: any Error, layout: Layout, credentials: Credentials?) -> any Error {
        guard let zooKeeperError = error as? ZooKeeperError, zooKeeperError.code == .noAuth else { return error }
        let who = credentials.map { "the \($0.roleDescription) credentials" } ?? "no credentials"
        var message = "ZooKeeper refused \(zooKeeperError.operation)"
        if let path = zooKeeperError.path {
            let (node, permission) = Self.requirement(of: zooKeeperError.operation, on: path, layout: layout)
            message += " on \(path): \(who) may not do that"
            let roles = AccessPolicy.roles(allowedTo: permission, on: node)
            if !roles.isEmpty { message += "; it takes \(roles.joined(separator: " or ")) credentials" }
        } else {
            message += ": \(who) may not do that"
        }
        return DroverError(.notPermitted, message + " (--credentials FILE or $DROVER_CREDENTIALS; docs/SECURITY.md)", cause: zooKeeperError)
    }

    /// The node whose ACL decides `operation` on `path`, and the permission it needs: creating and
    /// deleting are decided by the parent.
    static func requirement(of operation: String, on path: String, layout: Layout) -> (AccessPolicy.Node, ACL.Permissions) {
        let parent = path.split(separator: "/").dropLast().joined(separator: "/")
        // A failed multi names the operation that failed: "multi create".
        switch operation.hasPrefix("multi ") ? String(operation.dropFirst("multi ".count)) : operation {
        case "create": return (layout.node(at: "/" + parent), .create)
        case "delete": return (layout.node(at: "/" + parent), .delete)
        case "setData": return (layout.node(at: path), .write)
        case "setACL": return (layout.node(at: path), .admin)
        default: return (layout.node(at: path), .read)
        }
    }
}

extension Layout {
    /// What kind of node `path` is, for the role table.
    public func node(at path: String) -> AccessPolicy.Node {
        let prefix = root == "/" ? "" : root
        if path == root { return .root }
        guard path.hasPrefix(prefix + "/") else { return .other }
        let parts = path.dropFirst(prefix.count + 1).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        switch (parts.first, parts.count) {
        case ("access", 1): return .access
        case ("queue", 1): return .queue
        case ("queue", 2): return .queueSegment
        case ("queue", 3): return .queueItem
        case ("jobs", 1): return .jobs
        case ("jobs", 2): return .jobShard
        case ("jobs", 3): return .jobRecord
        case ("executors", 1): return .executors
        case ("executors", 2): return .executor(parts[1])
        case ("executors", 3): return .executorNode(parts[1])
        case ("assignments", 1): return .assignments
        case ("assignments", 2): return .assignment(parts[1])
        case ("election", 1): return .election
        case ("election", 2): return .electionNode
        case ("setaside", 1): return .setAside
        case ("setaside", 2): return .setAsideItem
        case ("retention", 1): return .retention
        case ("admission", 1): return .admission
        case ("unit-counts", 1): return .unitCounts
        case ("active", 1): return .active
        case ("active", 2): return .activeShard
        case ("active", 3): return .activeEntry
        case ("shared", 1): return .shared
        case ("shared", 2): return .sharedShard
        case ("shared", 3): return .sharedDocument
        case ("specs", 1): return .specs
        case ("specs", 2): return .spec
        case ("specs", 3): return .specBucket
        case ("specs", 4): return .specSegment
        case ("inbox", 1): return .inbox
        case ("inbox", 2): return .executorInbox(parts[1])
        case ("inbox", 3): return .reservation
        case ("claims", 1): return .claims
        case ("claims", 2): return .claimsShard
        case ("claims", 3): return .jobClaims
        case ("claims", 4): return .claim
        default: return .other
        }
    }
}
