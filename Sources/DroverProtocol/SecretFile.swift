import Foundation

/// A file that holds a secret (a token, credentials): read only when nobody but its owner can
/// read it, so a secret left readable by others is noticed instead of used.
public enum SecretFile {
    /// The file's bytes.
    /// - Throws: ``SecretFileError`` when it cannot be read, others may read it, or it is empty.
    public static func read(_ path: String, what: String) throws -> [UInt8] {
        var info = stat()
        guard stat(path, &info) == 0, let data = FileManager.default.contents(atPath: path) else {
            throw SecretFileError("cannot read the \(what) file \(path)")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw SecretFileError("the \(what) file \(path) can be read by others: chmod 600 \(path)")
        }
        guard !data.isEmpty else { throw SecretFileError("the \(what) file \(path) is empty") }
        return Array(data)
    }

    /// Writes `bytes` to a new file only its owner can read (mode 0600); an existing file is
    /// left alone and reported, so a secret handed out earlier is never overwritten by mistake.
    public static func create(_ path: String, bytes: [UInt8]) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else {
            let reason = errno == EEXIST ? "it already exists (remove it, or choose another directory)" : String(cString: strerror(errno))
            throw SecretFileError("cannot create \(path): \(reason)")
        }
        defer { close(descriptor) }
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw SecretFileError("cannot write \(path): \(String(cString: strerror(errno)))") }
    }
}

/// A secret file that cannot be used, and why.
public struct SecretFileError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
