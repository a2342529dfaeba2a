@testable import DroverExecutor
import Testing

/// When an executor may write a task's start (PROTOCOL.md, "Executor registration"), without a server.
@Suite("Start fence (no server)")
struct StartFenceTests {
    @Test func startsWaitForTheOpeningInTheSameSessionOnAssignmentsReadAfterIt() {
        let fence = StartFence()
        #expect(!fence.allows(session: 7, assignmentsZxid: 3))  // closed until the executor registered
        fence.open(session: 7, assignmentsZxid: 3, ifStill: fence.generation)
        #expect(fence.allows(session: 7, assignmentsZxid: 3))
        #expect(fence.allows(session: 7, assignmentsZxid: 4))
        // A write going by assignments read before the registration's re-read: not on them.
        #expect(!fence.allows(session: 7, assignmentsZxid: 2))
        // Another session (the old one expired), or none: closed until it registers too.
        #expect(!fence.allows(session: 8, assignmentsZxid: 3))
        #expect(!fence.allows(session: nil, assignmentsZxid: 3))
    }

    @Test func noAssignmentsAtTheOpeningAllowStartsOnNone() {
        let fence = StartFence()
        fence.open(session: 1, assignmentsZxid: 0, ifStill: fence.generation)
        #expect(fence.allows(session: 1, assignmentsZxid: 0))
    }

    @Test func anOpeningBegunBeforeAClosingDoesNotOpen() {
        let fence = StartFence()
        fence.open(session: 1, assignmentsZxid: 0, ifStill: fence.generation)
        // The registration was removed while a registration in flight was about to open it.
        let begun = fence.generation
        fence.close()
        #expect(!fence.allows(session: 1, assignmentsZxid: 0))
        fence.open(session: 1, assignmentsZxid: 0, ifStill: begun)
        #expect(!fence.allows(session: 1, assignmentsZxid: 0))
        fence.open(session: 1, assignmentsZxid: 0, ifStill: fence.generation)
        #expect(fence.allows(session: 1, assignmentsZxid: 0))
    }
}
