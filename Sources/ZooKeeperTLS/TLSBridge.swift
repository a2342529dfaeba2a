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
/// Only this process can use the ports: a connection from any other (another local user's, say)
/// is closed at once, or it would reach ZooKeeper with this process's client certificate and the
/// rights of the role it holds (`LoopbackPeer`).
public final class TLSBridge: Sendable {
    /// The connection string to give the ZooKeeper client: the bridge's ports, then the chroot.
    public let connectionString: String
    /// The bridge's loopback port for each server, in the order of the connection string.
    public let ports: [Int]
    private let listeners: [any Channel]
    private let failures: Failures

    /// The most recent reason a connection could not be carried (a refused connection, a failed
    /// handshake), to say why the client could not connect.
    public var lastFailureDescription: String? { failures.last }

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
        let failures = Failures(logger: logger)
        var listeners: [any Channel] = []
        do {
            for server in servers {
                // Bytes go from one socket to the other inside the event loop (no task hops): the
                // client's connection is read only once the server's is up, and each side reads
                // only while the other can take what it writes.
                let listener = try await ServerBootstrap(group: eventLoopGroup)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelOption(.autoRead, value: false)
                    .childChannelInitializer { client in
                        guard let peer = client.remoteAddress?.port, let local = client.localAddress?.port else { return client.close() }
                        switch LoopbackPeer.owner(peerPort: peer, localPort: local) {
                        case .thisProcess:
                            return Self.connect(client, to: server, context: context, failures: failures)
                        case .anotherProcess:
                            failures.note("refused a connection to the bridge from another process")
                            return client.close()
                        case .unknown:
                            failures.note("refused a connection to the bridge: /proc/net/tcp cannot be read, so whose it is cannot be told")
                            return client.close()
                        case .gone:
                            // Closed by this process's own client before it was looked up (it gave
                            // up on a slow connection): the last real failure stays the one reported.
                            return client.close()
                        }
                    }
                    .bind(host: "127.0.0.1", port: 0).get()
                listeners.append(listener)
            }
        } catch {
            for listener in listeners { try? await listener.close() }
            throw TLSBridgeError("could not open a loopback port for the TLS bridge: \(error)")
        }
        return TLSBridge(ports: listeners.map { $0.localAddress?.port ?? 0 }, chroot: chroot, listeners: listeners, failures: failures)
    }

    /// Opens the server's side of a client's connection, on the client's event loop, and joins
    /// the two; the client's connection is closed at once when the server cannot be reached, so
    /// the ZooKeeper client moves on to the next server.
    private static func connect(_ client: any Channel, to server: Server, context: NIOSSLContext, failures: Failures) -> EventLoopFuture<Void> {
        // Both handlers live on the client's event loop, where the server's side is opened too.
        let glue = NIOLoopBound(Glue.pair(server: server, failures: failures), eventLoop: client.eventLoop)
        return ClientBootstrap(group: client.eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .channelInitializer { upstream in
                upstream.eventLoop.makeCompletedFuture {
                    // An IP address cannot be sent as SNI: the certificate is then checked
                    // against the address connected to.
                    try upstream.pipeline.syncOperations.addHandler(
                        try NIOSSLClientHandler(context: context, serverHostname: server.isAddress ? nil : server.host))
                    try upstream.pipeline.syncOperations.addHandler(glue.value.server)
                }
            }
            .connect(host: server.host, port: server.port)
            .flatMapThrowing { _ in
                try client.pipeline.syncOperations.addHandler(glue.value.client)
                try client.syncOptions?.setOption(.autoRead, value: true)
            }
            .flatMapError { error in
                failures.note("cannot reach \(server): \(error)")
                return client.close()
            }
    }

    private init(ports: [Int], chroot: String, listeners: [any Channel], failures: Failures) {
        self.ports = ports
        self.connectionString = ports.map { "127.0.0.1:\($0)" }.joined(separator: ",") + chroot
        self.listeners = listeners
        self.failures = failures
    }

    /// Closes the ports (connections already carried end when either side closes them).
    public func shutdown() async {
        for listener in listeners { try? await listener.close() }
    }

    /// What a failed handshake with a server means, in words.
    static func explain(_ failure: TLSHandshakeFailure) -> String {
        switch failure {
        case .peerNotTrusted: "the server's certificate was not accepted: it is not signed by an authority in the CA file, or has expired"
        case .certificateRefused: "the server did not accept this process's client certificate"
        case .hostNameMismatch: "the server's certificate does not name it"
        case .notTLS: "the server does not speak TLS on this port (is it its plain clientPort rather than its secureClientPort?)"
        case .other(let text): text
        }
    }

    struct Server: Sendable, CustomStringConvertible {
        var host: String
        var port: Int
        var isAddress: Bool { isIPAddress(host) }
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

/// The bridge's most recent failure, logged when it differs from the one before (the client
/// retries at once, so a wrong certificate would otherwise log a line per try).
final class Failures: Sendable {
    private let latest = Mutex<String?>(nil)
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    var last: String? { latest.withLock { $0 } }

    func note(_ failure: String) {
        let isNew = latest.withLock { last in
            defer { last = failure }
            return last != failure
        }
        if isNew { logger.warning("\(failure)") }
    }

    /// A handshake went through: an old failure is no longer the news.
    func clear() { latest.withLock { $0 = nil } }
}

/// Carries bytes between a client's connection and the server's, inside the event loop both
/// share: what one side reads the other writes, flushed when the read is complete; a side reads
/// only while the other can take more; either side ending closes both.
final class Glue: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: Glue?
    private var context: ChannelHandlerContext?
    private var readPending = false
    private var answered = false
    /// Set on the server's side: its failures are the bridge's news.
    private let server: TLSBridge.Server?
    private let failures: Failures?

    private init(server: TLSBridge.Server?, failures: Failures?) {
        self.server = server
        self.failures = failures
    }

    /// The handler for the client's side and the one for the server's side, joined.
    static func pair(server: TLSBridge.Server, failures: Failures) -> (client: Glue, server: Glue) {
        let client = Glue(server: nil, failures: nil)
        let upstream = Glue(server: server, failures: failures)
        client.partner = upstream
        upstream.partner = client
        return (client, upstream)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        partner?.resumeReading()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let failures, !answered {
            answered = true
            failures.clear()
        }
        partner?.context?.write(NIOAny(unwrapInboundIn(data)), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) { partner?.context?.flush() }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.context?.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let failures, let server, let failure = TLSHandshakeFailure(error) {
            failures.note("TLS with \(server) failed: \(TLSBridge.explain(failure))")
        }
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        // Before the other side is joined nothing can arrive to pass on (the client side reads
        // only once joined; a server speaks only when spoken to): read on.
        if partner?.context.map({ $0.channel.isWritable }) ?? true {
            context.read()
        } else {
            readPending = true
        }
    }

    private func resumeReading() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }
}

/// Why a ``TLSBridge`` could not start, and what to change.
public struct TLSBridgeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
