import DroverProtocol
import DroverStore
import Foundation
import Logging
import Synchronization
import ZKRecipes
import ZooKeeper

/// Runs work specs' units in an executor (docs/PROTOCOL.md, "Work specs"): claims units in
/// batches straight from their segments with compare-and-set — no leader on the path — runs
/// each with the handler of its spec's method, in its own slots, and writes the ends back in
/// batches, one write per segment. Leases of units still running are renewed; a unit whose lease
/// ran out (its executor died or was cut off) is claimed again by whoever finds it.
struct UnitWorker: Sendable {
    let store: UnitStore
    let executor: String
    let slots: Int
    let handlers: [String: TaskHandler]
    let logger: Logger
    /// How long an executor with nothing to claim waits before looking again: the first wait,
    /// doubled while there is still nothing, up to the longest.
    static let idleWait = Duration.milliseconds(100)
    static let longestIdleWait = Duration.seconds(2)

    /// One claimed unit while it runs.
    struct Claimed: Sendable {
        var spec: WorkSpec
        var bucket: Int
        var segment: String
        var claim: String
        var unit: WorkUnit
        /// Where its lease ends, as last written.
        var leaseUntil: Timestamp

        var id: String { "\(spec.name)/\(unit.key)" }
        var segmentID: SegmentID { SegmentID(spec: spec.name, bucket: bucket, segment: segment) }
    }

    /// Where an end is written: one segment of one spec.
    struct SegmentID: Hashable, Sendable {
        var spec: String
        var bucket: Int
        var segment: String
    }

    /// How long a segment's ends may wait for the other units of that segment running here, so
    /// that a claim's units, when short, have their ends written together: one write per claim
    /// instead of one per handful of ends (each write is the whole segment and its bucket's index).
    static let endsLinger = Duration.milliseconds(100)

    /// The ends of one segment not written yet.
    struct UnwrittenEnds: Sendable {
        var ends: [UnitSegment.End] = []
        var maxRetries: Int
        /// When the first of them was added.
        var since: ContinuousClock.Instant
    }

    /// The ends waiting to be written, and how many units of each segment still run here.
    struct Ends: Sendable {
        var unwritten: [SegmentID: UnwrittenEnds] = [:]
        var unended: [SegmentID: Int] = [:]

        /// Adds `count` units of `segment` started here.
        mutating func started(_ count: Int, in segment: SegmentID) {
            unended[segment, default: 0] += count
        }

        /// A unit of `segment` stopped, with `end` to write (nil: nothing to record). Returns
        /// whether the writer should look now: the segment has nothing left running here, or
        /// this is its first end waiting (the writer then knows when it is due).
        mutating func stopped(in segment: SegmentID, end: UnitSegment.End?, maxRetries: Int, now: ContinuousClock.Instant) -> Bool {
            let left = (unended[segment] ?? 1) - 1
            unended[segment] = left > 0 ? left : nil
            guard let end else { return left <= 0 && unwritten[segment] != nil }
            let first = unwritten[segment] == nil
            unwritten[segment, default: UnwrittenEnds(maxRetries: maxRetries, since: now)].ends.append(end)
            return first || left <= 0
        }

        /// Takes the ends due at `now` — every one when `all` — and says when the next of those
        /// left is due.
        mutating func takeDue(now: ContinuousClock.Instant, linger: Duration, all: Bool) -> (due: [SegmentID: UnwrittenEnds], next: ContinuousClock.Instant?) {
            var due: [SegmentID: UnwrittenEnds] = [:]
            var next: ContinuousClock.Instant?
            for (segment, waiting) in unwritten {
                if all || unended[segment] == nil || waiting.since + linger <= now {
                    due[segment] = waiting
                } else {
                    next = min(next ?? waiting.since + linger, waiting.since + linger)
                }
            }
            for segment in due.keys { unwritten.removeValue(forKey: segment) }
            return (due, next)
        }
    }

    /// What the worker's tasks share: the ends not yet written and the units running.
    final class Shared: Sendable {
        let ends = Mutex(Ends())
        /// Each segment as this worker last wrote it: the next write to it (a claim's ends,
        /// mostly) need not read it again unless another executor wrote it since.
        let written = Mutex<[SegmentID: UnitStore.Read<UnitSegment>]>([:])
        let running = Mutex<[String: Claimed]>([:])
        /// Segments remembered at most (each a decoded segment of a few hundred units).
        static let segmentsRemembered = 32

        /// Remembers `segment` as this worker wrote it, unless a later write of it is remembered
        /// (two of the worker's writes to one segment may tell of themselves out of order).
        func remember(_ segment: UnitStore.Read<UnitSegment>, of id: SegmentID) {
            written.withLock { written in
                if let known = written[id], known.version >= segment.version { return }
                if written.count >= Self.segmentsRemembered, written[id] == nil { written.remove(at: written.startIndex) }
                written[id] = segment
            }
        }

        /// Units claimed here and not yet stopped: running, or waiting for a slot.
        let inUse = Mutex(0)
        /// Units stopped by a hand-back, to give back once every unit has stopped.
        let handedBack = Mutex<[Claimed]>([])
        /// An element each time the last running unit stops.
        let (idle, becameIdle) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))

        /// A unit claimed here stopped, or went back without running.
        func unitStopped() {
            let now = inUse.withLock { used in
                used -= 1
                return used
            }
            if now == 0 { becameIdle.yield() }
        }
    }

    /// How the executor asks a worker to stop at a graceful stop, and waits until it has.
    final class Control: Sendable {
        enum Stop: Sendable { case finish, handBack }
        private struct State {
            var stop: Stop?
            var wake: AsyncStream<Void>.Continuation?
            var stopped = false
            var waiters: [CheckedContinuation<Void, Never>] = []
        }
        private let state = Mutex(State())
        /// One element when a stop is first asked for.
        let stopRequests: AsyncStream<Void>
        private let requested: AsyncStream<Void>.Continuation

        init() {
            (stopRequests, requested) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        }

        var stopRequested: Stop? { state.withLock { $0.stop } }

        /// `finish`: claim nothing more, let the units running finish and record their ends.
        /// `handBack`: stop the units running and give them back at once, their tries not spent.
        func stop(_ how: Stop) {
            let wake = state.withLock { state in
                state.stop = state.stop ?? how
                return state.wake
            }
            wake?.yield()
            requested.yield()
        }

        /// Returns once the worker has stopped (or at once if it has).
        func waitUntilStopped() async {
            await withCheckedContinuation { continuation in
                let done = state.withLock { state in
                    if !state.stopped { state.waiters.append(continuation) }
                    return state.stopped
                }
                if done { continuation.resume() }
            }
        }

        fileprivate func attach(wake: AsyncStream<Void>.Continuation) {
            let stopping = state.withLock { state in
                state.wake = wake
                return state.stop != nil
            }
            if stopping { wake.yield() }
        }

        fileprivate func markStopped() {
            let waiters = state.withLock { state in
                state.stopped = true
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    private enum Part: Sendable { case writer, timer, renewer, claims, deadline }

    /// After a stop, once no unit runs, what is left to write (the ends, the hand-backs, a claim
    /// in flight) gets this long: with ZooKeeper out of reach the executor still exits, and the
    /// units it could not write about wait for their leases (or the leader's sweep).
    static let stopWritesDeadline = Duration.seconds(30)

    /// Claims and runs units until cancelled, or until `control` asks it to stop and everything
    /// it owes is written: the ends of the units that finished, and the units handed back.
    func run(control: Control = Control()) async throws {
        defer { control.markStopped() }
        let shared = Shared()
        let (endsReady, signalEnds) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let (dueTimes, signalDue) = AsyncStream.makeStream(of: ContinuousClock.Instant.self, bufferingPolicy: .bufferingNewest(1))
        try await withThrowingTaskGroup(of: Part.self) { group in
            // Writes the ends that are due; it ends once the claims have and every end is written.
            group.addTask {
                func writeDue(all: Bool) async {
                    let (batch, next) = shared.ends.withLock { $0.takeDue(now: .now, linger: Self.endsLinger, all: all) }
                    if let next { signalDue.yield(next) }
                    await withDiscardingTaskGroup { writes in
                        for (segment, work) in batch {
                            writes.addTask { await record(work.ends, in: segment, maxRetries: work.maxRetries, shared: shared) }
                        }
                    }
                    shared.running.withLock { units in
                        for (segment, work) in batch {
                            // Only the attempt that ended: the unit may have been claimed here again since.
                            for end in work.ends where units["\(segment.spec)/\(end.key)"]?.claim == end.claim {
                                units.removeValue(forKey: "\(segment.spec)/\(end.key)")
                            }
                        }
                    }
                }
                for await _ in endsReady { await writeDue(all: false) }
                await writeDue(all: true)
                return .writer
            }
            // Wakes the writer when ends that waited for their segment's other units are due.
            group.addTask {
                for await due in dueTimes {
                    try? await Task.sleep(until: due)
                    signalEnds.yield()
                }
                return .timer
            }
            // Leases of units still running are moved on before they run out.
            group.addTask {
                while true {
                    try await Task.sleep(for: .milliseconds(250))
                    let renewed = await renewLeases(shared.running.withLock { Array($0.values) }, shared: shared)
                    shared.running.withLock { units in
                        for (key, until) in renewed { units[key]?.leaseUntil = until }
                    }
                }
            }
            group.addTask {
                defer { signalEnds.finish() }
                try await claimAndRun(shared: shared, control: control, endsReady: signalEnds)
                let handedBack = shared.handedBack.withLock { $0 }
                if !handedBack.isEmpty { await release(handedBack, shared: shared) }
                return .claims
            }
            group.addTask {
                for await _ in control.stopRequests { break }
                var idle = shared.idle.makeAsyncIterator()
                while !Task.isCancelled, shared.inUse.withLock({ $0 }) > 0 {
                    guard await idle.next() != nil else { break }
                }
                try await Task.sleep(for: Self.stopWritesDeadline)
                logger.warning(
                    "stopping without writing every unit's end or hand-back: ZooKeeper did not answer; those units run again once their leases run out",
                    metadata: ["within": "\(Self.stopWritesDeadline)"])
                return .deadline
            }
            for try await part in group where part == .writer || part == .deadline { break }
            group.cancelAll()
        }
    }

    /// The claim loop: claims units while slots are free and runs each in a task of its own,
    /// until cancelled or asked to stop; returns once every unit it started has stopped.
    private func claimAndRun(shared: Shared, control: Control, endsReady signalEnds: AsyncStream<Void>.Continuation) async throws {
        let (freed, free) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        control.attach(wake: free)
        var freedSlots = freed.makeAsyncIterator()
        var random = SystemRandomNumberGenerator()
        var chooser = WorkSpecChooser()
        var idle = Self.idleWait
        let clock = ContinuousClock()
        var specs: [WorkSpec]?
        var specsListedAt = clock.now
        await withDiscardingTaskGroup { units in
            // Claimed units waiting for a slot, in claim order.
            var queued: [Claimed] = []
            func start(_ unit: Claimed) {
                units.addTask {
                    let end = await execute(unit)
                    if end == nil, control.stopRequested == .handBack {
                        // No longer renewed: it is given back once every unit has stopped.
                        shared.running.withLock { _ = $0.removeValue(forKey: unit.id) }
                        shared.handedBack.withLock { $0.append(unit) }
                    }
                    // (Otherwise, without an end, cancelled with the executor: its lease runs
                    // out and the unit is claimed again, the try spent.)
                    let look = shared.ends.withLock { $0.stopped(in: unit.segmentID, end: end, maxRetries: unit.spec.maxRetries, now: .now) }
                    if look { signalEnds.yield() }
                    shared.unitStopped()
                    free.yield()
                }
            }
            // Units running: those held here that do not wait.
            func startQueued() {
                while !queued.isEmpty, shared.inUse.withLock({ $0 }) - queued.count < slots { start(queued.removeFirst()) }
            }
            claiming: while !Task.isCancelled && control.stopRequested == nil {
                // Waits until half the slots are free (all of one), then claims as many units as
                // slots are free and half the slots more, which wait here for a slot (their
                // leases held): claims stay batches however short the units, and a claim takes
                // a segment's claimable units whole more often (each part is another write of
                // the whole segment, claimed and ended).
                startQueued()
                while shared.inUse.withLock({ $0 }) > slots - max(1, slots / 2) {
                    guard await freedSlots.next() != nil, control.stopRequested == nil else { break claiming }
                    startQueued()
                }
                // The specs are listed again at most once a second, or when a claim found nothing.
                if specs == nil || clock.now - specsListedAt > .seconds(1) {
                    specs = try? await runnableSpecs()
                    specsListedAt = clock.now
                }
                let claimed: [Claimed]
                do {
                    claimed = try await claimSome(
                        from: specs ?? [], upTo: slots + slots / 2 - shared.inUse.withLock { $0 }, shared: shared, chooser: &chooser, using: &random)
                    // A stop asked for while the claim was in flight: its units go back unrun.
                    if control.stopRequested != nil {
                        if !claimed.isEmpty { await release(claimed, shared: shared) }
                        break claiming
                    }
                } catch is CancellationError {
                    break claiming
                } catch {
                    // ZooKeeper unreachable, a spec or bucket garbled: the executor's tasks go on,
                    // and units are looked for again after the wait.
                    logger.warning("could not claim work units; looking again shortly", metadata: ["error": "\(error)"])
                    claimed = []
                }
                if claimed.isEmpty {
                    specs = nil
                    do { try await Task.sleep(for: idle) } catch { break claiming }
                    idle = min(idle * 2, Self.longestIdleWait)
                    continue
                }
                idle = Self.idleWait
                shared.inUse.withLock { $0 += claimed.count }
                shared.running.withLock { running in
                    for unit in claimed { running[unit.id] = unit }
                }
                // A claim's units are all of one segment.
                shared.ends.withLock { $0.started(claimed.count, in: claimed[0].segmentID) }
                queued.append(contentsOf: claimed)
            }
            if control.stopRequested == .finish {
                // Finishing: the units claimed and waiting run too.
                startQueued()
                while !queued.isEmpty, await freedSlots.next() != nil { startQueued() }
            }
            if !queued.isEmpty {
                // Handing back (or cancelled): the units that never started go back with those stopped.
                let stopping = control.stopRequested == .handBack
                if stopping { shared.handedBack.withLock { $0.append(contentsOf: queued) } }
                for unit in queued {
                    if stopping { shared.running.withLock { _ = $0.removeValue(forKey: unit.id) } }
                    _ = shared.ends.withLock { $0.stopped(in: unit.segmentID, end: nil, maxRetries: unit.spec.maxRetries, now: .now) }
                    shared.unitStopped()
                }
                queued = []
            }
            if control.stopRequested == .handBack { units.cancelAll() }
        }
    }

    /// Gives back units stopped by a hand-back, one write per segment: claimable at once.
    func release(_ units: [Claimed], shared: Shared) async {
        let bySegment = Dictionary(grouping: units) { SegmentID(spec: $0.spec.name, bucket: $0.bucket, segment: $0.segment) }
        var released = 0
        for (segment, units) in bySegment {
            let byClaim = Dictionary(grouping: units, by: \.claim)
            do {
                released += try await repeatingAfterLostAnswers(store.zookeeper, logger: logger, "handing units back") {
                    try await store.modify(
                        segment.spec, bucket: segment.bucket, segment: segment.segment,
                        knownSegment: shared.written.withLock { $0.removeValue(forKey: segment) }, wrote: { shared.remember($0, of: segment) }
                    ) { (content: inout UnitSegment, _: UnitBucket) -> Int? in
                        let now = Timestamp.now()
                        return byClaim.reduce(0) { $0 + content.release(Set($1.value.map(\.unit.key)), claim: $1.key, now: now) }
                    }
                } ?? 0
            } catch {
                logger.warning(
                    "could not hand units back: they run again once their leases run out",
                    metadata: ["spec": "\(segment.spec)", "units": "\(units.count)", "error": "\(error)"])
            }
        }
        logger.info("handed back units still running", metadata: ["units": "\(released)"])
    }

    /// Claims up to `limit` units from one spec chosen by priority and weight; nothing when no
    /// spec this executor can run has units to claim.
    func claimSome(
        from specs: [WorkSpec], upTo limit: Int, shared: Shared, chooser: inout WorkSpecChooser, using random: inout SystemRandomNumberGenerator
    ) async throws -> [Claimed] {
        var specs = specs
        chooser.forget(allBut: Set(specs.map(\.name)))
        while !specs.isEmpty {
            let candidates = specs.map { WorkSpecChooser.Candidate(name: $0.name, priority: $0.priority, weight: $0.weight) }
            guard let name = chooser.choose(from: candidates, using: &random), let spec = specs.first(where: { $0.name == name }),
                let candidate = candidates.first(where: { $0.name == name })
            else { return [] }
            let claimed = try await claim(from: spec, upTo: min(limit, spec.maxGetwork), shared: shared, using: &random)
            if !claimed.isEmpty {
                chooser.claimed(claimed.count, from: candidate)
                return claimed
            }
            // Nothing there now: the choice falls to the specs that may have some.
            specs.removeAll { $0.name == name }
        }
        return []
    }

    /// The specs this executor may run units of now: not paused, with a method it has.
    func runnableSpecs() async throws -> [WorkSpec] {
        var specs: [WorkSpec] = []
        for name in try await store.specNames() {
            // A spec another program garbled (or one out of bounds) is passed over.
            guard let spec = try? await store.spec(name)?.document, !spec.paused, handlers[spec.method] != nil, (try? spec.validate()) != nil else { continue }
            specs.append(spec)
        }
        return specs
    }

    /// Claims up to `limit` units of `spec` from one segment: buckets are tried in a random
    /// order, and in each a random segment the index says has units to claim.
    func claim(from spec: WorkSpec, upTo limit: Int, shared: Shared, using random: inout SystemRandomNumberGenerator) async throws -> [Claimed] {
        for bucket in (0..<spec.buckets).shuffled(using: &random) {
            guard let index = try await store.bucket(spec.name, bucket) else { continue }
            let now = Timestamp.now()
            // Under `maxRunning`, a bucket runs at most its share: one already running its share
            // is passed over unless a lease there ran out.
            let share = spec.maxRunning.map { UnitBucket.share(of: $0, bucket: bucket, buckets: spec.buckets) }
            if let share, index.document.counts.pending >= share, !index.document.segments.contains(where: { $0.leaseEnds.map { $0 <= now } ?? false }) {
                continue
            }
            for summary in index.document.segments.filter({ $0.mayClaim(now: now) }).shuffled(using: &random) {
                let claim = "\(executor).\(UInt64.random(in: 0..<(1 << 48), using: &random))"
                let segmentID = SegmentID(spec: spec.name, bucket: bucket, segment: summary.name)
                let units = try await repeatingAfterLostAnswers(store.zookeeper, logger: logger, "claiming units") {
                    try await store.modify(
                        spec.name, bucket: bucket, segment: summary.name, startingFrom: index,
                        knownSegment: shared.written.withLock { $0.removeValue(forKey: segmentID) },
                        wrote: { written in shared.remember(written, of: segmentID) }
                    ) { (segment: inout UnitSegment, index: UnitBucket) -> [WorkUnit]? in
                        // A claim whose answer was lost may have been applied: its units are ours.
                        let mine = segment.units.filter { $0.state == .pending && $0.lease?.claim == claim }
                        if !mine.isEmpty { return mine }
                        let now = Timestamp.now()
                        segment.expireLeases(now: now, maxRetries: spec.maxRetries)
                        var room = limit
                        if let share {
                            // The bucket's index is written with compare-and-set beside this
                            // segment: the other segments' running units are as counted there.
                            let elsewhere = index.segments.reduce(0) { $0 + ($1.name == summary.name ? 0 : $1.counts.pending) }
                            room = min(room, max(0, share - elsewhere - segment.counts.pending))
                        }
                        let claimed = segment.claim(
                            upTo: room, executor: executor, claim: claim, now: now, leaseUntil: now + Int64(spec.leaseSeconds * 1000),
                            maxRetries: spec.maxRetries)
                        // Leases that ran out are written even when nothing was claimed.
                        return claimed
                    }
                }
                if let units, !units.isEmpty {
                    return units.map { Claimed(spec: spec, bucket: bucket, segment: summary.name, claim: claim, unit: $0, leaseUntil: $0.lease?.until ?? 0) }
                }
            }
        }
        return []
    }

    /// Runs one unit with its spec's handler; returns how the attempt ended (nil: cancelled by
    /// the executor's stop, nothing to record).
    func execute(_ claimed: Claimed) async -> UnitSegment.End? {
        let unit = claimed.unit
        guard let handler = handlers[claimed.spec.method] else {
            return UnitSegment.End(
                key: unit.key, claim: claimed.claim, outcome: .failed, error: "executor \(executor) has no method \(claimed.spec.method)", at: Timestamp.now())
        }
        let context = TaskContext(
            job: claimed.spec.name, run: 1, attempt: unit.attempts, arguments: claimed.spec.arguments,
            unit: TaskContext.Unit(key: unit.key, data: unit.data))
        do {
            let result = try await handler(context)
            if let then = claimed.spec.then {
                // Fed before the end is recorded: an executor that dies between the two runs the
                // unit again and adds the same keys again, which an add leaves as they are.
                let outputs = try WorkUnit.outputs(of: result)
                if !outputs.isEmpty {
                    do {
                        _ = try await repeatingAfterLostAnswers(store.zookeeper, logger: logger, "adding units to \(then)") {
                            try await store.add(outputs, to: then)
                        }
                    } catch where !Task.isCancelled {
                        throw DroverError(.jobFailed, "could not add its \(outputs.count) output units to spec \(then): \(error)")
                    }
                }
            }
            return UnitSegment.End(key: unit.key, claim: claimed.claim, outcome: .finished, result: result, at: Timestamp.now())
        } catch where Task.isCancelled {
            // Stopped by the executor (its stop, or a hand-back): nothing to record.
            return nil
        } catch {
            return UnitSegment.End(key: unit.key, claim: claimed.claim, outcome: .failed, error: "\(error)", at: Timestamp.now())
        }
    }

    /// Writes `ends` into their segment; one the executor could not write is left to its lease.
    func record(_ ends: [UnitSegment.End], in segment: SegmentID, maxRetries: Int, shared: Shared) async {
        do {
            let recorded = try await repeatingAfterLostAnswers(store.zookeeper, logger: logger, "recording units' ends") {
                // The segment as this worker last wrote it (its claim, mostly): read again only
                // if another executor wrote it since.
                let known = shared.written.withLock { $0.removeValue(forKey: segment) }
                return try await store.modify(
                    segment.spec, bucket: segment.bucket, segment: segment.segment, knownSegment: known,
                    wrote: { written in shared.remember(written, of: segment) }
                ) { (content: inout UnitSegment, _: UnitBucket) -> Int? in
                    content.record(ends, maxRetries: maxRetries).count
                }
            }
            if (recorded ?? 0) < ends.count {
                logger.info(
                    "some units' ends were not recorded: their leases ran out and the units were claimed again, or the spec was deleted",
                    metadata: ["spec": "\(segment.spec)", "ends": "\(ends.count)", "recorded": "\(recorded ?? 0)"])
            }
        } catch is CancellationError {
        } catch {
            logger.warning(
                "could not record units' ends: the units run again once their leases run out",
                metadata: ["spec": "\(segment.spec)", "ends": "\(ends.count)", "error": "\(error)"])
        }
    }

    /// Renews the leases of running units past a third of their lease, one write per segment.
    /// Returns the new lease ends, by unit.
    func renewLeases(_ running: [Claimed], shared: Shared) async -> [String: Timestamp] {
        let now = Timestamp.now()
        var due: [SegmentID: [Claimed]] = [:]
        for unit in running where unit.leaseUntil - now < Int64(unit.spec.leaseSeconds * 1000) * 2 / 3 {
            due[SegmentID(spec: unit.spec.name, bucket: unit.bucket, segment: unit.segment), default: []].append(unit)
        }
        var renewed: [String: Timestamp] = [:]
        for (segment, units) in due {
            let until = Timestamp.now() + Int64(units[0].spec.leaseSeconds * 1000)
            let byClaim = Dictionary(grouping: units, by: \.claim)
            do {
                let count = try await store.modify(
                    segment.spec, bucket: segment.bucket, segment: segment.segment,
                    knownSegment: shared.written.withLock { $0.removeValue(forKey: segment) }, wrote: { shared.remember($0, of: segment) }
                ) { (content: inout UnitSegment, _: UnitBucket) -> Int? in
                    byClaim.reduce(0) { $0 + content.renew(Set($1.value.map(\.unit.key)), claim: $1.key, until: until) }
                }
                if count == units.count {
                    for unit in units { renewed[unit.id] = until }
                } else {
                    // Some leases ran out before the renewal (the executor was cut off): those
                    // units may run elsewhere now; their ends here will not be recorded.
                    logger.warning(
                        "some units' leases ran out before they were renewed: they may run again elsewhere",
                        metadata: ["spec": "\(segment.spec)", "units": "\(units.count)", "renewed": "\(count ?? 0)"])
                    for unit in units { renewed[unit.id] = until }
                }
            } catch {
                logger.info("could not renew units' leases; trying again", metadata: ["spec": "\(segment.spec)", "error": "\(error)"])
            }
        }
        return renewed
    }
}
