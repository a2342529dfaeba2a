import DroverProtocol
import Foundation
import Testing

@Suite("Work specs: units, segments, claims and the choice among specs (no server)")
struct WorkSpecTests {
    func makeSegment(_ keys: [String]) -> UnitSegment { UnitSegment(units: keys.map { WorkUnit(key: $0) }) }

    @Test func aClaimTakesClaimableUnitsUnderOneLeaseAndCountsTheAttempt() {
        var segment = makeSegment(["a", "b", "c"])
        let claimed = segment.claim(upTo: 2, executor: "e1", claim: "c1", now: 1_000, leaseUntil: 61_000, maxRetries: 0)
        #expect(claimed.map(\.key) == ["a", "b"])
        #expect(segment.counts.pending == 2 && segment.counts.available == 1)
        #expect(segment.units[0].lease == UnitLease(executor: "e1", claim: "c1", until: 61_000))
        #expect(segment.units[0].attempts == 1 && segment.units[0].last?.executor == "e1" && segment.units[0].last?.outcome == nil)
        #expect(segment.earliestLeaseEnd == 61_000)
        // Pending units are not claimed again while their lease holds.
        let more = segment.claim(upTo: 5, executor: "e2", claim: "c2", now: 2_000, leaseUntil: 62_000, maxRetries: 0)
        #expect(more.map(\.key) == ["c"])
    }

    @Test func anEndIsRecordedOnlyForTheAttemptThatStillHoldsTheUnit() {
        var segment = makeSegment(["a", "b"])
        _ = segment.claim(upTo: 2, executor: "e1", claim: "c1", now: 0, leaseUntil: 10, maxRetries: 1)
        // The lease of "a" runs out; e2 claims it again: e1's late end must not count.
        #expect(segment.expireLeases(now: 10, maxRetries: 1) == 2)
        #expect(segment.units.allSatisfy { $0.state == .retryable && $0.last?.outcome == .expired })
        _ = segment.claim(upTo: 1, executor: "e2", claim: "c2", now: 11, leaseUntil: 100, maxRetries: 1)
        let recorded = segment.record(
            [UnitSegment.End(key: "a", claim: "c1", outcome: .finished, at: 12), UnitSegment.End(key: "a", claim: "c2", outcome: .finished, result: ["n": 1], at: 13)],
            maxRetries: 1)
        #expect(recorded == ["a"])
        #expect(segment.units[0].state == .finished && segment.units[0].attempts == 2 && segment.units[0].last?.executor == "e2")
        #expect(segment.units[0].last?.result == ["n": 1] && segment.units[0].lease == nil)
    }

    @Test func aFailedOrExpiredUnitIsRetriedUntilItsTriesAreSpentThenRetriedOnRequest() {
        var segment = makeSegment(["a", "b"])
        for attempt in 1...3 {
            let claimed = segment.claim(upTo: 2, executor: "e1", claim: "c\(attempt)", now: Int64(attempt), leaseUntil: Int64(attempt) + 100, maxRetries: 2)
            #expect(claimed.count == 2, "attempt \(attempt)")
            segment.record([UnitSegment.End(key: "a", claim: "c\(attempt)", outcome: .failed, error: String(repeating: "x", count: 1_000), at: 50)], maxRetries: 2)
            _ = segment.expireLeases(now: Int64(attempt) + 100, maxRetries: 2)
        }
        #expect(segment.units[0].state == .failed && segment.units[0].attempts == 3)
        #expect(segment.units[1].state == .expired && segment.units[1].attempts == 3)
        #expect(segment.units[0].last?.error?.utf8.count ?? 0 <= Bounds.unitErrorBytes)
        #expect(segment.claim(upTo: 2, executor: "e1", claim: "c4", now: 500, leaseUntil: 600, maxRetries: 2).isEmpty)
        #expect(segment.retryFailed() == 2)
        #expect(segment.units.allSatisfy { $0.state == .retryable && $0.attempts == 0 })
    }

    @Test func aRenewalMovesOnlyTheLeasesOfItsOwnClaim() {
        var segment = makeSegment(["a", "b"])
        _ = segment.claim(upTo: 1, executor: "e1", claim: "c1", now: 0, leaseUntil: 10, maxRetries: 0)
        _ = segment.claim(upTo: 1, executor: "e2", claim: "c2", now: 0, leaseUntil: 10, maxRetries: 0)
        #expect(segment.renew(["a", "b"], claim: "c1", until: 50) == 1)
        #expect(segment.units.map { $0.lease?.until } == [50, 10])
    }

    @Test func unitsArePackedIntoSegmentsThatStayUnderTheirBoundWhenEveryUnitGrowsToItsMost() throws {
        var bucket = UnitBucket()
        let data: JSONValue = ["blob": .string(String(repeating: "d", count: Bounds.unitDataBytes - 20))]
        let units = (0..<2_000).map { WorkUnit(key: String(repeating: "k", count: Bounds.unitKeyBytes - 8) + String(format: "%08d", $0), data: data) }
        let (written, placed) = bucket.place(units, last: nil)
        #expect(placed == units.count)
        #expect(written.count > 1 && written.allSatisfy { $0.isNew })
        #expect(written.flatMap { $0.segment.units.map(\.key) } == units.map(\.key))
        #expect(bucket.counts.available == units.count && bucket.nextSegment == written.count)
        let executor = String(repeating: "e", count: 128)
        for (_, segment, _) in written {
            var grown = segment
            let claim = String(repeating: "c", count: 40)
            _ = grown.claim(upTo: .max, executor: executor, claim: claim, now: 1_764_892_800_000, leaseUntil: 253_402_300_799_999, maxRetries: 100)
            for index in grown.units.indices {
                grown.units[index].last?.endedAt = 253_402_300_799_999
                grown.units[index].last?.outcome = .finished
                grown.units[index].last?.error = Bounds.truncated(String(repeating: "\u{1F600}", count: 1_000), toBytes: Bounds.unitErrorBytes)
                grown.units[index].last?.result = .string(String(repeating: "r", count: Bounds.unitResultBytes - 2))
                grown.units[index].attempts = 101
            }
            #expect(try Codec.encode(grown).count <= Bounds.unitSegmentBytes)
        }
        #expect(try Codec.encode(bucket).count <= Bounds.unitBucketIndexBytes)
    }

    @Test func anAddFillsTheLastSegmentFirstAndStopsAtItsWriteBudget() {
        var bucket = UnitBucket()
        let (first, _) = bucket.place((0..<10).map { WorkUnit(key: "a\($0)") }, last: nil)
        #expect(first.map(\.name) == ["s0"])
        let many = (0..<5_000).map { WorkUnit(key: "b\($0)") }
        let (second, placed) = bucket.place(many, last: first[0].segment, maximumSegments: 3)
        #expect(second.map(\.name) == ["s0", "s1", "s2"] && second.map(\.isNew) == [false, true, true])
        #expect(placed < many.count && placed == second.reduce(0) { $0 + $1.segment.units.count } - 10)
        #expect(bucket.segments.map(\.name) == ["s0", "s1", "s2"] && bucket.counts.available == placed + 10)
        #expect(bucket.segments.allSatisfy { $0.room <= Bounds.unitSegmentBytes })

        // A budget in bytes: small units fill many segments in one write, large ones few, and
        // the segments written never pass it.
        let budget = 1024 * 1024 - Bounds.unitBucketIndexBytes - 32 * 1024
        for size in [1, 900] {
            var fresh = UnitBucket()
            let units = (0..<100_000).map { WorkUnit(key: "k\($0)", data: .string(String(repeating: "x", count: size))) }
            let (written, placed) = fresh.place(units, last: nil, maximumBytes: budget)
            let bytes = written.reduce(0) { $0 + $1.segment.encodedJSON().count }
            #expect(placed < units.count && bytes <= budget, "\(size): \(written.count) segments, \(bytes) bytes")
            #expect(size == 1 ? written.count >= 30 : written.count >= 3, "\(size): \(written.count) segments")
        }
    }

    @Test func theChoiceTakesOnlyTheHighestPriorityThenFollowsTheWeightsByUnitsClaimed() {
        var random = SeededRandom(seed: 19)
        var chooser = WorkSpecChooser()
        let candidates = [
            WorkSpecChooser.Candidate(name: "low", priority: 0, weight: 100),
            WorkSpecChooser.Candidate(name: "a", priority: 5, weight: 1),
            WorkSpecChooser.Candidate(name: "b", priority: 5, weight: 3),
            WorkSpecChooser.Candidate(name: "c", priority: 5, weight: 0.5),
        ]
        var units: [String: Int] = [:]
        // Claims of uneven sizes (a segment's remainder, a full segment): the shares are of units.
        func claim(_ rounds: Int, from candidates: [WorkSpecChooser.Candidate]) {
            for _ in 0..<rounds {
                let name = chooser.choose(from: candidates, using: &random)!
                let size = Int.random(in: 1...256, using: &random)
                units[name, default: 0] += size
                chooser.claimed(size, from: candidates.first { $0.name == name }!)
            }
        }
        claim(100_000, from: candidates)
        #expect(units["low"] == nil)
        func shares(_ weights: [(String, Double)]) -> [String] {
            let total = weights.reduce(0) { $0 + Double(units[$1.0] ?? 0) }
            let weightSum = weights.reduce(0) { $0 + $1.1 }
            return weights.compactMap { name, weight in
                let expected = total * weight / weightSum
                return abs(Double(units[name] ?? 0) - expected) <= expected * 0.01 ? nil : "\(name): \(units[name] ?? 0) units against \(expected)"
            }
        }
        #expect(shares([("a", 1.0), ("b", 3.0), ("c", 0.5)]).isEmpty, "\(shares([("a", 1.0), ("b", 3.0), ("c", 0.5)]))")
        // Over a few claims too: 45 claims of one size follow 1 : 3 : 0.5 within a claim.
        units = [:]
        chooser = WorkSpecChooser()
        for _ in 0..<45 {
            let name = chooser.choose(from: candidates, using: &random)!
            units[name, default: 0] += 100
            chooser.claimed(100, from: candidates.first { $0.name == name }!)
        }
        #expect(abs((units["a"] ?? 0) - 1_000) <= 100 && abs((units["b"] ?? 0) - 3_000) <= 100 && abs((units["c"] ?? 0) - 500) <= 100, "\(units)")

        // A spec that had no units for a while is not owed a burst when it has some again.
        units = [:]
        claim(1_000, from: candidates.filter { $0.name != "c" })
        units = [:]
        claim(90, from: candidates)
        let late = Double(units["c"] ?? 0) / Double(units.values.reduce(0, +))
        #expect(late < 0.2, "c took \(late) of the units right after it came back (its weight's share: 0.11)")
        #expect(chooser.choose(from: [], using: &random) == nil)
        #expect(chooser.choose(from: [WorkSpecChooser.Candidate(name: "z", priority: 0, weight: 0)], using: &random) == nil)
    }

    /// A unit tried again keeps its earlier attempts (executor, times, outcome, error, result), the last few;
    /// a segment that would pass its bound drops the oldest of them, and still fits.
    @Test func aUnitKeepsItsEarlierAttemptsWhileItsSegmentHasRoom() throws {
        var segment = UnitSegment(units: [WorkUnit(key: "u")])
        for attempt in 1...6 {
            let now = Timestamp(attempt * 1_000)
            let claimed = segment.claim(upTo: 1, executor: "e\(attempt)", claim: "c\(attempt)", now: now, leaseUntil: now + 500, maxRetries: 10)
            #expect(claimed.count == 1)
            segment.record([UnitSegment.End(key: "u", claim: "c\(attempt)", outcome: .failed, error: "try \(attempt)", result: "big", at: now + 100)], maxRetries: 10)
        }
        let unit = segment.units[0]
        #expect(unit.attempts == 6 && unit.state == .retryable)
        #expect(unit.last?.executor == "e6" && unit.last?.error == "try 6" && unit.last?.result == "big")
        #expect(unit.earlier?.map(\.executor) == ["e2", "e3", "e4", "e5"], "the last four before the last")
        #expect(unit.earlier?.allSatisfy { $0.result == "big" && $0.outcome == .failed && $0.endedAt != nil } == true)
        #expect(try Codec.decode(UnitSegment.self, segment.encodedJSON()) == segment)

        // Many units with long errors in their earlier attempts: trimmed oldest first to fit.
        var full = UnitSegment(
            units: (0..<300).map { index in
                var unit = WorkUnit(key: "k\(index)")
                unit.earlier = (0..<4).map { UnitAttempt(executor: "e", startedAt: Timestamp(index * 10 + $0), endedAt: 1, outcome: .failed, error: String(repeating: "x", count: 150)) }
                return unit
            })
        let bound = full.encodedJSON().count / 2
        let bytes = full.encodedJSON(fittingIn: bound)
        #expect(bytes.count <= bound && bytes == full.encodedJSON())
        let kept = full.units.map { $0.earlier?.count ?? 0 }
        #expect(kept.first! <= kept.last! && kept.last! == 4, "the oldest attempts went first: \(kept.prefix(3)) … \(kept.suffix(3))")
    }

    @Test func aBadSpecOrUnitIsRefusedNamingTheField() {
        func field(_ change: (inout WorkSpec) -> Void) -> String? {
            var spec = WorkSpec(name: "s", method: "shell")
            change(&spec)
            do {
                try spec.validate()
                return nil
            } catch {
                return error.field
            }
        }
        #expect(field { _ in } == nil)
        #expect(field { $0.weight = 0 } == "weight")
        #expect(field { $0.weight = -1 } == "weight")
        #expect(field { $0.weight = .nan } == "weight")
        #expect(field { $0.leaseSeconds = 0 } == "leaseSeconds")
        #expect(field { $0.name = "a/b" } == "name")
        #expect(field { $0.method = "" } == "method")
        #expect(field { $0.maxGetwork = 0 } == "maxGetwork")
        #expect(field { $0.buckets = 257 } == "buckets")
        #expect(field { $0.maxRetries = -1 } == "maxRetries")
        #expect(field { $0.priority = 5_000 } == "priority")
        #expect(throws: SpecError.self) { try WorkUnit(key: String(repeating: "k", count: Bounds.unitKeyBytes + 1)).validate() }
        #expect(throws: SpecError.self) { try WorkUnit(key: "").validate() }
        #expect(throws: SpecError.self) { try WorkUnit(key: "a\nb").validate() }
        #expect(throws: SpecError.self) { try WorkUnit(key: "k", data: .string(String(repeating: "d", count: Bounds.unitDataBytes))).validate() }
        #expect(throws: DecodingError.self) { try Codec.decode(UnitSegment.self, Array(#"{"format": 2, "units": []}"#.utf8)) }
    }

    @Test func aKeysBucketIsTheSameFNVEveryLanguageComputes() {
        // FNV-1a 32 of "" is 2166136261; of "a" 3826002220 (the published test vectors).
        #expect(WorkSpec.bucket(of: "", buckets: 1_000_000) == Int(2_166_136_261 % 1_000_000))
        #expect(WorkSpec.bucket(of: "a", buckets: 1_000_000) == Int(3_826_002_220 % 1_000_000))
    }

    /// A graceful hand-back gives a unit back claimable, its try not spent, and touches only the
    /// units of its own claim.
    @Test func aHandedBackUnitIsClaimableAgainWithItsTryNotSpent() {
        var segment = UnitSegment(units: [WorkUnit(key: "a"), WorkUnit(key: "b")])
        _ = segment.claim(upTo: 1, executor: "e1", claim: "c1", now: 1_000, leaseUntil: 9_000, maxRetries: 2)
        _ = segment.claim(upTo: 1, executor: "e2", claim: "c2", now: 1_000, leaseUntil: 9_000, maxRetries: 2)
        #expect(segment.release(["a", "b"], claim: "c1", now: 2_000) == 1)
        let a = segment.units[0], b = segment.units[1]
        #expect(a.state == .available && a.attempts == 0 && a.lease == nil && a.last?.outcome == .expired && a.last?.error == UnitSegment.handedBackError && a.last?.endedAt == 2_000)
        #expect(b.state == .pending && b.lease?.claim == "c2")
        // A unit tried before goes back retryable, its earlier tries still counted.
        _ = segment.record([UnitSegment.End(key: "b", claim: "c2", outcome: .failed, error: "boom", at: 3_000)], maxRetries: 2)
        _ = segment.claim(upTo: 2, executor: "e3", claim: "c3", now: 4_000, leaseUntil: 9_000, maxRetries: 2)
        #expect(segment.release(["a", "b"], claim: "c3", now: 5_000) == 2)
        #expect(segment.units.map(\.state) == [.available, .retryable] && segment.units.map(\.attempts) == [0, 1])
    }

    /// `maxRunning` is shared among the buckets: the shares add up to it, each at least one.
    @Test func maxRunningIsSharedAmongTheBucketsAndAddsUp() {
        for (maxRunning, buckets) in [(16, 16), (17, 16), (100, 16), (5, 3), (1, 1), (1_000_000, 256)] {
            let shares = (0..<buckets).map { UnitBucket.share(of: maxRunning, bucket: $0, buckets: buckets) }
            #expect(shares.reduce(0, +) == maxRunning && shares.allSatisfy { $0 >= 1 } && shares.max()! - shares.min()! <= 1, "\(maxRunning) over \(buckets)")
        }
        #expect(throws: SpecError.self) { try WorkSpec(name: "s", method: "m", buckets: 16, maxRunning: 15).validate() }
        #expect(throws: SpecError.self) { try WorkSpec(name: "s", method: "m", buckets: 1, maxRunning: 0).validate() }
        #expect(throws: SpecError.self) { try WorkSpec(name: "s", method: "m", then: "not a name").validate() }
        #expect(throws: Never.self) { try WorkSpec(name: "s", method: "m", buckets: 4, maxRunning: 4, then: "s").validate() }
        // Format 2 only for a spec that needs it: an older executor passes it over.
        #expect(WorkSpec(name: "s", method: "m").requiredFormat == 1)
        #expect(WorkSpec(name: "s", method: "m", maxRunning: 16).requiredFormat == 2 && WorkSpec(name: "s", method: "m", then: "t").requiredFormat == 2)
        // A spec written before these fields existed reads as uncapped and feeding nothing.
        let old = #"{"format":1,"name":"s","method":"m","arguments":{},"priority":0,"weight":1,"maxRetries":0,"leaseSeconds":120,"maxGetwork":100,"buckets":16,"paused":false,"createdAt":0}"#
        let decoded = try? Codec.decode(WorkSpec.self, Array(old.utf8))
        #expect(decoded != nil && decoded?.maxRunning == nil && decoded?.then == nil)
    }

    /// A finished unit's `output`, in each of its three shapes, becomes the units its `then` spec
    /// gets; a key given twice is added once; a bad shape, too many units or a unit out of bounds
    /// is an error that names the output.
    @Test func aResultsOutputBecomesUnitsOfTheThenSpec() throws {
        #expect(try WorkUnit.outputs(of: nil).isEmpty)
        #expect(try WorkUnit.outputs(of: ["other": 1]).isEmpty)
        #expect(try WorkUnit.outputs(of: ["output": ["a", "b", "a"]]).map(\.key) == ["a", "b"])
        let objects = try WorkUnit.outputs(of: ["output": [["key": "a", "data": ["n": 1]], ["key": "b"]]])
        #expect(objects.map(\.key) == ["a", "b"] && objects[0].data == ["n": 1] && objects[1].data == nil)
        let byKey = try WorkUnit.outputs(of: ["output": ["b": ["n": 2], "a": ["n": 1]]])
        #expect(byKey.map(\.key) == ["a", "b"] && byKey[1].data == ["n": 2])
        for bad: JSONValue in [
            ["output": "a"], ["output": [1]], ["output": [["data": 1]]], ["output": [""]],
            ["output": .array((0...Bounds.unitMaximumOutputs).map { .string("k\($0)") })],
            ["output": [.string(String(repeating: "k", count: Bounds.unitKeyBytes + 1))]],
        ] {
            #expect(throws: SpecError.self, "\(bad)") { try WorkUnit.outputs(of: bad) }
        }
    }

    /// The index names the executors holding leases in each segment, and the leader ends the
    /// attempts of one gone for the grace period: only its own, tries counted as for a lease run out.
    @Test func theIndexNamesLeaseHoldersAndAGoneExecutorsAttemptsEnd() {
        var segment = UnitSegment(units: ["a", "b", "c"].map { WorkUnit(key: $0) })
        _ = segment.claim(upTo: 2, executor: "e2", claim: "c1", now: 1_000, leaseUntil: 600_000, maxRetries: 0)
        _ = segment.claim(upTo: 1, executor: "e1", claim: "c2", now: 1_000, leaseUntil: 600_000, maxRetries: 0)
        var index = UnitBucket()
        index.summarize("s0", segment)
        #expect(index.segments[0].holders == ["e1", "e2"])
        #expect(segment.expireLeases(of: "e2", now: 5_000, maxRetries: 1) == 2)
        #expect(segment.units.map(\.state) == [.retryable, .retryable, .pending])
        #expect(segment.units[0].last?.outcome == .expired && segment.units[0].last?.error?.contains("e2 was gone") == true)
        #expect(segment.expireLeases(of: "e1", now: 5_000, maxRetries: 0) == 1 && segment.units[2].state == .expired)
        index.summarize("s0", segment)
        #expect(index.segments[0].holders == nil)
    }
}
