import Metrics

/// What an executor counts, for Prometheus (`drover executor --metrics`; docs/OPERATIONS.md).
/// Without a bootstrapped metrics system they cost nothing.
enum ExecutorMetrics {
    static let slotsUsed = Gauge(label: "drover_executor_slots", dimensions: [("kind", "used")])
    static let slotsTotal = Gauge(label: "drover_executor_slots", dimensions: [("kind", "total")])

    /// A run ended here: `succeeded`, `failed`, `timedOut` or `stopped`.
    static func ended(_ outcome: String) {
        Counter(label: "drover_executor_runs_total", dimensions: [("outcome", outcome)]).increment()
    }
}
