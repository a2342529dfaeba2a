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

                Many executors: --executors-per-process N runs them N to a `drover-bench \
                executor-host` process (each executor its own ZooKeeper session), and counts the \
                segment writes that lost their compare-and-set (claim conflicts), e.g. \
                --executors 800 --executors-per-process 100 --unit-slots 4.

                A large add: --add-only stops after the add and reports, besides, the largest \
                directory, ZooKeeper's znodes, data and heap, and the memory of a manager that \
                counted the spec (e.g. --units 10000000 --zk-heap 4g).

                Weights: --weights 1,2,3 makes one spec per weight (equal priority), --units \
                units each, and compares the shares of the units finished between a tenth and a \
                half of one spec's count with the weights' (target: within 10%).
                """)
        @OptionGroup var cluster: ClusterOptions
        @Option(help: "Units in the spec (the target is for a million).") var units = 1_000_000
        @Option(help: "Executor processes.") var executors = 8
        @Option(help: "Unit slots per executor.") var unitSlots = 256
        @Option(help: "The spec's buckets.") var buckets = 64
        @Option(help: "The spec's maxGetwork: units per claim.") var maxGetwork = 256
        @Option(help: "Executors per process: 1 runs `drover executor` processes; more runs them in `drover-bench executor-host` processes.")
        var executorsPerProcess = 1
        @Flag(help: "Stop after the add: report its figures, ZooKeeper's and a manager's memory.") var addOnly = false
        @Option(
            help: ArgumentHelp(
                "Weights of several specs of equal priority, e.g. 1,2,3: each gets --units units, and the shares of the units finished between a tenth and a half of one spec's count are compared with the weights.",
                valueName: "w,w,…"))
        var weights: String?

        func run() async throws {
            guard units >= 1, executors >= 1, unitSlots >= 1, executorsPerProcess >= 1 else {
                throw ValidationError("--units, --executors, --unit-slots and --executors-per-process must be at least 1")
            }
            let weightList = try weights.map { text in
                let list = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
                guard list.count >= 2, list.allSatisfy({ ($0 ?? 0) > 0 }) else {
                    throw ValidationError("--weights \(text): expected two or more weights above 0, e.g. 1,2,3")
                }
                return list.compactMap { $0 }
            }
            // A million units are about 50 MB in the servers, and every claim and end rewrites a
            // segment of tens of KB: with 256 MB heaps the servers took about a third more CPU
            // per unit than with 1 GB (one run each, 25.1 against 18.9 ms per 1,000 units).
            let bench = try await BenchCluster.start(cluster, defaultHeap: "1g")
            do {
                let raw = try await bench.rawLimit()
                let root = try await bench.makeRoot("units")
                let zookeeper = try await ZooKeeperClient.connect(to: bench.reachable(root), sessionTimeout: .seconds(10))
                let client = DroverClient(zookeeper: zookeeper)
                let store = client.workSpecs
                // The hosts' count files, removed once the run is over.
                let directory = FileManager.default.temporaryDirectory.appendingPathComponent("drover-bench-units-\(getpid())")
                defer { try? FileManager.default.removeItem(at: directory) }
                if let weightList {
                    try await measureShares(weightList, bench: bench, root: root, client: client, directory: directory)
                    await zookeeper.close()
                    await bench.stop()
                    return
                }
                // Retries: under heavy contention an end can reach ZooKeeper after its lease ran out; the unit then runs again.
                let spec = WorkSpec(name: "bench", method: "sample.echo", maxRetries: 3, maxGetwork: maxGetwork, buckets: buckets, paused: true)
                try await store.create(spec)
                let clock = ContinuousClock()

                StandardError.writeLine("adding \(Format.count(units)) units")
                var start = clock.now
                let width = String(units).count
                let report = try await store.add((0..<units).map { WorkUnit(key: "u" + String(repeating: "0", count: width - String($0).count) + String($0)) }, to: "bench")
                let addSeconds = (clock.now - start).seconds
                let shape = try await measureTree(zookeeper, spec: spec, layout: client.layout)
                if addOnly {
                    try await reportAdd(bench, root: root, client: client, spec: spec, seconds: addSeconds, writes: report.writes, shape: shape)
                    await zookeeper.close()
                    await bench.stop()
                    return
                }

                let conflictFiles = try startExecutors(bench, root: root, directory: directory)
                try await waitForExecutors(client, count: executors)
                StandardError.writeLine("running them on \(executors) executors of \(unitSlots) unit slots")
                let executorIDs = executorsPerProcess == 1 ? (1...executors).map { "u\($0)" } : []
                let cpuBefore = (executors: executorIDs.reduce(0) { $0 + bench.cpuSeconds($1) }, zookeeper: bench.zookeeperCPUSeconds(), own: bench.ownCPUSeconds())
                let zxidBefore = try await currentZxid(zookeeper, probe: "/bench-probe")
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
                    // Every bucket's index is read at each look (a tenth of a second apart near
                    // the end, so the end is timed to that): far from it, a look every half
                    // second keeps the benchmark's own reads off the servers it measures.
                    let elapsed = (clock.now - start).seconds
                    let finishing = counts.finished == 0 || Double(counts.unfinished) < Double(counts.finished) / elapsed * 1.5
                    try await Task.sleep(for: .milliseconds(finishing ? 100 : 500))
                }
                let runSeconds = (clock.now - start).seconds
                let rate = Double(units) / runSeconds
                let writes = try await currentZxid(zookeeper, probe: "/bench-probe") - zxidBefore - 1
                let cpu = (
                    executors: executorIDs.reduce(0) { $0 + bench.cpuSeconds($1) } - cpuBefore.executors, zookeeper: bench.zookeeperCPUSeconds() - cpuBefore.zookeeper,
                    own: bench.ownCPUSeconds() - cpuBefore.own
                )
                let registered = try await zookeeper.children(client.layout.executors).names.count
                // Each host writes its conflicts twice a second: wait for the last count.
                if !conflictFiles.isEmpty { try await Task.sleep(for: .milliseconds(600)) }
                let conflicts: Int? = conflictFiles.isEmpty ? nil : ranSoFar(conflictFiles)
                await zookeeper.close()
                await bench.stop()
                guard counts.finished == units else {
                    throw BenchFailure("\(counts.finished) of \(units) units finished (\(counts))")
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
                        let writeConflicts: Int?
                        let zookeeperWritesPerThousandUnits: Double
                        let executorsCPUMillisecondsPerThousandUnits: Double?
                        let zookeeperCPUMillisecondsPerThousandUnits: Double
                        let targets: [TargetVerdict]
                    }
                    try printJSON(
                        Output(
                            units: units, executors: registered, addSeconds: addSeconds, addWrites: report.writes, znodes: shape.znodes,
                            largestZnodeBytes: shape.largest, dataBytes: shape.bytes, runSeconds: runSeconds, unitsPerSecond: rate,
                            rawCreatesPerSecond: raw.createsPerSecond, writeConflicts: conflicts,
                            zookeeperWritesPerThousandUnits: Double(writes) * 1000 / Double(units),
                            executorsCPUMillisecondsPerThousandUnits: executorIDs.isEmpty ? nil : cpu.executors * 1e6 / Double(units),
                            zookeeperCPUMillisecondsPerThousandUnits: cpu.zookeeper * 1e6 / Double(units), targets: [absolute, relative]))
                } else {
                    print(
                        "add: \(Format.count(units)) units in \(Format.fixed(addSeconds, decimals: 2)) s (\(Format.count(Int(Double(units) / addSeconds))) units/s, "
                            + "\(report.writes) writes); \(shape.znodes) znodes, largest \(Format.count(shape.largest)) bytes, data \(Format.count(shape.bytes)) bytes before running")
                    print(
                        "run: \(Format.count(units)) units on \(executors) executors in \(Format.fixed(runSeconds, decimals: 2)) s = \(Format.count(Int(rate))) units/s; "
                            + "raw creates \(Format.count(Int(raw.createsPerSecond)))/s")
                    print(
                        "  per 1,000 units: \(Format.fixed(Double(writes) * 1000 / Double(units), decimals: 2)) ZooKeeper writes; CPU ms "
                            + (executorIDs.isEmpty ? "" : "executors \(Format.fixed(cpu.executors * 1e6 / Double(units), decimals: 1)), ")
                            + "ZooKeeper servers \(Format.fixed(cpu.zookeeper * 1e6 / Double(units), decimals: 1)), this benchmark \(Format.fixed(cpu.own * 1e6 / Double(units), decimals: 1)); "
                            + "cores busy \(Format.fixed((cpu.executors + cpu.zookeeper + cpu.own) / runSeconds, decimals: 2))")
                    if let conflicts {
                        print(
                            "segment writes that lost their compare-and-set and were applied again: \(Format.count(conflicts)) "
                                + "(\(Format.fixed(Double(conflicts) * 1000 / Double(units), decimals: 1)) per 1,000 units)")
                    }
                    print(absolute.line)
                    print(relative.line)
                }
            } catch {
                await bench.stop()
                throw error
            }
        }

        /// Starts the executors (as `drover executor` processes, or many to an executor host);
        /// returns the files where the hosts count their conflicts (none for processes).
        func startExecutors(_ bench: BenchCluster, root: String, directory: URL) throws -> [String] {
            if executorsPerProcess == 1 {
                for index in 1...executors {
                    try bench.startExecutor("u\(index)", root: root, slots: 1, arguments: ["--unit-slots", "\(unitSlots)"])
                }
                return []
            }
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            var conflictFiles: [String] = []
            var first = 1
            while first <= executors {
                let count = min(executorsPerProcess, executors - first + 1)
                let countFile = directory.appendingPathComponent("host-\(first).count").path
                try bench.startExecutorHost(
                    "h\(first)", root: root, prefix: "u", first: first, count: count, slots: 1, labels: [], countFile: countFile, unitSlots: unitSlots)
                conflictFiles.append(countFile + ".conflicts")
                first += count
            }
            return conflictFiles
        }

        /// Specs of equal priority and the given weights, `units` units each, run together: the
        /// shares of the units finished between a tenth and a half of one spec's count (none has
        /// run out), against the weights' shares.
        func measureShares(_ weights: [Double], bench: BenchCluster, root: String, client: DroverClient, directory: URL) async throws {
            let store = client.workSpecs
            let specs = weights.enumerated().map { index, weight in
                WorkSpec(name: "w\(index + 1)", method: "sample.echo", weight: weight, maxRetries: 3, maxGetwork: maxGetwork, buckets: buckets, paused: true)
            }
            for spec in specs {
                try await store.create(spec)
                StandardError.writeLine("adding \(Format.count(units)) units to \(spec.name) (weight \(spec.weight))")
                _ = try await store.add((0..<units).map { WorkUnit(key: "u\($0)") }, to: spec.name)
            }
            _ = try startExecutors(bench, root: root, directory: directory)
            try await waitForExecutors(client, count: executors)
            for spec in specs { _ = try await store.update(spec.name) { $0.paused = false } }
            // Counted from a tenth of one spec's units to a half, so that the start (executors
            // finding the specs resumed) is left out and no spec has run out. Every spec is read
            // at once, so that none is counted later than the others.
            func finishedBySpec() async throws -> [Int] {
                try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                    for (index, spec) in specs.enumerated() { group.addTask { (index, try await store.counts(of: spec).finished) } }
                    var finished = [Int](repeating: 0, count: specs.count)
                    for try await (index, count) in group { finished[index] = count }
                    return finished
                }
            }
            func waitUntil(_ total: Int) async throws -> [Int] {
                while true {
                    let finished = try await finishedBySpec()
                    if finished.reduce(0, +) >= total { return finished }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            let clock = ContinuousClock()
            let before = try await waitUntil(units / 10)
            let start = clock.now
            let after = try await waitUntil(units / 2)
            let seconds = (clock.now - start).seconds
            let finished = zip(after, before).map { $0 - $1 }
            let total = Double(finished.reduce(0, +))
            let weightSum = weights.reduce(0, +)
            var largest = 0.0
            print("shares of the \(Format.count(Int(total))) units finished in \(Format.fixed(seconds, decimals: 1)) s on \(executors) executors (after the first \(Format.count(before.reduce(0, +)))):")
            for (index, spec) in specs.enumerated() {
                let share = Double(finished[index]) / total
                let wanted = weights[index] / weightSum
                let deviation = abs(share - wanted) / wanted
                largest = max(largest, deviation)
                print(
                    "  \(spec.name): weight \(Format.fixed(weights[index], decimals: 1)), wanted \(Format.fixed(wanted * 100, decimals: 1))%, "
                        + "got \(Format.fixed(share * 100, decimals: 1))% (\(Format.count(finished[index])) units), off by \(Format.fixed(deviation * 100, decimals: 1))%")
            }
            print(TargetVerdict.atMost("weight-shares", largest * 100, limit: 10, unit: "% off", ratio: 1).line)
        }

        /// The add's figures, then a manager's memory once it has counted the spec's units.
        func reportAdd(
            _ bench: BenchCluster, root: String, client: DroverClient, spec: WorkSpec, seconds: Double, writes: Int,
            shape: (znodes: Int, largest: Int, bytes: Int)
        ) async throws {
            var largestDirectory = BenchDirectory(path: "-", children: 0)
            for path in [client.layout.specs, client.layout.spec(spec.name)] + (0..<spec.buckets).map({ client.layout.specBucket(spec.name, $0) }) {
                let children = Int(try await client.zookeeper.exists(path)?.numberOfChildren ?? 0)
                if children > largestDirectory.children { largestDirectory = BenchDirectory(path: path, children: children) }
            }
            let statistics = try await bench.zookeeperStatistics()
            let servers = bench.zookeeperPIDs.map { ProcessMemory(pid: $0) }
            StandardError.writeLine("starting a manager; waiting until its sweep has counted the spec")
            try bench.startManager("m1", root: root)
            let clock = ContinuousClock()
            let started = clock.now
            while (try await client.workSpecs.countedByTheLeader()?.specs[spec.name]?.total ?? 0) < units {
                guard clock.now - started < .seconds(600) else { throw ValidationError("the manager did not count the spec's units within 10 minutes") }
                try await Task.sleep(for: .milliseconds(200))
            }
            let counted = (clock.now - started).seconds
            let manager = ProcessMemory(pid: bench.process("m1")?.pid)
            print(
                "add: \(Format.count(units)) units in \(Format.fixed(seconds, decimals: 2)) s (\(Format.count(Int(Double(units) / seconds))) units/s, "
                    + "\(Format.count(writes)) writes)")
            print(
                "spec: \(Format.count(shape.znodes)) znodes, largest \(Format.count(shape.largest)) bytes (bound 262,144), data \(Format.count(shape.bytes)) bytes; "
                    + "largest directory \(largestDirectory.path) with \(Format.count(largestDirectory.children)) children (bound 10,000)")
            print(
                "zookeeper: \(Format.count(statistics.znodes)) znodes, approximate data \(Format.count(statistics.dataBytes)) bytes; servers "
                    + servers.map(\.description).joined(separator: "; "))
            print("manager: counted the spec \(Format.fixed(counted, decimals: 1)) s after it started; \(manager)")
            print(
                TargetVerdict.atMost("largest-znode", Double(shape.largest), limit: 262_144, unit: "bytes", ratio: 1).line)
            print(
                TargetVerdict.atMost("largest-directory", Double(largestDirectory.children), limit: 10_000, unit: "children", ratio: 1).line)
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

/// A benchmark that could not measure what it set out to (not a usage error: no usage is printed).
struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
