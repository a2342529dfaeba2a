import DroverProtocol

/// Where a job's run is, as far as its output is concerned.
public enum RunPlace: Equatable, Sendable {
    /// On an executor; `running` while the run has not ended.
    case on(executor: String, running: Bool)
    /// Not placed yet (the job waits, or a moved run waits to be placed again).
    case notStarted
    /// The job ended without reaching this run.
    case never
    /// An old run whose record was dropped from the bounded history.
    case forgotten

    public init(_ record: JobRecord, run: Int) {
        if let entry = record.history.first(where: { $0.run == run }) {
            self = .on(executor: entry.executor, running: false)
        } else if let step = record.steps?.first(where: { $0.run == run && $0.state == .running }) {
            // A workflow's step: its run is on its executor, or waits to be placed again.
            self = step.executor.map { .on(executor: $0, running: true) } ?? .notStarted
        } else if let concurrent = record.concurrentRuns?.first(where: { $0.run == run }) {
            // One of the runs at once of a job with `overlap: allow`.
            self = concurrent.executor.map { .on(executor: $0, running: true) } ?? .notStarted
        } else if run >= 1, run == record.runsStarted, !record.state.isFinal {
            self = record.executor.map { .on(executor: $0, running: true) } ?? .notStarted
        } else if run > record.runsStarted || run < 1 {
            self = record.state.isFinal ? .never : .notStarted
        } else {
            self = .forgotten
        }
    }

    public func explanation(job: String, run: Int, record: JobRecord) -> String {
        let state = record.state.rawValue + (record.waitingReason.map { ": \($0)" } ?? "")
        switch self {
        case .on: return ""
        case .notStarted:
            return run >= 1 && run == record.runsStarted
                ? "run \(run) of job \(job) is waiting to be placed again (\(state)); -f waits for it"
                : "job \(job) has not started run \(max(run, 1)) yet (\(state)); -f waits for it"
        case .never:
            return "job \(job) is \(record.state.rawValue) and never ran run \(max(run, 1))"
        case .forgotten:
            return "run \(run) of job \(job) is no longer in its history (kept: \(record.history.map(\.run)))"
        }
    }
}
