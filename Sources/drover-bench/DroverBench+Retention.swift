import ArgumentParser
import DroverClient
import DroverProtocol
import Foundation
import ZKRecipes
import ZooKeeper
import ZooKeeperTesting

extension DroverBench {
    /// `drover-bench retention`: a rolling load with retention on — directories, znodes and the
    /// placement rate must stay flat however many jobs pass through.
    struct Retention: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Jobs submitted and finished for a long run with retention on: directories, znodes and placement stay flat.",
            discussion: """
                One manager with --retention, executors in one host process, and a submitter that keeps \
                --window jobs in flight until --jobs have run. Every --sample-interval seconds it prints \
                the jobs run, the rate, ZooKeeper's znode count and data size, and the largest directory. \
                Targets: the largest directory stays at most 10,000 children; after the first two \
                retention periods the znode count grows by at most 20%; the placement rate of the last \
                minute is at least 80% of the first (after the first sample, the ramp).
                """)
        @OptionGroup var cluster: ClusterOptions
        @Option(help: "Jobs to run in all.") var jobs = 200_000
        @Option(help: "The manager's retention period, in seconds (at least 60).") var retention = 60
        @Option(help: "Executors (in one host process).") var executors = 8
        @Option(help: "Slots of each.") var slots = 16
        @Option(help: "Jobs submitted and not yet run, at most.") var window = 5_000
        @Option(help: "Seconds between samples.") var sampleInterval = 10

        func validate() throws {
            guard retention >= 60 else { throw ValidationError("--retention must be at least 60 seconds (the manager's minimum)") }
            guard jobs > 0, executors > 0, slots > 0, window > 0, sampleInterval > 0 else { throw ValidationError("counts must be positive") }
        }

        struct Sample: Encodable {
            var seconds: Double
            var ran: Int
            var perSecond: Double
            var znodes: Int
            var dataBytes: Int
            var largestDirectory: BenchDirectory
        }

        struct Output: Encodable {
            var jobs: Int
            var retentionSeconds: Int
            var samples: [Sample]
            var targets: [TargetVerdict]
        }

        func run() async throws {
            let bench = try await BenchCluster.start(cluster)
            let directory = NSTemporaryDirectory() + "drover-bench-\(getpid())"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let root = try await bench.makeRoot("retention")
            try bench.startManager("m1", root: root, arguments: ["--retention", "\(retention)s"])
            let countFile = directory + "/ran-retention"
            try bench.startExecutorHost(
                "r-host", root: root, prefix: "r", first: 1, count: executors, slots: slots, labels: [], countFile: countFile)
            let zookeeper = try await ZooKeeperClient.connect(to: root, sessionTimeout: .seconds(30))
            let client = DroverClient(zookeeper: zookeeper)
            try await waitForRegistrations(zookeeper, client.layout, count: executors, within: .seconds(60))
            StandardError.writeLine("retention: \(Format.count(jobs)) jobs through \(executors) executors, retention \(retention) s")

            let clock = ContinuousClock()
            let start = clock.now
            let spec = JobSpec(method: "bench.noop")
            let samples = LockedValue<[Sample]>([])
            let connectionString = bench.connectionString
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    var submitted = 0
                    while submitted < jobs {
                        guard submitted - ranSoFar([countFile]) < window else {
                            try await Task.sleep(for: .milliseconds(20))
                            continue
                        }
                        let batch = min(500, jobs - submitted)
                        _ = try await client.submit(Array(repeating: spec, count: batch))
                        submitted += batch
                    }
                    while ranSoFar([countFile]) < jobs { try await Task.sleep(for: .milliseconds(50)) }
                }
                group.addTask {
                    var lastRan = 0
                    var last = clock.now
                    while true {
                        try await Task.sleep(for: .seconds(sampleInterval))
                        let ran = ranSoFar([countFile])
                        let now = clock.now
                        let statistics = try await BenchCluster.zookeeperStatistics(of: connectionString)
                        let largest = try await BenchCluster.largestDirectory(zookeeper, client.layout)
                        let sample = Sample(
                            seconds: (now - start).seconds, ran: ran, perSecond: Double(ran - lastRan) / (now - last).seconds,
                            znodes: statistics.znodes, dataBytes: statistics.dataBytes, largestDirectory: largest)
                        samples.update { $0.append(sample) }
                        StandardError.writeLine(
                            "  \(Format.fixed(sample.seconds, decimals: 0)) s: \(Format.count(ran)) run, \(Format.count(Int(sample.perSecond)))/s, "
                                + "\(Format.count(sample.znodes)) znodes, \(mebibytes(sample.dataBytes)), largest directory \(largest.path) \(largest.children)")
                        lastRan = ran
                        last = now
                    }
                }
                try await group.next()
                group.cancelAll()
            }
            await zookeeper.close()
            await bench.stopDaemons()

            let taken = samples.value
            let settled = taken.filter { $0.seconds >= Double(2 * retention) }
            let reference = settled.first?.znodes ?? 0
            let largest = taken.map(\.largestDirectory.children).max() ?? 0
            // Rates over whole samples, leaving out the last (it may end part way through).
            let rates = taken.dropLast().map(\.perSecond)
            let perMinute = max(1, 60 / sampleInterval)
            // The first sample is the ramp (executors warming, the first bulk submits): left out.
            let firstRate = rates.dropFirst().prefix(perMinute).reduce(0, +) / Double(max(1, min(perMinute, rates.count - 1)))
            let lastRate = rates.suffix(perMinute).reduce(0, +) / Double(max(1, min(perMinute, rates.count)))
            var targets = [
                TargetVerdict.atMost("largest directory", Double(largest), limit: 10_000, unit: "children", ratio: 1)
            ]
            if settled.count >= 2 {
                targets.append(
                    TargetVerdict.atMost(
                        "znodes after two retention periods", Double(settled.map(\.znodes).max() ?? 0), limit: Double(reference), unit: "znodes",
                        ratio: 1.2))
            } else {
                StandardError.writeLine("the run ended before two retention periods had passed: --jobs more, or --retention less, to judge the znode count")
            }
            targets.append(TargetVerdict.atLeast("placement rate, last minute vs first", lastRate, limit: firstRate, unit: "jobs/s", ratio: 0.8))
            if cluster.json {
                try printJSON(Output(jobs: jobs, retentionSeconds: retention, samples: taken, targets: targets))
            } else {
                for target in targets { print(target.line) }
            }
        }
    }
}
