import ArgumentParser
import Foundation
import UnixSignals
import ZooKeeperServers

/// `drover dev`: a whole local cluster in one command, for trying Drover.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run a local cluster: ZooKeeper, two managers and N executors, until Ctrl-C.",
        discussion: """
            Starts ZooKeeper on free ports in a temporary directory (Deploy/zk-ensemble), two managers \
            (one leads) and N executors with the shell and sample methods, prints where everything is, \
            and stays in the foreground. Ctrl-C stops everything it started. Run from the repository.
            """)

    @Option(help: "Executors to start (e1, e2, ...).")
    var executors: Int = 3
    @Option(help: "ZooKeeper servers: 1 (standalone) or 3 (an ensemble).")
    var nodes: Int = 1
    @Option(help: "Seconds an executor may stay dead before its tasks move.")
    var grace: Double = 5

    func validate() throws {
        guard (1...16).contains(executors) else { throw ValidationError("--executors must be 1 to 16") }
        guard nodes == 1 || nodes == 3 else { throw ValidationError("--nodes must be 1 or 3") }
    }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        FileHandle.standardError.write(Data("starting ZooKeeper (\(nodes) node(s))...\n".utf8))
        let ensemble = try await LocalEnsemble.start(nodes: nodes)
        let zk = ensemble.connectionString
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        var processes: [(String, ChildProcess)] = []
        // The daemons exit when this command is gone, however it ends.
        func launch(_ id: String, _ arguments: [String]) throws -> ChildProcess {
            try ChildProcess.launch(executable, arguments, name: "drover-dev-\(id)", environment: ["DROVER_EXIT_WITH_PARENT": "1", "DROVER_PARENT_PID": String(getpid())])
        }
        for id in ["m1", "m2"] {
            processes.append((id, try launch(id, ["manager", "--zk", zk, "--id", id, "--grace", "\(grace)"])))
        }
        for index in 1...executors {
            let id = "e\(index)"
            let output = ensemble.directory.appendingPathComponent("output/\(id)").path
            processes.append(
                (id, try launch(id, ["executor", "--zk", zk, "--id", id, "--slots", "4", "--unit-slots", "4", "--output-dir", output, "--http", "127.0.0.1:0"])))
        }
        // Written at once, not buffered: the next thing this command does is wait for Ctrl-C.
        FileHandle.standardOutput.write(Data("""
            Drover is running locally.
              ZooKeeper   \(zk)   (data in \(ensemble.directory.path))
              managers    m1, m2 (one leads; kill it and the other takes over)
              executors   \(processes.dropFirst(2).map(\.0).joined(separator: ", "))   (task output in \(ensemble.directory.path)/output/<executor>/)
              logs        \(processes.map { "\($0.0): \($0.1.logPath)" }.joined(separator: "\n              "))

            In another terminal:
              export DROVER_ZK=\(zk)
              drover submit -- bash -c 'for i in 1 2 3; do echo step $i; sleep 1; done'
              drover jobs
              drover executors

            Ctrl-C stops everything.

            """.utf8))
        for await _ in signals { break }
        FileHandle.standardError.write(Data("\nstopping...\n".utf8))
        for (_, process) in processes { process.signal(SIGTERM) }
        for (_, process) in processes { await process.wait() }
        await ensemble.stop()
        FileHandle.standardError.write(Data("stopped.\n".utf8))
    }
}
