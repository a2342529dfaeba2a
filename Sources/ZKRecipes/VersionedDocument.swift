import Foundation
import ZooKeeper

/// A document at the version it was read.
public struct Versioned<Document: Sendable>: Sendable {
    public var document: Document
    /// The znode version: what the next compare-and-set write must name.
    public var version: Int32

    public init(document: Document, version: Int32) {
        self.document = document
        self.version = version
    }
}

extension Versioned: Equatable where Document: Equatable {}

/// The document in a znode could not be read as JSON of the expected shape.
public struct MalformedDocument: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let version: Int32
    public let reason: String
    public var description: String { "\(path) (version \(version)) is not a valid document: \(reason)" }
}

/// zkstate: a `Codable` document stored as JSON in one znode, changed only by compare-and-set.
///
/// Every write names the version it read; a conflict means someone else wrote in between, so
/// ``update(_:)`` reads again and re-applies the change (ARCHITECTURE.md, promise 3). Watchers
/// get every new version through ``updates()``.
public struct VersionedDocument<Document: Codable & Sendable>: Sendable {
    public let client: ZooKeeperClient
    public let path: String
    public let acl: [ACL]
    /// Documents larger than this are refused (ZooKeeper's limit is about 1 MB; a znode much
    /// smaller keeps reads and watches cheap for everyone).
    public let maximumBytes: Int
    /// Turns a document into the znode's bytes.
    private let encoder: @Sendable (Document) throws -> [UInt8]

    /// - Parameter encode: how to write a document (``sortedJSON(_:)`` unless told); a
    ///   faster encoder for a hot document must give bytes that decode to the same document.
    public init(
        client: ZooKeeperClient, path: String, acl: [ACL] = ACL.openUnsafe, maximumBytes: Int = 256 * 1024,
        encode: @escaping @Sendable (Document) throws -> [UInt8] = VersionedDocument.sortedJSON
    ) {
        self.client = client
        self.path = path
        self.acl = acl
        self.maximumBytes = maximumBytes
        self.encoder = encode
    }

    /// The current document, or nil when the znode does not exist.
    /// - Throws: ``MalformedDocument`` when the znode holds something else.
    public func read() async throws -> Versioned<Document>? {
        do {
            return try decode(try await client.getData(path))
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil
        }
    }

    /// Creates the znode with `document` (and `acl`, else the document's ``acl``).
    /// - Throws: `.nodeExists` when it already exists.
    @discardableResult
    public func create(_ document: Document, acl: [ACL]? = nil) async throws -> Versioned<Document> {
        _ = try await client.create(path, data: try encode(document), acl: acl ?? self.acl)
        return Versioned(document: document, version: 0)
    }

    /// Applies `change` to the current document (nil when there is none) and writes the result
    /// with compare-and-set, reading again and re-applying on every conflict. Returning nil
    /// from `change` leaves the document as it is.
    ///
    /// `change` may run several times: it must depend only on the document it is given.
    ///
    /// `known` — a version the caller already has (its last write, or one seen through
    /// ``updates()``) — saves the first read: when it is current, an update is one round trip;
    /// when it is not, the compare-and-set fails and the document is read as usual. A change
    /// that declines on `known` is tried again on the document as it is now (the decision may
    /// rest on stale content).
    @discardableResult
    public func update(startingFrom known: Versioned<Document>? = nil, _ change: (Document?) throws -> Document?) async throws -> Versioned<Document>? {
        var known = known
        while true {
            let current: Versioned<Document>?
            if let cached = known { current = cached } else { current = try await read() }
            guard let next = try change(current?.document) else {
                if known == nil { return current }
                known = nil
                continue
            }
            known = nil
            let data = try encode(next)
            do {
                if let current {
                    let stat = try await client.setData(path, data: data, version: current.version)
                    return Versioned(document: next, version: stat.version)
                } else {
                    _ = try await client.create(path, data: data, acl: acl)
                    return Versioned(document: next, version: 0)
                }
            } catch let error as ZooKeeperError
                where error.code == .badVersion || error.code == .nodeExists || (error.code == .noNode && current != nil)
            {
                continue  // someone else wrote (or created, or deleted) in between
            }
        }
    }

    /// The `setData` operation that writes `document` over `version`, for a `multi` that must
    /// change this document atomically with other nodes.
    public func writeOperation(_ document: Document, over version: Int32) throws -> MultiOperation {
        .setData(path: path, data: try encode(document), version: version)
    }

    /// The document now and after every change: nil while the znode does not exist.
    /// Versions written in quick succession may arrive as one (the latest).
    public func updates() -> AsyncThrowingMapSequence<NodeUpdates<NodeData>, Versioned<Document>?> {
        client.dataUpdates(of: path).map { update in
            switch update {
            case .missing: nil
            case .present(let node): try decode(node)
            }
        }
    }

    /// The document a node holds, at the node's version.
    /// - Throws: ``MalformedDocument`` when it holds something else.
    public func decode(_ node: NodeData) throws -> Versioned<Document> {
        do {
            return Versioned(document: try JSONDecoder().decode(Document.self, from: Data(node.data)), version: node.stat.version)
        } catch {
            throw MalformedDocument(path: path, version: node.stat.version, reason: "\(error)")
        }
    }

    /// JSON with sorted keys: equal documents are equal bytes.
    public static func sortedJSON(_ document: Document) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(document))
    }

    func encode(_ document: Document) throws -> [UInt8] {
        let data = try encoder(document)
        guard data.count <= maximumBytes else {
            throw ZooKeeperError(
                .requestTooLarge, operation: "setData", path: path,
                message: "the document is \(data.count) bytes, over the limit of \(maximumBytes) — keep it smaller (move bulky data out of ZooKeeper)")
        }
        return data
    }
}
