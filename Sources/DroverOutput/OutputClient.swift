import Foundation
import DroverProtocol
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ZooKeeperTLS

/// Reads a run's output from the executor that ran it (see ``OutputServer``).
public enum OutputClient {
    /// What went wrong reading output.
    public enum Failure: Error, CustomStringConvertible {
        /// The executor has no output for the run (its method writes none, or the files were removed).
        case notFound(String)
        /// The executor's server could not be reached.
        case unreachable(address: String, reason: String)
        /// The server answered with an error.
        case server(status: Int, message: String)
        /// The address in the executor's registration is not `http(s)://host:port`.
        case badAddress(String)
        /// The executor wants a token this client did not send, or sent wrong.
        case unauthorized(String)
        /// The executor serves HTTPS, and the handshake failed (its certificate, or ours).
        case tls(address: String, reason: String)

        public var description: String {
            switch self {
            case .notFound(let message): message.trimmingCharacters(in: .whitespacesAndNewlines)
            case .unreachable(let address, let reason): "cannot reach the executor at \(address): \(reason)"
            case .server(let status, let message): "the executor answered \(status): \(message.trimmingCharacters(in: .whitespacesAndNewlines))"
            case .badAddress(let address): "the executor registered an address that is not http(s)://host:port: \(address)"
            case .unauthorized(let message): message.trimmingCharacters(in: .whitespacesAndNewlines)
            case .tls(let address, let reason): "the executor at \(address) serves output over HTTPS, and \(reason)"
            }
        }
    }

    /// Fetches a run's output from `offset`, handing each chunk to `receive` as it arrives.
    ///
    /// With `follow`, the response stays open while the run is running and ends when it ends.
    /// - Returns: The number of bytes received.
    /// An `https://` address is reached over TLS with `tls` (default: the system's authorities, no
    /// client certificate).
    public static func fetch(
        from address: String, job: String, run: Int, offset: Int, follow: Bool, token: String? = nil, tls: HTTPClientTLS? = nil,
        receive: (ByteBuffer) async throws -> Void
    ) async throws -> Int {
        let (host, port) = try parse(address)
        let context = address.hasPrefix("https://") ? try (tls ?? HTTPClientTLS()).context() : nil
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPPart<HTTPRequestHead, IOData>>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(5))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let context {
                            try channel.pipeline.syncOperations.addHandler(
                                try NIOSSLClientHandler(context: context, serverHostname: isIPAddress(host) ? nil : host))
                        }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw Failure.unreachable(address: address, reason: "\(error)")
        }
        do {
            return try await exchange(
                over: channel, address: address, host: host, port: port, job: job, run: run, offset: offset, follow: follow, token: token,
                receive: receive)
        } catch let failure as Failure {
            throw failure
        } catch {
            if let failure = TLSHandshakeFailure(error) { throw Failure.tls(address: address, reason: explain(failure, host: host)) }
            // The connection broke mid-response: the executor stopped or crashed.
            throw Failure.unreachable(address: address, reason: "\(error)")
        }
    }

    private static func exchange(
        over channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPPart<HTTPRequestHead, IOData>>, address: String, host: String, port: Int,
        job: String, run: Int, offset: Int, follow: Bool, token: String?, receive: (ByteBuffer) async throws -> Void
    ) async throws -> Int {
        try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(
                version: .http1_1, method: .GET, uri: "/v1/output/\(job)/\(run)?offset=\(offset)&follow=\(follow ? 1 : 0)")
            head.headers.add(name: "Host", value: "\(host):\(port)")
            head.headers.add(name: "Connection", value: "close")
            if let token { head.headers.add(name: "Authorization", value: "Bearer \(token)") }
            do {
                try await outbound.write(.head(head))
                try await outbound.write(.end(nil))
            } catch {
                // The server may have closed first: with TLS 1.3 a refused client certificate comes
                // as an alert after the handshake, and the write only sees a closed channel. The
                // reason, if any, is on the inbound side (a flaky CLITests run said "I/O on closed
                // channel" instead of asking for --http-cert).
                for try await _ in inbound {}
                throw error
            }
            var status = 0
            var errorBody = ""
            var received = 0
            for try await part in inbound {
                switch part {
                case .head(let response):
                    status = Int(response.status.code)
                case .body(let buffer):
                    if status == 200 {
                        received += buffer.readableBytes
                        try await receive(buffer)
                    } else {
                        errorBody += String(buffer: buffer)
                    }
                case .end:
                    switch status {
                    case 200: return received
                    case 404: throw Failure.notFound(errorBody)
                    case 401: throw Failure.unauthorized(errorBody)
                    default: throw Failure.server(status: status, message: errorBody)
                    }
                }
            }
            throw Failure.unreachable(address: address, reason: "the connection closed before the response ended")
        }
    }

    /// A failed handshake in words (BoringSSL's own text names source files).
    static func explain(_ failure: TLSHandshakeFailure, host: String) -> String {
        switch failure {
        case .peerNotTrusted: "its certificate is not signed by an authority this client trusts: give --http-ca FILE (or $DROVER_HTTP_CA)"
        case .certificateRefused: "it asks for a client certificate it accepts: give --http-cert FILE and --http-key FILE"
        case .hostNameMismatch: "its certificate does not name \(host) (start it with --advertise-host set to a name its certificate has)"
        case .notTLS: "it does not speak TLS on that port"
        case .other(let text): "the TLS handshake failed: \(text)"
        }
    }

    public static func parse(_ address: String) throws -> (host: String, port: Int) {
        guard let scheme = ["http://", "https://"].first(where: address.hasPrefix) else { throw Failure.badAddress(address) }
        let rest = address.dropFirst(scheme.count).split(separator: "/", maxSplits: 1).first ?? ""
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]), port > 0 else {
            throw Failure.badAddress(address)
        }
        var host = String(rest[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw Failure.badAddress(address) }
        return (host, port)
    }

    /// Reads a token from a credentials file: its first line, trimmed. Refused when the file can
    /// be read by others than its owner (a token others can read is no secret) or is empty.
    public static func readToken(file path: String) throws -> String {
        let data: [UInt8]
        do {
            data = try SecretFile.read(path, what: "token")
        } catch let error as SecretFileError {
            throw TokenFileError(error.description)
        }
        let token = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).first.map {
            $0.trimmingCharacters(in: .whitespaces)
        } ?? ""
        guard !token.isEmpty else { throw TokenFileError("the token file \(path) is empty") }
        return token
    }
}

/// A token file that cannot be used, and why.
public struct TokenFileError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
