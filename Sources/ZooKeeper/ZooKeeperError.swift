import CZooKeeper

/// An error from ZooKeeper or from this client, with a message that says what happened and
/// what to do about it.
///
/// Match on ``code`` (`error.code == .noNode`); new codes can be added without breaking callers.
public struct ZooKeeperError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong. Server and C-client codes keep ZooKeeper's numeric value in ``rawValue``;
    /// codes this client raises itself are below -1000.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let systemError = Code(rawValue: ZSYSTEMERROR.rawValue)
        public static let runtimeInconsistency = Code(rawValue: ZRUNTIMEINCONSISTENCY.rawValue)
        public static let dataInconsistency = Code(rawValue: ZDATAINCONSISTENCY.rawValue)
        public static let connectionLoss = Code(rawValue: ZCONNECTIONLOSS.rawValue)
        public static let marshallingError = Code(rawValue: ZMARSHALLINGERROR.rawValue)
        public static let unimplemented = Code(rawValue: ZUNIMPLEMENTED.rawValue)
        public static let operationTimeout = Code(rawValue: ZOPERATIONTIMEOUT.rawValue)
        public static let badArguments = Code(rawValue: ZBADARGUMENTS.rawValue)
        public static let invalidState = Code(rawValue: ZINVALIDSTATE.rawValue)
        public static let newConfigNoQuorum = Code(rawValue: ZNEWCONFIGNOQUORUM.rawValue)
        public static let reconfigInProgress = Code(rawValue: ZRECONFIGINPROGRESS.rawValue)
        public static let sslConnectionError = Code(rawValue: ZSSLCONNECTIONERROR.rawValue)
        public static let apiError = Code(rawValue: ZAPIERROR.rawValue)
        public static let noNode = Code(rawValue: ZNONODE.rawValue)
        public static let noAuth = Code(rawValue: ZNOAUTH.rawValue)
        public static let badVersion = Code(rawValue: ZBADVERSION.rawValue)
        public static let noChildrenForEphemerals = Code(rawValue: ZNOCHILDRENFOREPHEMERALS.rawValue)
        public static let nodeExists = Code(rawValue: ZNODEEXISTS.rawValue)
        public static let notEmpty = Code(rawValue: ZNOTEMPTY.rawValue)
        public static let sessionExpired = Code(rawValue: ZSESSIONEXPIRED.rawValue)
        public static let invalidCallback = Code(rawValue: ZINVALIDCALLBACK.rawValue)
        public static let invalidACL = Code(rawValue: ZINVALIDACL.rawValue)
        public static let authFailed = Code(rawValue: ZAUTHFAILED.rawValue)
        public static let closing = Code(rawValue: ZCLOSING.rawValue)
        public static let nothing = Code(rawValue: ZNOTHING.rawValue)
        public static let sessionMoved = Code(rawValue: ZSESSIONMOVED.rawValue)
        public static let notReadOnly = Code(rawValue: ZNOTREADONLY.rawValue)
        public static let ephemeralOnLocalSession = Code(rawValue: ZEPHEMERALONLOCALSESSION.rawValue)
        public static let noWatcher = Code(rawValue: ZNOWATCHER.rawValue)
        public static let reconfigDisabled = Code(rawValue: ZRECONFIGDISABLED.rawValue)
        public static let sessionClosedRequiresSASLAuth = Code(rawValue: ZSESSIONCLOSEDREQUIRESASLAUTH.rawValue)
        public static let throttledOp = Code(rawValue: ZTHROTTLEDOP.rawValue)

        // Raised by this client, never by the server.
        /// The request would exceed ZooKeeper's `jute.maxbuffer`; the server would drop the
        /// connection, so it is refused before it is sent.
        public static let requestTooLarge = Code(rawValue: -1001)
        /// The first connection was not established within the connect timeout.
        public static let connectTimeout = Code(rawValue: -1002)
        /// The client was closed; no more operations are possible on it.
        public static let clientClosed = Code(rawValue: -1003)
        /// The server answered with something this client cannot interpret.
        public static let unexpectedResponse = Code(rawValue: -1004)

        /// Every code a ZooKeeper 3.8 server or C client can return, in ZooKeeper's order.
        public static let allZooKeeperCodes: [Code] = [
            .systemError, .runtimeInconsistency, .dataInconsistency, .connectionLoss,
            .marshallingError, .unimplemented, .operationTimeout, .badArguments, .invalidState,
            .newConfigNoQuorum, .reconfigInProgress, .sslConnectionError, .apiError, .noNode,
            .noAuth, .badVersion, .noChildrenForEphemerals, .nodeExists, .notEmpty,
            .sessionExpired, .invalidCallback, .invalidACL, .authFailed, .closing, .nothing,
            .sessionMoved, .notReadOnly, .ephemeralOnLocalSession, .noWatcher, .reconfigDisabled,
            .sessionClosedRequiresSASLAuth, .throttledOp,
        ]

        /// A short name for logs, e.g. `noNode`.
        public var description: String { Self.names[self] ?? "code(\(rawValue))" }

        private static let names: [Code: String] = [
            .systemError: "systemError", .runtimeInconsistency: "runtimeInconsistency",
            .dataInconsistency: "dataInconsistency", .connectionLoss: "connectionLoss",
            .marshallingError: "marshallingError", .unimplemented: "unimplemented",
            .operationTimeout: "operationTimeout", .badArguments: "badArguments",
            .invalidState: "invalidState", .newConfigNoQuorum: "newConfigNoQuorum",
            .reconfigInProgress: "reconfigInProgress", .sslConnectionError: "sslConnectionError",
            .apiError: "apiError", .noNode: "noNode", .noAuth: "noAuth", .badVersion: "badVersion",
            .noChildrenForEphemerals: "noChildrenForEphemerals", .nodeExists: "nodeExists",
            .notEmpty: "notEmpty", .sessionExpired: "sessionExpired",
            .invalidCallback: "invalidCallback", .invalidACL: "invalidACL",
            .authFailed: "authFailed", .closing: "closing", .nothing: "nothing",
            .sessionMoved: "sessionMoved", .notReadOnly: "notReadOnly",
            .ephemeralOnLocalSession: "ephemeralOnLocalSession", .noWatcher: "noWatcher",
            .reconfigDisabled: "reconfigDisabled",
            .sessionClosedRequiresSASLAuth: "sessionClosedRequiresSASLAuth",
            .throttledOp: "throttledOp", .requestTooLarge: "requestTooLarge",
            .connectTimeout: "connectTimeout", .clientClosed: "clientClosed",
            .unexpectedResponse: "unexpectedResponse",
        ]
    }

    /// What went wrong.
    public let code: Code
    /// The operation that failed, e.g. `create`.
    public let operation: String
    /// The path the operation was about, when there is one.
    public let path: String?
    /// For a failed `multi`: the index of the operation that made the whole `multi` fail.
    public let failedOperationIndex: Int?
    /// What happened and what to do about it.
    public let message: String

    public init(
        _ code: Code, operation: String, path: String? = nil, failedOperationIndex: Int? = nil,
        message: String? = nil
    ) {
        self.code = code
        self.operation = operation
        self.path = path
        self.failedOperationIndex = failedOperationIndex
        self.message =
            message ?? Self.explain(code, operation: operation, path: path, index: failedOperationIndex)
    }

    public var description: String { "ZooKeeper \(operation) failed (\(code)): \(message)" }

    /// True for errors after which the same request may succeed on a later attempt: the
    /// connection dropped or the server throttled it. The request may or may not have been applied.
    public var isRetryable: Bool {
        code == .connectionLoss || code == .operationTimeout || code == .throttledOp
    }

    /// One table from ZooKeeper's codes to messages a person can act on.
    static func explain(_ code: Code, operation: String, path: String?, index: Int?) -> String {
        let node = path ?? "the node"
        let prefix = index.map { "operation #\($0) of the multi: " } ?? ""
        let text: String
        switch code {
        case .noNode:
            if operation == "create", let path {
                text = "no node \(parentPath(of: path)) — create the parent first"
            } else {
                text = "no node \(node) — it does not exist (or was deleted)"
            }
        case .nodeExists:
            text = "\(node) already exists — read it, or delete it first"
        case .badVersion:
            text = "\(node) changed since it was read (version conflict) — re-read it and apply the change again"
        case .notEmpty:
            text = "\(node) has children — delete them first"
        case .noChildrenForEphemerals:
            text = "\(path.map(parentPath(of:)) ?? "the parent") is ephemeral and cannot have children — create it as persistent"
        case .noAuth:
            text = "not authorised to \(operation) \(node) — add the right credentials (addAuth) or change the node's ACL"
        case .invalidACL:
            text = "the ACL is invalid — check the scheme and id (for `auth` ACLs, call addAuth first)"
        case .authFailed:
            text = "ZooKeeper rejected the credentials — check the digest user and password"
        case .connectionLoss:
            text = "lost the connection to ZooKeeper — the request may or may not have been applied; re-read before retrying"
        case .operationTimeout:
            text = "ZooKeeper did not answer in time — the request may or may not have been applied; re-read before retrying"
        case .sessionExpired:
            text = "the ZooKeeper session expired — its ephemeral nodes and watches are gone; work from a new session"
        case .closing, .clientClosed:
            text = "the ZooKeeper client was closed — open a new one"
        case .invalidState:
            text = "the ZooKeeper handle is not usable (expired, failed auth or closed) — open a new client"
        case .badArguments:
            text = "ZooKeeper rejected the arguments — check the path (absolute, no trailing slash) and the data size"
        case .requestTooLarge:
            text = "the request is larger than ZooKeeper accepts (jute.maxbuffer) — split it into smaller writes"
        case .connectTimeout:
            text = "cannot reach ZooKeeper — is it running, and is the connection string right?"
        case .sessionMoved:
            text = "the session moved to another server — retry on this client"
        case .notReadOnly:
            text = "the server is read-only (no quorum) — retry when the ensemble has a quorum"
        case .throttledOp:
            text = "the server is overloaded and throttled the request — retry after a pause"
        case .unimplemented:
            text = "the server does not support this operation — check the ZooKeeper version"
        case .unexpectedResponse:
            text = "ZooKeeper answered with something this client cannot interpret"
        default:
            text = String(cString: zerror(code.rawValue))
        }
        return prefix + text
    }
}

/// The parent of an absolute path (`/a/b` → `/a`, `/a` → `/`).
public func parentPath(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
    return String(path[..<slash])
}
