import ArgumentParser
import DroverClient
import DroverProtocol
import Foundation
import ZooKeeper
import ZooKeeperTesting

extension DroverBench {
    /// `drover-bench workflow`: a fan-out/fan-in workflow of no-op steps against as many
    /// independent no-op jobs, on the same cluster.
    struct Workflow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A workflow of N no-op steps (one, then N-2 after it, then one after them all) against N independent no-op jobs.",
            discussion: """
                On one fresh chroot with one manager and --executors executors of --slots slots: \
                first --steps independent no-op jobs (sample.ledger of 0 ms) submitted in bulk, \
                timed from the submit until every one is final; then one workflow of --steps no-op \
                steps (a first step, --steps - 2 steps after it, a last step after all of them), \
                timed from its submit until it is final. Target: the workflow within 2× the time of \
                the independent jobs (every step whose dependencies ended runs at once, but each \
                step's end rewrites the workflow's whole record). \
                Then one job of --steps no-op tasks (`tasks: N`), timed the same way (reported).
                """)
        @OptionGroup var cluster: ClusterOptions
        @Option(help: "Steps in the workflow, and independent jobs to compare with (at most 1,000).") var steps = 1_000
        @Option(help: "Executors.") var executors = 2
        @Option(help: "Slots per executor.") var slots = 16

        func run() async throws {
            guard (3...WorkflowGraph.maximumSteps).contains(steps) else { throw ValidationError("--steps must be between 3 and \(WorkflowGraph.maximumSteps)") }
            let bench = try await BenchCluster.start(cluster)
            let directory = NSTemporaryDirectory() + "drover-bench-\(getpid())"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            do {
                let root = try await bench.makeRoot("workflow")
                try bench.startManager("m1", root: root)
                for index in 1...executors {
                    try bench.startExecutor("e\(index)", root: root, slots: slots, ledger: directory + "/ledger-\(index).log")
                }
                let zookeeper = try await ZooKeeperClient.connect(to: bench.reachable(root), sessionTimeout: .seconds(10))
                let client = DroverClient(zookeeper: zookeeper)
                try await waitForExecutors(client, count: executors)
                let clock = ContinuousClock()

                StandardError.writeLine("\(Format.count(steps)) independent no-op jobs")
                let noOp = JobSpec(method: "sample.ledger", arguments: ["milliseconds": 0])
                var start = clock.now
                let ids = try await client.submit(Array(repeating: noOp, count: steps))
                for id in ids { _ = try await client.finalRecord(id) }
                let jobsSeconds = (clock.now - start).seconds

                StandardError.writeLine("one workflow of \(Format.count(steps)) no-op steps (fan-out, fan-in)")
                let middle = (1..<(steps - 1)).map { "s\($0)" }
                let workflowSteps =
                    [WorkflowStep(id: "s0", method: "sample.ledger", arguments: ["milliseconds": 0])]
                    + middle.map { WorkflowStep(id: $0, method: "sample.ledger", arguments: ["milliseconds": 0], after: ["s0"]) }
                    + [WorkflowStep(id: "s\(steps - 1)", method: "sample.ledger", arguments: ["milliseconds": 0], after: middle)]
                start = clock.now
                let workflow = try await client.submit(JobSpec.workflow(name: "bench", steps: workflowSteps))
                var lastReport = clock.now
                var record = try await client.status(workflow)
                for try await update in client.updates(workflow) {
                    record = update
                    if update.state.isFinal { break }
                    if clock.now - lastReport > .seconds(5) {
                        StandardError.writeLine("  \(update.runsEnded)/\(steps) steps ended")
                        lastReport = clock.now
                    }
                }
                let workflowSeconds = (clock.now - start).seconds

                StandardError.writeLine("one job of \(Format.count(steps)) no-op tasks")
                start = clock.now
                let manyTasks = try await client.submit(JobSpec(method: "sample.ledger", arguments: ["milliseconds": 0], tasks: steps))
                let tasksRecord = try await client.finalRecord(manyTasks)
                let tasksSeconds = (clock.now - start).seconds
                await zookeeper.close()
                await bench.stop()
                guard record.state == .succeeded else { throw ValidationError("the workflow ended \(record.state.rawValue), not succeeded") }
                guard tasksRecord.state == .succeeded else { throw ValidationError("the job of many tasks ended \(tasksRecord.state.rawValue), not succeeded") }
                let verdict = TargetVerdict.atMost(
                    "workflow-\(steps)-steps", workflowSeconds, limit: jobsSeconds, unit: "s", limitUnit: "s for \(steps) independent jobs", ratio: 2)
                if cluster.json {
                    struct Output: Encodable {
                        let steps: Int
                        let jobsSeconds: Double
                        let workflowSeconds: Double
                        let tasksSeconds: Double
                        let target: TargetVerdict
                    }
                    try printJSON(Output(steps: steps, jobsSeconds: jobsSeconds, workflowSeconds: workflowSeconds, tasksSeconds: tasksSeconds, target: verdict))
                } else {
                    print(
                        "\(Format.count(steps)) independent jobs: \(Format.fixed(jobsSeconds, decimals: 2)) s; workflow of \(Format.count(steps)) steps: "
                            + "\(Format.fixed(workflowSeconds, decimals: 2)) s (\(Format.fixed(workflowSeconds * 1000 / Double(steps), decimals: 2)) ms a step); "
                            + "one job of \(Format.count(steps)) tasks: \(Format.fixed(tasksSeconds, decimals: 2)) s")
                    print(verdict.line)
                }
            } catch {
                await bench.stop()
                throw error
            }
        }
    }
}
