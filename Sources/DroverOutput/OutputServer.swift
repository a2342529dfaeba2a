import DroverProtocol
import DroverShell
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTLS
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Serves the output files of the runs an executor's `shell` method ran, over HTTP.
///
/// `GET /v1/output/<job>/<run>?offset=N&follow=1` answers with the file's bytes from `offset`
/// (`text/plain`). With `follow=1` the response stays open while the run's command is running
/// and sends what it writes, and ends when the run ends. The header `Drover-Run-Active` says
/// whether the command was running when the response began. A run without a file answers 404,
/// unless it is running and about to write one, or — following — the executor holds it and has
/// not started it yet (then the response waits for it).
///
/// Runs as a `Service`; ``address`` waits until the listener is bound, so an executor can
/// register the address (with the port the system chose when asked for port 0).
public struct OutputServer: Service {
    /// How often a followed file is checked for new output.
    public static let pollInterval: Duration = .milliseconds(100)
    /// How long a follow request waits for a held run's output to begin.
    public static let startWait: Duration = .seconds(30)

    private let application: Application<RouterResponder<BasicRequestContext>>
    private let boundPort: OneShot<Int>
    private let advertisedHost: String
    private let scheme: String

    /// Follow streams served at once by default (each holds a connection while its run runs).
    public static let defaultMaximumFollowers = 64

    /// - Parameters:
    ///   - shell: The shell method whose files are served.
    ///   - host: The address to listen on (`127.0.0.1` for this machine only, `0.0.0.0` for every interface).
    ///   - port: The port; 0 lets the system choose.
    ///   - advertisedHost: The host name clients use to reach this server.
    ///   - token: When set, output is served only to requests with `Authorization: Bearer <token>`.
    ///   - maximumFollowers: Follow streams served at once; more are refused with 503.
    ///   - tls: Serve HTTPS with this certificate (the address becomes `https://…`).
    ///   - holds: Whether the executor holds a run (placed on it, maybe not started): a follow
    ///     request for such a run waits for its output to begin instead of answering 404.
    /// - Throws: ``HTTPTLSError`` when the TLS files cannot be used.
    public init(
        shell: ShellMethod, host: String, port: Int, advertisedHost: String, token: String? = nil,
        maximumFollowers: Int = OutputServer.defaultMaximumFollowers, tls: HTTPServerTLS? = nil,
        holds: @escaping @Sendable (_ job: String, _ run: Int) -> Bool = { _, _ in false }, logger: Logger
    ) throws {
        let boundPort = OneShot<Int>()
        let router = Router()
        let followers = Followers(maximum: maximumFollowers)
        router.get("/v1/health") { _, _ in "ok\n" }
        router.get("/v1/output/:job/:run") { request, context in
            try Self.authorize(request, token: token)
            return try await Self.output(request: request, context: context, shell: shell, followers: followers, holds: holds)
        }
        self.application = Application(
            router: router,
            server: try tls.map { try .tls(tlsConfiguration: try $0.configuration()) } ?? .http1(),
            configuration: .init(address: .hostname(host, port: port), serverName: "drover-executor"),
            onServerRunning: { channel in boundPort.fulfil(channel.localAddress?.port ?? port) },
            logger: logger)
        self.boundPort = boundPort
        self.advertisedHost = advertisedHost
        self.scheme = tls == nil ? "http" : "https"
    }

    public func run() async throws {
        do {
            try await application.run()
            boundPort.fail(CancellationError())
        } catch {
            boundPort.fail(error)
            throw error
        }
    }

    /// `http://<advertised host>:<port>` (`https://` with TLS), once the server listens.
    /// - Throws: The server's error if it could not start listening.
    public var address: String {
        get async throws { "\(scheme)://\(advertisedHost):\(try await boundPort.value)" }
    }

    static let runActiveHeader = HTTPField.Name("Drover-Run-Active")!

    /// Refuses a request without the token (401), comparing in constant time.
    static func authorize(_ request: Request, token: String?) throws {
        guard let token else { return }
        // `Bearer <token>`; the scheme's name in any case (RFC 9110).
        let header = request.headers[.authorization] ?? ""
        let scheme = header.prefix { $0 != " " }
        let given = Array(header.dropFirst(scheme.count).drop { $0 == " " }.utf8)
        let expected = Array(token.utf8)
        var difference = UInt8(expected.count == given.count && scheme.lowercased() == "bearer" ? 0 : 1)
        for index in expected.indices { difference |= expected[index] ^ (index < given.count ? given[index] : 0) }
        guard difference == 0 else {
            var headers = HTTPFields()
            headers[.wwwAuthenticate] = "Bearer"
            throw HTTPError(
                .unauthorized, headers: headers,
                message: "this executor serves output only with its token: drover logs --http-token-file FILE (or $DROVER_HTTP_TOKEN_FILE)\n")
        }
    }

    /// Counts the follow streams being served (a soft limit: requests that arrive together may
    /// pass it by a few).
    final class Followers: Sendable {
        let maximum: Int
        private let count = Atomic<Int>(0)
        init(maximum: Int) { self.maximum = maximum }
        var isFull: Bool { count.load(ordering: .relaxed) >= maximum }
        func enter() { count.add(1, ordering: .relaxed) }
        func leave() { count.subtract(1, ordering: .relaxed) }
    }

    private static func output(
        request: Request, context: BasicRequestContext, shell: ShellMethod, followers: Followers, holds: @Sendable (String, Int) -> Bool
    ) async throws -> Response {
        let job = try context.parameters.require("job")
        guard Layout.isValidID(job) else { throw HTTPError(.badRequest, message: "invalid job id \(job)\n") }
        let run = try context.parameters.require("run", as: Int.self)
        let offsetText = request.uri.queryParameters.get("offset")
        guard let offset = offsetText.map({ Int(String($0)) }) ?? 0 else {
            throw HTTPError(.badRequest, message: "offset must be a whole number of bytes\n")
        }
        guard offset >= 0 else { throw HTTPError(.badRequest, message: "offset must not be negative\n") }
        guard run >= 1 else { throw HTTPError(.badRequest, message: "run must be 1 or more\n") }
        let follow = request.uri.queryParameters.get("follow") == "1"
        if follow && followers.isFull {
            throw HTTPError(.serviceUnavailable, message: "this executor is serving \(followers.maximum) followed outputs already: try again shortly\n")
        }
        // The path comes from a validated job id and a number only, never from the request's path.
        let path = shell.outputFile(job: job, run: run).path
        if follow && !shell.isRunning(job: job, run: run) && !FileManager.default.fileExists(atPath: path) && holds(job, run) {
            // Placed here, not started yet: wait for its output to begin (or for the run to
            // leave), at most ``startWait`` — then the client hears 404 and may ask again.
            followers.enter()
            defer { followers.leave() }
            let deadline = ContinuousClock.now + Self.startWait
            while holds(job, run) && !shell.isRunning(job: job, run: run) && !FileManager.default.fileExists(atPath: path)
                && ContinuousClock.now < deadline
            {
                try await Task.sleep(for: pollInterval)
            }
        }
        let active = shell.isRunning(job: job, run: run)
        guard active || FileManager.default.fileExists(atPath: path) else {
            throw HTTPError(.notFound, message: "no output for run \(run) of job \(job) on this executor\n")
        }
        let body = ResponseBody { writer in
            var reader = FileTail(path: path, offset: offset)
            if follow { followers.enter() }
            defer {
                reader.close()
                if follow { followers.leave() }
            }
            while true {
                // Whether the run was active is read before the file: once it is seen inactive,
                // the file is complete, so one more read gets the rest.
                let stillRunning = follow && shell.isRunning(job: job, run: run)
                while let chunk = reader.read() { try await writer.write(chunk) }
                guard stillRunning else { break }
                try await Task.sleep(for: pollInterval)
            }
            try await writer.finish(nil)
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        headers[runActiveHeader] = active ? "true" : "false"
        return Response(status: .ok, headers: headers, body: body)
    }
}

/// Reads a file that may not exist yet or may still grow, from an offset.
struct FileTail {
    let path: String
    var offset: Int
    private var descriptor: Int32 = -1

    init(path: String, offset: Int) {
        self.path = path
        self.offset = offset
    }

    /// The next bytes, or nil when there are none now.
    mutating func read() -> ByteBuffer? {
        if descriptor < 0 {
            descriptor = open(path, O_RDONLY | O_CLOEXEC)
            if descriptor < 0 { return nil }
        }
        var buffer = ByteBuffer()
        let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 64 * 1024) { bytes in
            max(0, pread(descriptor, bytes.baseAddress, bytes.count, off_t(offset)))
        }
        guard count > 0 else { return nil }
        offset += count
        return buffer
    }

    mutating func close() {
        if descriptor >= 0 { _ = Foundation.close(descriptor) }
        descriptor = -1
    }
}

