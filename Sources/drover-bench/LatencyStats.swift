/// Summary statistics of latency samples: nearest-rank percentiles and the extremes.
///
/// Percentiles use the nearest-rank method: the p-th percentile of n sorted samples is the
/// sample at rank ⌈p/100 · n⌉ (1-based), so it is always one of the measured values, never an
/// interpolation. The rank is computed in integers (p is taken to two decimals, e.g. 99.9), so
/// p99 of 2,000 samples is exactly the 1,980th.
struct LatencyStats: Sendable, Equatable {
    /// How many samples were summarised.
    let count: Int
    let min: Duration
    let p50: Duration
    let p99: Duration
    let max: Duration

    /// Summarises `samples` (in any order); nil when there are none.
    init?(samples: [Duration]) {
        guard !samples.isEmpty else { return nil }
        let sorted = samples.sorted()
        count = sorted.count
        min = sorted[0]
        p50 = Self.percentile(50, ofSorted: sorted)
        p99 = Self.percentile(99, ofSorted: sorted)
        max = sorted[sorted.count - 1]
    }

    /// The nearest-rank `percent`-th percentile of ascending `sorted` samples.
    /// - Precondition: `sorted` is not empty and `percent` is in 0...100 (0 gives the minimum).
    static func percentile(_ percent: Double, ofSorted sorted: [Duration]) -> Duration {
        precondition(!sorted.isEmpty, "percentile of no samples")
        precondition((0...100).contains(percent), "percentile \(percent) is outside 0...100")
        return sorted[nearestRankIndex(percent, count: sorted.count)]
    }

    /// The 0-based index of the nearest-rank `percent`-th percentile among `count` sorted values.
    static func nearestRankIndex(_ percent: Double, count: Int) -> Int {
        let basisPoints = Int((percent * 100).rounded())  // 99.9 % → 9,990 ‱, exactly
        let rank = (count * basisPoints + 9_999) / 10_000  // ⌈count · p / 100⌉ without floating point
        return Swift.min(Swift.max(rank, 1), count) - 1
    }
}

extension Duration {
    /// The duration in (fractional) milliseconds.
    var milliseconds: Double {
        Double(components.seconds) * 1_000 + Double(components.attoseconds) / 1e15
    }

    /// The duration in (fractional) seconds.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
