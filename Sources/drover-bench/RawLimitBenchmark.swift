import ZooKeeper

/// Measures the physical limit of the ZooKeeper servers a client is connected to: raw write
/// throughput with many requests in flight, and the latency of one write at a time. Every
/// Drover figure is compared with these.
///
/// It works under a fresh node `/drover-bench/<random>` (relative to the client's chroot, if
/// any), in directories of at most ``bucketSize`` children so that every client, including
/// Java's, can still list them, and deletes everything it made before it returns — also when a
/// phase fails, as far as the connection allows.
///
/// Phases, in order (each one's nodes are `<root>/<phase>/<bucket>/<index>`):
/// 1. `create`: `operations` creates of `payloadBytes`-byte persistent nodes, up to `inFlight`
///    outstanding;
/// 2. `set`: a `setData` on each of those nodes, same window;
/// 3. `multi`: `operations` two-operation transactions, each creating a new node and setting the
///    data of one from phase 1 (`create+setData`), same window;
/// 4. `batched`: `operations` creates again, ``batchSize`` (100) to a `multi`, with as many creates
///    outstanding as phase 1 (`inFlight / batchSize` transactions): what one ZooKeeper write costs
///    when it carries many changes, the lever Drover's batching pulls;
/// 5. `latency`: `latencySamples` creates, each awaited before the next is sent;
/// 6. `hop`: `latencySamples` times, a `setData` on one node that a second session watches,
///    timed until that session has read the new version — one step of any chain of processes
///    that hand work on through ZooKeeper (write, watch event, read), as Drover's client → leader
///    and leader → executor steps are;
/// 7. `delete`: deletion of every node of phases 1–6, same window (the clean-up, measured).
struct RawLimitBenchmark: Sendable {
    /// What to measure.
    struct Configuration: Sendable {
        /// Writes per throughput phase.
        var operations = 20_000
        /// The most requests outstanding at once in the throughput phases.
        var inFlight = 1_000
        /// Bytes of data in every node written.
        var payloadBytes = 200
        /// Sequential creates timed one by one.
        var latencySamples = 2_000
    }

    /// The figures of one run. Its JSON form is the `--json` output of `drover-bench zk`.
    struct Result: Sendable, Codable, Equatable {
        /// Latency percentiles in milliseconds.
        struct Latency: Sendable, Codable, Equatable {
            var p50: Double
            var p99: Double
            var max: Double
        }

        /// `host:port` of every server in the connection string.
        var servers: [String]
        var operations: Int
        var inFlight: Int
        var payloadBytes: Int
        var latencySamples: Int
        /// Node creates per second with `inFlight` outstanding.
        var createsPerSecond: Double
        /// `setData` calls per second with `inFlight` outstanding.
        var setsPerSecond: Double
        /// Two-operation transactions per second with `inFlight` outstanding.
        var multisPerSecond: Double
        /// The operations of each transaction, e.g. `create+setData`.
        var multiOperations: String
        /// Creates per second inside transactions of ``batchSize`` creates.
        var batchedCreatesPerSecond: Double
        /// Creates per transaction in the `batched` phase.
        var batchSize: Int
        /// Deletes per second with `inFlight` outstanding (the clean-up).
        var deletesPerSecond: Double
        /// Nodes deleted by the clean-up.
        var deletedNodes: Int
        /// Latency of one create at a time.
        var createLatency: Latency
        /// From a `setData` sent to a second session, which watches the node, having read it.
        var hopLatency: Latency

        enum CodingKeys: String, CodingKey {
            case servers, operations = "ops", inFlight = "in_flight", payloadBytes = "payload_bytes"
            case latencySamples = "latency_samples", createsPerSecond = "create_per_s"
            case setsPerSecond = "set_per_s", multisPerSecond = "multi_per_s", multiOperations = "multi_ops"
            case batchedCreatesPerSecond = "batched_create_per_s", batchSize = "batch_size"
            case deletesPerSecond = "delete_per_s", deletedNodes = "deleted_nodes"
            case createLatency = "create_latency_ms", hopLatency = "hop_latency_ms"
        }
    }

    /// A phase that failed, and whether the benchmark's nodes could be deleted afterwards.
    struct Failure: Error, CustomStringConvertible {
        var phase: String
        var error: any Error
        /// The node left behind when the clean-up failed too.
        var leftBehind: String?
        var cleanUpError: (any Error)?

        var description: String {
            var text = "the \(phase) phase failed: \(Self.describe(error))"
            if let leftBehind, let cleanUpError {
                text += "\nnodes are left under \(leftBehind) (\(Self.describe(cleanUpError))); delete them with: "
                text += "zkCli.sh deleteall \(leftBehind)"
            }
            return text
        }

        static func describe(_ error: any Error) -> String {
            (error as? ZooKeeperError)?.message ?? "\(error)"
        }
    }

    /// The most children the benchmark puts under one node.
    static let bucketSize = 10_000
    /// Where every run makes its own root.
    static let parent = "/drover-bench"

    let client: ZooKeeperClient
    let configuration: Configuration
    /// This run's root node.
    let root: String
    let progress: @Sendable (BenchmarkProgress) -> Void

    init(
        client: ZooKeeperClient, configuration: Configuration = Configuration(),
        progress: @escaping @Sendable (BenchmarkProgress) -> Void = { _ in }
    ) {
        precondition(configuration.operations >= 0, "a negative number of operations")
        precondition(configuration.inFlight >= 1, "at least one request must be allowed in flight")
        precondition(configuration.payloadBytes >= 0, "a negative payload size")
        precondition(configuration.latencySamples >= 1, "latency needs at least one sample")
        self.client = client
        self.configuration = configuration
        self.root = Self.parent + "/" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        self.progress = progress
    }

    /// Runs every phase and deletes the nodes it made.
    /// - Throws: ``Failure`` naming the phase that failed (after an attempt to clean up).
    func run() async throws -> Result {
        let operations = configuration.operations
        let payload = [UInt8](repeating: UInt8(ascii: "a"), count: configuration.payloadBytes)
        let newPayload = [UInt8](repeating: UInt8(ascii: "b"), count: configuration.payloadBytes)
        var phase = "setup"
        do {
            try await client.createPath(Self.parent)
            _ = try await client.create(root)  // fails if another run picked the same name
        } catch {
            throw Failure(phase: phase, error: error)
        }
        do {
            phase = "setup"
            try await makeBuckets("create", count: operations)
            try await makeBuckets("multi", count: operations)
            try await makeBuckets("batched", count: operations)
            try await makeBuckets("latency", count: configuration.latencySamples)

            phase = "create"
            let creates = try await throughput(phase, count: operations) { [client, payload] index in
                _ = try await client.create(path("create", index), data: payload)
            }
            phase = "set"
            let sets = try await throughput(phase, count: operations) { [client, newPayload] index in
                try await client.setData(path("create", index), data: newPayload)
            }
            phase = "multi"
            let multis = try await throughput(phase, count: operations) { [client, payload] index in
                try await client.multi([
                    .create(path: path("multi", index), data: payload),
                    .setData(path: path("create", index), data: payload),
                ])
            }
            phase = "batched"
            let batchSize = self.batchSize
            let batches = (operations + batchSize - 1) / batchSize
            let batched = try await throughput(phase, count: batches, width: max(1, configuration.inFlight / batchSize)) { [client, payload] batch in
                let indices = (batch * batchSize)..<min(operations, (batch + 1) * batchSize)
                _ = try await client.multi(indices.map { .create(path: path("batched", $0), data: payload) })
            }
            phase = "latency"
            let latency = try await sequentialCreates(payload: payload)
            phase = "hop"
            let hop = try await watchedWrites(payload: payload)

            phase = "delete"
            let (deleted, deleteTime) = try await deleteEverything()
            return Result(
                servers: Self.servers(in: client.connectionString),
                operations: operations,
                inFlight: configuration.inFlight,
                payloadBytes: configuration.payloadBytes,
                latencySamples: configuration.latencySamples,
                createsPerSecond: Self.rate(operations, in: creates),
                setsPerSecond: Self.rate(operations, in: sets),
                multisPerSecond: Self.rate(operations, in: multis),
                multiOperations: "create+setData",
                batchedCreatesPerSecond: Self.rate(operations, in: batched),
                batchSize: batchSize,
                deletesPerSecond: Self.rate(deleted, in: deleteTime),
                deletedNodes: deleted,
                createLatency: Result.Latency(
                    p50: Self.roundedMilliseconds(latency.p50), p99: Self.roundedMilliseconds(latency.p99),
                    max: Self.roundedMilliseconds(latency.max)),
                hopLatency: Result.Latency(
                    p50: Self.roundedMilliseconds(hop.p50), p99: Self.roundedMilliseconds(hop.p99), max: Self.roundedMilliseconds(hop.max)))
        } catch let phaseError {
            var cleanUpError: (any Error)?
            do {
                _ = try await deleteEverything()
            } catch {
                cleanUpError = error
            }
            throw Failure(
                phase: phase, error: phaseError, leftBehind: cleanUpError == nil ? nil : root, cleanUpError: cleanUpError)
        }
    }

    // MARK: Phases

    /// The path of node `index` of `phase`.
    private func path(_ phase: String, _ index: Int) -> String {
        "\(root)/\(phase)/\(index / Self.bucketSize)/\(index)"
    }

    /// Creates `<root>/<phase>` and the buckets for `count` nodes.
    private func makeBuckets(_ phase: String, count: Int) async throws {
        _ = try await client.create("\(root)/\(phase)")
        for bucket in 0..<(count + Self.bucketSize - 1) / Self.bucketSize {
            _ = try await client.create("\(root)/\(phase)/\(bucket)")
        }
    }

    /// Creates per transaction in the `batched` phase: 100, fewer for payloads so large that 100
    /// would pass ZooKeeper's 1 MB request limit.
    var batchSize: Int { max(1, min(100, 900_000 / (configuration.payloadBytes + 64))) }

    /// Runs `count` operations, `width` (by default the configured window) at a time, and returns
    /// how long they took.
    private func throughput(
        _ phase: String, count: Int, width: Int? = nil, operation: @escaping @Sendable (Int) async throws -> Void
    ) async throws -> Duration {
        let clock = ContinuousClock()
        let start = clock.now
        let step = max(1, count / 200)
        try await SlidingWindow.run(
            count: count, width: width ?? configuration.inFlight,
            onCompletion: { completed in
                if completed % step == 0 || completed == count {
                    progress(BenchmarkProgress(phase: phase, completed: completed, total: count, elapsed: clock.now - start))
                }
            },
            operation: operation)
        return clock.now - start
    }

    /// Creates `latencySamples` nodes one at a time and summarises how long each took.
    private func sequentialCreates(payload: [UInt8]) async throws -> LatencyStats {
        try await timedOneAtATime("latency") { index in
            _ = try await client.create(path("latency", index), data: payload)
        }
    }

    /// Writes one node `latencySamples` times, each time waiting until a second session that
    /// watches it has read the new version, and summarises how long each hop took.
    private func watchedWrites(payload: [UInt8]) async throws -> LatencyStats {
        let path = "\(root)/hop"
        _ = try await client.create(path, data: payload)
        let watcher = try await ZooKeeperClient.connect(to: client.connectionString, sessionTimeout: .seconds(10))
        defer { Task { await watcher.close() } }
        var updates = watcher.dataUpdates(of: path).makeAsyncIterator()
        _ = try await updates.next()  // the node as it is now; the watch is set
        return try await timedOneAtATime("hop") { _ in
            let written = try await client.setData(path, data: payload)
            while true {
                guard case .present(let node)? = try await updates.next() else {
                    throw ZooKeeperError(.noNode, operation: "hop", path: path, message: "the watched node went away")
                }
                if node.stat.version >= written.version { return }
            }
        }
    }

    /// Runs `sample` `latencySamples` times, one after another, and summarises how long each took.
    private func timedOneAtATime(_ phase: String, _ sample: (Int) async throws -> Void) async throws -> LatencyStats {
        let count = configuration.latencySamples
        let clock = ContinuousClock()
        var samples: [Duration] = []
        samples.reserveCapacity(count)
        let phaseStart = clock.now
        let step = max(1, count / 200)
        for index in 0..<count {
            let start = clock.now
            try await sample(index)
            samples.append(clock.now - start)
            if (index + 1) % step == 0 || index + 1 == count {
                progress(BenchmarkProgress(phase: phase, completed: index + 1, total: count, elapsed: clock.now - phaseStart))
            }
        }
        return LatencyStats(samples: samples)!  // latencySamples >= 1: init's precondition
    }

    /// Deletes the run's root and everything below it, then the shared parent if it is empty.
    /// Returns how many nodes of the deepest level (the measured nodes) were deleted and how long
    /// that took; the few directories above them are deleted afterwards, untimed.
    private func deleteEverything() async throws -> (deleted: Int, elapsed: Duration) {
        // The layout is fixed: <root>/<phase>/<bucket>/<index>. List it level by level.
        let phases = try await childPaths(of: root)
        var buckets: [String] = []
        for phase in phases { buckets += try await childPaths(of: phase) }
        var leaves: [String] = []
        for bucket in buckets { leaves += try await childPaths(of: bucket) }

        let elapsed = try await throughput("delete", count: leaves.count) { [client, leaves] index in
            try await Self.deleteIfPresent(leaves[index], client: client)
        }
        for directory in buckets + phases + [root] {
            try await Self.deleteIfPresent(directory, client: client)
        }
        do {
            try await client.delete(Self.parent)
        } catch let error as ZooKeeperError where error.code == .notEmpty || error.code == .noNode {
            // Another run is using it, or it is already gone.
        }
        return (leaves.count, elapsed)
    }

    private func childPaths(of path: String) async throws -> [String] {
        do {
            return try await client.children(path).names.map { "\(path)/\($0)" }
        } catch let error as ZooKeeperError where error.code == .noNode {
            return []
        }
    }

    private static func deleteIfPresent(_ path: String, client: ZooKeeperClient) async throws {
        do {
            try await client.delete(path)
        } catch let error as ZooKeeperError where error.code == .noNode {
            // Already gone (a delete retried after a lost connection).
        } catch let error as ZooKeeperError where error.code == .notEmpty {
            try await client.deleteRecursively(path)  // not the benchmark's layout: be thorough
        }
    }

    // MARK: Figures

    /// `host:port` entries of a connection string `host:port[,host:port…][/chroot]`.
    static func servers(in connectionString: String) -> [String] {
        let hosts = connectionString.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return hosts.split(separator: ",").map { String($0) }
    }

    /// Operations per second, to one decimal.
    static func rate(_ count: Int, in duration: Duration) -> Double {
        let seconds = duration.seconds
        guard seconds > 0 else { return 0 }
        return (Double(count) / seconds * 10).rounded() / 10
    }

    /// Milliseconds to the microsecond.
    static func roundedMilliseconds(_ duration: Duration) -> Double {
        (duration.milliseconds * 1_000).rounded() / 1_000
    }
}
