import ArgumentParser

/// The `drover` command.
@main
struct Drover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drover",
        abstract: "Drover: a distributed job scheduler coordinated through ZooKeeper.",
        discussion: """
            Start a local ZooKeeper ensemble with `Deploy/zk-ensemble start --nodes 3` (or `make run`),
            then point commands at it with --zk or the DROVER_ZK environment variable.
            """,
        subcommands: [
            Submit.self, Jobs.self, Status.self, ResultCommand.self, Cancel.self, Stop.self, Executors.self, Drain.self,
            ManagerCommand.self, ExecutorCommand.self, Demo.self,
        ]
    )
}

/// Where ZooKeeper is: shared by every subcommand.
struct ZooKeeperOptions: ParsableArguments {
    @Option(
        name: .customLong("zk"),
        help: ArgumentHelp(
            "ZooKeeper connection string host:port[,host:port...][/chroot] (default: $DROVER_ZK, else 127.0.0.1:2181).",
            valueName: "hosts"))
    var connectionString: String?

    @Option(help: "Seconds to wait for ZooKeeper before giving up.")
    var connectTimeout: Double = 10

    var resolvedConnectionString: String {
        connectionString ?? Environment.value("DROVER_ZK") ?? "127.0.0.1:2181"
    }

    func validate() throws {
        guard connectTimeout > 0 else { throw ValidationError("--connect-timeout must be positive") }
        if let connectionString, connectionString.isEmpty || connectionString.contains(" ") {
            throw ValidationError("--zk must look like host:port[,host:port...][/chroot]")
        }
    }
}
