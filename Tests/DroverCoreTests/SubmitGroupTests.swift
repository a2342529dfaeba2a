import Testing
import ZooKeeperTesting

@testable import DroverClient

/// Group commit of concurrent submits (no server): what waits while a commit is on its way goes
/// in the next one, within the limits, and a bad item fails only its own caller.
@Suite("Group commit of submits (no server)")
struct SubmitGroupTests {
    struct Refused: Error {}

    /// Submits `first` alone, holds its commit until `others` more callers wait, then lets it go.
    /// Returns the groups committed, in order, and each caller's outcome.
    func run(
        others: [[Int]], maximumItems: Int = 100, failing: Set<Int> = [], itemErrors: Bool = true
    ) async throws -> (groups: [[Int]], outcomes: [Int: Bool]) {
        let (waitingCounts, reportWaiting) = AsyncStream.makeStream(of: Int.self)
        let (firstCommitStarted, reportFirstCommit) = AsyncStream.makeStream(of: Void.self)
        let (release, releaseFirst) = AsyncStream.makeStream(of: Void.self)
        let group = SubmitGroup<Int>(maximumItems: maximumItems, maximumBytes: 1_000, isItemError: { _ in itemErrors }) { reportWaiting.yield($0) }
        let groups = LockedValue<[[Int]]>([])
        let commit: @Sendable ([Int]) async throws -> Void = { items in
            let isFirst = groups.update { groups in
                groups.append(items)
                return groups.count == 1
            }
            if isFirst {
                reportFirstCommit.yield()
                for await _ in release { break }
            }
            if items.contains(where: failing.contains) { throw Refused() }
        }
        let outcomes = LockedValue<[Int: Bool]>([:])
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                try await group.submit([0], bytes: 1, commit: commit)
                outcomes.update { $0[0] = true }
            }
            for await _ in firstCommitStarted { break }
            for items in others {
                tasks.addTask {
                    do {
                        try await group.submit(items, bytes: items.count, commit: commit)
                        outcomes.update { for item in items { $0[item] = true } }
                    } catch {
                        outcomes.update { for item in items { $0[item] = false } }
                    }
                }
            }
            // Every other caller waits behind the first commit (counted when each joins).
            for await count in waitingCounts where count == others.count { break }
            releaseFirst.yield()
            try await tasks.waitForAll()
        }
        return (groups.value, outcomes.value)
    }

    @Test func submitsThatArriveDuringACommitGoTogetherInTheNext() async throws {
        let (groups, outcomes) = try await run(others: (1...30).map { [$0] })
        #expect(groups.count == 2)
        #expect(groups[0] == [0])
        #expect(Set(groups[1]) == Set(1...30))
        #expect(outcomes.count == 31 && outcomes.values.allSatisfy { $0 })
    }

    @Test func aGroupStaysWithinItsLimits() async throws {
        let (groups, outcomes) = try await run(others: (1...25).map { [$0] }, maximumItems: 10)
        #expect(groups.dropFirst().map(\.count) == [10, 10, 5])
        #expect(outcomes.values.allSatisfy { $0 } && outcomes.count == 26)
    }

    @Test func aFailureThatIsNotOneItemsFailsTheWholeGroupOnce() async throws {
        let (groups, outcomes) = try await run(others: (1...5).map { [$0] }, failing: [3], itemErrors: false)
        #expect(groups.count == 2, "not tried again caller by caller: \(groups)")
        #expect(outcomes.filter { $0.key != 0 }.values.allSatisfy { !$0 } && outcomes[0] == true)
    }

    @Test func aGroupThatFailsIsCommittedAgainOneCallerAtATimeAndOnlyTheBadOneFails() async throws {
        let (groups, outcomes) = try await run(others: (1...5).map { [$0] }, failing: [3])
        #expect(groups.count == 2 + 5)  // the first, the group of five, then each of the five alone
        #expect(outcomes[3] == false)
        #expect(outcomes.filter { $0.key != 3 }.values.allSatisfy { $0 } && outcomes.count == 6)
    }
}
