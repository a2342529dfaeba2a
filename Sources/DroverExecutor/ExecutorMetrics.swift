import Metrics
import Synchronization

/// What an executor counts, for Prometheus (`drover executor --metrics`; docs/OPERATIONS.md).
/// Without a bootstrapped metrics system they cost nothing.
enum ExecutorMetrics {
    static let slotsUsed = Gauge(label: "drover_executor_slots", dimensions: [("kind", "used")])
    static let slotsTotal = Gauge(label: "drover_executor_slots", dimensions: [("kind", "total")])
    /// From the leader's placement of a task to its first start here (the two hosts' clocks).
    static let startDelay = Timer(label: "drover_executor_start_delay_seconds")

    /// A unit segment's write (a claim, a batch of ends, a renewal) lost its compare-and-set to
    /// another executor's and was read and applied again.
    static let unitWriteConflicts = Counter(label: "drover_unit_write_conflicts_total")

    /// A reservation taken on the direct path was answered: `task` (a task claimed) or `none`
    /// (every task of its job was claimed already).
    static func claimsAnswered(_ answer: String) {
        counter(in: claims, "drover_executor_claims_total", ("answer", answer)).increment()
    }

    /// A run ended here: `succeeded`, `failed`, `timedOut` or `stopped`.
    static func ended(_ outcome: String) {
        counter(in: runs, "drover_executor_runs_total", ("outcome", outcome)).increment()
    }

    /// The counter of `label` with one dimension's value, made once and kept in `made`.
    private static func counter(in made: borrowing Mutex<[String: Counter]>, _ label: String, _ dimension: (String, String)) -> Counter {
        made.withLock { made in
            if let counter = made[dimension.1] { return counter }
            let counter = Counter(label: label, dimensions: [dimension])
            made[dimension.1] = counter
            return counter
        }
    }
    /// The counters by outcome (runs) and answer (claims), made once each.
    private static let runs = Mutex<[String: Counter]>([:])
    private static let claims = Mutex<[String: Counter]>([:])
}
