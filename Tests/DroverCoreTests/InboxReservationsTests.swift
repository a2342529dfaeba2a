@testable import DroverExecutor
import DroverProtocol
import Testing

/// The executor's bookkeeping of its reservations on the direct path, without a server.
@Suite("Inbox reservations (no server)")
struct InboxReservationsTests {
    @Test func claimsGoOnePerFreeSlotOldestJobFirstAndTheInboxIsListedOnlyWhenNothingIsLeft() {
        var inbox = InboxReservations()
        let v1 = inbox.shouldList(free: 1)
        #expect(v1)  // never listed
        let v2 = inbox.shouldList(free: 1)
        #expect(!v2)  // a listing is under way
        inbox.listed(["j-b~0", "j-a~1", "j-a~0"])
        let v3 = inbox.claims(free: 2)
        #expect(v3 == ["j-a~0", "j-a~1"])
        #expect(inbox.inFlight == 2 && inbox.waiting == 1)
        inbox.inboxChanged()
        // j-b~0 is still there to claim with: no listing yet.
        let v4 = inbox.shouldList(free: 1)
        #expect(!v4)
        inbox.answered("j-a~0", .none)
        inbox.answered("j-a~1", .later)  // stays, claimed with again
        let v5 = inbox.claims(free: 5)
        #expect(v5 == ["j-a~1", "j-b~0"])
        inbox.answered("j-a~1", .none)
        inbox.answered("j-b~0", .none)
        #expect(inbox.entries.isEmpty)
        let v6 = inbox.shouldList(free: 1)
        #expect(v6)  // changed, and nothing left
        let v7 = inbox.shouldList(free: 0)
        let v8 = inbox.claims(free: 0)
        #expect(!v7 && v8.isEmpty)
    }

    @Test func aReusableReservationIsClaimedWithAsManyTimesAsItsJobHasTasksLeft() {
        var inbox = InboxReservations()
        _ = inbox.shouldList(free: 4)
        inbox.listed(["j-a~0r"])
        // Its job's size is not known yet: one claim.
        let v9 = inbox.claims(free: 4)
        #expect(v9 == ["j-a~0r"])
        let task = TaskRecord(job: "j-a", run: 1, method: "m", arguments: [:], resources: Resources())
        inbox.answered("j-a~0r", .task(task, reservationKept: true, left: 2))
        let v10 = inbox.claims(free: 4)
        #expect(v10 == ["j-a~0r", "j-a~0r"])
        // Listed again while claims are in flight: they are kept.
        inbox.listed(["j-a~0r"])
        #expect(inbox.inFlight == 2)
        inbox.answered("j-a~0r", .task(task, reservationKept: true, left: 1))
        inbox.answered("j-a~0r", .task(task, reservationKept: false, left: 0))
        #expect(inbox.entries.isEmpty)
    }

    /// Late binding's own reservation goes once the last task's start is written, so a listing can
    /// still hold it after the claim was answered: it is not claimed with again (a claim answered
    /// "none", and one more delete), and it is forgotten once a listing no longer holds it.
    @Test func aReservationAnsweredWithItsJobsLastTaskIsNotClaimedWithAgainWhileStillListed() {
        var inbox = InboxReservations()
        _ = inbox.shouldList(free: 2)
        inbox.listed(["j-a~0r"])
        let task = TaskRecord(job: "j-a", run: 1, method: "m", arguments: [:], resources: Resources())
        #expect(inbox.claims(free: 2) == ["j-a~0r"])
        inbox.answered("j-a~0r", .task(task, reservationKept: false, left: 0))
        #expect(inbox.entries.isEmpty)
        // Listed before its delete landed, beside a new job's reservation.
        inbox.listed(["j-a~0r", "j-b~0r"])
        #expect(inbox.entries.map(\.name) == ["j-b~0r"])
        #expect(inbox.claims(free: 2) == ["j-b~0r"])
        inbox.answered("j-b~0r", .none)
        // Both gone from the next listing: nothing is kept of them.
        inbox.listed([])
        #expect(inbox.entries.isEmpty)
        inbox.listed(["j-c~0"])
        #expect(inbox.claims(free: 2) == ["j-c~0"])
    }

    @Test func aReusableReservationAnsweredNoneIsNotClaimedWithAgainWhileAnotherClaimIsInFlight() {
        var inbox = InboxReservations()
        _ = inbox.shouldList(free: 4)
        inbox.listed(["j-a~0r", "j-b~0r"])
        let task = TaskRecord(job: "j-a", run: 1, method: "m", arguments: [:], resources: Resources())
        #expect(inbox.claims(free: 1) == ["j-a~0r"])
        inbox.answered("j-a~0r", .task(task, reservationKept: true, left: 4))
        #expect(inbox.claims(free: 4) == ["j-a~0r", "j-a~0r", "j-a~0r", "j-a~0r"])
        // Answered out of order: the later claim's count (fewer left) holds.
        inbox.answered("j-a~0r", .task(task, reservationKept: true, left: 1))
        inbox.answered("j-a~0r", .task(task, reservationKept: true, left: 2))
        #expect(inbox.entries.first?.left == 1 && inbox.inFlight == 2)
        // One claim answered none while another is in flight: none left, so it is not claimed
        // with again (a bench run found executors claiming 10,000 times this way) — the free
        // slots go to j-b.
        inbox.answered("j-a~0r", .none)
        #expect(inbox.claims(free: 2) == ["j-b~0r"])
        // The claim still in flight answered: the reservation is done with.
        inbox.answered("j-a~0r", .task(task, reservationKept: false, left: 0))
        #expect(inbox.entries.map(\.name) == ["j-b~0r"])

        // The last task's answer first, an older claim's (tasks left then) last: done with too,
        // not kept with nothing to claim (it would keep the executor from listing for good).
        inbox.listed(["j-b~0r", "j-c~0r"])  // j-b's claim from above still in flight
        inbox.answered("j-b~0r", .task(task, reservationKept: true, left: 2))
        #expect(inbox.claims(free: 2) == ["j-b~0r", "j-b~0r"])
        inbox.answered("j-b~0r", .task(task, reservationKept: false, left: 0))
        inbox.answered("j-b~0r", .task(task, reservationKept: true, left: 1))
        #expect(inbox.entries.map(\.name) == ["j-c~0r"])
    }

    @Test func slotsFreedWhileABatchOfClaimsIsInFlightAreClaimedTogetherOnceItIsAnswered() {
        var inbox = InboxReservations()
        _ = inbox.shouldList(free: 4)
        inbox.listed(["j-a~0", "j-b~0", "j-c~0", "j-d~0", "j-e~0"])
        let task = TaskRecord(job: "j-a", run: 1, method: "m", arguments: [:], resources: Resources())
        #expect(inbox.nextBatch(free: 1) == ["j-a~0"])
        // Slots free up while that claim is on its way: no second multi meanwhile.
        #expect(inbox.nextBatch(free: 3).isEmpty)
        #expect(inbox.inFlight == 1 && inbox.waiting == 4)
        inbox.answered("j-a~0", .task(task, reservationKept: false))
        // Answered: the slots freed meanwhile go in one batch, oldest job first.
        #expect(inbox.nextBatch(free: 3) == ["j-b~0", "j-c~0", "j-d~0"])
        inbox.answered("j-b~0", .none)
        // Part of the batch still in flight: still none.
        #expect(inbox.nextBatch(free: 2).isEmpty)
        inbox.answered("j-c~0", .later)
        inbox.answered("j-d~0", .task(task, reservationKept: false))
        // A claim answered "later" is claimed with again, in the next batch.
        #expect(inbox.nextBatch(free: 2) == ["j-c~0", "j-e~0"])
    }

    @Test func aClaimInFlightStillCountsWhenTheListingNoLongerHoldsItsReservation() {
        var inbox = InboxReservations()
        _ = inbox.shouldList(free: 4)
        inbox.listed(["j-a~0"])
        let task = TaskRecord(job: "j-a", run: 1, method: "m", arguments: [:], resources: Resources())
        #expect(inbox.nextBatch(free: 4) == ["j-a~0"])
        // The claim's own multi deleted the reservation; the watch lists the inbox before the
        // answer comes, and a new reservation arrived meanwhile.
        inbox.inboxChanged()
        let listsAgain = inbox.shouldList(free: 3)
        #expect(listsAgain)
        inbox.listed(["j-b~0"])
        // Still in flight: no second multi, and its slot still counted.
        #expect(inbox.inFlight == 1)
        let duringFlight = inbox.nextBatch(free: 3)
        #expect(duringFlight.isEmpty)
        inbox.answered("j-a~0", .task(task, reservationKept: false))
        #expect(inbox.entries.map(\.name) == ["j-b~0"])
        let afterAnswer = inbox.nextBatch(free: 3)
        #expect(afterAnswer == ["j-b~0"])
        // A reusable one gone from the inbox is not claimed with again, even with tasks left.
        inbox.answered("j-b~0", .none)
        inbox.listed(["j-c~0r"])
        let reusable = inbox.nextBatch(free: 1)
        #expect(reusable == ["j-c~0r"])
        inbox.listed([])
        inbox.answered("j-c~0r", .task(task, reservationKept: true, left: 5))
        #expect(inbox.entries.isEmpty)
    }

    @Test func theClaimStartWindowIsHalfTheSessionTimeoutAtMost() {
        #expect(ClaimStartGate.window(configured: .seconds(2), sessionTimeout: .seconds(10)) == .seconds(2))
        // A one-second session (with a short grace period) could be taken over 1.1 s after the
        // claim: the window shrinks below that.
        #expect(ClaimStartGate.window(configured: .seconds(2), sessionTimeout: .seconds(1)) == .milliseconds(500))
        #expect(ClaimStartGate.window(configured: .zero, sessionTimeout: .seconds(10)) == .zero)
        // Asked 60 s, granted 10 s (20 ticks of 500 ms): half the granted at most, never longer.
        var cut = ClaimStartGate(window: ClaimStartGate.window(configured: .seconds(40), sessionTimeout: .seconds(60)))
        cut.narrow(toHalfOf: .seconds(10))
        #expect(cut.window == .seconds(5))
        cut.narrow(toHalfOf: .seconds(40))
        #expect(cut.window == .seconds(5))
    }

    @Test func aClaimedTaskStartsAloneOnlyWithinTheWindowOfItsClaimAndWaitsForAdoptionAfter() {
        var gate = ClaimStartGate(window: .milliseconds(500))
        let sent = ContinuousClock.now
        gate.claimed("j-a#1", sentAt: sent)
        gate.claimed("j-b#1", sentAt: sent)
        gate.claimed("j-c#1", sentAt: nil)  // taken up again after a restart: when it was made is not known
        // Within the window: starts alone; the restored claim waits, and is reported late once.
        let first = gate.awaitingAdoption(["j-a#1", "j-b#1", "j-c#1"], at: sent + .milliseconds(499))
        #expect(first.waiting == ["j-c#1"] && first.newlyLate == ["j-c#1"])
        // j-a#1 started meanwhile (no longer a candidate); j-b#1 waited for room past the window.
        let second = gate.awaitingAdoption(["j-b#1", "j-c#1"], at: sent + .milliseconds(501))
        #expect(second.waiting == ["j-b#1", "j-c#1"] && second.newlyLate == ["j-b#1"])
        // Late stays late, even for a clock read that comes out earlier.
        let third = gate.awaitingAdoption(["j-b#1"], at: sent)
        #expect(third.waiting == ["j-b#1"] && third.newlyLate.isEmpty)
        // Adopted (the assignments hold it): forgotten; claimed again under the same key, judged anew.
        gate.keep(["j-c#1"])
        gate.claimed("j-b#1", sentAt: sent + .seconds(2))
        let fourth = gate.awaitingAdoption(["j-b#1"], at: sent + .seconds(2) + .milliseconds(10))
        #expect(fourth.waiting.isEmpty)
        // Checked again once a start is written: fresh only within the window, never once late.
        #expect(gate.isFresh("j-b#1", at: sent + .seconds(2) + .milliseconds(400)))
        #expect(!gate.isFresh("j-b#1", at: sent + .seconds(2) + .milliseconds(600)))
        #expect(!gate.isFresh("j-c#1", at: sent))
        // A window of zero: every claim waits for the leader.
        var strict = ClaimStartGate(window: .zero)
        strict.claimed("j-d#1", sentAt: sent)
        #expect(strict.awaitingAdoption(["j-d#1"], at: sent + .milliseconds(1)).waiting == ["j-d#1"])
    }
}
