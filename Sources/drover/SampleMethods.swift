import DroverClient
import DroverExecutor
import DroverManager
import DroverProtocol
import Foundation

/// Methods the stock executor offers, to try Drover and to test it.
enum SampleMethods {
    static let all: [String: TaskHandler] = [
        "sample.echo": { context in context.arguments },
        // The moment its handler began, in milliseconds since 1970 with their fraction: what a user
        // sees as the start (a record's startedAt is whole milliseconds, taken before the start is
        // written). `drover-bench latency` times submit→start with it.
        "sample.clock": { _ in ["handlerStartedAt": .number(Date().timeIntervalSince1970 * 1000)] },
        "sample.fail": { context in
            throw DroverError(.jobFailed, context.arguments["message"]?.stringValue ?? "failed as asked")
        },
        "sample.sleep": { context in
            let seconds = context.arguments["seconds"]?.numberValue ?? 1
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            return ["slept": .number(seconds)]
        },
        // Counts to `to`, one step every `stepMilliseconds`, saving a checkpoint after each step:
        // after an executor crash the run resumes where it was instead of starting over.
        "sample.count": { context in
            let target = Int(context.arguments["to"]?.numberValue ?? 10)
            let step = Int(context.arguments["stepMilliseconds"]?.numberValue ?? 100)
            var current = Int(context.checkpoint?["count"]?.numberValue ?? 0)
            let resumedAt = current
            while current < target {
                try await Task.sleep(for: .milliseconds(step))
                current += 1
                try await context.saveCheckpoint(["count": .number(Double(current))])
            }
            return ["count": .number(Double(current)), "resumedAt": .number(Double(resumedAt)), "attempt": .number(Double(context.attempt))]
        },
        // Records each start and end (or stop: `X`) in the ledger file named by $DROVER_LEDGER_FILE
        // (outside ZooKeeper), working `milliseconds` in between: the chaos harness checks runs against it.
        // With `failUntilRun: k`, runs numbered below k fail once they have ended; the result is
        // `returns`, if given (a workflow's later steps refer to it); `injects` (steps) are added to
        // the workflow once it has ended.
        "sample.ledger": { context in
            guard let ledger = LedgerFile.fromEnvironment else {
                throw DroverError(.jobFailed, "sample.ledger: this executor has no ledger ($DROVER_LEDGER_FILE is not set)")
            }
            let started = Timestamp.now()
            // A work unit's attempt is `unit:<spec>/<key>` in the ledger (the checker's LedgerEntry.unitJob).
            let job = context.unit.map { "unit:\(context.job)/\($0.key)" } ?? context.job
            ledger.append("S \(job) \(context.run) \(context.attempt) \(getpid()) \(started)")
            do {
                try await Task.sleep(for: .milliseconds(Int(context.arguments["milliseconds"]?.numberValue ?? 50)))
            } catch {
                // Stopped by its executor (taken away, or stopped by a user): this copy ran until now.
                ledger.append("X \(job) \(context.run) \(context.attempt) \(getpid()) \(started) \(Timestamp.now())")
                throw error
            }
            ledger.append("E \(job) \(context.run) \(context.attempt) \(getpid()) \(started) \(Timestamp.now())")
            // Runs before `failUntilRun` fail (after their end is in the ledger): retries are checked.
            if let until = context.arguments["failUntilRun"]?.numberValue, Double(context.run) < until {
                throw DroverError(.jobFailed, "sample.ledger: run \(context.run) fails on purpose (until run \(Int(until)))")
            }
            if let injects = context.arguments["injects"] {
                try await context.inject(try Codec.decode([WorkflowStep].self, try Codec.encode(injects)))
            }
            return context.arguments["returns"]
        },
    ]
}

/// An append-only file of lines, each written with one `write` (whole lines even when the
/// process is killed mid-run).
final class LedgerFile: Sendable {
    private let descriptor: Int32

    init?(path: String) {
        descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        if descriptor < 0 { return nil }
    }

    func append(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    }

    static let fromEnvironment: LedgerFile? = Environment.value("DROVER_LEDGER_FILE").flatMap { LedgerFile(path: $0) }
    static let auditFromEnvironment: LedgerFile? = Environment.value("DROVER_AUDIT_FILE").flatMap { LedgerFile(path: $0) }
}
