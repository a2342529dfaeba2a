import Synchronization

/// How far one phase of a benchmark has got.
struct BenchmarkProgress: Sendable {
    /// A short name of the phase, e.g. `create`.
    var phase: String
    var completed: Int
    var total: Int
    /// Time since the phase started.
    var elapsed: Duration

    var isFinished: Bool { completed >= total }
}

/// Shows benchmark progress on standard error.
///
/// On a terminal, one line is redrawn in place (at most ten times a second) and left showing
/// the phase's result when it finishes. Elsewhere (a log, a pipe) it writes a line every five
/// seconds of a long phase and one when the phase finishes, so logs stay short.
final class ProgressReporter: Sendable {
    private let isTerminal: Bool
    private let lastWrite: Mutex<ContinuousClock.Instant?> = Mutex(nil)

    init(isTerminal: Bool = StandardError.isTerminal) {
        self.isTerminal = isTerminal
    }

    func report(_ progress: BenchmarkProgress) {
        let now = ContinuousClock.now
        let interval: Duration = isTerminal ? .milliseconds(100) : .seconds(5)
        let due = lastWrite.withLock { last -> Bool in
            if progress.isFinished {
                last = nil
                return true
            }
            guard let previous = last else {
                last = now  // the phase started: wait a full interval before the first line
                return false
            }
            guard now - previous >= interval else { return false }
            last = now
            return true
        }
        guard due else { return }
        let line = describe(progress)
        if isTerminal {
            // \u{1B}[K clears what a longer previous line left behind.
            StandardError.write("\r\(line)\u{1B}[K" + (progress.isFinished ? "\n" : ""))
        } else {
            StandardError.writeLine(line)
        }
    }

    private func describe(_ progress: BenchmarkProgress) -> String {
        let seconds = progress.elapsed.seconds
        let rate = seconds > 0 ? Double(progress.completed) / seconds : 0
        let count = "\(Format.count(progress.completed))/\(Format.count(progress.total))"
        let timing = "\(Format.fixed(seconds, decimals: 2)) s, \(Format.count(Int(rate.rounded())))/s"
        return progress.isFinished
            ? "  \(progress.phase): \(count) done in \(timing)"
            : "  \(progress.phase): \(count) (\(timing))"
    }
}
