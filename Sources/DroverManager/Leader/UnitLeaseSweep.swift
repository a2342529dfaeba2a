import DroverProtocol
import DroverStore
import Logging
import ZooKeeper

/// Frees the work units of executors gone for the grace period, while this manager leads
/// (docs/PROTOCOL.md, "Work specs"): their attempts end as expired and the units are claimable
/// again, instead of waiting for their leases (two minutes by default).
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
        while true {
            try await Task.sleep(for: interval)
            do {
                try await pass(goneSince: &goneSince)
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
    func pass(goneSince: inout [String: ContinuousClock.Instant]) async throws {
        var places: [String: [Place]] = [:]
        var specs: [String: WorkSpec] = [:]
        for name in try await store.specNames() {
            guard let spec = try? await store.spec(name)?.document else { continue }
            specs[name] = spec
            for (bucket, index) in try await store.buckets(of: spec).enumerated() {
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
    }
}
