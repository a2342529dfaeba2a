import ArgumentParser
import DroverClient
import DroverExecutor
import DroverAPI
import DroverManager
import DroverMetrics
import DroverOutput
import DroverProtocol
import DroverShell
import DroverStore
import Foundation
import Synchronization
import Logging
import ServiceLifecycle
import ZKRecipes
import ZooKeeper
import ZooKeeperTLS

/// `drover manager`: stands for election and, when leading, schedules.
struct ManagerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manager",
        abstract: "Run a manager: one is elected leader and schedules; the others stand by.",
        discussion: """
            SIGTERM or Ctrl-C stops it. Run two or more for fail-over. The leader removes the records of \
            jobs that finished longer ago than --retention (default 7 days), a few at a time in the background.
            """)

    @OptionGroup var zookeeper: ZooKeeperOptions
    @OptionGroup var metrics: MetricsOptions
    @OptionGroup var logging: LoggingOptions
    @Option(
        help: ArgumentHelp(
            "Serve the HTTP API at http://host:port/v1/… (docs/openapi.yaml; e.g. 127.0.0.1:8080; off by default). In a secured deployment it asks for a role's credentials.",
            valueName: "host:port"))
    var api: String?
    @Option(help: "With --api: the file (mode 0600) of the token executors ask for their output (default: $DROVER_HTTP_TOKEN_FILE).")
    var httpTokenFile: String?
    @OptionGroup var outputTLS: OutputClientOptions
    @Option(help: ArgumentHelp("With --api: serve HTTPS with this certificate (PEM; with --api-tls-key).", valueName: "file"))
    var apiTLSCert: String?
    @Option(help: ArgumentHelp("The private key (PEM) of --api-tls-cert.", valueName: "file"))
    var apiTLSKey: String?
    @Option(help: ArgumentHelp("With --api-tls-cert: serve only clients showing a certificate these authorities (PEM) signed.", valueName: "file"))
    var apiTLSClientCA: String?
    @Option(
        help: ArgumentHelp(
            "With --api: a name the API is reached by (repeatable). Requests must name an IP address, localhost, this machine's name or one of these in their Host header, so a DNS-rebinding page cannot read the API.",
            valueName: "name"))
    var apiHost: [String] = []

    var apiTLS: HTTPServerTLS? {
        get throws { try serverTLS(certificate: apiTLSCert, key: apiTLSKey, clientCA: apiTLSClientCA, flags: "api") }
    }
    @Option(help: "Name shown as the leader's identity (default: the host name).")
    var id: String?
    @Option(help: "Seconds an executor may stay unregistered before its tasks are moved.")
    var grace: Double = 10
    @Option(help: "ZooKeeper session timeout in seconds: how long a dead manager keeps the lead.")
    var sessionTimeout: Double = 6
    @Option(help: "Seconds an infinite job waits after a failed run before the next; doubled per failure in a row.")
    var restartBackoff: Double = 1
    @Option(help: "The longest wait between the runs of an infinite job that keeps failing, in seconds.")
    var restartBackoffMax: Double = 300
    @Option(help: "Set-aside queue items kept (the oldest beyond are deleted and counted; see drover setaside).")
    var setAsideLimit: Int = 1_000
    @Option(help: "How long the records of finished jobs are kept (e.g. 7d, 12h, 30m), or off to keep them for ever.")
    var retention: String = "7d"
    @Option(
        help:
            "The most jobs that may wait for an executor before clients refuse new submits with \"the queue is full\" (until the line is back under nine tenths of it), or off (docs/SECURITY.md).")
    var maxWaiting: String = "off"
    @Flag(
        help:
            "When this manager leads, build the index of waiting and running jobs from every job's record, even if it says it is complete: once after a manager older than the index led (docs/DEPLOY.md).")
    var rebuildIndex = false
    @Option(
        help:
            "Seconds the tasks of a job placed by the direct path (--placement random, powerOfTwo, batch, batchLateBinding) wait for executors' claims before this leader places the unclaimed ones itself (sooner when every reserved executor is gone or draining); also how long a claim its executor's progress does not name is left to it. At least 5: an executor starts a claimed task without the leader's word only within 2 seconds of its claim.")
    var claimTimeout: Double = 30

    var apiAddress: (host: String, port: Int)? { api.flatMap(listenAddress) }

    func validate() throws {
        if api != nil && apiAddress == nil { throw ValidationError("--api \(api!): expected host:port, e.g. 127.0.0.1:8080") }
        if try apiTLS != nil && api == nil { throw ValidationError("--api-tls-cert serves the API over HTTPS: add --api host:port") }
        guard retention == "off" || parseInterval(retention).map({ $0 >= .seconds(60) }) == true else {
            throw ValidationError("--retention \(retention): expected a duration with s, m, h or d from 1m to 10 years (e.g. 7d), or off")
        }
        guard grace > 0, grace <= 86_400 else { throw ValidationError("--grace must be more than 0 and at most 86400 seconds") }
        guard claimTimeout >= 5, claimTimeout <= 86_400 else {
            throw ValidationError("--claim-timeout must be 5 to 86400 seconds (an executor may start a claimed task up to 2 seconds after its claim)")
        }
        guard sessionTimeout >= 1, sessionTimeout <= 600 else { throw ValidationError("--session-timeout must be 1 to 600 seconds") }
        guard restartBackoff >= 0.001, restartBackoff <= 86_400 else { throw ValidationError("--restart-backoff must be 0.001 to 86400 seconds") }
        guard (1...1_000_000).contains(setAsideLimit) else { throw ValidationError("--set-aside-limit must be 1 to 1000000") }
        guard maxWaiting == "off" || Int(maxWaiting).map(Admission.limits.contains) == true else {
            throw ValidationError("--max-waiting \(maxWaiting): expected a number of jobs from 1 to 100000000, or off")
        }
        guard restartBackoffMax >= restartBackoff, restartBackoffMax <= 86_400 else {
            throw ValidationError("--restart-backoff-max must be at least --restart-backoff and at most 86400 seconds")
        }
    }

    func run() async throws {
        exitWithParentIfAsked()
        logging.bootstrap()
        metrics.bootstrap()
        let zk = try await connect(zookeeper, sessionTimeout: sessionTimeout)
        if let audit = LedgerFile.auditFromEnvironment { auditLeaderWrites(of: zk, to: audit) }
        var configuration = Manager.Configuration(
            participantID: id ?? ProcessInfo.processInfo.hostName, gracePeriod: .seconds(grace), restartBackoff: .seconds(restartBackoff),
            restartBackoffMaximum: .seconds(restartBackoffMax), setAsideLimit: setAsideLimit,
            retention: retention == "off" ? nil : parseInterval(retention), maxWaiting: Int(maxWaiting))
        configuration.rebuildActiveIndex = rebuildIndex
        configuration.claimTimeout = .seconds(claimTimeout)
        let manager = Manager(client: zk, configuration: configuration)
        if let (host, port) = apiAddress {
            let client = try await DroverClient.load(zookeeper: zk)
            let api: APIServer
            do {
                api = try APIServer(
                    client: client, host: host, port: port, outputToken: try outputToken(file: httpTokenFile), outputTLS: outputTLS.tls, hostNames: apiHost,
                    tls: try apiTLS,
                    logger: Logger(label: "drover.api"))
            } catch let error as HTTPTLSError {
                throw ExitMessage(error.description)
            }
            try await runDaemon(ManagerWithAPI(manager: manager, api: api), options: zookeeper, metrics: metrics)
        } else {
            try await runDaemon(manager, options: zookeeper, metrics: metrics)
        }
        await zk.close()
    }
}

/// `drover executor`: runs the tasks the manager assigns to it.
struct ExecutorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "executor",
        abstract: "Run an executor: registers under a stable id and runs the tasks assigned to it.",
        discussion: """
            Restarting it with the same --id resumes its tasks (running ones are run again from their \
            last checkpoint). SIGTERM or Ctrl-C lets running tasks finish, then deregisters.

            Methods: shell (runs a command: {"command": [...], "env": {...}, "workingDirectory": ..., \
            "timeoutSeconds": ...}), \(SampleMethods.all.keys.sorted().joined(separator: ", ")).
            """)

    @OptionGroup var zookeeper: ZooKeeperOptions
    @OptionGroup var metrics: MetricsOptions
    @OptionGroup var logging: LoggingOptions
    @Option(help: "Stable identity (default: the executor named by --credentials, else the host name).")
    var id: String?
    @Option(help: "Task slots.")
    var slots: Int = 4
    @Option(
        help: ArgumentHelp(
            "Work units (`drover spec`) run at once, in slots of their own beside the task slots; 0: run no units. Units of specs whose method this executor has are claimed in batches, once half the unit slots are free: a claim may take up to half the slots more than are free, which wait here for a slot (leases held).",
            valueName: "n"))
    var unitSlots: Int = 0
    @Option(help: "CPU capacity in cores.")
    var cpu: Double = Double(ProcessInfo.processInfo.activeProcessorCount)
    @Option(help: "Memory capacity in MB.")
    var memory: Int = Int(ProcessInfo.processInfo.physicalMemory / 1_048_576)
    @Option(name: .customLong("label"), help: ArgumentHelp("A label key=value jobs can require (repeatable).", valueName: "key=value"))
    var labels: [String] = []
    @Option(help: "ZooKeeper session timeout in seconds: how long a crashed executor looks alive.")
    var sessionTimeout: Double = 6
    @Option(help: "On SIGTERM/Ctrl-C: 'finish' running tasks, or 'hand-back' them to be moved at once.")
    var onStop: String = "finish"
    @Option(help: "Where shell tasks' output is kept (default: $XDG_STATE_HOME or ~/.local/state, then drover/<id>/output).")
    var outputDir: String?
    @Option(
        help: ArgumentHelp(
            "Where to serve task output for `drover logs` (port 0: any free port). This machine only by default; 0.0.0.0:7070 for every interface (then use --http-token-file).",
            valueName: "host:port"))
    var http: String = "127.0.0.1:0"
    @Option(help: "A file (mode 0600) holding a token `drover logs` must send to read output (default: $DROVER_HTTP_TOKEN_FILE).")
    var httpTokenFile: String?
    @Option(help: "Followed outputs (drover logs -f) served at once; more are refused until one ends.")
    var httpMaxFollowers: Int = OutputServer.defaultMaximumFollowers
    @Option(help: ArgumentHelp("Serve task output over HTTPS with this certificate (PEM; with --http-tls-key).", valueName: "file"))
    var httpTLSCert: String?
    @Option(help: ArgumentHelp("The private key (PEM) of --http-tls-cert.", valueName: "file"))
    var httpTLSKey: String?
    @Option(
        help: ArgumentHelp(
            "With --http-tls-cert: require a client certificate signed by these authorities (PEM) — drover logs then needs --http-cert and --http-key.",
            valueName: "file"))
    var httpTLSClientCA: String?

    var httpTLS: HTTPServerTLS? {
        get throws { try serverTLS(certificate: httpTLSCert, key: httpTLSKey, clientCA: httpTLSClientCA, flags: "http") }
    }
    @Option(help: "The host name clients reach this executor's output server by (default: the host name).")
    var advertiseHost: String?

    func validate() throws {
        guard Executor.Configuration.ShutdownBehaviour(rawValue: onStop) != nil else {
            throw ValidationError("--on-stop must be 'finish' or 'hand-back'")
        }
        guard slots >= 1 else { throw ValidationError("--slots must be at least 1") }
        guard (0...100_000).contains(unitSlots) else { throw ValidationError("--unit-slots must be 0 to 100000") }
        _ = try httpTLS
        guard cpu > 0, memory > 0 else { throw ValidationError("--cpu and --memory must be positive") }
        for label in labels where !label.contains("=") { throw ValidationError("--label \(label): expected key=value") }
        if let id, !Layout.isValidID(id) { throw ValidationError("--id \(id): use letters, digits, '.', '_' or '-'") }
        guard httpListenAddress != nil else { throw ValidationError("--http \(http): expected host:port, e.g. 0.0.0.0:7070") }
        guard (1...100_000).contains(httpMaxFollowers) else { throw ValidationError("--http-max-followers must be 1 to 100000") }
    }

    var httpListenAddress: (host: String, port: Int)? { listenAddress(http) }

    func run() async throws {
        exitWithParentIfAsked()
        logging.bootstrap()
        // Executor credentials name their executor: that is the default id, and the only one they allow.
        let credentials = try zookeeper.resolvedCredentials()
        let executorID = id ?? credentials?.executor ?? ProcessInfo.processInfo.hostName.filter { $0.isLetter || $0.isNumber || $0 == "-" }
        if let credentials, credentials.role == .executor, credentials.executor != executorID {
            throw ExitMessage(
                "--id \(executorID) with the credentials of executor \(credentials.executor ?? "?"): each executor runs with its own "
                    + "(\(zookeeper.credentialsFile ?? "")); leave out --id, or give executor \(executorID)'s file")
        }
        metrics.bootstrap()
        let zk = try await connect(zookeeper, sessionTimeout: sessionTimeout)
        let labelPairs = labels.map { $0.split(separator: "=", maxSplits: 1).map(String.init) }
        let shell = ShellMethod(outputDirectory: outputDirectory(for: executorID))
        let listen = httpListenAddress ?? ("127.0.0.1", 0)
        let token = try outputToken(file: httpTokenFile)
        let logger = Logger(label: "drover.output")
        if token == nil && !["127.0.0.1", "::1", "localhost"].contains(listen.host) {
            logger.warning(
                "task output is served to anyone who can reach this address, without a token: give --http-token-file",
                metadata: ["listen": "\(listen.host):\(listen.port)"])
        }
        let server: OutputServer
        // The executor is made once the server listens (its address goes into the registration).
        let executor = Mutex<Executor?>(nil)
        do {
            server = try OutputServer(
                shell: shell, host: listen.host, port: listen.port,
                advertisedHost: advertiseHost ?? (["0.0.0.0", "::"].contains(listen.host) ? ProcessInfo.processInfo.hostName : listen.host),
                token: token, maximumFollowers: httpMaxFollowers,
                tls: try httpTLS,
                holds: { job, run in executor.withLock { $0 }?.heldMethod(job: job, run: run) == "shell" },
                logger: logger)
        } catch let error as HTTPTLSError {
            throw ExitMessage(error.description)
        }
        let configuration = Executor.Configuration(
            id: executorID, capacity: Resources(cpu: cpu, memoryMB: memory, slots: slots),
            labels: Dictionary(labelPairs.map { ($0[0], $0.count > 1 ? $0[1] : "") }, uniquingKeysWith: { _, last in last }),
            onShutdown: Executor.Configuration.ShutdownBehaviour(rawValue: onStop) ?? .finish, unitSlots: unitSlots)
        let handlers = SampleMethods.all.merging(["shell": shell.handler]) { a, _ in a }
        try await runDaemon(
            ExecutorWithOutputServer(server: server) { address in
                var configuration = configuration
                configuration.address = address
                let made = try Executor(client: zk, configuration: configuration, handlers: handlers)
                executor.withLock { $0 = made }
                return made
            }, options: zookeeper, metrics: metrics)
        await zk.close()
    }
}

/// A manager and its API: the API listens before the manager stands for election (so a manager
/// that leads answers); when the manager's run ends, the API is stopped too.
struct ManagerWithAPI: Service {
    let manager: Manager
    let api: APIServer

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await api.run() }
            _ = try await api.port
            try await manager.run()
            group.cancelAll()
            do { try await group.waitForAll() } catch is CancellationError {}
        }
    }
}

/// An executor and the server of its tasks' output: the server listens first, so the executor
/// registers the address it is reachable at; it stops serving only after the executor stopped,
/// so `drover logs -f` sees the tasks a graceful stop lets finish.
struct ExecutorWithOutputServer: Service {
    let server: OutputServer
    let makeExecutor: @Sendable (String) throws -> Executor

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let executor = try makeExecutor(try await server.address)
            try await executor.run()
            group.cancelAll()
            do { try await group.waitForAll() } catch is CancellationError {}
        }
    }
}

extension ExecutorCommand {
    func outputDirectory(for executorID: String) -> URL {
        if let outputDir { return URL(fileURLWithPath: outputDir, isDirectory: true) }
        let state = Environment.value("XDG_STATE_HOME").map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentDirectoryUser.appendingPathComponent(".local/state")
        return state.appendingPathComponent("drover/\(executorID)/output", isDirectory: true)
    }
}

extension FileManager {
    var homeDirectoryForCurrentDirectoryUser: URL {
        URL(fileURLWithPath: Environment.value("HOME") ?? NSTemporaryDirectory(), isDirectory: true)
    }
}

/// `DROVER_ZK_C_LOG=warn|info|debug` shows the ZooKeeper C library's own messages.
func applyCLibraryLogLevel() {
    guard let value = Environment.value("DROVER_ZK_C_LOG") else { return }
    ZooKeeperClient.cLibraryLogLevel.withLock { $0 = ZooKeeperClient.CLibraryLogLevel(rawValue: value.lowercased()) ?? .warn }
}


/// One TLS bridge per servers and settings for the whole process: the CLI's commands, a daemon's
/// sessions (a new one after expiry) and its API server reach ZooKeeper through the same ports.
actor TLSBridges {
    static let shared = TLSBridges()
    private var bridges: [String: Task<TLSBridge, any Error>] = [:]

    func bridge(to connectionString: String, configuration: TLSBridgeConfiguration) async throws -> TLSBridge {
        let key = "\(connectionString) \(configuration)"
        // A task, not the bridge: two connects at once must not open two bridges.
        let starting = bridges[key] ?? Task { try await TLSBridge.start(connectionString: connectionString, configuration: configuration) }
        bridges[key] = starting
        do {
            return try await starting.value
        } catch {
            bridges[key] = nil
            throw error
        }
    }
}

/// Connects to ZooKeeper as `options` say: through a TLS bridge when TLS is asked for, and
/// authenticated with the credentials file when there is one.
func connect(_ options: ZooKeeperOptions, sessionTimeout: Double) async throws -> ZooKeeperClient {
    applyCLibraryLogLevel()
    let credentials = try options.resolvedCredentials()
    var connectionString = options.resolvedConnectionString
    var bridge: TLSBridge?
    if let tls = options.tls {
        do {
            bridge = try await TLSBridges.shared.bridge(to: connectionString, configuration: tls)
        } catch {
            throw ExitMessage("\(error)")
        }
        connectionString = bridge!.connectionString
    }
    let client: ZooKeeperClient
    do {
        client = try await ZooKeeperClient.connect(
            to: connectionString, sessionTimeout: .milliseconds(Int(sessionTimeout * 1000)),
            connectTimeout: .milliseconds(Int(options.connectTimeout * 1000)))
    } catch let error as ZooKeeperError {
        guard let bridge, error.code == .connectTimeout else {
            throw ExitMessage(
                error.code == .connectTimeout && bridge == nil ? error.message + " (servers that serve only TLS need --zk-ca)" : error.message)
        }
        throw ExitMessage(
            "cannot reach ZooKeeper at \(options.resolvedConnectionString) over TLS within \(options.connectTimeout) s: "
                + (bridge.lastFailureDescription.map { "\($0)" } ?? "no server answered")
                + " (--zk names the servers' secureClientPorts; --zk-ca the authorities that signed their certificates)")
    }
    if let certificate = options.tls?.certificateFile {
        // Who ZooKeeper takes this process for (x509:<subject>), so a daemon whose certificate
        // is dropped from the policy notices and exits (a policy change it can still read).
        do {
            client.certificateIdentity = try CertificateSubject.rfc2253(ofPEMFile: certificate)
        } catch {
            await client.close()
            throw ExitMessage("--zk-cert: \(error)")
        }
    }
    if let credentials {
        do {
            try await client.addAuth(credentials: credentials.authentication)
        } catch let error as ZooKeeperError {
            await client.close()
            throw ExitMessage("ZooKeeper did not accept the \(credentials.roleDescription) credentials from \(options.credentialsFile ?? ""): \(error.message)")
        }
    }
    return client
}

/// Runs a daemon's service, turning a refusal of ZooKeeper into a message that says which
/// credentials it takes.
func runDaemon(_ service: some Service, options: ZooKeeperOptions, metrics: MetricsOptions, alongside extra: [any Service] = []) async throws {
    do {
        try await runUntilSignalled([service] + (metrics.server().map { [$0] } ?? []) + extra)
    } catch let error as ZooKeeperError where error.code == .noAuth {
        throw ExitMessage("\(Access.explain(error, layout: Layout(), credentials: try? options.resolvedCredentials()))")
    } catch let error as DroverError {
        throw ExitMessage(error.message)
    }
}

/// Runs a daemon until SIGTERM or SIGINT asks it to stop gracefully.
func runUntilSignalled(_ service: some Service) async throws {
    try await runUntilSignalled([service])
}

/// ``runUntilSignalled(_:)`` for a daemon and the services beside it: when the first ends, the
/// others are stopped.
func runUntilSignalled(_ services: [any Service]) async throws {
    let group = ServiceGroup(
        services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [],
        logger: Logger(label: "drover"))
    try await group.run()
}

/// With `DROVER_EXIT_WITH_PARENT=1` (set by the test harness, the tour and `drover dev`, with
/// `DROVER_PARENT_PID`) the daemon exits when the process that started it is gone, so a test that dies or runs out of time cannot leave
/// daemons behind. Started first thing, on a thread of its own: a daemon still connecting to a
/// ZooKeeper that is gone, or one whose tasks are all busy, is watched too (a watch on the async
/// pool, started once the daemon ran, missed both: an orphaned manager ran on for half an hour).
/// `_exit`: nothing of the daemon's is left to run or flush, and exit handlers could block.
func exitWithParentIfAsked() {
    guard Environment.value("DROVER_EXIT_WITH_PARENT") == "1" else { return }
    // The starter names itself (DROVER_PARENT_PID): one gone before this line ran is seen too.
    let parent = Environment.value("DROVER_PARENT_PID").flatMap { pid_t($0) } ?? getppid()
    // Not passed on: a daemon started further down (by a shell task, say) has another parent.
    unsetenv("DROVER_EXIT_WITH_PARENT")
    unsetenv("DROVER_PARENT_PID")
    let watchdog = Thread {
        while getppid() == parent { Thread.sleep(forTimeInterval: 0.2) }
        FileHandle.standardError.write(Data("drover: the parent process is gone: exiting\n".utf8))
        _exit(1)
    }
    watchdog.name = "exit-with-parent"
    watchdog.start()
}

/// Writes a line for every committed `multi` fenced by an election node: the transaction's zxid
/// and the node's sequence number (the leadership term). Terms never go down in zxid order
/// unless a deposed leader got a write through — what the chaos harness checks.
func auditLeaderWrites(of client: ZooKeeperClient, to audit: LedgerFile) {
    client.observeCommittedMultis { operations, results in
        let term = operations.lazy.compactMap { operation -> Int64? in
            guard case .check(let path, _) = operation, path.contains("/election/") else { return nil }
            return LeaderElection.term(ofNode: path)
        }.first
        let zxid = results.lazy.compactMap { result -> Int64? in
            guard case .dataSet(let stat) = result else { return nil }
            return stat.modifiedZxid
        }.first
        if let term, let zxid { audit.append("W \(zxid) \(term) \(getpid())") }
    }
}

/// `--<flags>-tls-cert`, `--<flags>-tls-key` and `--<flags>-tls-client-ca` (the executor's output
/// endpoint and the API take the same three) as one setting; nil without a certificate.
func serverTLS(certificate: String?, key: String?, clientCA: String?, flags: String) throws -> HTTPServerTLS? {
    if (certificate == nil) != (key == nil) { throw ValidationError("--\(flags)-tls-cert and --\(flags)-tls-key go together") }
    if clientCA != nil && certificate == nil { throw ValidationError("--\(flags)-tls-client-ca needs --\(flags)-tls-cert and --\(flags)-tls-key") }
    guard let certificate, let key else { return nil }
    return HTTPServerTLS(certificateFile: certificate, privateKeyFile: key, clientCertificateAuthorityFile: clientCA)
}

/// How `drover logs` and a manager's API reach executors that serve output over HTTPS.
struct OutputClientOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "For executors serving output over HTTPS: trust the authorities in this PEM file (default: $DROVER_HTTP_CA, else the system's).",
            valueName: "file"))
    var httpCA: String?
    @Option(help: ArgumentHelp("A client certificate (PEM) for executors that ask for one (default: $DROVER_HTTP_CERT).", valueName: "file"))
    var httpCert: String?
    @Option(help: ArgumentHelp("The private key (PEM) of --http-cert (default: $DROVER_HTTP_KEY).", valueName: "file"))
    var httpKey: String?

    var tls: HTTPClientTLS {
        HTTPClientTLS(
            certificateAuthorityFile: httpCA ?? Environment.value("DROVER_HTTP_CA"), certificateFile: httpCert ?? Environment.value("DROVER_HTTP_CERT"),
            privateKeyFile: httpKey ?? Environment.value("DROVER_HTTP_KEY"))
    }

    func validate() throws {
        if (httpCert == nil) != (httpKey == nil) { throw ValidationError("--http-cert and --http-key go together") }
    }
}

/// `--metrics host:port`: Prometheus metrics at `/metrics`, shared by the daemons.
struct MetricsOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Serve Prometheus metrics at http://host:port/metrics (e.g. 127.0.0.1:9464; off by default; docs/OPERATIONS.md lists them).",
            valueName: "host:port"))
    var metrics: String?

    var address: (host: String, port: Int)? { metrics.flatMap(listenAddress) }

    func validate() throws {
        if metrics != nil && address == nil { throw ValidationError("--metrics \(metrics!): expected host:port, e.g. 127.0.0.1:9464") }
    }

    /// Routes the process's metrics to Prometheus, when asked for: first, before any metric exists.
    func bootstrap() {
        if metrics != nil { MetricsServer.bootstrap() }
    }

    func server() -> MetricsServer? {
        address.map { MetricsServer(host: $0.host, port: $0.port, logger: Logger(label: "drover.metrics")) }
    }
}

/// `host:port` of a `--http`, `--api` or `--metrics` flag (port 0: any free port), or nil when it is not one.
func listenAddress(_ text: String) -> (host: String, port: Int)? {
    guard let colon = text.lastIndex(of: ":"), colon > text.startIndex, let port = Int(text[text.index(after: colon)...]),
        (0...65535).contains(port)
    else { return nil }
    return (String(text[..<colon]), port)
}
