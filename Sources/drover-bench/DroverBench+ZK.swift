import ArgumentParser
import Foundation
import ZooKeeper

extension DroverBench {
    /// `drover-bench zk`: the raw limit of the ZooKeeper servers — what ZooKeeper itself can do
    /// on this machine, the ceiling every Drover figure is compared with.
    struct ZK: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "zk",
            abstract: "Measure raw ZooKeeper write throughput and latency (the physical limit).",
            discussion: """
                Against the servers given with --zk: async creates, sets and 2-op multis \
                (create+setData) with up to --in-flight requests outstanding, creates 100 to a multi \
                (as many creates outstanding), then the latency of \
                one create at a time and of one hop (a setData until a second session watching the \
                node has read it: one step of a chain of processes handing work on through \
                ZooKeeper), then async deletes of everything written (the clean-up, \
                also reported). Writes 3 x ops + latency-samples nodes of --payload bytes under \
                /drover-bench/<random>; the server holds them all in memory until the clean-up.
                """)

        @OptionGroup var connection: ConnectionOptions

        @Option(help: ArgumentHelp("Writes in each throughput phase.", valueName: "n"))
        var ops = 20_000

        @Option(help: ArgumentHelp("The most requests outstanding at once.", valueName: "n"))
        var inFlight = 1_000

        @Option(help: ArgumentHelp("Bytes of data in each node written.", valueName: "bytes"))
        var payload = 200

        @Option(help: ArgumentHelp("Creates timed one at a time for the latency figures.", valueName: "n"))
        var latencySamples = 2_000

        /// Two payloads per multi must fit in ZooKeeper's 1 MB request limit (jute.maxbuffer).
        static let largestPayload = 500_000

        func validate() throws {
            guard ops >= 1 else { throw ValidationError("--ops must be at least 1") }
            guard inFlight >= 1 else { throw ValidationError("--in-flight must be at least 1") }
            guard (0...Self.largestPayload).contains(payload) else {
                throw ValidationError(
                    "--payload must be 0...\(Self.largestPayload) bytes (a multi carries two, within ZooKeeper's 1 MB request limit)")
            }
            guard latencySamples >= 1 else { throw ValidationError("--latency-samples must be at least 1") }
        }

        func run() async throws {
            let client = try await connection.connect()
            let configuration = RawLimitBenchmark.Configuration(
                operations: ops, inFlight: inFlight, payloadBytes: payload, latencySamples: latencySamples)
            let reporter = ProgressReporter()
            let benchmark = RawLimitBenchmark(client: client, configuration: configuration) { reporter.report($0) }
            StandardError.writeLine(
                "drover-bench zk: \(Format.count(ops)) ops, \(Format.count(inFlight)) in flight, "
                    + "\(Format.count(payload))-byte payloads, under \(benchmark.root) at \(connection.zk)")
            let result: RawLimitBenchmark.Result
            do {
                result = try await benchmark.run()
            } catch {
                await client.close()
                StandardError.writeLine("error: \(error)")
                throw ExitCode.failure
            }
            await client.close()
            if connection.json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(result), as: UTF8.self))
            } else {
                print(Self.table(result))
            }
        }

        /// The human-readable report.
        static func table(_ result: RawLimitBenchmark.Result) -> String {
            var throughput = TextTable(["throughput", "ops", "seconds", "per second"])
            func row(_ label: String, _ count: Int, _ rate: Double) {
                let seconds = rate > 0 ? Double(count) / rate : 0
                throughput.append([label, Format.count(count), Format.fixed(seconds, decimals: 2), Format.count(Int(rate.rounded()))])
            }
            row("create", result.operations, result.createsPerSecond)
            row("set", result.operations, result.setsPerSecond)
            row("multi (\(result.multiOperations))", result.operations, result.multisPerSecond)
            row("create, \(result.batchSize) to a multi", result.operations, result.batchedCreatesPerSecond)
            row("delete (clean-up)", result.deletedNodes, result.deletesPerSecond)

            var latency = TextTable(["latency, one create at a time", "samples", "p50 ms", "p99 ms", "max ms"])
            latency.append([
                "create", Format.count(result.latencySamples), Format.fixed(result.createLatency.p50, decimals: 3),
                Format.fixed(result.createLatency.p99, decimals: 3), Format.fixed(result.createLatency.max, decimals: 3),
            ])
            latency.append([
                "write → a watcher has read it", Format.count(result.latencySamples), Format.fixed(result.hopLatency.p50, decimals: 3),
                Format.fixed(result.hopLatency.p99, decimals: 3), Format.fixed(result.hopLatency.max, decimals: 3),
            ])
            return """
                ZooKeeper raw limit at \(result.servers.joined(separator: ","))
                  \(Format.count(result.operations)) ops per phase, up to \(Format.count(result.inFlight)) in flight, \
                \(Format.count(result.payloadBytes))-byte payloads

                \(throughput.render())

                \(latency.render())
                """
        }
    }
}
