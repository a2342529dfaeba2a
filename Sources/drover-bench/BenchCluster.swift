import ArgumentParser
import DroverClient
import DroverExecutor
import DroverManager
import DroverProtocol
import Foundation
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// Where the scheduler benchmarks run: ZooKeeper servers given with `--zk`, or a 3-node
/// loopback ensemble started for the run.
struct ClusterOptions: ParsableArguments {
    @Option(name: .customLong("zk"), help: ArgumentHelp("ZooKeeper servers to use (default: start a 3-node ensemble on loopback).", valueName: "host:port[,...]"))
    var zk: String?

    @Flag(help: "Print one JSON object with the figures on stdout instead of a table.")
    var json = false

    @Option(help: ArgumentHelp("Java heap of each ZooKeeper server started for the run (default: 256m; `units`: 1g).", valueName: "size"))
    var zkHeap: String?

    /// The heap to start the servers with: `--zk-heap`, else `defaultHeap`.
    func heap(default defaultHeap: String = "256m") -> String { zkHeap ?? defaultHeap }

    @Flag(
        help:
            "Run Drover over TLS: the ensemble started for the run serves TLS beside plain TCP, every daemon and this process reach it through their TLS bridges, and the raw limit is measured both ways on the same servers (the bridge's cost).")
    var tls = false
}

/// The ensemble of one benchmark run and the daemons started on it.
final class BenchCluster {
    let connectionString: String
    private let ensemble: LocalEnsemble?
    private var processes: [String: ChildProcess] = [:]

    private init(connectionString: String, ensemble: LocalEnsemble?) {
        self.connectionString = connectionString
        self.ensemble = ensemble
    }

    static func start(_ options: ClusterOptions, defaultHeap: String = "256m") async throws -> BenchCluster {
        if let zk = options.zk {
            if options.tls { throw ValidationError("--tls needs an ensemble started for the run: drop --zk") }
            return BenchCluster(connectionString: zk, ensemble: nil)
        }
        StandardError.writeLine("starting a 3-node ZooKeeper ensemble on loopback\(options.tls ? " (TLS beside plain TCP)" : "")")
        let ensemble = try await LocalEnsemble.start(nodes: 3, heap: options.heap(default: defaultHeap), tls: options.tls, plainToo: options.tls)
        return BenchCluster(connectionString: ensemble.connectionString, ensemble: ensemble)
    }

    /// The raw limit, measured now on the same servers: sync create latency and async creates/s.
    ///
    /// Measured on warm servers: a freshly started JVM runs ZooKeeper interpreted at first, and
    /// its rates climb for tens of thousands of requests (3,172 → 5,431 → 8,871 creates/s in three
    /// runs one after another on one ensemble, p99 10.4 → 1.1 ms). Against a cold figure every
    /// ratio would flatter Drover, whose runs come later, on warm servers. So the measurement is
    /// repeated until two runs in a row agree within 15% on creates/s (at most ``warmUpRuns``),
    /// and the last one counts.
    func rawLimit(operations: Int = 10_000, latencySamples: Int = 1_000) async throws -> RawLimitBenchmark.Result {
        let client = try await ZooKeeperClient.connect(to: connectionString, sessionTimeout: .seconds(10))
        defer { Task { await client.close() } }
        let benchmark = RawLimitBenchmark(
            client: client, configuration: .init(operations: operations, inFlight: 1_000, payloadBytes: 200, latencySamples: latencySamples))
        var previous: RawLimitBenchmark.Result?
        for run in 1...Self.warmUpRuns {
            StandardError.writeLine(
                "measuring the raw limit, run \(run) (\(operations) async creates, \(latencySamples) sync creates; repeated until two runs agree)")
            let result = try await measure(benchmark, client: client)
            StandardError.writeLine(
                "  \(Format.count(Int(result.createsPerSecond))) creates/s, sync create p50 \(Format.fixed(result.createLatency.p50, decimals: 3)) ms, p99 \(Format.fixed(result.createLatency.p99, decimals: 3)) ms")
            if let previous, abs(result.createsPerSecond - previous.createsPerSecond) <= 0.15 * previous.createsPerSecond { return result }
            previous = result
        }
        StandardError.writeLine("  the raw limit still changed after \(Self.warmUpRuns) runs: the last one counts")
        return previous!
    }

    /// The bridge's cost on warm servers: the raw limit measured plain, then through the TLS bridge,
    /// alternately, `rounds` times each (one after the other, so both see the same machine).
    func bridgeRounds(rounds: Int = 3, operations: Int = 10_000, latencySamples: Int = 1_000) async throws -> [BridgeRound] {
        let plain = try await ZooKeeperClient.connect(to: connectionString, sessionTimeout: .seconds(10))
        let bridged = try await ZooKeeperClient.connect(to: reachable(connectionString), sessionTimeout: .seconds(10))
        defer {
            Task {
                await plain.close()
                await bridged.close()
            }
        }
        let configuration = RawLimitBenchmark.Configuration(
            operations: operations, inFlight: 1_000, payloadBytes: 200, latencySamples: latencySamples)
        var results: [BridgeRound] = []
        for round in 1...rounds {
            // Which goes first alternates, so neither always meets the servers fresher.
            let plainFirst = round % 2 == 1
            StandardError.writeLine(
                "the bridge's cost, round \(round) of \(rounds): the raw limit \(plainFirst ? "plain, then through the bridge" : "through the bridge, then plain")")
            var direct: RawLimitBenchmark.Result?
            if plainFirst { direct = try await measure(RawLimitBenchmark(client: plain, configuration: configuration), client: plain) }
            let through = try await measure(RawLimitBenchmark(client: bridged, configuration: configuration), client: bridged)
            if direct == nil { direct = try await measure(RawLimitBenchmark(client: plain, configuration: configuration), client: plain) }
            results.append(BridgeRound(plain: direct!, bridged: through))
        }
        return results
    }

    struct BridgeRound: Encodable {
        var plain: RawLimitBenchmark.Result
        var bridged: RawLimitBenchmark.Result
        var latencyRatio: Double { bridged.createLatency.p50 / plain.createLatency.p50 }
        var throughputRatio: Double { bridged.createsPerSecond / plain.createsPerSecond }
    }

    /// Where a client in this process reaches `connectionString` (through the bridge with --tls).
    func reachable(_ connectionString: String) -> String { ensemble?.reachable(connectionString) ?? connectionString }

    /// How a daemon reaches `root`: `--zk` and, with --tls, the servers' TLS ports and the CA.
    private func zookeeperArguments(_ root: String) -> [String] {
        guard let ensemble, ensemble.tls != nil else { return ["--zk", root] }
        return ["--zk", ensemble.secure(root)] + ensemble.droverFlags
    }

    /// Raw-limit runs at most, until two in a row agree.
    static let warmUpRuns = 6

    private func measure(_ benchmark: RawLimitBenchmark, client: ZooKeeperClient) async throws -> RawLimitBenchmark.Result {
        do {
            return try await benchmark.run()
        } catch let failure as RawLimitBenchmark.Failure where failure.leftBehind == nil && (failure.error as? ZooKeeperError)?.isRetryable == true {
            // A freshly started ensemble on a busy machine (right after a build, the kernel still
            // flushing) has been seen to stall for seconds; one such stall should not cost the run.
            StandardError.writeLine("the raw-limit measurement stalled (\(failure)); measuring again")
            try await client.waitUntilConnected(timeout: .seconds(30))
            return try await benchmark.run()
        }
    }

    /// A fresh chroot for one configuration, so runs do not see each other's jobs.
    func makeRoot(_ name: String) async throws -> String {
        let root = "/drover-bench-runs/\(name)-\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await ZooKeeperClient.connect(to: reachable(connectionString))
        try await admin.createPath(root)
        await admin.close()
        return connectionString + root
    }

    /// Starts `drover manager`; with the daemon's own session timeout unless one is given (the
    /// failover benchmark's short one would make a manager on a saturated machine lose its
    /// session, and its leadership, in the middle of a throughput run).
    func startManager(_ id: String, root: String, sessionTimeout: Double? = nil, arguments: [String] = []) throws {
        let timeout = sessionTimeout.map { ["--session-timeout", "\($0)"] } ?? []
        processes[id] = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["manager"] + zookeeperArguments(root) + ["--id", id] + timeout + arguments, name: "bench-\(id)")
    }

    func startExecutor(_ id: String, root: String, slots: Int, ledger: String? = nil, arguments extra: [String] = []) throws {
        var arguments = ["executor"] + zookeeperArguments(root) + ["--id", id, "--slots", "\(slots)", "--session-timeout", "2", "--http", "127.0.0.1:0"] + extra
        var executable = ChildProcess.droverExecutable
        if let ledger {
            arguments = ["DROVER_LEDGER_FILE=\(ledger)", executable] + arguments
            executable = "/usr/bin/env"
        }
        processes[id] = try ChildProcess.launchDaemon(executable, arguments, name: "bench-\(id)")
    }

    /// Starts a `drover-bench executor-host` process running `count` executors (ids
    /// `<prefix>1`…), each with its own ZooKeeper session, that count the tasks they ran in
    /// `countFile`.
    func startExecutorHost(
        _ id: String, root: String, prefix: String, first: Int, count: Int, slots: Int, labels: [String], countFile: String, unitSlots: Int = 0
    ) throws {
        var arguments = [
            "executor-host", "--zk", root, "--prefix", prefix, "--first", "\(first)", "--count", "\(count)", "--slots", "\(slots)",
            "--count-file", countFile, "--unit-slots", "\(unitSlots)",
        ]
        for label in labels { arguments += ["--label", label] }
        processes[id] = try ChildProcess.launchDaemon(CommandLine.arguments[0], arguments, name: "bench-\(id)")
    }

    /// The ZooKeeper servers' process ids (empty with `--zk`).
    var zookeeperPIDs: [pid_t] {
        guard let ensemble else { return [] }
        return (1...ensemble.nodes).compactMap { node in
            (try? String(contentsOf: ensemble.directory.appendingPathComponent("node\(node)/pid"), encoding: .utf8))
                .flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
    }

    func process(_ id: String) -> ChildProcess? { processes[id] }

    func kill(_ id: String) async {
        await processes.removeValue(forKey: id)?.crash()
    }

    func stopDaemons() async {
        for id in Array(processes.keys) { await kill(id) }
    }

    func stop() async {
        await stopDaemons()
        await ensemble?.stop()
    }

    /// CPU seconds (user + system) a process has used so far, from /proc.
    func cpuSeconds(_ id: String) -> Double {
        guard let pid = processes[id]?.pid else { return 0 }
        return Self.cpuSeconds(pid: pid)
    }

    /// CPU seconds the ZooKeeper servers have used so far, summed (0 with `--zk`).
    func zookeeperCPUSeconds() -> Double { zookeeperPIDs.reduce(0) { $0 + Self.cpuSeconds(pid: $1) } }

    /// This benchmark process's CPU seconds so far (the submitting clients).
    func ownCPUSeconds() -> Double { Self.cpuSeconds(pid: getpid()) }

    static func cpuSeconds(pid: pid_t) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let afterName = stat.lastIndex(of: ")")
        else { return 0 }
        // Fields after the name: state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: afterName)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Waits until `client` sees `count` executors registered.
func waitForExecutors(_ client: DroverClient, count: Int) async throws {
    let deadline = ContinuousClock.now + .seconds(60)
    while try await client.executors().filter({ $0.registration != nil }).count < count {
        guard ContinuousClock.now < deadline else { throw ValidationError("the executors did not register within 60 s") }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// The last zxid the servers handed out, read by one write (each write transaction — a
/// `multi` included — takes exactly one zxid, so the difference between two readings counts
/// every ZooKeeper write in between, by anyone).
func currentZxid(_ zookeeper: ZooKeeperClient, probe: String) async throws -> Int64 {
    if try await zookeeper.exists(probe) == nil { _ = try? await zookeeper.create(probe) }
    return try await zookeeper.setData(probe, data: []).modifiedZxid
}

/// One verdict line: `target <name>: <figure> vs limit <figure> = <ratio> (goal <goal>) met|missed`.
struct TargetVerdict: Codable {
    var name: String
    var figure: Double
    var limit: Double
    var unit: String
    var limitUnit: String
    var ratio: Double
    var goal: String
    var met: Bool

    var line: String {
        "target \(name): \(Format.fixed(figure, decimals: 3)) \(unit) vs limit \(Format.fixed(limit, decimals: 3)) \(limitUnit) = "
            + "\(Format.fixed(ratio, decimals: 2)) (goal \(goal)) \(met ? "met" : "missed")"
    }

    static func atMost(_ name: String, _ figure: Double, limit: Double, unit: String, limitUnit: String? = nil, ratio goal: Double) -> TargetVerdict {
        let ratio = limit > 0 ? figure / limit : .infinity
        return TargetVerdict(
            name: name, figure: figure, limit: limit, unit: unit, limitUnit: limitUnit ?? unit, ratio: ratio,
            goal: "≤ \(Format.fixed(goal, decimals: 1))×", met: ratio <= goal)
    }

    static func atLeast(_ name: String, _ figure: Double, limit: Double, unit: String, limitUnit: String? = nil, ratio goal: Double) -> TargetVerdict {
        let ratio = limit > 0 ? figure / limit : 0
        return TargetVerdict(
            name: name, figure: figure, limit: limit, unit: unit, limitUnit: limitUnit ?? unit, ratio: ratio,
            goal: "≥ \(Format.fixed(goal, decimals: 1))×", met: ratio >= goal)
    }
}

/// Nearest-rank percentile of milliseconds.
func percentile(_ percent: Double, of values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let rank = Int((percent / 100 * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// A process's resident memory (VmRSS) and its peak (VmHWM), from /proc; zero when unknown.
struct ProcessMemory: Encodable, CustomStringConvertible {
    var residentBytes = 0
    var peakBytes = 0

    init(pid: pid_t?) {
        guard let pid, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return }
        func field(_ name: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
            return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
        }
        residentBytes = field("VmRSS")
        peakBytes = field("VmHWM")
    }

    var description: String { "\(mebibytes(residentBytes)) resident, peak \(mebibytes(peakBytes))" }
}

/// A directory and how many children it has.
struct BenchDirectory: Encodable {
    var path: String
    var children: Int
}

extension BenchCluster {
    /// Znode count and approximate data size, from the first server's `mntr`.
    func zookeeperStatistics() async throws -> (znodes: Int, dataBytes: Int) {
        try await Self.zookeeperStatistics(of: connectionString)
    }

    /// ``zookeeperStatistics()`` of the servers in `connectionString`.
    static func zookeeperStatistics(of connectionString: String) async throws -> (znodes: Int, dataBytes: Int) {
        let server = connectionString.split(separator: "/").first.map { $0.split(separator: ",") }?.first.map(String.init) ?? ""
        let lines = (try? fourLetterWord("mntr", server: server)) ?? ""
        func value(_ key: String) -> Int {
            lines.split(separator: "\n").first { $0.hasPrefix(key + "\t") }.flatMap { Int($0.split(separator: "\t").last ?? "") } ?? 0
        }
        return (value("zk_znode_count"), value("zk_approximate_data_size"))
    }

    /// The directory with the most children: every job shard, every queue segment, the executors.
    static func largestDirectory(_ zookeeper: ZooKeeperClient, _ layout: Layout) async throws -> BenchDirectory {
        var directories = (0..<Layout.jobShards).map { layout.jobShard($0) } + [layout.queue, layout.executors, layout.setAside, layout.jobs]
        directories += ((try? await zookeeper.children(layout.queue).names) ?? []).map { layout.queue + "/" + $0 }
        return try await withThrowingTaskGroup(of: BenchDirectory.self) { group in
            for path in directories {
                group.addTask {
                    let count = (try? await zookeeper.exists(path))?.map { Int($0.numberOfChildren) } ?? 0
                    return BenchDirectory(path: path, children: count)
                }
            }
            return try await group.reduce(BenchDirectory(path: "-", children: 0)) { $1.children > $0.children ? $1 : $0 }
        }
    }
}

/// Tasks the executor hosts writing `countFiles` have run so far.
func ranSoFar(_ countFiles: [String]) -> Int {
    countFiles.reduce(0) { total, file in
        total + (Int((try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0)
    }
}

/// Waits until exactly `count` executors are registered (alive).
func waitForRegistrations(_ zookeeper: ZooKeeperClient, _ layout: Layout, count: Int, within limit: Duration) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + limit
    var lastReport = clock.now
    while true {
        let ids = (try? await zookeeper.children(layout.executors).names) ?? []
        let alive = try await withThrowingTaskGroup(of: Bool.self) { group in
            for id in ids { group.addTask { try await zookeeper.exists(layout.executorAlive(id)) != nil } }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        if alive == count { return }
        guard clock.now < deadline else {
            throw ValidationError("\(alive) executors registered after \(limit), waiting for \(count): see the hosts' logs in \(NSTemporaryDirectory())")
        }
        if clock.now - lastReport > .seconds(5) {
            StandardError.writeLine("  \(Format.count(alive)) executors registered")
            lastReport = clock.now
        }
        try await Task.sleep(for: .milliseconds(500))
    }
}

