/// What a scheduled job does when its next time comes while a run is still running.
public enum OverlapPolicy: String, Codable, Sendable, Hashable, CaseIterable {
    /// The running run goes on; the time passes (the next run is the first time after it ends).
    case forbid
    /// The running run is stopped, and the run of the new time starts once it has ended.
    case replace
    /// The run of the new time starts beside the running ones, up to the job's
    /// `maxConcurrentRuns`; a time that comes while that many run passes (as with `forbid`).
    case allow
}

/// What a scheduled job does with times that passed without a run (no manager ran, the job was
/// waiting for room, or a run went on past them):
///
/// ```json
/// "missedRuns": {"policy": "catchUp", "startingDeadlineSeconds": 3600, "maxRuns": 10}
/// ```
public struct MissedRunPolicy: Codable, Sendable, Hashable {
    public enum Policy: String, Codable, Sendable, Hashable, CaseIterable {
        /// One run for all the times that passed, now; then the schedule goes on from now.
        case runOnce
        /// A time more than the starting deadline late is skipped: the job waits for its next time.
        case skip
        /// Every time that passed runs, oldest first, one after another, if it is no more than the
        /// starting deadline late, at most `maxRuns` in a row; older times are skipped.
        case catchUp
    }

    public var policy: Policy
    /// How late a run may start (default: 60 s for `skip`, an hour for `catchUp`).
    public var startingDeadlineSeconds: Double?
    /// For `catchUp`: runs of passed times in a row at most (default 10).
    public var maxRuns: Int?

    public init(policy: Policy, startingDeadlineSeconds: Double? = nil, maxRuns: Int? = nil) {
        self.policy = policy
        self.startingDeadlineSeconds = startingDeadlineSeconds
        self.maxRuns = maxRuns
    }

    static let fields: Set<String> = ["policy", "startingDeadlineSeconds", "maxRuns"]

    /// The starting deadline in milliseconds, with the policy's default.
    public var startingDeadlineMilliseconds: Int64 {
        startingDeadlineSeconds.flatMap { Bounds.milliseconds(fromSeconds: $0, in: Bounds.intervalMilliseconds) }
            ?? (policy == .catchUp ? 3_600_000 : 60_000)
    }

    /// `maxRuns`, with its default.
    public var catchUpLimit: Int { maxRuns ?? 10 }

    /// Why this policy is outside ``Bounds``, naming the field; nil when it is within them.
    public var problem: SpecError? {
        if let seconds = startingDeadlineSeconds, Bounds.milliseconds(fromSeconds: seconds, in: Bounds.intervalMilliseconds) == nil {
            return SpecError(
                field: "missedRuns.startingDeadlineSeconds", reason: "must be \(Bounds.describeSeconds(Bounds.intervalMilliseconds)) (got \(seconds))")
        }
        if let maxRuns {
            guard policy == .catchUp else { return SpecError(field: "missedRuns.maxRuns", reason: "only the catchUp policy has a maximum of runs") }
            guard Bounds.catchUpRuns.contains(maxRuns) else {
                return SpecError(
                    field: "missedRuns.maxRuns", reason: "must be between \(Bounds.catchUpRuns.lowerBound) and \(Bounds.catchUpRuns.upperBound) (got \(maxRuns))")
            }
        }
        return nil
    }
}
