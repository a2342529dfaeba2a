import DroverProtocol
import Metrics
import Synchronization

/// What the leader counts, for Prometheus (`drover manager --metrics`; names in
/// docs/OPERATIONS.md). Created on first use, after the daemon bootstrapped the metrics system;
/// without one (a library user, the tests) they cost nothing.
enum LeaderMetrics {
    /// 1 while this manager leads, else 0.
    static let leading = Gauge(label: "drover_leader")
    /// The current term's number (the election node's sequence).
    static let term = Gauge(label: "drover_leader_term")
    static let terms = Counter(label: "drover_leader_terms_total")
    static let commits = Counter(label: "drover_leader_commits_total")
    /// Bytes of each committed transaction (a histogram).
    static let commitBytes = Recorder(label: "drover_leader_commit_bytes")
    /// Transactions refused because an executor state or job record changed since it was read.
    static let conflicts = Counter(label: "drover_leader_conflicts_total")
    static let queueItems = Counter(label: "drover_queue_items_consumed_total")
    /// Items in the queue not yet applied (a bulk submit's batch is one), counted every few seconds.
    static let queueDepth = Gauge(label: "drover_queue_items")
    static let setAside = Counter(label: "drover_setaside_items_total")
    /// Jobs waiting for room, as the leader holds them.
    static let waiting = Gauge(label: "drover_jobs_waiting")
    static let scheduled = Gauge(label: "drover_jobs_scheduled")
    /// The waiting jobs by why: room (some alive executor could run them) or noExecutor (none could).
    static let waitingForRoom = Gauge(label: "drover_jobs_waiting_by_reason", dimensions: [("reason", "room")])
    static let waitingForNoExecutor = Gauge(label: "drover_jobs_waiting_by_reason", dimensions: [("reason", "noExecutor")])
    static let executorsAlive = Gauge(label: "drover_executors", dimensions: [("state", "alive")])
    static let executorsGone = Gauge(label: "drover_executors", dimensions: [("state", "gone")])
    static let slotsUsed = Gauge(label: "drover_cluster_slots", dimensions: [("kind", "used")])
    static let slotsTotal = Gauge(label: "drover_cluster_slots", dimensions: [("kind", "total")])
    /// From a job's submit to its first placement (jobs without a schedule or start time).
    static let submitToPlacement = Timer(label: "drover_submit_to_placement_seconds")
    /// From a job's submit to its first run's start (the same jobs), recorded when that run ends.
    static let submitToStart = Timer(label: "drover_submit_to_start_seconds")

    /// Runs the leader recorded as ended, by outcome and (for failures) kind of failure.
    static func runEnded(_ run: RunRecord) {
        let failure = run.outcome == .failed ? (run.failure ?? .failed).rawValue : ""
        let counter = runs.withLock { runs in
            if let counter = runs[[run.outcome.rawValue, failure]] { return counter }
            let counter = Counter(label: "drover_runs_total", dimensions: [("outcome", run.outcome.rawValue), ("failure", failure)])
            runs[[run.outcome.rawValue, failure]] = counter
            return counter
        }
        counter.increment()
    }
    /// The run counters by outcome and failure, made once each.
    private static let runs = Mutex<[[String]: Counter]>([:])
}
