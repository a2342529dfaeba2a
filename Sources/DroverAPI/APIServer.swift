import DroverClient
import DroverOutput
import DroverProtocol
import DroverShell
import DroverStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTLS
import Logging
import ServiceLifecycle
import ZKRecipes
import ZooKeeper

/// Drover's HTTP API (docs/openapi.yaml), served by every manager with `--api host:port`: reads
/// come from ZooKeeper, writes go through the queue like any client's, so a standby serves it as
/// well as the leader. Errors are JSON, `{"code": …, "message": …}`, never a 500 for a client's
/// mistake.
///
/// In a secured deployment every request must carry HTTP Basic credentials of a role
/// (`drover init`'s files: user and password): reads take any role but an executor's, writes the
/// client's or the admin's. An open deployment asks for none (as ZooKeeper itself does not).
public struct APIServer: Service {
    /// An API route: its method, its path as docs/openapi.yaml writes it, and its handler.
    struct Route: Sendable {
        let method: HTTPRequest.Method
        let path: String
        let writes: Bool
        let handler: @Sendable (Request, BasicRequestContext, APIServer.Handlers) async throws -> Response
    }

    private let application: Application<RouterResponder<BasicRequestContext>>
    private let bound = OneShot<Int>()

    /// The largest request body accepted (a bulk submit of many specs).
    public static let maximumBodyBytes = 4 * 1024 * 1024

    /// - Parameters:
    ///   - outputToken: The token executors ask for their output (`--http-token-file`), if any.
    ///   - hostNames: Names besides IP addresses, `localhost` and this machine's name that requests
    ///     may carry in their `Host` header (`--api-host`): a page on another name is refused, so a
    ///     DNS-rebinding page cannot read the API through an operator's browser.
    ///   - outputTLS: How to reach executors that serve output over HTTPS.
    ///   - tls: Serve HTTPS with this certificate (and, with its client authority, only to clients
    ///     showing a certificate it signed).
    /// - Throws: ``HTTPTLSError`` when the TLS files cannot be used.
    public init(
        client: DroverClient, host: String, port: Int, outputToken: String? = nil, outputTLS: HTTPClientTLS? = nil, hostNames: [String] = [],
        tls: HTTPServerTLS? = nil, logger: Logger
    ) throws {
        let router = Router()
        let allowed = Set((hostNames + ["localhost", ProcessInfo.processInfo.hostName]).map { $0.lowercased() })
        let handlers = Handlers(client: client, outputToken: outputToken, outputTLS: outputTLS, hostNames: allowed)
        router.add(middleware: JSONErrors(logger: logger))
        for route in Self.routes {
            // `{id}` in the document is `:id` for the router.
            let path = RouterPath(route.path.replacingOccurrences(of: "{", with: ":").replacingOccurrences(of: "}", with: ""))
            router.on(path, method: route.method) { request, context in
                let access = try await handlers.authorize(request, writes: route.writes)
                // Writes create nodes: with the deployment's policy as it is now (a rotation takes effect at once).
                let current =
                    access == handlers.client.access
                    ? handlers
                    : Handlers(
                        client: handlers.client.with(access), outputToken: handlers.outputToken, outputTLS: handlers.outputTLS,
                        hostNames: handlers.hostNames)
                return try await route.handler(request, context, current)
            }
        }
        application = Application(
            router: router, server: try tls.map { try .tls(tlsConfiguration: try $0.configuration()) } ?? .http1(),
            configuration: .init(address: .hostname(host, port: port), serverName: "drover-api"),
            onServerRunning: { [bound] channel in bound.fulfil(channel.localAddress?.port ?? port) }, logger: logger)
    }

    public func run() async throws {
        do {
            try await application.run()
            bound.fail(CancellationError())
        } catch is CancellationError {
            bound.fail(CancellationError())
        } catch {
            bound.fail(error)
            throw error
        }
    }

    /// The port, once the server listens.
    /// - Throws: The server's error when it could not listen.
    public var port: Int {
        get async throws { try await bound.value }
    }

    /// Every route, as docs/openapi.yaml lists them (a test checks the two agree).
    static let routes: [Route] = [
        Route(method: .get, path: "/", writes: false) { _, _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "text/html; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: Dashboard.html)))
        },
        Route(method: .get, path: "/v1/health", writes: false) { _, _, handlers in try await handlers.health() },
        Route(method: .get, path: "/v1/jobs", writes: false) { request, _, handlers in try await handlers.jobs(request) },
        Route(method: .post, path: "/v1/jobs", writes: true) { request, _, handlers in try await handlers.submit(request) },
        Route(method: .get, path: "/v1/jobs/{id}", writes: false) { _, context, handlers in
            try await handlers.job(try context.parameters.require("id"))
        },
        Route(method: .get, path: "/v1/jobs/{id}/runs/{run}/log", writes: false) { request, context, handlers in
            try await handlers.log(try context.parameters.require("id"), run: try context.parameters.require("run"), request: request)
        },
        Route(method: .post, path: "/v1/jobs/{id}/{action}", writes: true) { request, context, handlers in
            let action = try context.parameters.require("action")
            if action == "inject" { return try await handlers.inject(into: try context.parameters.require("id"), request) }
            return try await handlers.act(on: try context.parameters.require("id"), action)
        },
        Route(method: .get, path: "/v1/executors", writes: false) { _, _, handlers in try await handlers.executors() },
        Route(method: .post, path: "/v1/executors/{id}/{action}", writes: true) { _, context, handlers in
            try await handlers.executor(try context.parameters.require("id"), try context.parameters.require("action"))
        },
        Route(method: .get, path: "/v1/specs", writes: false) { _, _, handlers in try await handlers.specs() },
        Route(method: .post, path: "/v1/specs", writes: true) { request, _, handlers in try await handlers.createSpec(request) },
        Route(method: .get, path: "/v1/specs/{name}", writes: false) { _, context, handlers in
            try await handlers.spec(try context.parameters.require("name"))
        },
        Route(method: .post, path: "/v1/specs/{name}/{action}", writes: true) { request, context, handlers in
            try await handlers.specAction(try context.parameters.require("name"), try context.parameters.require("action"), request)
        },
        Route(method: .get, path: "/v1/specs/{name}/units", writes: false) { request, context, handlers in
            try await handlers.units(of: try context.parameters.require("name"), request)
        },
        Route(method: .post, path: "/v1/specs/{name}/units", writes: true) { request, context, handlers in
            try await handlers.addUnits(to: try context.parameters.require("name"), request)
        },
        Route(method: .get, path: "/v1/specs/{name}/unit", writes: false) { request, context, handlers in
            try await handlers.unit(of: try context.parameters.require("name"), request)
        },
        Route(method: .get, path: "/v1/managers", writes: false) { _, _, handlers in try await handlers.managers() },
        Route(method: .get, path: "/v1/counts", writes: false) { _, _, handlers in try await handlers.counts() },
        Route(method: .get, path: "/v1/events", writes: false) { _, _, handlers in try handlers.events() },
    ]

    /// The routes' methods and paths, as `GET /v1/jobs/{id}`.
    public static var routeList: [String] { routes.map { "\($0.method.rawValue) \($0.path)" } }

    /// What each route does, over one Drover client.
    struct Handlers: Sendable {
        let client: DroverClient
        var outputToken: String? = nil
        var outputTLS: HTTPClientTLS? = nil
        /// Names a request's `Host` may carry besides IP addresses (lowercased).
        var hostNames: Set<String> = []

        /// The most output a log request returns (the rest is left out, and said so in a header).
        static let maximumLogBytes = 16 * 1024 * 1024

        /// A run's output so far, read from the executor that ran it (as `drover logs` does); with
        /// `follow=true`, then what it writes until the run ends there (as `drover logs -f`).
        /// `offset` skips the bytes a client already has.
        func log(_ id: String, run runText: String, request: Request) async throws -> Response {
            guard let run = Int(runText), run >= 1 else { throw APIError(.badRequest, "badRequest", "run \(runText): expected 1 or more") }
            let query = request.uri.queryParameters
            let followText = query.get("follow") ?? "false"
            guard let follow = Bool(followText) else { throw APIError(.badRequest, "badRequest", "follow \(followText): expected true or false") }
            let offsetText = query.get("offset") ?? "0"
            guard let offset = Int(offsetText), offset >= 0 else {
                throw APIError(.badRequest, "badRequest", "offset \(offsetText): expected a number of bytes, 0 or more")
            }
            let record = try await zooKeeper { try await client.status(id) }
            let place = RunPlace(record, run: run)
            guard case .on(let executor, let running) = place else {
                throw APIError(.notFound, "noOutput", place.explanation(job: id, run: run, record: record))
            }
            guard let address = try await zooKeeper({ try await client.registration(of: executor) })?.address else {
                throw APIError(
                    .serviceUnavailable, "executorGone",
                    "executor \(executor) is not running, so run \(run)'s output cannot be read now (it is kept in that executor's output directory)")
            }
            var output = ByteBuffer()
            var truncated = false
            do {
                _ = try await OutputClient.fetch(from: address, job: id, run: run, offset: offset, follow: false, token: outputToken, tls: outputTLS) { chunk in
                    var chunk = chunk
                    let room = Self.maximumLogBytes - output.readableBytes
                    if chunk.readableBytes > room {
                        truncated = true
                        chunk = chunk.getSlice(at: chunk.readerIndex, length: room) ?? ByteBuffer()
                    }
                    output.writeBuffer(&chunk)
                    if truncated { throw CancellationError() }
                }
            } catch is CancellationError where truncated {
            } catch OutputClient.Failure.notFound(let message) {
                throw APIError(.notFound, "noOutput", message.trimmingCharacters(in: .whitespacesAndNewlines) + " (only the shell method writes output)")
            } catch let failure as OutputClient.Failure {
                throw APIError(.badGateway, "executorUnreachable", "\(failure)")
            }
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; charset=utf-8"
            if truncated { headers[HTTPField.Name("Drover-Truncated")!] = "first \(Self.maximumLogBytes) bytes" }
            guard follow && running && !truncated else { return Response(status: .ok, headers: headers, body: .init(byteBuffer: output)) }
            // What is there was read above (so a missing run or an unreachable executor is a
            // status, not a cut stream); the rest streams as the executor serves it, and the
            // response ends when the run ends there — or when the executor stops serving it
            // (the run moved: ask again).
            let (outputToken, outputTLS) = (outputToken, outputTLS)
            let initial = output
            return Response(
                status: .ok, headers: headers,
                body: ResponseBody { writer in
                    try await writer.write(initial)
                    // An executor that goes away mid-stream cuts the response short (no clean end),
                    // so a reader cannot take a lost executor for the run's end.
                    _ = try await OutputClient.fetch(
                        from: address, job: id, run: run, offset: offset + initial.readableBytes, follow: true, token: outputToken, tls: outputTLS
                    ) { chunk in try await writer.write(chunk) }
                    try await writer.finish(nil)
                })
        }

        /// Checks the request's credentials against the deployment's policy, read afresh (a
        /// rotation takes effect at once); returns the policy.
        func authorize(_ request: Request, writes: Bool) async throws -> Access {
            try checkHost(request.head.authority)
            if writes {
                // Another site's page must not be able to make the operator's browser submit work:
                // browsers send JSON across sites only after a preflight this API never answers, and
                // they name the page's site in Origin and Sec-Fetch-Site.
                let contentType = request.headers[.contentType]?.lowercased() ?? ""
                guard contentType.hasPrefix("application/json") else {
                    throw APIError(.unsupportedMediaType, "badRequest", "send the body as Content-Type: application/json")
                }
                if request.headers[HTTPField.Name("Sec-Fetch-Site")!].map({ !["same-origin", "none"].contains($0) }) == true {
                    throw APIError(.forbidden, "crossSite", "requests from another site's pages are refused")
                }
                if let origin = request.headers[HTTPField.Name("Origin")!], let host = request.head.authority,
                    origin != "http://\(host)" && origin != "https://\(host)"
                {
                    throw APIError(.forbidden, "crossSite", "requests from another site's pages are refused (Origin \(origin))")
                }
            }
            let access = try await Access.load(client.zookeeper, layout: client.layout)
            guard case .secured(let policy) = access else { return access }
            let header = request.headers[.authorization] ?? ""
            guard header.lowercased().hasPrefix("basic "),
                let decoded = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
                let text = String(data: decoded, encoding: .utf8), let colon = text.firstIndex(of: ":")
            else {
                throw APIError(
                    .unauthorized, "unauthorized",
                    "this deployment is secured: send HTTP Basic credentials — the user and password of a credentials file drover init wrote",
                    challenge: true)
            }
            let id = ACL.digestID(user: String(text[..<colon]), password: String(text[text.index(after: colon)...]))
            // Identities being rotated out keep their role until the rotation ends, as in ZooKeeper.
            var roles = ["admin": policy.admin, "client": policy.client, "reader": policy.reader, "manager": policy.manager]
            for (name, retiring) in policy.retiring ?? [:] where roles[name] != nil { roles[name + " (retiring)"] = retiring }
            if policy.executors.values.contains(id) || (policy.retiring ?? [:]).contains(where: { $0.key.hasPrefix("executor:") && $0.value == id }) {
                throw APIError(.forbidden, "notPermitted", "an executor's credentials may not use the API: use a client's, a reader's or the admin's")
            }
            guard let role = roles.first(where: { $0.value == id })?.key.split(separator: " ").first.map(String.init) else {
                throw APIError(.unauthorized, "unauthorized", "these credentials are not an admin's, client's, reader's or manager's of this deployment", challenge: true)
            }
            if writes && !["admin", "client"].contains(role) {
                throw APIError(.forbidden, "notPermitted", "the \(role) credentials may only read: submitting and changing jobs takes a client's or the admin's")
            }
            return access
        }

        /// Refuses a `Host` that is neither an IP address nor a known name of this API: a page on
        /// an attacker's domain that resolves to this address (DNS rebinding) would carry it.
        func checkHost(_ authority: String?) throws {
            guard let authority, !authority.isEmpty else { return }  // not from a browser
            var name = authority.lowercased()
            if name.hasPrefix("[") {
                return  // an IPv6 literal, [::1]:8080
            }
            if let colon = name.lastIndex(of: ":") { name = String(name[..<colon]) }
            let isIPv4 = name.split(separator: ".").count == 4 && name.split(separator: ".").allSatisfy { UInt8($0) != nil }
            guard isIPv4 || hostNames.contains(name) else {
                throw APIError(
                    .misdirectedRequest, "unknownHost",
                    "this API answers to its IP addresses, localhost, this machine's name and the names given with drover manager --api-host; \(authority) is none of them")
            }
        }

        func health() async throws -> Response {
            guard case .connected = client.zookeeper.sessionState else {
                throw APIError(.serviceUnavailable, "unavailable", "ZooKeeper is not reachable from this manager now (\(client.zookeeper.sessionState)); it reconnects by itself")
            }
            return try json(["status": "ok"])
        }

        func jobs(_ request: Request) async throws -> Response {
            let query = request.uri.queryParameters
            var states: Set<JobState>?
            if let text = query.get("state") {
                guard !text.isEmpty else { throw APIError(.badRequest, "badRequest", "state: empty (leave it out for every state)") }
                var parsed: Set<JobState> = []
                for name in text.split(separator: ",") {
                    guard let state = JobState(rawValue: String(name)) else {
                        throw APIError(.badRequest, "badRequest", "state \(name): expected one of \(JobState.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    parsed.insert(state)
                }
                states = parsed
            }
            let limitText = query.get("limit") ?? "100"
            guard let limit = Int(limitText), (1...1_000).contains(limit) else {
                throw APIError(.badRequest, "badRequest", "limit \(limitText): expected 1 to 1000")
            }
            let after = query.get("after")
            if let after, !Layout.isValidID(after) { throw APIError(.badRequest, "badRequest", "after \(after): not a job id") }
            let order = query.get("order") ?? "oldest"
            guard order == "oldest" || order == "newest" else { throw APIError(.badRequest, "badRequest", "order \(order): expected oldest or newest") }
            let page = try await zooKeeper {
                try await client.page(states: states, name: query.get("name"), after: after, limit: limit, newestFirst: order == "newest")
            }
            struct Page: Encodable {
                let jobs: [JobRecord]
                let unusable: [String]
                let next: String?
            }
            return try json(Page(jobs: page.records, unusable: page.unusable.map(\.description), next: page.next))
        }

        func job(_ id: String) async throws -> Response {
            try json(try await zooKeeper { try await client.status(id) })
        }

        /// The request's body, at most ``APIServer/maximumBodyBytes`` (413 beyond, saying `advice`).
        func body(of request: Request, advice: String) async throws -> ByteBuffer {
            var request = request
            do {
                return try await request.collectBody(upTo: APIServer.maximumBodyBytes)
            } catch {
                throw APIError(.contentTooLarge, "tooLarge", "the body is over \(APIServer.maximumBodyBytes) bytes\(advice)")
            }
        }

        /// The request's body as JSON (400 when it is not; 413 beyond the bound, saying `advice`);
        /// `ifEmpty`, when given, stands for no body.
        func jsonBody(of request: Request, advice: String, ifEmpty: JSONValue? = nil) async throws -> JSONValue {
            let body = try await body(of: request, advice: advice)
            if let ifEmpty, body.readableBytes == 0 { return ifEmpty }
            do {
                return try JSONDecoder().decode(JSONValue.self, from: Data(buffer: body))
            } catch {
                throw APIError(.badRequest, "badRequest", "the body is not JSON: \(error)")
            }
        }

        func submit(_ request: Request) async throws -> Response {
            let document = try await jsonBody(of: request, advice: ": submit fewer jobs at a time")
            let bulk: Bool
            let documents: [JSONValue]
            if case .object(let fields) = document, fields.count == 1, case .array(let specs)? = fields["jobs"] {
                (bulk, documents) = (true, specs)
            } else {
                (bulk, documents) = (false, [document])
            }
            guard !documents.isEmpty else { throw APIError(.badRequest, "badRequest", "jobs: an empty list (nothing was submitted)") }
            var specs: [JobSpec] = []
            for (index, document) in documents.enumerated() {
                let prefix = bulk ? "jobs[\(index)]." : ""
                if let field = JobSpec.unknownField(in: document) {
                    throw APIError(.badRequest, "invalidSpec", "\(prefix)\(field): not a field of a job spec (see docs/PROTOCOL.md)")
                }
                do {
                    let spec = try JSONDecoder().decode(JobSpec.self, from: JSONEncoder().encode(document))
                    try spec.validate()
                    if spec.method == "shell" {
                        // A job of many tasks with their own arguments: each task's are checked.
                        for arguments in spec.taskArguments ?? [spec.arguments] { try ShellMethod.check(arguments) }
                    }
                    specs.append(spec)
                } catch let error as SpecError {
                    throw APIError(.badRequest, "invalidSpec", "\(prefix)\(error.field): \(error.reason)")
                } catch let error as DecodingError {
                    throw APIError(.badRequest, "invalidSpec", prefix + JobRecord.describe(error))
                } catch let error as DroverError {
                    throw APIError(.badRequest, "invalidSpec", "\(prefix)arguments: \(error.message)")
                }
            }
            do {
                let ids = try await client.submit(specs)
                if bulk { return try json(["ids": ids], status: .created) }
                return try json(["id": ids[0]], status: .created)
            } catch let error as BulkSubmitError {
                throw APIError.from(error.underlying, submitted: error.submitted)
            }
        }

        /// Adds steps to a workflow: the body is `{"steps": [...]}` (or the list alone).
        func inject(into id: String, _ request: Request) async throws -> Response {
            let body = try await body(of: request, advice: "")
            let steps: [WorkflowStep]
            do {
                var document = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: body))
                if case .array = document { document = ["steps": document] }
                guard case .object(let fields) = document, let list = fields["steps"], fields.count == 1 else {
                    throw APIError(.badRequest, "badRequest", "expected {\"steps\": [...]}")
                }
                if let field = JobSpec.unknownField(in: ["steps": list]) {
                    throw APIError(.badRequest, "invalidSpec", "\(field): not a field of a step (see docs/PROTOCOL.md)")
                }
                steps = try JSONDecoder().decode([WorkflowStep].self, from: JSONEncoder().encode(list))
            } catch let error as APIError {
                throw error
            } catch let error as DecodingError {
                throw APIError(.badRequest, "invalidSpec", JobRecord.describe(error).replacingOccurrences(of: "document", with: "steps"))
            } catch {
                throw APIError(.badRequest, "badRequest", "the body is not JSON: \(error)")
            }
            try await zooKeeper { try await client.inject(steps, into: id) }
            return try json(["id": id, "action": "inject"], status: .accepted)
        }

        func act(on id: String, _ action: String) async throws -> Response {
            let act: @Sendable (String) async throws -> Void
            switch action {
            case "stop": act = client.stop
            case "cancel": act = client.cancel
            case "suspend": act = client.suspend
            case "resume": act = client.resume
            case "trigger": act = client.trigger
            default: throw APIError(.notFound, "notFound", "no action \(action) on a job: stop, cancel, suspend, resume, trigger or inject")
            }
            try await zooKeeper { try await act(id) }
            return try json(["id": id, "action": action], status: .accepted)
        }

        func executors() async throws -> Response {
            let executors = try await zooKeeper { try await client.executors() }
            return try json(executors.map(ExecutorJSON.init))
        }

        func executor(_ id: String, _ action: String) async throws -> Response {
            switch action {
            case "drain": try await zooKeeper { try await client.drain(executor: id) }
            case "undrain": try await zooKeeper { try await client.undrain(executor: id) }
            default: throw APIError(.notFound, "notFound", "no action \(action) on an executor: drain or undrain")
            }
            return try json(["id": id, "action": action], status: .accepted)
        }

        func managers() async throws -> Response {
            let election = LeaderElection(client: client.zookeeper, path: client.layout.election, participantID: "drover-api")
            let leader = try await zooKeeper { try await election.currentLeader() }
            let count = try await zooKeeper { try await client.managers().count }
            struct Managers: Encodable {
                let leader: String?
                let managers: Int
            }
            return try json(Managers(leader: leader, managers: count))
        }

        /// The jobs that wait or run, as the leader last counted them (one read).
        func counts() async throws -> Response {
            guard let (counts, at) = try await zooKeeper({ try await client.activeCounts() }) else {
                throw APIError(
                    .serviceUnavailable, "notCounted",
                    "no leader has counted the jobs yet: one does once it leads (a deployment secured before the index of waiting and running jobs existed needs `drover init` once)")
            }
            return try json(CountsJSON(counts, countedAt: at))
        }

        /// Server-sent events: the executors and the counts, each time they change (``LiveEvents``).
        func events() throws -> Response {
            guard LiveEvents.hasRoom else {
                throw APIError(
                    .serviceUnavailable, "tooManyStreams",
                    "\(LiveEvents.maximumStreams) event streams are open on this manager: close one, or read /v1/executors and /v1/counts")
            }
            var headers = HTTPFields()
            headers[.contentType] = "text/event-stream"
            headers[.cacheControl] = "no-cache"
            // A proxy in front (nginx) would otherwise hold the events back to fill its buffer.
            headers[HTTPField.Name("X-Accel-Buffering")!] = "no"
            let events = LiveEvents(client: client)
            return Response(
                status: .ok, headers: headers,
                body: ResponseBody { writer in
                    try await events.run { frame in try await writer.write(ByteBuffer(string: frame)) }
                    try await writer.finish(nil)
                })
        }

        /// Runs a ZooKeeper-backed call, turning its errors into API errors.
        func zooKeeper<T>(_ body: () async throws -> T) async throws -> T {
            do {
                return try await body()
            } catch let error as APIError {
                throw error
            } catch {
                throw APIError.from(error)
            }
        }
    }
}

func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
}

/// An API error: a status, a code a program can test, and a message that says what to do.
struct APIError: Error, HTTPResponseError {
    let status: HTTPResponse.Status
    let code: String
    let message: String
    let challenge: Bool

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String, challenge: Bool = false) {
        self.status = status
        self.code = code
        self.message = message
        self.challenge = challenge
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = try json(["code": code, "message": message], status: status)
        if challenge { response.headers[.wwwAuthenticate] = #"Basic realm="drover""# }
        return response
    }

    /// The API error for a client library or ZooKeeper error.
    static func from(_ error: any Error, submitted: [String] = []) -> APIError {
        let suffix = submitted.isEmpty ? "" : " (the \(submitted.count) jobs before it were submitted: \(submitted.joined(separator: ", ")))"
        switch error {
        case let error as DroverError:
            switch error.code {
            case .unknownJob, .unknownExecutor: return APIError(.notFound, error.code.description, error.message)
            case .invalidSpec: return APIError(.badRequest, error.code.description, error.message + suffix)
            case .unplaceable, .jobNotCancellable: return APIError(.conflict, error.code.description, error.message + suffix)
            case .notPermitted: return APIError(.forbidden, error.code.description, error.message)
            case .queueFull: return APIError(.serviceUnavailable, error.code.description, error.message + suffix)
            default: return APIError(.unprocessableContent, error.code.description, error.message + suffix)
            }
        case let error as ZooKeeperError where error.isRetryable || error.code == .sessionExpired:
            return APIError(.serviceUnavailable, "unavailable", "ZooKeeper did not answer (\(error.code)): try again shortly\(suffix)")
        case let error as ZooKeeperError where error.code == .noAuth:
            return APIError(.forbidden, "notPermitted", "ZooKeeper refused it to this manager: \(error.message)")
        default:
            return APIError(.internalServerError, "internal", "\(error)\(suffix)")
        }
    }
}

/// Every error leaves as JSON, the router's own 404 and 405 too.
struct JSONErrors: RouterMiddleware {
    typealias Context = BasicRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError {
            let code = error.status == .notFound ? "notFound" : error.status == .methodNotAllowed ? "methodNotAllowed" : "badRequest"
            let message =
                error.status == .notFound
                ? "no such route: \(request.method.rawValue) \(request.uri.path) (see docs/openapi.yaml)" : (error.body ?? "\(error.status)")
            return try APIError(error.status, code, message).response(from: request, context: context)
        } catch {
            logger.error("an API request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return try APIError.from(error).response(from: request, context: context)
        }
    }
}
