import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// The process's metrics, exposed for Prometheus at `GET /metrics` (text exposition format).
///
/// ``bootstrap()`` makes every swift-metrics counter, gauge and timer of the process — the
/// ZooKeeper client's, the leader's, the executor's — land in one Prometheus registry; call it
/// once, first, before anything creates a metric.
public struct MetricsServer: Service {
    private let application: Application<RouterResponder<BasicRequestContext>>

    /// The registry every metric of the process is kept in once ``bootstrap()`` ran.
    public static let registry = PrometheusCollectorRegistry()

    /// Routes swift-metrics to ``registry``, with buckets that suit Drover's figures: ZooKeeper
    /// round trips from half a millisecond, transaction sizes up to ZooKeeper's 1 MB request limit.
    public static func bootstrap() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(10),
        ]
        factory.valueHistogramBuckets["drover_leader_commit_bytes"] = [512, 2_048, 8_192, 32_768, 131_072, 524_288, 1_048_576]
        // A job can wait for room for minutes.
        let waits: [Duration] = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(10), .seconds(30), .seconds(60), .seconds(300), .seconds(1800),
        ]
        factory.durationHistogramBuckets["drover_submit_to_placement_seconds"] = waits
        factory.durationHistogramBuckets["drover_submit_to_start_seconds"] = waits
        factory.durationHistogramBuckets["drover_executor_start_delay_seconds"] = waits
        MetricsSystem.bootstrap(factory)
    }

    /// - Parameters:
    ///   - host: The address to listen on (`127.0.0.1` for this machine only).
    ///   - port: The port (0: any free port).
    public init(host: String, port: Int, logger: Logger) {
        let router = Router()
        router.get("/metrics") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: Self.registry.emitToBuffer())))
        }
        router.get("/health") { _, _ in "ok\n" }
        application = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "drover-metrics"), logger: logger)
    }

    public func run() async throws {
        do {
            try await application.run()
        } catch is CancellationError {
            // Stopped with the daemon it serves: not an error.
        }
    }
}
