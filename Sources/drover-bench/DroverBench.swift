import ArgumentParser

/// `drover-bench`: measurements of Drover and of the ZooKeeper it runs on.
///
/// Every subcommand takes the shared ``ConnectionOptions`` (`--zk`, `--json`); results go to
/// standard output, progress and errors to standard error.
@main
struct DroverBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drover-bench",
        abstract: "Benchmarks for Drover and the ZooKeeper it runs on.",
        discussion: """
            Results go to stdout (a table, or one JSON object with --json); progress and errors \
            go to stderr.
            """,
        subcommands: [ZK.self, Latency.self, Throughput.self, Recovery.self, Scale.self, Retention.self, Workflow.self, Units.self, Placement.self, ExecutorHost.self])
}
