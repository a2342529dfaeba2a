import ArgumentParser
import DroverSimulation
import Foundation

/// `drover-sim`: placement policies compared on one simulated trace each, no ZooKeeper.
@main
struct DroverSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drover-sim",
        abstract: "Simulate placing jobs of many tasks under each placement policy; compare response times with an ideal scheduler.",
        discussion: """
            A discrete-event simulation in this process (no ZooKeeper, no executors): executors with \
            --slots slots each run tasks from a FIFO queue; jobs of --tasks-per-job tasks arrive at \
            random (Poisson) at the rate that makes each --load; every message between a scheduler \
            and an executor takes --hop-ms. For each executor count, duration distribution and load, \
            every policy runs on the same trace and prints job response time percentiles (arrival to \
            the last task's end), the ratio to the ideal scheduler (every task starts the moment any \
            slot is free), and messages per task. Policies: ideal, central (Drover's leader today: \
            a hop to the leader, --leader-ms per task, a hop to the executor; a freed slot is known a \
            hop later), random, powerOfTwo, batch and batchLateBinding (Sparrow's, with \
            --probe-ratio executors probed per task). docs/PLACEMENT.md has the tables.
            """)

    @Option(help: "Executors; repeatable (e.g. --executors 100 --executors 1000).")
    var executors: [Int] = [100, 1_000]
    @Option(help: "Slots per executor.")
    var slots = 4
    @Option(help: "Tasks per job.")
    var tasksPerJob = 10
    @Option(help: "Loads as fractions of all slots busy; repeatable.")
    var load: [Double] = [0.5, 0.7, 0.8, 0.9]
    @Option(help: "Task durations: exponential, heavyTailed (Pareto, shape 1.5, same mean); repeatable.")
    var durations: [String] = ["exponential", "heavyTailed"]
    @Option(help: "Mean task duration in milliseconds.")
    var meanTaskMs = 100.0
    @Option(help: "Jobs simulated per run (the first tenth is warm-up, left out of the figures).")
    var jobs = 10_000
    @Option(help: "Milliseconds one message takes between a scheduler and an executor.")
    var hopMs = 0.5
    @Option(help: "Milliseconds the central leader takes per task: 0.7 is Drover's rate here, about 1,400 tasks/s (drover-bench throughput).")
    var leaderMs = 0.7
    @Option(help: "Executors probed (or reserved) per task by powerOfTwo-style sampling: d of batch sampling.")
    var probeRatio = 2
    @Option(help: "Policies to run; repeatable (default: all). ideal always runs: the others are measured against it.")
    var policy: [String] = []
    @Option(help: "Seed of the trace: the same seed gives the same figures.")
    var seed: UInt64 = 1

    func validate() throws {
        for name in durations where PlacementSimulation.Durations(rawValue: name) == nil {
            throw ValidationError("--durations \(name): expected one of \(PlacementSimulation.Durations.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        for name in policy where PlacementSimulation.Policy(rawValue: name) == nil {
            throw ValidationError("--policy \(name): expected one of \(PlacementSimulation.Policy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        for count in executors {
            for load in load {
                if let problem = configuration(executors: count, load: load, durations: .exponential).problem { throw ValidationError(problem) }
            }
        }
    }

    func configuration(executors: Int, load: Double, durations: PlacementSimulation.Durations) -> PlacementSimulation.Configuration {
        PlacementSimulation.Configuration(
            executors: executors, slotsPerExecutor: slots, tasksPerJob: tasksPerJob, load: load, meanTaskSeconds: meanTaskMs / 1000,
            durations: durations, jobs: jobs, hop: hopMs / 1000, leaderServiceTime: leaderMs / 1000, probeRatio: probeRatio, seed: seed)
    }

    func run() throws {
        let policies = [PlacementSimulation.Policy.ideal]
            + (policy.isEmpty ? PlacementSimulation.Policy.allCases : policy.compactMap(PlacementSimulation.Policy.init)).filter { $0 != .ideal }
        for count in executors {
            for name in durations {
                let kind = PlacementSimulation.Durations(rawValue: name)!
                print("\n\(count) executors × \(slots) slots, jobs of \(tasksPerJob) tasks, \(name) durations (mean \(format(meanTaskMs)) ms), hop \(format(hopMs)) ms, \(jobs) jobs")
                print(row(["load", "policy", "p50 ms", "p90 ms", "p99 ms", "mean ms", "p50 ÷ ideal", "p99 ÷ ideal", "messages/task"]))
                for load in load {
                    let simulation = PlacementSimulation(configuration(executors: count, load: load, durations: kind))
                    if simulation.overloadsTheCentralLeader && policies.contains(.central) {
                        print(
                            "      (central: \(format(simulation.offeredTasksPerSecond, decimals: 0)) tasks/s asked of a leader that places \(format(1000 / leaderMs, decimals: 0))/s: "
                                + "its line grows as long as the run lasts)")
                    }
                    var ideal: PlacementSimulation.Outcome?
                    for policy in policies {
                        let outcome = simulation.run(policy)
                        if policy == .ideal { ideal = outcome }
                        let base = ideal!
                        print(
                            row([
                                "\(Int((load * 100).rounded()))%", policy.rawValue, format(outcome.percentile(50) * 1000), format(outcome.percentile(90) * 1000),
                                format(outcome.percentile(99) * 1000), format(outcome.mean * 1000),
                                format(outcome.percentile(50) / base.percentile(50), decimals: 2) + "×",
                                format(outcome.percentile(99) / base.percentile(99), decimals: 2) + "×", format(outcome.messagesPerTask, decimals: 1),
                            ]))
                    }
                }
            }
        }
    }

    private func row(_ cells: [String]) -> String {
        let widths = [5, 17, 9, 9, 9, 9, 12, 12, 13]
        return zip(cells, widths).map { $0.padding(toLength: max($1, $0.count), withPad: " ", startingAt: 0) }.joined(separator: " ")
    }

    private func format(_ value: Double, decimals: Int = 1) -> String { String(format: "%.\(decimals)f", value) }
}
