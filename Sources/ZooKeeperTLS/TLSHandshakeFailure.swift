import NIOSSL

/// What went wrong in a TLS handshake, told from swift-nio-ssl's error (BoringSSL's own text
/// names source files, so callers put this in words of their own, with the flag to change).
public enum TLSHandshakeFailure: Sendable, Equatable {
    /// The peer's certificate does not chain to a trusted authority, or has expired.
    case peerNotTrusted
    /// The peer refused this side's certificate, or wanted one it did not get.
    case certificateRefused
    /// The peer's certificate does not name the host connected to.
    case hostNameMismatch
    /// The peer does not speak TLS on that port.
    case notTLS
    case other(String)

    /// The failure `error` is, or nil when it is no TLS failure (a connection a peer closed
    /// without TLS's closing message is the end of a connection, not a failure).
    public init?(_ error: any Error) {
        if case NIOSSLError.uncleanShutdown? = error as? NIOSSLError { return nil }
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            self = .hostNameMismatch
            return
        }
        switch error {
        case is NIOSSLError, is BoringSSLError, is NIOSSLExtraError:
            let text = "\(error)"
            if text.contains("CERTIFICATE_VERIFY_FAILED") {
                self = .peerNotTrusted
            } else if ["CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE", "BAD_CERTIFICATE", "UNKNOWN_CA"].contains(where: text.contains) {
                self = .certificateRefused
            } else if ["WRONG_VERSION_NUMBER", "UNEXPECTED_RECORD", "HTTP_REQUEST"].contains(where: text.contains) {
                self = .notTLS
            } else {
                self = .other(text)
            }
        default: return nil
        }
    }
}

/// Whether `host` is an IP address: it is sent as no SNI, and a certificate is checked against
/// its IP entries instead of its names.
public func isIPAddress(_ host: String) -> Bool {
    host.contains(":") || (!host.isEmpty && host.allSatisfy { $0.isNumber || $0 == "." })
}
