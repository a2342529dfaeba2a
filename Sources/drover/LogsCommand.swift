import ArgumentParser
import DroverClient
import DroverExecutor
import DroverManager
import DroverOutput
import DroverProtocol
import Foundation
import NIOCore
import ZooKeeper

/// `drover logs JOB [--run N] [-f]`: a run's output, read from the executor that ran it.
struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a run's output (stdout and stderr with timestamps), read from its executor.",
        discussion: """
            The latest run by default. With -f, waits for the run to start if it has not, prints its \
            output as it is written, and ends when the run ends (it follows the run to another executor \
            if it moves). Output stays on the executor that ran the run, so it is readable while that \
            executor is up and its files are kept. Only the shell method writes output.
            """)

    @OptionGroup var zookeeper: ZooKeeperOptions
    @Argument(help: "The job id.") var job: String
    @Option(help: "The run number (default: the latest).") var run: Int?
    @Flag(name: .shortAndLong, help: "Follow the run's output until the run ends.") var follow = false
    @Option(help: "A file holding the executors' output token (default: $DROVER_HTTP_TOKEN_FILE), for executors started with one.")
    var httpTokenFile: String?
    @OptionGroup var outputTLS: OutputClientOptions

    /// How often the job and its executor are read again while waiting.
    static let pollInterval: Duration = .milliseconds(250)

    func run() async throws {
        try await withClient(zookeeper) { client in
            do {
                try await printOutput(client)
            } catch let failure as OutputClient.Failure {
                throw ExitMessage(failure.description)
            }
        }
    }

    private func printOutput(_ client: DroverClient) async throws {
        let token = try outputToken(file: httpTokenFile)
        var offset = 0
        var warnedLoopback = false
        var servingExecutor: String?
        // The run is chosen once: following a repeating job stays on the run it started with.
        var chosenRun = run
        while true {
            let record = try await client.status(job)
            if chosenRun == nil && record.runsStarted > 0 { chosenRun = record.runsStarted }
            let runNumber = chosenRun ?? 0
            let place = RunPlace(record, run: runNumber)
            guard case .on(let executor, let running) = place else {
                if case .notStarted = place, follow {
                    try await Task.sleep(for: Self.pollInterval)
                    continue
                }
                throw ExitMessage(place.explanation(job: job, run: runNumber, record: record))
            }
            if servingExecutor != executor {
                if servingExecutor != nil {
                    note("run \(runNumber) moved to executor \(executor): its output there follows")
                    offset = 0
                }
                servingExecutor = executor
            }
            guard let address = try await client.registration(of: executor)?.address else {
                if follow && running {
                    try await Task.sleep(for: Self.pollInterval)
                    continue
                }
                throw ExitMessage(
                    "executor \(executor) is not running, so run \(runNumber)'s output cannot be read now "
                        + "(it is kept in that executor's output directory)")
            }
            do {
                // The offset advances with each chunk printed: a retry after a broken connection
                // (the executor restarting) prints nothing twice.
                _ = try await OutputClient.fetch(
                    from: address, job: job, run: runNumber, offset: offset, follow: follow && running, token: token, tls: outputTLS.tls
                ) { buffer in
                    FileHandle.standardOutput.write(Data(buffer.readableBytesView))
                    offset += buffer.readableBytes
                }
            } catch OutputClient.Failure.notFound(let message) where !(follow && running) {
                throw ExitMessage("\(message.trimmingCharacters(in: .whitespacesAndNewlines)) (only the shell method writes output)")
            } catch OutputClient.Failure.unreachable(let address, let reason) where Self.isLoopback(address) && !(follow && running) {
                throw ExitMessage(
                    "cannot reach executor \(executor) at \(address) (\(reason)): it serves output on its own machine only — run drover logs there, "
                        + "or start the executor with --http 0.0.0.0:PORT and --http-token-file FILE")
            } catch let failure as OutputClient.Failure where follow && running && failure.mayPassWhileTheRunGoesOn {
                if case .unreachable(let address, _) = failure, Self.isLoopback(address), !warnedLoopback {
                    warnedLoopback = true
                    note(
                        "cannot reach executor \(executor) at \(address): it serves output on its own machine only (if this is another machine, "
                            + "run drover logs there); trying again while the run goes on")
                }
                // Not started on the executor yet, or the executor is restarting: the run goes on.
                try await Task.sleep(for: Self.pollInterval)
                continue
            }
            // Without -f, or for a run that had ended, that was all. A followed response ends when
            // the command ends; the loop reads once more after the job records the end.
            guard follow && running else { return }
            try await Task.sleep(for: Self.pollInterval)
        }
    }

    /// Whether an executor's address is on its own machine only (127.0.0.0/8, ::1, localhost).
    static func isLoopback(_ address: String) -> Bool {
        guard let host = try? OutputClient.parse(address).host else { return false }
        return host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    private func note(_ text: String) {
        FileHandle.standardError.write(Data("drover: \(text)\n".utf8))
    }
}


extension OutputClient.Failure {
    /// The run has not reached the executor's shell yet, or the executor is restarting.
    var mayPassWhileTheRunGoesOn: Bool {
        switch self {
        case .notFound, .unreachable: true
        case .server, .badAddress, .unauthorized, .tls: false
        }
    }
}

/// The output token from `file`, else from the file `$DROVER_HTTP_TOKEN_FILE` names; nil when
/// neither is given. The executor and `drover logs` read it the same way.
func outputToken(file: String?) throws -> String? {
    do {
        return try (file ?? Environment.value("DROVER_HTTP_TOKEN_FILE")).map(OutputClient.readToken(file:))
    } catch {
        throw ExitMessage("\(error)")
    }
}
