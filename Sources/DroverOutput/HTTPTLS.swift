import NIOSSL

/// HTTPS for the executors' output endpoint and the manager's API: the server's certificate and
/// key, and optionally the authorities whose client certificates it requires (then a request
/// without one is refused at the handshake).
public struct HTTPServerTLS: Sendable {
    public var certificateFile: String
    public var privateKeyFile: String
    /// PEM file of the authorities that sign clients' certificates; nil: no client certificate asked.
    public var clientCertificateAuthorityFile: String?

    public init(certificateFile: String, privateKeyFile: String, clientCertificateAuthorityFile: String? = nil) {
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        self.clientCertificateAuthorityFile = clientCertificateAuthorityFile
    }

    /// The server's TLS settings.
    public func configuration() throws -> TLSConfiguration {
        var tls: TLSConfiguration
        do {
            tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: privateKeyFile, format: .pem)))
        } catch {
            throw HTTPTLSError("cannot read the certificate \(certificateFile) or key \(privateKeyFile): \(error) (PEM files are expected)")
        }
        tls.minimumTLSVersion = .tlsv12
        if let clientCertificateAuthorityFile {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(clientCertificateAuthorityFile))
            } catch {
                throw HTTPTLSError("cannot read the client authorities \(clientCertificateAuthorityFile): \(error) (a PEM file is expected)")
            }
            tls.certificateVerification = .noHostnameVerification
        }
        return tls
    }
}

/// How a client reaches an output endpoint over TLS (`https://` in the executor's registration):
/// the authorities to trust (nil: the system's), and a client certificate when the endpoint asks.
public struct HTTPClientTLS: Sendable {
    public var certificateAuthorityFile: String?
    public var certificateFile: String?
    public var privateKeyFile: String?

    public init(certificateAuthorityFile: String? = nil, certificateFile: String? = nil, privateKeyFile: String? = nil) {
        self.certificateAuthorityFile = certificateAuthorityFile
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
    }

    func context() throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        do {
            if let certificateAuthorityFile {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(certificateAuthorityFile))
            }
            if let certificateFile, let privateKeyFile {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: privateKeyFile, format: .pem))
            }
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw HTTPTLSError("the TLS settings for the executors' output cannot be used: \(error)")
        }
    }
}

public struct HTTPTLSError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
