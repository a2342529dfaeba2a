import DroverProtocol
import Testing

/// The executor's progress encoder writes exactly what the generic JSON encoder writes, however
/// its entries change between documents.
@Suite("Progress encoder (no server)")
struct ProgressEncoderTests {
    private func entry(_ job: String, run: Int = 1, state: TaskState = .running) -> TaskProgress {
        var task = TaskRecord(job: job, run: run, method: "sample.echo", arguments: ["text": .string("a \"quoted\" é / line\nbreak")], resources: Resources())
        task.state = state
        task.attempts = 1
        task.startedAt = 1_796_512_879_409
        return TaskProgress(of: task)
    }

    @Test func itWritesTheBytesTheGenericEncoderWritesAsEntriesComeChangeAndGo() throws {
        let encoder = ProgressEncoder()
        var progress = ExecutorProgress(executor: "e-1.x_2")
        #expect(try encoder.encode(progress) == Codec.encode(progress))
        progress.tasks = [entry("j-a"), entry("j-b"), entry("j-c")]
        #expect(try encoder.encode(progress) == Codec.encode(progress))
        // One ends, one is claimed (with its spec), one leaves, one is new; the same entry twice.
        progress.tasks[0].state = .succeeded
        progress.tasks[0].result = .object(["n": .number(3), "list": .array([.bool(true), .null])])
        var claimed = entry("j-d")
        claimed.claimed = ClaimedTask(index: 0, method: "sample.echo", arguments: .object(["taskIndex": .number(0)]), resources: Resources(slots: 2))
        progress.tasks = [progress.tasks[0], progress.tasks[2], claimed, claimed]
        #expect(try encoder.encode(progress) == Codec.encode(progress))
        // Decoded again, it is the same document.
        #expect(try Codec.decode(ExecutorProgress.self, encoder.encode(progress)) == progress)
        progress.tasks = []
        #expect(try encoder.encode(progress) == Codec.encode(progress))
    }

    @Test func itWritesEveryFieldOfTheProgressDocument() {
        // The encoder writes the document's own fields by hand: a field added to ExecutorProgress
        // must be added there too (this fails until it is).
        let fields = Mirror(reflecting: ExecutorProgress(executor: "e1")).children.compactMap(\.label)
        #expect(fields.sorted() == ["executor", "format", "tasks"])
    }
}
