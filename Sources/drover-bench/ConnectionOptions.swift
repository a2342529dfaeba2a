import ArgumentParser
import ZooKeeper

/// Options every `drover-bench` subcommand shares: which ZooKeeper to measure and how to print
/// the result.
struct ConnectionOptions: ParsableArguments {
    @Option(
        name: .customLong("zk"),
        help: ArgumentHelp(
            "The ZooKeeper servers to measure (required).",
            discussion: """
                Comma-separated host:port of every server of the ensemble, e.g. \
                127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183 (as printed by \
                'Deploy/zk-ensemble start'). The benchmark writes under /drover-bench/<random> and \
                deletes what it wrote.
                """,
            valueName: "host:port[,...]"))
    var zk: String

    @Flag(help: "Print one JSON object with the figures on stdout instead of a table.")
    var json = false

    @Option(help: ArgumentHelp("Seconds to wait for the first ZooKeeper session.", valueName: "seconds"))
    var connectTimeout: Double = 15

    func validate() throws {
        let hosts = zk.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let entries = hosts.split(separator: ",", omittingEmptySubsequences: false)
        guard !hosts.isEmpty else {
            throw ValidationError("--zk needs at least one host:port, e.g. --zk 127.0.0.1:2181")
        }
        for entry in entries {
            guard let colon = entry.lastIndex(of: ":"), colon != entry.startIndex,
                let port = Int(entry[entry.index(after: colon)...]), (1...65_535).contains(port)
            else {
                throw ValidationError("--zk: '\(entry)' is not host:port (e.g. 127.0.0.1:2181)")
            }
        }
        guard connectTimeout > 0 else {
            throw ValidationError("--connect-timeout must be more than 0 seconds")
        }
    }

    /// Connects to ``zk``. When that fails, explains why on standard error and exits with a
    /// non-zero status.
    func connect() async throws -> ZooKeeperClient {
        do {
            return try await ZooKeeperClient.connect(
                to: zk, sessionTimeout: .seconds(10), connectTimeout: .milliseconds(Int(connectTimeout * 1_000)))
        } catch let error as ZooKeeperError {
            StandardError.writeLine(error.message)
            throw ExitCode.failure
        }
    }
}
