import Foundation

/// How a run ended badly, for retry policies: `failed` (the handler threw, or the command exited
/// non-zero), `timedOut` (the run passed its timeout), `lost` (its executor stayed dead past the
/// grace period). A string on the wire, so that a kind added later does not make a record unreadable:
/// a submit names only kinds it knows, and a leader ignores those it does not.
public struct FailureKind: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible, Comparable {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
    public static func < (a: FailureKind, b: FailureKind) -> Bool { a.rawValue < b.rawValue }

    public static let failed = FailureKind(rawValue: "failed")
    public static let timedOut = FailureKind(rawValue: "timedOut")
    public static let lost = FailureKind(rawValue: "lost")
    /// The kinds this version knows (and a retry policy may name).
    public static let known: [FailureKind] = [.failed, .timedOut, .lost]

    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// When a run that ended badly is tried again, and after how long:
///
/// ```json
/// "retry": {"maxAttempts": 3, "initialDelaySeconds": 10, "maxDelaySeconds": 300,
///           "multiplier": 2, "jitter": 0.1, "on": ["failed", "timedOut", "lost"]}
/// ```
///
/// Attempt `n` (n ≥ 2) starts `initialDelay · multiplier^(n-2)` after attempt `n-1` ended, at most
/// `maxDelay`, less up to `jitter` of it (a fraction, the same for one job and attempt on every
/// leader). A job fails only when a run's attempts are spent. The wait is a due time in the job's
/// record, so a new leader keeps it.
public struct RetryPolicy: Codable, Sendable, Hashable {
    /// Attempts of one run, the first one included: 1 never retries.
    public var maxAttempts: Int
    public var initialDelaySeconds: Double
    public var maxDelaySeconds: Double
    public var multiplier: Double
    /// The fraction of each delay that may be taken off it at random (0 to 1).
    public var jitter: Double
    /// Which ends are retried.
    public var on: [FailureKind]

    public static let defaultOn: [FailureKind] = [.failed, .timedOut, .lost]

    public init(
        maxAttempts: Int, initialDelaySeconds: Double = 1, maxDelaySeconds: Double = 300, multiplier: Double = 2, jitter: Double = 0,
        on: [FailureKind] = RetryPolicy.defaultOn
    ) {
        self.maxAttempts = maxAttempts
        self.initialDelaySeconds = initialDelaySeconds
        self.maxDelaySeconds = maxDelaySeconds
        self.multiplier = multiplier
        self.jitter = jitter
        self.on = on
    }

    enum CodingKeys: String, CodingKey { case maxAttempts, initialDelaySeconds, maxDelaySeconds, multiplier, jitter, on }
    static let fields = Set([CodingKeys.maxAttempts, .initialDelaySeconds, .maxDelaySeconds, .multiplier, .jitter, .on].map(\.stringValue))

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        maxAttempts = try container.decode(Int.self, forKey: .maxAttempts)
        initialDelaySeconds = try container.decodeIfPresent(Double.self, forKey: .initialDelaySeconds) ?? 1
        maxDelaySeconds = try container.decodeIfPresent(Double.self, forKey: .maxDelaySeconds) ?? 300
        multiplier = try container.decodeIfPresent(Double.self, forKey: .multiplier) ?? 2
        jitter = try container.decodeIfPresent(Double.self, forKey: .jitter) ?? 0
        on = try container.decodeIfPresent([FailureKind].self, forKey: .on) ?? Self.defaultOn
    }

    /// Whether an end of this kind is retried (attempts left aside).
    public func retries(_ kind: FailureKind) -> Bool { on.contains(kind) }

    /// The wait before attempt `attempt` (2 for the first retry) of the run of job `job`, in
    /// milliseconds. The jitter is drawn from the job's id and the attempt, so every leader that
    /// plans the same retry picks the same due time.
    public func delayMilliseconds(beforeAttempt attempt: Int, job: String) -> Int64 {
        let steps = Double(max(0, min(attempt - 2, 1_000)))
        let delay = min(maxDelaySeconds, initialDelaySeconds * pow(multiplier, steps)) * 1000
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a over the id and the attempt
        for byte in Array(job.utf8) + withUnsafeBytes(of: Int64(attempt).littleEndian, Array.init) {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        let draw = Double(hash >> 11) / Double(1 << 53)  // 0 ≤ draw < 1
        let jittered = delay * (1 - jitter * draw)
        return jittered.isFinite ? Int64(min(max(jittered, 0), Double(Bounds.intervalMilliseconds.upperBound))) : 0
    }

    /// Why this policy is outside ``Bounds``, naming the field; nil when it is within them.
    /// Kinds of failure this version does not know are refused unless `allowingUnknownKinds`.
    public func problem(allowingUnknownKinds: Bool = false) -> SpecError? {
        guard Bounds.attempts.contains(maxAttempts) else {
            return SpecError(
                field: "retry.maxAttempts",
                reason: "must be between \(Bounds.attempts.lowerBound) and \(Bounds.attempts.upperBound), the first attempt included (got \(maxAttempts))")
        }
        for (field, seconds) in [("initialDelaySeconds", initialDelaySeconds), ("maxDelaySeconds", maxDelaySeconds)]
        where Bounds.milliseconds(fromSeconds: seconds, in: Bounds.intervalMilliseconds) == nil {
            return SpecError(field: "retry." + field, reason: "must be \(Bounds.describeSeconds(Bounds.intervalMilliseconds)) (got \(seconds))")
        }
        guard maxDelaySeconds >= initialDelaySeconds else {
            return SpecError(field: "retry.maxDelaySeconds", reason: "must not be less than initialDelaySeconds (\(maxDelaySeconds) < \(initialDelaySeconds))")
        }
        guard multiplier.isFinite, Bounds.retryMultiplier.contains(multiplier) else {
            return SpecError(
                field: "retry.multiplier", reason: "must be between \(Bounds.retryMultiplier.lowerBound) and \(Bounds.retryMultiplier.upperBound) (got \(multiplier))")
        }
        guard jitter.isFinite, (0...1).contains(jitter) else {
            return SpecError(field: "retry.jitter", reason: "must be a fraction between 0 and 1 (got \(jitter))")
        }
        guard !on.isEmpty else {
            return SpecError(field: "retry.on", reason: "names no kind of end to retry (use some of \(FailureKind.known.map(\.rawValue)))")
        }
        if !allowingUnknownKinds, let unknown = on.first(where: { !FailureKind.known.contains($0) }) {
            return SpecError(field: "retry.on", reason: "\"\(unknown)\" is not one of \(FailureKind.known.map(\.rawValue).joined(separator: ", "))")
        }
        return nil
    }
}

/// What a finite job does after a run that failed for good (its retries, if any, spent).
public enum FailurePolicy: String, Codable, Sendable, Hashable, CaseIterable {
    /// The job ends `failed` (the default).
    case stop
    /// The failed run counts as done and the next one runs; the job ends `failed` if any run failed.
    case `continue`
}
