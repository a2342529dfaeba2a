/// How long finished jobs are kept: the rule the leader's sweep applies and clients explain.
///
/// A job's record is removed once the job is final (succeeded, failed, cancelled, stopped) and its
/// last run ended — or, without runs, it was submitted — at least ``period`` ago. The leader
/// publishes its rule at `/drover/retention` so that a client asked for a removed job can say so.
public struct RetentionRule: Codable, Sendable, Hashable {
    public var format: Int = 1
    /// Milliseconds a finished job is kept.
    public var periodMilliseconds: Int64

    public init(periodMilliseconds: Int64) { self.periodMilliseconds = periodMilliseconds }

    /// When the record's job finished, for retention: as the leader recorded it, else (a record of
    /// an older leader) its last run's end, else its submission.
    public static func finishedAt(_ record: JobRecord) -> Timestamp {
        record.finishedAt ?? max(record.history.last?.endedAt ?? record.submittedAt, record.submittedAt)
    }

    /// Whether `record` may be removed at `now`.
    public func isDue(_ record: JobRecord, now: Timestamp) -> Bool {
        record.state.isFinal && Self.finishedAt(record) <= now - periodMilliseconds
    }

    /// Whether the leader's note over a record that could not be used may be removed at `now`.
    public func isDue(_ note: UnusableJobRecord, now: Timestamp) -> Bool {
        note.at <= now - periodMilliseconds
    }

    /// Whether a job of this id can be due at `now` at all, judged from the id alone: a job
    /// finishes after it is submitted, and ids made by ``Layout/newJobID()`` carry their
    /// submission time. Ids of another shape may be due (their records are read to know).
    public func mayBeDue(id: String, now: Timestamp) -> Bool {
        guard let submitted = Layout.submissionTime(ofJobID: id) else { return true }
        return submitted <= now - periodMilliseconds
    }
}

extension Layout {
    /// The submission time carried by an id from ``newJobID()`` (`j-<ms in base 36>-<random>`),
    /// or nil for an id of another shape.
    public static func submissionTime(ofJobID id: String) -> Timestamp? {
        let parts = id.split(separator: "-")
        guard parts.count == 3, parts[0] == "j", parts[1].count <= 12, let milliseconds = Int64(parts[1], radix: 36),
            Bounds.timestampMilliseconds.contains(milliseconds)
        else { return nil }
        return milliseconds
    }
}
