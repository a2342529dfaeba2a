/// The active-job index, at `<root>/active`: one empty node, `active/<shard>/<job id>`, for each
/// job whose record is `waiting` or `running` (``JobState/isActive``), created and deleted by the
/// leader in the same transaction that moves the record into and out of those states.
///
/// A new leader finds the jobs it must schedule by reading these entries and their records, not
/// every record kept (thousands of finished jobs per waiting one, in a deployment that runs for a
/// while); `drover jobs --state running` reads what it shows the same way. This document, the
/// directory's data, says the entries are complete: a leader that finds it absent (a deployment
/// older than the index) builds the entries from every record first, then writes it.
public struct ActiveIndex: Codable, Sendable, Hashable {
    public var format = 1
    /// When a leader last built the entries from every record.
    public var builtAt: Timestamp

    public init(builtAt: Timestamp) {
        self.builtAt = builtAt
    }

    /// The document in a directory's data, or nil when the entries are not known to be complete
    /// (empty, unreadable or of a newer format: built again rather than trusted).
    public static func read(_ data: [UInt8]) -> ActiveIndex? {
        guard let index = try? Codec.decode(ActiveIndex.self, data), index.format == 1 else { return nil }
        return index
    }
}
