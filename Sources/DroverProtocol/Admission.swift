/// The leader's admission rule, at `<root>/admission`: while too many jobs wait, clients stop
/// submitting (`DroverClient.submit` refuses with "the queue is full").
///
/// ZooKeeper cannot bound a queue or a client's rate itself, and a leader cannot refuse work the
/// queue has already acknowledged without losing it. So the bound is the clients' to keep: the
/// leader says when the line is full, every Drover client checks before it writes. A program that
/// writes the queue directly can still pass it (docs/SECURITY.md).
public struct Admission: Codable, Sendable, Hashable {
    public var format = 1
    /// The most jobs that may wait before submits are refused (`drover manager --max-waiting`).
    public var maxWaiting: Int
    /// Jobs waiting when the leader last wrote this document.
    public var waiting: Int
    /// Whether clients must refuse new submits now.
    public var full: Bool

    public init(maxWaiting: Int, waiting: Int, full: Bool) {
        self.maxWaiting = maxWaiting
        self.waiting = waiting
        self.full = full
    }

    /// Whether the line is full: from `maxWaiting` waiting jobs until they are back under nine
    /// tenths of it, so a line at the limit does not open and close with every job.
    public static func isFull(waiting: Int, maxWaiting: Int, wasFull: Bool) -> Bool {
        wasFull ? waiting > maxWaiting - max(1, maxWaiting / 10) : waiting >= maxWaiting
    }

    /// The range `--max-waiting` accepts.
    public static let limits = 1...100_000_000
}
