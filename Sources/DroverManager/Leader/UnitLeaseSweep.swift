import DroverProtocol
import DroverStore
import Logging
import ZooKeeper

/// Frees the work units of executors gone for the grace period, while this manager leads
/// (docs/PROTOCOL.md, "Work specs"): their attempts end as expired and the units are claimable
/// again, instead of waiting for their leases (two minutes by default). It also publishes every
/// spec's counts, summed from the indexes it reads anyway (``SpecCounts``, one read for clients).
///
/// Every `interval` it reads the buckets' indexes of every spec — each segment's index entry
/// names the executors holding leases there — and looks up the registration of each holder
/// only. A holder seen unregistered on every look for the grace period is gone: its leases end,
/// one write per segment. A restarted executor registers again and keeps its leases (they run
/// out as usual: it cannot know them). The units are the only thing it touches; it shares no
/// state with the leader's placement.
struct UnitLeaseSweep {
    let store: UnitStore
    let layout: Layout
    let gracePeriod: Duration
    /// The leader's fence: counts from a deposed leader are not written.
    let fence: MultiOperation
    /// The counts document's ACL, should this leader create it (an open deployment).
    let countsACL: [ACL]
    let logger: Logger
    let clock = ContinuousClock()

    /// Half the grace period, from 1 to 10 seconds.
    var interval: Duration { min(max(gracePeriod / 2, .seconds(1)), .seconds(10)) }

    /// Where an executor's leases are: spec, bucket, segment.
    struct Place: Hashable {
        var spec: String
        var bucket: Int
        var segment: String
    }

    func run() async throws {
        var goneSince: [String: ContinuousClock.Instant] = [:]
        var published: [String: UnitCounts]?
        var countsWritable = true
        while true {
            try await Task.sleep(for: interval)
            do {
                let counts = try await pass(goneSince: &goneSince)
                if countsWritable, counts != published {
                    countsWritable = try await publish(counts)
                    published = counts
                }
            } catch let error as ZooKeeperError where error.code == .sessionExpired {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                // A hiccup of the connection, a garbled index: the next pass looks again.
                logger.warning("work unit sweep: a pass was left unfinished", metadata: ["error": "\(error)"])
            }
        }
    }

    /// One look at every lease holder; frees the units of those gone for the grace period.
    /// Returns every spec's counts as the indexes said (before any unit was freed).
    func pass(goneSince: inout [String: ContinuousClock.Instant]) async throws -> [String: UnitCounts] {
        var places: [String: [Place]] = [:]
        var specs: [String: WorkSpec] = [:]
        var counts: [String: UnitCounts] = [:]
        for name in try await store.specNames() {
            guard let spec = try? await store.spec(name)?.document else { continue }
            specs[name] = spec
            let indexes = try await store.buckets(of: spec)
            counts[name] = indexes.reduce(UnitCounts()) { $0 + ($1?.document.counts ?? UnitCounts()) }
            for (bucket, index) in indexes.enumerated() {
                for segment in index?.document.segments ?? [] where segment.counts.pending > 0 {
                    for holder in segment.holders ?? [] {
                        places[holder, default: []].append(Place(spec: name, bucket: bucket, segment: segment.name))
                    }
                }
            }
        }
        let now = clock.now
        goneSince = goneSince.filter { places[$0.key] != nil }
        for (executor, held) in places.sorted(by: { $0.key < $1.key }) {
            if try await store.zookeeper.exists(layout.executorAlive(executor)) != nil {
                goneSince[executor] = nil
                continue
            }
            let since = goneSince[executor] ?? now
            goneSince[executor] = since
            guard now - since >= gracePeriod else { continue }
            var freed = 0
            for place in held {
                guard let spec = specs[place.spec] else { continue }
                freed += try await store.modify(place.spec, bucket: place.bucket, segment: place.segment) { (content: inout UnitSegment) -> Int? in
                    content.expireLeases(of: executor, now: Timestamp.now(), maxRetries: spec.maxRetries)
                } ?? 0
            }
            if freed > 0 {
                logger.notice(
                    "freed the work units of an executor gone for the grace period", metadata: ["executor": "\(executor)", "units": "\(freed)"])
            }
        }
        return counts
    }

    /// Writes the counts document, fenced; creates it in an open deployment. Returns false when
    /// this manager may not create it (secured before it existed: `drover init` adds it).
    func publish(_ counts: [String: UnitCounts]) async throws -> Bool {
        let data = try Codec.encode(SpecCounts(countedAt: Timestamp.now(), specs: counts))
        do {
            try await store.zookeeper.multi([fence, .setData(path: layout.unitCounts, data: data)])
        } catch let error as ZooKeeperError where error.code == .noNode && error.failedOperationIndex == 1 {
            do {
                try await store.zookeeper.multi([fence, .create(path: layout.unitCounts, data: data, acl: countsACL)])
            } catch let error as ZooKeeperError where error.code == .noAuth {
                logger.warning(
                    "work specs' counts are not published: this manager may not create \(layout.unitCounts); run `drover init --credentials <admin file>` once to add it")
                return false
            }
        }
        return true
    }
}
