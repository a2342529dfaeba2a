import ArgumentParser
import DroverClient
import DroverProtocol
import DroverStore
import Foundation
import ZooKeeper

extension DroverBench {
    struct Units: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Work specs: no-op units added to one spec, then run by executors claiming them in batches.",
            discussion: """
                On one fresh chroot (no manager: units need none), --executors `drover executor` \
                processes with --unit-slots each. A spec of no-op units (sample.echo) is created \
                paused, --units units are added (timed and reported apart: rate, writes, znodes, \
                the largest znode and the data size), then resumed and timed until every unit has \
                finished. Targets: at least 50,000 units/s end to end, and at least 5× the raw \
                single-create rate measured in the same run.
                """)
        @OptionGroup var cluster: ClusterOptions
        @Option(help: "Units in the spec.") var units = 200_000
        @Option(help: "Executor processes.") var executors = 8
        @Option(help: "Unit slots per executor.") var unitSlots = 256
        @Option(help: "The spec's buckets.") var buckets = 64
        @Option(help: "The spec's maxGetwork: units per claim.") var maxGetwork = 256

        func run() async throws {
            guard units >= 1, executors >= 1, unitSlots >= 1 else { throw ValidationError("--units, --executors and --unit-slots must be at least 1") }
            let bench = try await BenchCluster.start(cluster)
            do {
                let raw = try await bench.rawLimit()
                let root = try await bench.makeRoot("units")
                let zookeeper = try await ZooKeeperClient.connect(to: bench.reachable(root), sessionTimeout: .seconds(10))
                let client = DroverClient(zookeeper: zookeeper)
                let store = client.workSpecs
                let spec = WorkSpec(name: "bench", method: "sample.echo", maxGetwork: maxGetwork, buckets: buckets, paused: true)
                try await store.create(spec)
                let clock = ContinuousClock()

                StandardError.writeLine("adding \(Format.count(units)) units")
                var start = clock.now
                let width = String(units).count
                let report = try await store.add((0..<units).map { WorkUnit(key: "u" + String(repeating: "0", count: width - String($0).count) + String($0)) }, to: "bench")
                let addSeconds = (clock.now - start).seconds
                let shape = try await measureTree(zookeeper, spec: spec, layout: client.layout)

                for index in 1...executors {
                    try bench.startExecutor("u\(index)", root: root, slots: 1, arguments: ["--unit-slots", "\(unitSlots)"])
                }
                try await waitForExecutors(client, count: executors)
                StandardError.writeLine("running them on \(executors) executors of \(unitSlots) unit slots")
                start = clock.now
                _ = try await store.update("bench") { $0.paused = false }
                var counts = UnitCounts()
                var lastReport = clock.now
                while true {
                    counts = try await store.counts(of: spec)
                    if counts.unfinished == 0 { break }
                    if clock.now - lastReport > .seconds(5) {
                        StandardError.writeLine("  \(Format.count(counts.finished))/\(Format.count(units)) finished")
                        lastReport = clock.now
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
                let runSeconds = (clock.now - start).seconds
                let rate = Double(units) / runSeconds
                let registered = try await zookeeper.children(client.layout.executors).names.count
                await zookeeper.close()
                await bench.stop()
                guard counts.finished == units else {
                    throw ValidationError("\(counts.finished) of \(units) units finished (\(counts))")
                }
                let absolute = TargetVerdict(
                    name: "units-per-second", figure: rate, limit: 50_000, unit: "units/s", limitUnit: "units/s", ratio: rate / 50_000, goal: "≥ 1.0×",
                    met: rate >= 50_000)
                let relative = TargetVerdict.atLeast("units-vs-raw-creates", rate, limit: raw.createsPerSecond, unit: "units/s", limitUnit: "creates/s", ratio: 5)
                if cluster.json {
                    struct Output: Encodable {
                        let units: Int
                        let executors: Int
                        let addSeconds: Double
                        let addWrites: Int
                        let znodes: Int
                        let largestZnodeBytes: Int
                        let dataBytes: Int
                        let runSeconds: Double
                        let unitsPerSecond: Double
                        let rawCreatesPerSecond: Double
                        let targets: [TargetVerdict]
                    }
                    try printJSON(
                        Output(
                            units: units, executors: registered, addSeconds: addSeconds, addWrites: report.writes, znodes: shape.znodes,
                            largestZnodeBytes: shape.largest, dataBytes: shape.bytes, runSeconds: runSeconds, unitsPerSecond: rate,
                            rawCreatesPerSecond: raw.createsPerSecond, targets: [absolute, relative]))
                } else {
                    print(
                        "add: \(Format.count(units)) units in \(Format.fixed(addSeconds, decimals: 2)) s (\(Format.count(Int(Double(units) / addSeconds))) units/s, "
                            + "\(report.writes) writes); \(shape.znodes) znodes, largest \(Format.count(shape.largest)) bytes, data \(Format.count(shape.bytes)) bytes before running")
                    print(
                        "run: \(Format.count(units)) units on \(executors) executors in \(Format.fixed(runSeconds, decimals: 2)) s = \(Format.count(Int(rate))) units/s; "
                            + "raw creates \(Format.count(Int(raw.createsPerSecond)))/s")
                    print(absolute.line)
                    print(relative.line)
                }
            } catch {
                await bench.stop()
                throw error
            }
        }

        /// Znodes under the spec, the largest one's data and all their data, in bytes.
        func measureTree(_ zookeeper: ZooKeeperClient, spec: WorkSpec, layout: Layout) async throws -> (znodes: Int, largest: Int, bytes: Int) {
            var znodes = 1
            var largest = 0
            var bytes = 0
            for bucket in 0..<spec.buckets {
                let path = layout.specBucket(spec.name, bucket)
                let index = try await zookeeper.getData(path)
                znodes += 1
                largest = max(largest, index.data.count)
                bytes += index.data.count
                for name in try await zookeeper.children(path).names {
                    let segment = try await zookeeper.getData(path + "/" + name)
                    znodes += 1
                    largest = max(largest, segment.data.count)
                    bytes += segment.data.count
                }
            }
            return (znodes, largest, bytes)
        }
    }
}
