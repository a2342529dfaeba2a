import Metrics
import Synchronization

/// What a ZooKeeper client counts, for Prometheus (the daemons' `--metrics`). Without a
/// bootstrapped metrics system they cost nothing.
enum ZooKeeperMetrics {
    static let connected = Gauge(label: "drover_zookeeper_connected")

    /// One timer per operation, made once: every request records into it (a hot path).
    private static let timers = Mutex<[String: Timer]>([:])

    /// A request's round trip, by operation (a histogram in seconds).
    static func request(_ operation: String, took duration: Duration) {
        let nanoseconds = duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
        let timer = timers.withLock { timers in
            if let timer = timers[operation] { return timer }
            let timer = Timer(label: "drover_zookeeper_request_seconds", dimensions: [("operation", operation)])
            timers[operation] = timer
            return timer
        }
        timer.recordNanoseconds(nanoseconds)
    }

    /// A change of the session's state as subscribers see it.
    static func session(_ state: SessionState) {
        let name: String
        switch state {
        case .connecting: name = "connecting"
        case .connected: name = "connected"
        case .suspended: name = "suspended"
        case .expired: name = "expired"
        case .authFailed: name = "authFailed"
        case .closed: name = "closed"
        }
        connected.record(name == "connected" ? 1 : 0)
        Counter(label: "drover_zookeeper_session_events_total", dimensions: [("state", name)]).increment()
    }
}
