import DroverCore
import DroverProtocol
import Foundation

/// Methods the stock executor offers, to try Drover and to test it.
enum SampleMethods {
    static let all: [String: TaskHandler] = [
        "sample.echo": { context in context.arguments },
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
    ]
}
