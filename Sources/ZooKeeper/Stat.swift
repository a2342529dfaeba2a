import CZooKeeper

/// A znode's metadata, as ZooKeeper reports it with every read and write.
public struct Stat: Sendable, Hashable {
    /// The transaction that created the node.
    public var createdZxid: Int64
    /// The transaction that last changed the node's data.
    public var modifiedZxid: Int64
    /// Creation time, milliseconds since the epoch.
    public var createdTime: Int64
    /// Last modification time, milliseconds since the epoch.
    public var modifiedTime: Int64
    /// The number of changes to the data; the version a compare-and-set write names.
    public var version: Int32
    /// The number of changes to the children.
    public var childrenVersion: Int32
    /// The number of changes to the ACL.
    public var aclVersion: Int32
    /// The session that owns this node if it is ephemeral, 0 otherwise.
    public var ephemeralOwner: Int64
    /// The size of the data in bytes.
    public var dataLength: Int32
    /// The number of children.
    public var numberOfChildren: Int32
    /// The transaction that last changed the children.
    public var childrenZxid: Int64

    init(_ stat: CZooKeeper.Stat) {
        createdZxid = stat.czxid
        modifiedZxid = stat.mzxid
        createdTime = stat.ctime
        modifiedTime = stat.mtime
        version = stat.version
        childrenVersion = stat.cversion
        aclVersion = stat.aversion
        ephemeralOwner = stat.ephemeralOwner
        dataLength = stat.dataLength
        numberOfChildren = stat.numChildren
        childrenZxid = stat.pzxid
    }

    /// A stat made by hand (for code that decides on nodes without reading them, and its tests).
    public init(version: Int32 = 0, createdZxid: Int64 = 0, modifiedZxid: Int64 = 0, dataLength: Int32 = 0, ephemeralOwner: Int64 = 0) {
        self.createdZxid = createdZxid
        self.modifiedZxid = modifiedZxid
        createdTime = 0
        modifiedTime = 0
        self.version = version
        childrenVersion = 0
        aclVersion = 0
        self.ephemeralOwner = ephemeralOwner
        self.dataLength = dataLength
        numberOfChildren = 0
        childrenZxid = 0
    }

    /// True when the node is ephemeral (lives only as long as its session).
    public var isEphemeral: Bool { ephemeralOwner != 0 }
}

/// How a node is created.
public struct CreateMode: Sendable, Hashable {
    /// Persistent nodes stay until deleted.
    public var isEphemeral: Bool
    /// ZooKeeper appends a 10-digit, per-parent increasing counter to the name.
    public var isSequential: Bool

    public static let persistent = CreateMode(isEphemeral: false, isSequential: false)
    public static let ephemeral = CreateMode(isEphemeral: true, isSequential: false)
    public static let persistentSequential = CreateMode(isEphemeral: false, isSequential: true)
    public static let ephemeralSequential = CreateMode(isEphemeral: true, isSequential: true)

    var flags: Int32 {
        switch (isEphemeral, isSequential) {
        case (false, false): ZOO_PERSISTENT
        case (true, false): ZOO_EPHEMERAL
        case (false, true): ZOO_PERSISTENT_SEQUENTIAL
        case (true, true): ZOO_EPHEMERAL_SEQUENTIAL
        }
    }
}

/// A znode's data with the metadata it was read at.
public struct NodeData: Sendable, Hashable {
    public var data: [UInt8]
    public var stat: Stat
    public init(data: [UInt8], stat: Stat) {
        self.data = data
        self.stat = stat
    }
}

/// The names of a node's children with the node's metadata.
public struct NodeChildren: Sendable, Hashable {
    /// Child names (not paths), in the order the server returned them (unordered).
    public var names: [String]
    public var stat: Stat
}

/// The largest request ZooKeeper accepts by default (`jute.maxbuffer`). The server drops the
/// connection on anything larger, so writes are checked against it before they are sent.
public let zooKeeperMaxRequestBytes = 1_048_575
