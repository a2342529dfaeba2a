import CZooKeeper
import Foundation

/// One entry of a znode's access control list: who (`scheme`:`id`) may do what (`permissions`).
public struct ACL: Sendable, Hashable, CustomStringConvertible {
    /// What an ACL entry allows.
    public struct Permissions: OptionSet, Sendable, Hashable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let read = Permissions(rawValue: ZOO_PERM_READ)
        public static let write = Permissions(rawValue: ZOO_PERM_WRITE)
        public static let create = Permissions(rawValue: ZOO_PERM_CREATE)
        public static let delete = Permissions(rawValue: ZOO_PERM_DELETE)
        public static let admin = Permissions(rawValue: ZOO_PERM_ADMIN)
        public static let all = Permissions(rawValue: ZOO_PERM_ALL)
    }

    public var permissions: Permissions
    /// `world`, `auth`, `digest` or `ip`.
    public var scheme: String
    /// For `digest`: `user:base64(sha1(user:password))`; for `world`: `anyone`.
    public var id: String

    public init(permissions: Permissions, scheme: String, id: String) {
        self.permissions = permissions
        self.scheme = scheme
        self.id = id
    }

    public var description: String { "\(scheme):\(id):\(permissions.rawValue)" }

    /// Anyone may do anything.
    public static let openUnsafe: [ACL] = [ACL(permissions: .all, scheme: "world", id: "anyone")]
    /// Anyone may read; nobody may change it.
    public static let readUnsafe: [ACL] = [ACL(permissions: .read, scheme: "world", id: "anyone")]
    /// Only the identities the creating session authenticated with (via `addAuth`) may do anything.
    public static let creatorAll: [ACL] = [ACL(permissions: .all, scheme: "auth", id: "")]

    /// An entry for a digest identity, as `addAuth(scheme: "digest", credentials: "user:password")`
    /// authenticates it.
    public static func digest(user: String, password: String, permissions: Permissions) -> ACL {
        ACL(permissions: permissions, scheme: "digest", id: digestID(user: user, password: password))
    }

    /// ZooKeeper's digest id: `user:base64(sha1("user:password"))`.
    public static func digestID(user: String, password: String) -> String {
        let hash = SHA1.hash(Array("\(user):\(password)".utf8))
        return "\(user):\(Data(hash).base64EncodedString())"
    }

    init(_ acl: CZooKeeper.ACL) {
        permissions = Permissions(rawValue: acl.perms)
        scheme = acl.id.scheme.map { String(cString: $0) } ?? ""
        id = acl.id.id.map { String(cString: $0) } ?? ""
    }
}

extension [ACL] {
    /// Lends the list to C as an `ACL_vector` for the duration of `body`.
    func withCVector<R>(_ body: (UnsafeMutablePointer<ACL_vector>) throws -> R) rethrows -> R {
        let entries = UnsafeMutablePointer<CZooKeeper.ACL>.allocate(capacity: Swift.max(count, 1))
        var strings: [UnsafeMutablePointer<CChar>] = []
        defer {
            strings.forEach { free($0) }
            entries.deallocate()
        }
        for (index, acl) in enumerated() {
            let scheme = strdup(acl.scheme)!
            let id = strdup(acl.id)!
            strings += [scheme, id]
            entries[index] = CZooKeeper.ACL(perms: acl.permissions.rawValue, id: Id(scheme: scheme, id: id))
        }
        var vector = ACL_vector(count: Int32(count), data: entries)
        return try body(&vector)
    }

    /// An upper bound of the bytes this list adds to a request.
    var encodedSize: Int { reduce(4) { $0 + 12 + $1.scheme.utf8.count + $1.id.utf8.count } }
}

/// SHA-1, only for ZooKeeper's digest ids (not for anything that needs a secure hash).
enum SHA1 {
    static func hash(_ message: [UInt8]) -> [UInt8] {
        var h: (UInt32, UInt32, UInt32, UInt32, UInt32) =
            (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)
        var padded = message
        padded.append(0x80)
        while padded.count % 64 != 56 { padded.append(0) }
        let bitLength = UInt64(message.count) * 8
        for shift in stride(from: 56, through: 0, by: -8) { padded.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }

        var w = [UInt32](repeating: 0, count: 80)
        for chunk in stride(from: 0, to: padded.count, by: 64) {
            for i in 0..<16 {
                let b = chunk + i * 4
                w[i] = UInt32(padded[b]) << 24 | UInt32(padded[b + 1]) << 16 | UInt32(padded[b + 2]) << 8 | UInt32(padded[b + 3])
            }
            for i in 16..<80 {
                let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
                w[i] = x << 1 | x >> 31
            }
            var (a, b, c, d, e) = h
            for i in 0..<80 {
                let (f, k): (UInt32, UInt32) =
                    switch i {
                    case 0..<20: ((b & c) | (~b & d), 0x5A82_7999)
                    case 20..<40: (b ^ c ^ d, 0x6ED9_EBA1)
                    case 40..<60: ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
                    default: (b ^ c ^ d, 0xCA62_C1D6)
                    }
                let temp = (a << 5 | a >> 27) &+ f &+ e &+ k &+ w[i]
                e = d
                d = c
                c = b << 30 | b >> 2
                b = a
                a = temp
            }
            h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
        }
        return [h.0, h.1, h.2, h.3, h.4].flatMap { word in
            stride(from: 24, through: 0, by: -8).map { UInt8(truncatingIfNeeded: word >> UInt32($0)) }
        }
    }
}
