/// The active-job index, at `<root>/active`: one empty node, `active/<shard>/<job id>`, for each
/// job whose record is `waiting` or `running` (``JobState/isActive``), created and deleted by the
/// leader in the same transaction that moves the record into and out of those states.
///
/// A new leader finds the jobs it must schedule by reading these entries and their records, not
/// every record kept (thousands of finished jobs per waiting one, in a deployment that runs for a
/// while); `drover jobs --state running` reads what it shows the same way. This document, the
/// directory's data, says the entries are complete: a leader that finds it absent (a deployment
/// older than the index) builds the entries from every record first, then writes it.
///
/// The leader also counts the jobs the index holds, by what they wait for, in the same document (at
/// most once a second, when they changed): clients, the API and the dashboard read one node
/// instead of every record.
public struct ActiveIndex: Codable, Sendable, Hashable {
    public var format = 1
    /// When a leader last built the entries from every record.
    public var builtAt: Timestamp
    /// The leader's counts, as of `countedAt`; nil until a leader counted.
    public var counts: Counts?
    public var countedAt: Timestamp?

    /// Jobs that wait or run, as the leader counts them.
    public struct Counts: Codable, Sendable, Hashable {
        /// Waiting for an executor with room (`waitingReason`).
        public var waiting: Int
        /// Waiting for a scheduled time, a retry's or a restart's (`nextRunAt`). Suspended jobs are
        /// in neither count.
        public var scheduled: Int
        /// With a run on an executor (ended runs not collected yet included).
        public var running: Int
        /// Of `waiting`, those no alive executor could ever run (its capacity, labels or methods):
        /// they wait for an executor that does not exist yet. Nil from a leader older than it.
        public var waitingForNoExecutor: Int?

        public init(waiting: Int, scheduled: Int, running: Int, waitingForNoExecutor: Int? = nil) {
            self.waiting = waiting
            self.scheduled = scheduled
            self.running = running
            self.waitingForNoExecutor = waitingForNoExecutor
        }
    }

    public init(builtAt: Timestamp, counts: Counts? = nil, countedAt: Timestamp? = nil) {
        self.builtAt = builtAt
        self.counts = counts
        self.countedAt = countedAt
    }

    /// The document in a directory's data, or nil when the entries are not known to be complete
    /// (empty, unreadable or of a newer format: built again rather than trusted).
    public static func read(_ data: [UInt8]) -> ActiveIndex? {
        guard let index = try? Codec.decode(ActiveIndex.self, data), index.format == 1 else { return nil }
        return index
    }
}
