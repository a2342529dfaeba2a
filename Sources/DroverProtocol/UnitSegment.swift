/// Many work units in one znode: `specs/<spec>/<bucket>/<segment>`. Every change to a segment
/// is written with compare-and-set, in one `multi` with its bucket's index (``UnitBucket``), so
/// the index's counts are always those of its segments. The operations here are pure: the
/// caller reads, applies one, and writes.
public struct UnitSegment: Codable, Sendable, Hashable {
    public static let currentFormat = 1

    public var format: Int = 1
    public var units: [WorkUnit]

    public init(units: [WorkUnit] = []) {
        self.units = units
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decodeFormat(upTo: Self.currentFormat, forKey: .format)
        units = try container.decode([WorkUnit].self, forKey: .units)
    }

    public var counts: UnitCounts { UnitCounts(units) }

    /// The earliest end of a lease held on a unit here (nil: none is held).
    public var earliestLeaseEnd: Timestamp? { units.compactMap { $0.state == .pending ? $0.lease?.until : nil }.min() }

    /// The executors holding leases here, sorted (nil: none).
    public var leaseHolders: [String]? {
        let holders = Set(units.compactMap { $0.state == .pending ? $0.lease?.executor : nil })
        return holders.isEmpty ? nil : holders.sorted()
    }

    /// Ends the attempts `executor` holds here, as if their leases had run out: the leader does it
    /// once the executor has been gone for the grace period, so its units need not wait for
    /// their leases. Returns how many ended.
    @discardableResult
    public mutating func expireLeases(of executor: String, now: Timestamp, maxRetries: Int) -> Int {
        var ended = 0
        for index in units.indices where units[index].state == .pending && units[index].lease?.executor == executor {
            endAttempt(index, at: now, outcome: .expired, error: "executor \(executor) was gone for the grace period", maxRetries: maxRetries)
            ended += 1
        }
        return ended
    }

    /// Ends the attempt holding unit `index`: its lease goes, its last attempt says how it ended,
    /// and the unit is `finished`, or (failed, expired) `retryable` while it has tries left, else
    /// `failed` or `expired`.
    private mutating func endAttempt(_ index: Int, at time: Timestamp, outcome: UnitAttempt.Outcome, error: String?, maxRetries: Int) {
        units[index].lease = nil
        units[index].last?.endedAt = time
        units[index].last?.outcome = outcome
        units[index].last?.error = error
        switch outcome {
        case .finished: units[index].state = .finished
        case .failed, .expired: units[index].state = units[index].attempts > maxRetries ? (outcome == .failed ? .failed : .expired) : .retryable
        }
    }

    /// Ends every attempt whose lease ran out by `now`: the unit is `retryable` while it has tries
    /// left, else `expired`. Returns how many ended.
    @discardableResult
    public mutating func expireLeases(now: Timestamp, maxRetries: Int) -> Int {
        var ended = 0
        for index in units.indices where units[index].state == .pending {
            guard let lease = units[index].lease, lease.until <= now else { continue }
            endAttempt(index, at: lease.until, outcome: .expired, error: "the lease of \(lease.executor) ran out", maxRetries: maxRetries)
            ended += 1
        }
        return ended
    }

    /// Claims up to `limit` claimable units for `executor` under one lease (`claim`, until
    /// `leaseUntil`), after ending the attempts whose leases ran out. Returns the claimed units.
    public mutating func claim(
        upTo limit: Int, executor: String, claim: String, now: Timestamp, leaseUntil: Timestamp, maxRetries: Int
    ) -> [WorkUnit] {
        expireLeases(now: now, maxRetries: maxRetries)
        var claimed: [WorkUnit] = []
        for index in units.indices where claimed.count < limit && units[index].state.isClaimable {
            units[index].state = .pending
            units[index].attempts += 1
            units[index].lease = UnitLease(executor: executor, claim: claim, until: leaseUntil)
            if let previous = units[index].last {
                var earlier = (units[index].earlier ?? []) + [previous]
                earlier.removeFirst(max(0, earlier.count - Bounds.unitEarlierAttempts))
                units[index].earlier = earlier
            }
            units[index].last = UnitAttempt(executor: executor, startedAt: now)
            claimed.append(units[index])
        }
        return claimed
    }

    /// How one attempt ended, as its executor reports it.
    public struct End: Sendable, Hashable {
        public var key: String
        public var claim: String
        public var outcome: UnitAttempt.Outcome
        public var error: String?
        public var result: JSONValue?
        public var at: Timestamp

        public init(key: String, claim: String, outcome: UnitAttempt.Outcome, error: String? = nil, result: JSONValue? = nil, at: Timestamp) {
            self.key = key
            self.claim = claim
            self.outcome = outcome
            self.error = error
            self.result = result
            self.at = at
        }
    }

    /// Records the ends of attempts that still hold their units (same `claim`): a failed one
    /// leaves the unit `retryable` while it has tries left. An end whose lease ran out and
    /// whose unit was claimed again, or ended otherwise, is not recorded. Returns the keys recorded.
    @discardableResult
    public mutating func record(_ ends: [End], maxRetries: Int) -> Set<String> {
        let byKey = Dictionary(grouping: ends, by: \.key)
        var recorded: Set<String> = []
        for index in units.indices {
            guard units[index].state == .pending, let claim = units[index].lease?.claim,
                let end = byKey[units[index].key]?.first(where: { $0.claim == claim })
            else { continue }
            endAttempt(index, at: end.at, outcome: end.outcome, error: end.error.map(Self.boundedError), maxRetries: maxRetries)
            units[index].last?.result = end.result.flatMap { Self.encodedCount(of: $0) <= Bounds.unitResultBytes ? $0 : nil }
            recorded.insert(end.key)
        }
        return recorded
    }

    /// Moves the leases of `keys` still held under `claim` to `until`. Returns how many moved.
    @discardableResult
    public mutating func renew(_ keys: Set<String>, claim: String, until: Timestamp) -> Int {
        var renewed = 0
        for index in units.indices where units[index].state == .pending && units[index].lease?.claim == claim && keys.contains(units[index].key) {
            units[index].lease?.until = until
            renewed += 1
        }
        return renewed
    }

    /// Gives back units an attempt held under `claim` and did not end — its executor stopped them
    /// at a graceful stop (`--on-stop hand-back`): claimable at once, the try not spent. The
    /// attempt reads as expired, its error saying it was handed back (a new outcome would make the
    /// segment unreadable to an older executor). Returns how many.
    @discardableResult
    public mutating func release(_ keys: Set<String>, claim: String, now: Timestamp) -> Int {
        var released = 0
        for index in units.indices where units[index].state == .pending && units[index].lease?.claim == claim && keys.contains(units[index].key) {
            // The try not counted: claimable again whatever maxRetries says.
            units[index].attempts = max(0, units[index].attempts - 1)
            endAttempt(index, at: now, outcome: .expired, error: Self.handedBackError, maxRetries: .max)
            if units[index].attempts == 0 { units[index].state = .available }
            released += 1
        }
        return released
    }

    /// The error of an attempt handed back at a graceful stop.
    public static let handedBackError = "handed back by its executor at a graceful stop (the try not counted)"

    /// Makes every failed and expired unit `retryable` with its tries counted afresh. Returns how many.
    @discardableResult
    public mutating func retryFailed() -> Int {
        var retried = 0
        for index in units.indices where units[index].state == .failed || units[index].state == .expired {
            units[index].state = .retryable
            units[index].attempts = 0
            retried += 1
        }
        return retried
    }

    /// Drops units' earlier attempts, oldest first across the segment, until its encoding fits
    /// in `bytes` (the room reserved for units' growth leaves them out, so dropping all of them
    /// always fits). Returns the encoding.
    public mutating func encodedJSON(fittingIn bytes: Int) -> [UInt8] {
        var encoded = encodedJSON()
        while encoded.count > bytes {
            // The oldest attempts first, as many as cover the excess (an attempt's bytes and its
            // comma), then one encoding; again only if that was not enough.
            var oldest: [(unit: Int, startedAt: Timestamp, bytes: Int)] = []
            for index in units.indices {
                for attempt in units[index].earlier ?? [] {
                    var out: [UInt8] = []
                    JSONWriter.attempt(attempt, into: &out)
                    oldest.append((index, attempt.startedAt, out.count + 1))
                }
            }
            guard !oldest.isEmpty else { break }
            oldest.sort { $0.startedAt < $1.startedAt }
            var excess = encoded.count - bytes
            for attempt in oldest where excess > 0 {
                // Each unit's earlier attempts are oldest first: its first goes.
                units[attempt.unit].earlier!.removeFirst()
                if units[attempt.unit].earlier!.isEmpty { units[attempt.unit].earlier = nil }
                excess -= attempt.bytes
            }
            encoded = encodedJSON()
        }
        return encoded
    }

    /// The bytes `value` takes in a segment as the segment's writer writes it (Foundation's
    /// encoder, used here before, took a twelfth of an executor's CPU in the million-unit
    /// benchmark, and never writes fewer bytes).
    static func encodedCount(of value: JSONValue) -> Int {
        var out: [UInt8] = []
        JSONWriter.value(value, into: &out)
        return out.count
    }

    /// What a unit may take of a segment's room: its size now, what it may grow by, and its comma.
    public static func room(of unit: WorkUnit) -> Int {
        ((try? Codec.encode(unit).count) ?? Bounds.unitSegmentBytes) + Bounds.unitGrowthBytes + 1
    }

    /// The room `unit` took when it was added (its key and data; what it has run since is what
    /// the growth allowance was for): what a segment's room counts for a unit already in it.
    public static func roomAsAdded(of unit: WorkUnit) -> Int { room(of: WorkUnit(key: unit.key, data: unit.data)) }

    /// An attempt's error cut so that it takes at most ``Bounds/unitErrorBytes`` encoded
    /// (escapes included), as the room kept for a unit's growth assumes.
    static func boundedError(_ error: String) -> String {
        var text = Bounds.truncated(error, toBytes: Bounds.unitErrorBytes)
        while let encoded = try? Codec.encode(text), encoded.count > Bounds.unitErrorBytes + 2, !text.isEmpty {
            text.removeLast(max(1, text.count / 8))
        }
        return text
    }
}

/// A bucket's index of its segments: `specs/<spec>/<bucket>` (two hex digits), rewritten in the
/// same `multi` as every segment change, so its counts are exact. A claimant reads it to find a
/// segment with units to claim; a count of the spec sums its buckets' indexes.
public struct UnitBucket: Codable, Sendable, Hashable {
    public static let currentFormat = 1

    public struct Segment: Codable, Sendable, Hashable {
        /// The segment znode's name under the bucket (`s<number>`).
        public var name: String
        public var counts: UnitCounts
        /// The room its units take (``UnitSegment/room(of:)`` summed): it takes new units up to
        /// ``Bounds/unitSegmentBytes``.
        public var room: Int
        /// The earliest lease end of its pending units: a claimant past it may end that attempt.
        public var leaseEnds: Timestamp?
        /// The executors holding leases on its units (sorted; nil when none): the leader frees
        /// those of an executor gone for the grace period without reading every segment.
        public var holders: [String]?

        public init(name: String, counts: UnitCounts = UnitCounts(), room: Int = 0, leaseEnds: Timestamp? = nil, holders: [String]? = nil) {
            self.name = name
            self.counts = counts
            self.room = room
            self.leaseEnds = leaseEnds
            self.holders = holders
        }

        /// Whether this entry is `segment`'s summary: an index read after a segment was written
        /// says so for as long as nobody wrote the segment since (they are written together).
        public func summarizes(_ segment: UnitSegment) -> Bool {
            counts == segment.counts && leaseEnds == segment.earliestLeaseEnd && holders == segment.leaseHolders
        }

        /// Whether a claimant at `now` may find something to claim here.
        public func mayClaim(now: Timestamp) -> Bool { counts.claimable > 0 || (leaseEnds.map { $0 <= now } ?? false) }
    }

    public var format: Int = 1
    /// The number the next segment is named after.
    public var nextSegment: Int
    public var segments: [Segment]

    public init(nextSegment: Int = 0, segments: [Segment] = []) {
        self.nextSegment = nextSegment
        self.segments = segments
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decodeFormat(upTo: Self.currentFormat, forKey: .format)
        nextSegment = try container.decode(Int.self, forKey: .nextSegment)
        segments = try container.decode([Segment].self, forKey: .segments)
    }

    public var counts: UnitCounts { segments.reduce(UnitCounts()) { $0 + $1.counts } }

    /// The number a segment is named after (`s<n>`), nil for a name of another form.
    public static func number(of segment: String) -> Int? {
        guard segment.first == "s" else { return nil }
        return Int(segment.dropFirst())
    }

    /// The most units bucket `bucket` of `buckets` may run at once under a spec's `maxRunning`:
    /// its share (`maxRunning / buckets`, the first `maxRunning % buckets` buckets one more). Each
    /// bucket's claims are written with compare-and-set on its index, so no bucket runs more than
    /// its share and the spec never more than `maxRunning`.
    public static func share(of maxRunning: Int, bucket: Int, buckets: Int) -> Int {
        maxRunning / buckets + (bucket < maxRunning % buckets ? 1 : 0)
    }

    /// Sets the summary of `segment` from its content. Its `room` is what its units took when
    /// added (`room`; a change to units already there keeps it: their growth was reserved then).
    public mutating func summarize(_ name: String, _ segment: UnitSegment, room: Int? = nil) {
        if let index = segments.firstIndex(where: { $0.name == name }) {
            segments[index].counts = segment.counts
            segments[index].leaseEnds = segment.earliestLeaseEnd
            segments[index].holders = segment.leaseHolders
            if let room { segments[index].room = room }
        } else {
            let room = room ?? segment.units.reduce(0) { $0 + UnitSegment.room(of: $1) }
            segments.append(Segment(name: name, counts: segment.counts, room: room, leaseEnds: segment.earliestLeaseEnd, holders: segment.leaseHolders))
        }
    }

    /// Where new units go: onto the last segment while it has room (`last`, its content given),
    /// then into new segments, filling at most `maximumSegments` whose encoded sizes sum to at
    /// most `maximumBytes` (a new segment is begun only while one at its bound would still fit).
    /// Returns the segments to write (the existing one first when it took any) and how many of
    /// `units`, from the first, they hold; the index is updated to match.
    public mutating func place(
        _ units: some Sequence<WorkUnit>, last: UnitSegment?, maximumSegments: Int = .max, maximumBytes: Int = .max
    ) -> (written: [(name: String, segment: UnitSegment, isNew: Bool)], placed: Int) {
        var written: [(name: String, segment: UnitSegment, isNew: Bool)] = []
        var rooms: [String: Int] = [:]
        // `bytes`: the segment's encoded size (its units' and 64 for its wrapper; an existing
        // one's as it is now, however its units grew).
        var current: (name: String, segment: UnitSegment, room: Int, bytes: Int, isNew: Bool)?
        if let last, let summary = segments.last { current = (summary.name, last, summary.room, last.encodedJSON().count, false) }
        var bytesWritten = 0
        var placed = 0
        for unit in units {
            let room = UnitSegment.room(of: unit)
            // 64 bytes for the segment's own wrapper.
            if current == nil || current!.room + room > Bounds.unitSegmentBytes - 64 {
                if let full = current, full.isNew || full.segment != last {
                    written.append((full.name, full.segment, full.isNew))
                    rooms[full.name] = full.room
                    bytesWritten += full.bytes
                }
                guard written.count < maximumSegments, bytesWritten + Bounds.unitSegmentBytes <= maximumBytes else {
                    current = nil
                    break
                }
                current = ("s\(nextSegment)", UnitSegment(), 0, 64, true)
                nextSegment += 1
            }
            current!.segment.units.append(unit)
            current!.room += room
            current!.bytes += room - Bounds.unitGrowthBytes
            placed += 1
        }
        if let open = current, open.isNew || open.segment != last {
            written.append((open.name, open.segment, open.isNew))
            rooms[open.name] = open.room
        }
        for segment in written { summarize(segment.name, segment.segment, room: rooms[segment.name]) }
        return (written, placed)
    }
}

/// Picks the spec to claim from: only specs with units to claim, only those of the highest
/// priority among them, then the one least served for its weight — the units this chooser saw
/// claimed from it divided by its weight (fair queuing) — so that each executor's claims follow
/// the weights within a claim, over a few claims as over many. (A random pick in proportion to
/// the weights, the first rule, drifted by ±10% over windows of a few hundred claims.)
public struct WorkSpecChooser: Sendable {
    public struct Candidate: Sendable, Hashable {
        public var name: String
        public var priority: Int
        public var weight: Double

        public init(name: String, priority: Int, weight: Double) {
            self.name = name
            self.priority = priority
            self.weight = weight
        }
    }

    /// Units claimed from each spec divided by its weight.
    private var served: [String: Double] = [:]
    /// What the spec chosen last had been served when chosen: a spec that becomes a candidate
    /// (new, or back with units) starts there, owed no burst of claims for the time it had none.
    private var level = 0.0

    public init() {}

    /// The spec to claim from next (nil: no candidate of a weight above 0); ties go at random.
    public mutating func choose(from candidates: [Candidate], using random: inout some RandomNumberGenerator) -> String? {
        guard let top = candidates.map(\.priority).max() else { return nil }
        let eligible = candidates.filter { $0.priority == top && $0.weight > 0 && $0.weight.isFinite }
        guard !eligible.isEmpty else { return nil }
        for candidate in eligible { served[candidate.name] = max(served[candidate.name] ?? level, level) }
        let least = eligible.map { served[$0.name]! }.min()!
        let tied = eligible.filter { served[$0.name]! == least }
        let chosen = tied.randomElement(using: &random)!.name
        level = least
        return chosen
    }

    /// Counts `units` claimed from `candidate`.
    public mutating func claimed(_ units: Int, from candidate: Candidate) {
        guard candidate.weight > 0, candidate.weight.isFinite else { return }
        served[candidate.name, default: level] += Double(units) / candidate.weight
    }

    /// Forgets the specs not named (deleted or paused ones; one back starts level with the others).
    public mutating func forget(allBut names: Set<String>) {
        served = served.filter { names.contains($0.key) }
    }
}
