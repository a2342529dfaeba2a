import ArgumentParser
import DroverClient
import DroverProtocol
import DroverSimulation
import Foundation
import ZooKeeper

extension DroverBench {
    /// `drover-bench placement`: jobs of many tasks at a given load, live, under each placement
    /// policy, against the simulator's ideal scheduler on the same trace.
    struct Placement: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Jobs of many tasks at a given load under each placement policy, live, against the simulated ideal of the same trace.",
            discussion: """
                The trace (arrivals and task durations) is drover-sim's for the same knobs and seed. For each \
                --placement policy: a fresh chroot, one manager and --executors executors (drover processes, \
                --slots each); the jobs are submitted at their arrival times, each task a sample.sleep of its \
                duration; a job's response time is from its submit to its last task's end (the executors' \
                clocks). The first tenth of the jobs is warm-up and left out, as in the simulation. Prints \
                each policy's percentiles beside the ideal scheduler's and the simulated policy's, whether \
                the policies come out in the simulated order, and the target: batchLateBinding's p50 within \
                1.5x of the ideal.
                """)
        @OptionGroup var cluster: ClusterOptions
        @Option(help: "Executors (processes).") var executors = 8
        @Option(help: "Slots per executor.") var slots = 4
        @Option(help: "Tasks per job.") var tasksPerJob = 100
        @Option(help: "Busy slots ÷ all slots on average (0.8: 80% load).") var load = 0.8
        @Option(help: "Mean task duration, milliseconds.") var meanTaskMilliseconds = 200.0
        @Option(help: "Jobs per policy.") var jobs = 60
        @Option(help: "Task durations: exponential or heavyTailed.") var durations = "exponential"
        @Option(help: "Placement policies to run (repeatable): \(PlacementPolicy.names).")
        var placement: [PlacementPolicy] = [.central, .random, .powerOfTwo, .batch, .batchLateBinding]
        @Option(help: "The trace's seed.") var seed: UInt64 = 1

        func validate() throws {
            guard PlacementSimulation.Durations(rawValue: durations) != nil else { throw ValidationError("--durations: exponential or heavyTailed") }
            guard (1...1_000).contains(tasksPerJob) else { throw ValidationError("--tasks-per-job: 1 to 1000") }
            guard load > 0, load < 1 else { throw ValidationError("--load: between 0 and 1") }
        }

        func run() async throws {
            let simulation = PlacementSimulation(
                .init(
                    executors: executors, slotsPerExecutor: slots, tasksPerJob: tasksPerJob, load: load, meanTaskSeconds: meanTaskMilliseconds / 1000,
                    durations: PlacementSimulation.Durations(rawValue: durations)!, jobs: jobs, seed: seed))
            if let problem = simulation.configuration.problem { throw ValidationError(problem) }
            let trace = simulation.makeTrace()
            let ideal = simulation.run(.ideal)
            StandardError.writeLine(
                "trace: \(jobs) jobs of \(tasksPerJob) tasks over \(Format.fixed(trace.arrivals.last ?? 0, decimals: 1)) s "
                    + "(\(Format.count(Int(simulation.offeredTasksPerSecond))) tasks/s offered); ideal p50 \(Format.fixed(ideal.percentile(50) * 1000, decimals: 0)) ms")
            let bench = try await BenchCluster.start(cluster)
            var rows: [(policy: PlacementPolicy, live: [Double], simulated: PlacementSimulation.Outcome)] = []
            do {
                for policy in placement {
                    let root = try await bench.makeRoot("placement-\(policy.rawValue)")
                    try bench.startManager("m1", root: root)
                    for index in 1...executors { try bench.startExecutor("e\(index)", root: root, slots: slots) }
                    let zookeeper = try await ZooKeeperClient.connect(to: bench.reachable(root), sessionTimeout: .seconds(10))
                    let client = DroverClient(zookeeper: zookeeper)
                    try await waitForExecutors(client, count: executors)
                    _ = try await client.call(JobSpec(method: "sample.echo"))  // warm up
                    StandardError.writeLine("\(policy.rawValue): submitting \(jobs) jobs at their arrival times")
                    let start = ContinuousClock.now
                    let ids = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                        for (index, arrival) in trace.arrivals.enumerated() {
                            let spec = JobSpec(
                                method: "sample.sleep", tasks: tasksPerJob, taskArguments: trace.durations[index].map { ["seconds": .number($0)] },
                                placement: policy == .central ? nil : policy)
                            group.addTask {
                                try await Task.sleep(until: start + .milliseconds(Int64(arrival * 1000)))
                                return (index, try await client.submit(spec))
                            }
                        }
                        return try await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
                    }
                    var times: [Double] = []
                    for index in 0..<jobs {
                        let record = try await client.finalRecord(ids[index]!)
                        guard record.state == .succeeded else { throw ValidationError("job \(record.id) ended \(record.state.rawValue)") }
                        let lastEnd = record.history.map(\.endedAt).max() ?? record.finishedAt ?? record.submittedAt
                        if index >= jobs / 10 { times.append(Double(lastEnd - record.submittedAt) / 1000) }
                    }
                    await zookeeper.close()
                    await bench.stopDaemons()
                    let simulated = simulation.run(PlacementSimulation.Policy(rawValue: policy.rawValue)!)
                    rows.append((policy, times.sorted(), simulated))
                    StandardError.writeLine("  \(policy.rawValue): live p50 \(Format.fixed(percentile(50, of: times) * 1000, decimals: 0)) ms")
                }
                await bench.stop()
            } catch {
                await bench.stop()
                throw error
            }
            var table = TextTable(["policy", "live p50 ms", "live p99 ms", "× ideal p50", "simulated p50 ms", "× ideal p50 (sim)"])
            let idealP50 = ideal.percentile(50)
            for row in rows {
                let live = percentile(50, of: row.live)
                table.append([
                    row.policy.rawValue, Format.fixed(live * 1000, decimals: 0), Format.fixed(percentile(99, of: row.live) * 1000, decimals: 0),
                    Format.fixed(live / idealP50, decimals: 2), Format.fixed(row.simulated.percentile(50) * 1000, decimals: 0),
                    Format.fixed(row.simulated.percentile(50) / idealP50, decimals: 2),
                ])
            }
            print(
                "\(jobs) jobs of \(tasksPerJob) tasks, \(executors) executors × \(slots) slots, \(Int(load * 100))% load, mean task \(Int(meanTaskMilliseconds)) ms (\(durations)), seed \(seed)")
            print("ideal scheduler (simulated, same trace): p50 \(Format.fixed(idealP50 * 1000, decimals: 0)) ms, p99 \(Format.fixed(ideal.percentile(99) * 1000, decimals: 0)) ms\n")
            print(table.render())
            let liveOrder = rows.sorted { percentile(50, of: $0.live) < percentile(50, of: $1.live) }.map(\.policy.rawValue)
            let simulatedOrder = rows.sorted { $0.simulated.percentile(50) < $1.simulated.percentile(50) }.map(\.policy.rawValue)
            print("\nby p50, live:      \(liveOrder.joined(separator: " < "))")
            print("by p50, simulated: \(simulatedOrder.joined(separator: " < "))")
            if let late = rows.first(where: { $0.policy == .batchLateBinding }) {
                print(
                    TargetVerdict.atMost(
                        "placement-batchLateBinding-p50-vs-ideal", percentile(50, of: late.live) * 1000, limit: idealP50 * 1000, unit: "ms", ratio: 1.5
                    ).line)
            }
        }
    }
}
