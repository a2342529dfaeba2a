import Foundation
import ZooKeeperServers

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, made with
/// `openssl` in a new directory, for tests of TLS endpoints.
public struct TestCertificates: Sendable {
    public let directory: String
    public var authority: String { directory + "/ca.pem" }
    public var serverCertificate: String { directory + "/server.pem" }
    public var serverKey: String { directory + "/server.key" }
    public var clientCertificate: String { directory + "/client.pem" }
    public var clientKey: String { directory + "/client.key" }

    /// Makes them (P-256 keys, valid a day).
    public static func make() async throws -> TestCertificates {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("certs-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let certificates = TestCertificates(directory: directory)
        try await openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", directory + "/ca.key", "-out", certificates.authority,
        ])
        for (name, extensions) in [
            ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"), ("client", "extendedKeyUsage=clientAuth"),
        ] {
            try await openssl([
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=\(name)",
                "-keyout", "\(directory)/\(name).key", "-out", "\(directory)/\(name).csr",
            ])
            try extensions.write(toFile: "\(directory)/\(name).ext", atomically: true, encoding: .utf8)
            try await openssl([
                "x509", "-req", "-in", "\(directory)/\(name).csr", "-CA", certificates.authority, "-CAkey", directory + "/ca.key",
                "-CAcreateserial", "-days", "1", "-extfile", "\(directory)/\(name).ext", "-out", "\(directory)/\(name).pem",
            ])
        }
        return certificates
    }

    private static func openssl(_ arguments: [String]) async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("openssl-\(UUID().uuidString.prefix(8)).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let status = try await runAndWait("/usr/bin/openssl", arguments, stdout: log, stderr: log)
        guard status == 0 else {
            throw LocalEnsembleError("openssl \(arguments.prefix(2).joined(separator: " ")) failed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
    }
}
