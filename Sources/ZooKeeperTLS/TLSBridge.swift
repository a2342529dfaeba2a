import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Where a ``TLSBridge`` finds the certificates it trusts and shows.
public struct TLSBridgeConfiguration: Sendable, Equatable, Hashable {
    /// PEM file of the certificate authorities that signed the servers' certificates.
    public var certificateAuthorityFile: String
    /// PEM file of this process's certificate (chain), for ZooKeeper's x509 authentication; nil: none.
    public var certificateFile: String?
    /// PEM file of the private key of ``certificateFile``.
    public var privateKeyFile: String?

    public init(certificateAuthorityFile: String, certificateFile: String? = nil, privateKeyFile: String? = nil) {
        self.certificateAuthorityFile = certificateAuthorityFile
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
    }
}

/// TLS to ZooKeeper for a client that speaks only plain TCP (Debian's C client has no TLS).
///
/// The bridge listens on one loopback port per server of a connection string; the ZooKeeper
/// client connects to those ports, and each connection it makes is carried over TLS (1.2 or
/// later, the server's certificate verified against the given authorities, a client certificate
/// shown when one is configured) to that server's `secureClientPort`. Failover works as without
/// the bridge: when a server cannot be reached the bridge closes the client's connection at once,
/// and the client moves on to the next port, as it would to the next server.
///
/// Only this process can use the ports in practice (loopback), and what crosses them is what the
/// C client would have sent in clear anyway.
public final class TLSBridge: Sendable {
    /// The connection string to give the ZooKeeper client: the bridge's ports, then the chroot.
    public let connectionString: String
    /// The bridge's loopback port for each server, in the order of the connection string.
    public let ports: [Int]
    private let lastFailure: Mutex<String?>
    private let running: Mutex<Task<Void, Never>?>

    /// The most recent reason a connection could not be carried (a refused connection, a failed
    /// handshake), to say why the client could not connect.
    public var lastFailureDescription: String? { lastFailure.withLock { $0 } }

    /// Opens the bridge's ports for each server of `connectionString`
    /// (`host:securePort[,host:securePort...][/chroot]`) and starts carrying connections.
    ///
    /// Throws ``TLSBridgeError`` when the connection string or a certificate file cannot be used.
    public static func start(
        connectionString: String, configuration: TLSBridgeConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "zookeeper.tls")
    ) async throws -> TLSBridge {
        let (servers, chroot) = try Self.servers(in: connectionString)
        let context = try Self.makeContext(configuration)
        var listeners: [NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>] = []
        do {
            for _ in servers {
                let listener = try await ServerBootstrap(group: eventLoopGroup)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .bind(host: "127.0.0.1", port: 0) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                        }
                    }
                listeners.append(listener)
            }
        } catch {
            for listener in listeners { try? await listener.channel.close() }
            throw TLSBridgeError("could not open a loopback port for the TLS bridge: \(error)")
        }
        let ports = listeners.map { $0.channel.localAddress?.port ?? 0 }
        let bridge = TLSBridge(ports: ports, chroot: chroot)
        // The bridge outlives this call, as the client it serves does: its accept loops run in a
        // task that ``shutdown()`` cancels.
        let task = Task {
            await withDiscardingTaskGroup { group in
                for (listener, server) in zip(listeners, servers) {
                    group.addTask {
                        await bridge.serve(
                            listener, server: server, context: context, eventLoopGroup: eventLoopGroup, logger: logger)
                    }
                }
            }
        }
        bridge.running.withLock { $0 = task }
        return bridge
    }

    private init(ports: [Int], chroot: String) {
        self.ports = ports
        self.connectionString = ports.map { "127.0.0.1:\($0)" }.joined(separator: ",") + chroot
        self.lastFailure = Mutex(nil)
        self.running = Mutex(nil)
    }

    /// Closes the ports and every connection carried.
    public func shutdown() async {
        guard let task = running.withLock({ $0 }) else { return }
        task.cancel()
        await task.value
    }

    private func serve(
        _ listener: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>, server: Server,
        context: NIOSSLContext, eventLoopGroup: any EventLoopGroup, logger: Logger
    ) async {
        await withTaskCancellationHandler {
            try? await listener.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        group.addTask {
                            await self.carry(connection, to: server, context: context, eventLoopGroup: eventLoopGroup, logger: logger)
                        }
                    }
                }
            }
        } onCancel: {
            listener.channel.close(promise: nil)
        }
    }

    /// Carries one client connection to `server` over TLS until either side ends it.
    private func carry(
        _ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, to server: Server, context: NIOSSLContext,
        eventLoopGroup: any EventLoopGroup, logger: Logger
    ) async {
        try? await connection.executeThenClose { clientInbound, clientOutbound in
            let upstream: NIOAsyncChannel<ByteBuffer, ByteBuffer>
            do {
                upstream = try await ClientBootstrap(group: eventLoopGroup)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .connectTimeout(.seconds(5))
                    .connect(host: server.host, port: server.port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            // An IP address cannot be sent as SNI: the certificate is then checked
                            // against the address connected to.
                            let handler = try NIOSSLClientHandler(
                                context: context, serverHostname: server.isAddress ? nil : server.host)
                            try channel.pipeline.syncOperations.addHandler(handler)
                            return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                        }
                    }
            } catch {
                note(failure: "cannot reach \(server): \(error)", logger: logger)
                return
            }
            try await upstream.executeThenClose { serverInbound, serverOutbound in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await bytes in clientInbound { try await serverOutbound.write(bytes) }
                    }
                    group.addTask {
                        do {
                            var answered = false
                            for try await bytes in serverInbound {
                                if !answered {
                                    // The handshake went through: an old failure is no longer the news.
                                    answered = true
                                    self.lastFailure.withLock { $0 = nil }
                                }
                                try await clientOutbound.write(bytes)
                            }
                        } catch NIOSSLError.uncleanShutdown {
                            // A server closes a session's connection without TLS's closing
                            // message: the end of a connection, not a failure.
                            return
                        } catch let error as NIOSSLError {
                            self.note(failure: "TLS with \(server) failed: \(Self.explain(error))", logger: logger)
                            throw error
                        } catch let error as BoringSSLError {
                            self.note(failure: "TLS with \(server) failed: \(Self.explain(error))", logger: logger)
                            throw error
                        } catch let error as NIOSSLExtraError {
                            // Raised by the host name check, after the chain was accepted.
                            self.note(failure: "TLS with \(server) failed: the server's certificate does not name it (\(error))", logger: logger)
                            throw error
                        }
                    }
                    // Either side ending ends the connection: ZooKeeper's protocol has no half-close.
                    // Closing both channels (not only cancelling) ends a read that waits on the
                    // other side at once: the client must hear of a dead server now, not at its
                    // next ping.
                    defer {
                        connection.channel.close(promise: nil)
                        upstream.channel.close(promise: nil)
                        group.cancelAll()
                    }
                    _ = try await group.next()
                }
            }
        }
    }

    /// Keeps the failure for ``lastFailureDescription``; logs it when it differs from the last
    /// one (the client retries at once, so a wrong certificate would otherwise log a line per try).
    private func note(failure: String, logger: Logger) {
        let isNew = lastFailure.withLock { last in
            defer { last = failure }
            return last != failure
        }
        if isNew { logger.warning("\(failure)") }
    }

    /// What a failed handshake means, in words (BoringSSL's own text names source files).
    static func explain(_ error: any Error) -> String {
        let text = "\(error)"
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return "the server's certificate was not accepted: it is not signed by an authority in the CA file, or has expired"
        }
        if text.contains("TLSV1_ALERT_UNKNOWN_CA") || text.contains("BAD_CERTIFICATE") || text.contains("CERTIFICATE_REQUIRED") {
            return "the server did not accept this process's client certificate"
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("UNEXPECTED_RECORD") || text.contains("HTTP_REQUEST") {
            return "the server does not speak TLS on this port (is it its plain clientPort rather than its secureClientPort?)"
        }
        return text
    }

    struct Server: Sendable, CustomStringConvertible {
        var host: String
        var port: Int
        var isAddress: Bool { host.allSatisfy { $0.isNumber || $0 == "." } || host.contains(":") }
        var description: String { "\(host):\(port)" }
    }

    /// The servers and the chroot of a connection string.
    static func servers(in connectionString: String) throws -> ([Server], String) {
        let slash = connectionString.firstIndex(of: "/") ?? connectionString.endIndex
        let chroot = String(connectionString[slash...])
        var servers: [Server] = []
        for entry in connectionString[..<slash].split(separator: ",") {
            guard let colon = entry.lastIndex(of: ":"), colon > entry.startIndex,
                let port = Int(entry[entry.index(after: colon)...]), (1...65535).contains(port)
            else {
                throw TLSBridgeError("'\(entry)' in '\(connectionString)' is not host:port (with TLS, the port is the servers' secureClientPort)")
            }
            servers.append(Server(host: String(entry[..<colon]), port: port))
        }
        guard !servers.isEmpty else { throw TLSBridgeError("no server in the connection string '\(connectionString)'") }
        return (servers, chroot)
    }

    static func makeContext(_ configuration: TLSBridgeConfiguration) throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.certificateVerification = .fullVerification
        do {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(configuration.certificateAuthorityFile))
        } catch {
            throw TLSBridgeError("cannot read the certificate authorities from \(configuration.certificateAuthorityFile): \(error) (a PEM file is expected)")
        }
        switch (configuration.certificateFile, configuration.privateKeyFile) {
        case (nil, nil):
            break
        case (let certificate?, let key?):
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
            } catch {
                throw TLSBridgeError("cannot read the client certificate from \(certificate): \(error) (a PEM file is expected)")
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            } catch {
                throw TLSBridgeError("cannot read the private key from \(key): \(error) (a PEM file is expected)")
            }
        default:
            throw TLSBridgeError("a client certificate needs both its certificate file and its private key file")
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw TLSBridgeError("the TLS settings cannot be used: \(error)")
        }
    }
}

/// Why a ``TLSBridge`` could not start, and what to change.
public struct TLSBridgeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
