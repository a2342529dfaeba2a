/// The one place that decides what a number or a size may be. Every duration, count, timestamp
/// and text that a user or a znode can supply has a range here, and the client, the leader and the
/// executor check it with the same code — so a value one of them accepts never traps another
/// (ARCHITECTURE.md, promise 7: bad input gets a clear error). docs/PROTOCOL.md lists the ranges.
public enum Bounds {
    /// Schedule intervals: one millisecond to ten years.
    public static let intervalMilliseconds: ClosedRange<Int64> = 1...(3_650 * 86_400_000)
    /// Times in documents (milliseconds since 1970): up to the end of the year 9999.
    public static let timestampMilliseconds: ClosedRange<Int64> = 0...253_402_300_799_999
    /// A command's timeout (`timeoutSeconds` of the `shell` method): a millisecond to a year.
    public static let timeoutSeconds: ClosedRange<Double> = 0.001...31_536_000
    /// Runs of a finite job.
    public static let count: ClosedRange<Int> = 1...1_000_000_000
    /// Attempts of one run under a retry policy, the first included.
    public static let attempts: ClosedRange<Int> = 1...100
    /// The growth of a retry policy's delay from one attempt to the next.
    public static let retryMultiplier: ClosedRange<Double> = 1...10
    /// Runs of passed times a catch-up makes in a row.
    public static let catchUpRuns: ClosedRange<Int> = 1...1_000
    /// Runs of one `overlap: allow` job at once (each run's record rides in the job's record).
    public static let concurrentRuns: ClosedRange<Int> = 1...100
    /// A job's priority: higher places first.
    public static let priority: ClosedRange<Int> = 1...100
    /// Slots, MiB of memory and cores a task may ask for.
    public static let slots: ClosedRange<Int> = 1...1_000_000
    public static let memoryMB: ClosedRange<Int> = 0...1_000_000_000
    public static let cpu: ClosedRange<Double> = 0...1_000_000
    /// A run's error text as kept in an executor's state and a job's history, in UTF-8 bytes:
    /// longer ones are cut (a command that fails with megabytes of text must not grow its job's
    /// record past what one ZooKeeper transaction can carry).
    public static let errorBytes = 4 * 1024
    /// A run's result, encoded: larger ones fail the run ("return a reference, not the data").
    public static let resultBytes = 16 * 1024
    /// Workflow steps one run's handler may inject, encoded, in all (they wait in its executor's state).
    public static let injectedStepsBytes = 8 * 1024
    /// What of a set-aside queue item is kept with the reason, in bytes (the item may be as large
    /// as a znode can be; the set-aside document must stay small).
    public static let setAsideDataBytes = 4 * 1024

    /// `seconds` as whole milliseconds, when it is a finite number whose milliseconds lie in `range`;
    /// nil otherwise (never traps, whatever the number).
    public static func milliseconds(fromSeconds seconds: Double, in range: ClosedRange<Int64>) -> Int64? {
        let milliseconds = (seconds * 1000).rounded()
        guard milliseconds.isFinite, milliseconds >= Double(range.lowerBound), milliseconds <= Double(range.upperBound) else { return nil }
        return Int64(milliseconds)
    }

    /// The range in words, for error messages: "between 0.001 and 315360000 seconds".
    public static func describeSeconds(_ range: ClosedRange<Int64>) -> String {
        "between \(Double(range.lowerBound) / 1000) and \(Double(range.upperBound) / 1000) seconds"
    }

    /// `text` cut to at most `maximumBytes` of UTF-8 on a character boundary, with a note of how
    /// much was cut; unchanged when it fits.
    public static func truncated(_ text: String, toBytes maximumBytes: Int) -> String {
        let utf8 = text.utf8
        guard utf8.count > maximumBytes else { return text }
        let note = " … [cut: \(utf8.count) bytes in all]"
        var end = utf8.index(utf8.startIndex, offsetBy: max(0, maximumBytes - note.utf8.count))
        // Back to the start of a scalar, so the cut text is valid UTF-8.
        while end > utf8.startIndex && utf8[end] & 0xC0 == 0x80 { end = utf8.index(before: end) }
        return String(decoding: utf8[..<end], as: UTF8.self) + note
    }
    // Work specs (docs/PROTOCOL.md, "Work specs").
    /// A unit's key, in UTF-8 bytes.
    public static let unitKeyBytes = 256
    /// A unit's data, encoded.
    public static let unitDataBytes = 1_024
    /// A unit attempt's result, encoded: a larger one is not kept (the attempt still finishes).
    public static let unitResultBytes = 128
    /// A unit attempt's error text: longer ones are cut.
    public static let unitErrorBytes = 160
    /// A unit's attempts kept before its last one (``WorkUnit/earlier``), while its segment has
    /// room for them: the room reserved for a unit's growth does not count them, so a segment
    /// that would pass ``unitSegmentBytes`` drops the oldest first.
    public static let unitEarlierAttempts = 4
    /// Tries after the first of one unit.
    public static let unitMaximumRetries = 100
    /// Units one executor claims in one write.
    public static let unitMaximumGetwork = 1_000
    /// Buckets of one spec.
    public static let unitMaximumBuckets = 256
    /// The highest `maxRunning` of a work spec.
    public static let unitMaximumRunning = 1_000_000
    /// The most units one finished unit may feed to its spec's `then` spec (its result's `output`).
    public static let unitMaximumOutputs = 1_000
    /// A spec's common arguments, encoded.
    public static let unitSpecArgumentsBytes = 16 * 1024
    /// A spec's priority.
    public static let unitPriority: ClosedRange<Int> = -1_000...1_000
    /// A unit segment takes units while each one's encoded size plus ``unitGrowthBytes`` sums
    /// to at most this; the room left covers what its units grow by (leases, attempts), so a
    /// segment stays under ZooKeeper's 1 MB transport limit with room for a `multi` of several.
    public static let unitSegmentBytes = 192 * 1024
    /// What one unit may grow by once added: a lease and its last attempt (an executor id of
    /// 128 bytes, an error and a result at their bounds), encoded.
    public static let unitGrowthBytes = 760
    /// A bucket's index of its segments, encoded: past it, the bucket takes no more units (a spec
    /// created with more buckets holds more).
    public static let unitBucketIndexBytes = 240 * 1024
}

extension Duration {
    /// The duration in whole milliseconds (the unit of every time in Drover's documents).
    public var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
