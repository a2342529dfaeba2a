import ArgumentParser
import DroverClient
import DroverExecutor
import DroverManager
import DroverMetrics
import DroverProtocol
import Foundation
import Logging
import ZKRecipes
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

extension DroverBench {
    /// `drover-bench scale`: many executors, and a deep backlog.
    struct Scale: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Placement with many executors and with a deep backlog; manager memory; ZooKeeper's heap, largest znode and directory.",
            discussion: """
                Executors: --executors executors (--executor-slots each) in --hosts processes, each \
                executor with its own ZooKeeper session; time to register, then --tasks no-op jobs: \
                tasks run per second, and the manager's memory.
                Backlog: 8 executors run --tasks jobs on an empty queue (the reference rate) and \
                stop; --backlog jobs are submitted in bulk while no executor can take them and \
                the leader files them as waiting; then the figures of ZooKeeper (znodes, data, \
                server memory, the largest directory, the largest znode among the executors' \
                states and --sample-records job records) and the manager's memory; then the same \
                executors come back and run --tasks jobs off the front of the backlog. \
                The full run (1,000,000 jobs) needs about 1.3 KB of heap per job on each server: \
                --zk-heap 2g, and tens of minutes.
                """)
        @OptionGroup var cluster: ClusterOptions
        @Option(help: "Executors in the first part.") var executors = 1_000
        @Option(help: "Processes hosting them.") var hosts = 4
        @Option(help: "Slots of each of those executors.") var executorSlots = 4
        @Option(help: "Jobs timed for each placement rate.") var tasks = 20_000
        @Option(help: "Jobs in the backlog.") var backlog = 1_000_000
        @Option(help: "Executors that run the backlog (and the empty-queue reference).") var backlogExecutors = 8
        @Option(help: "Slots of each of those executors.") var backlogSlots = 16
        @Option(help: "Job records whose size is sampled for the largest znode.") var sampleRecords = 1_000

        func validate() throws {
            guard executors > 0, hosts > 0, tasks > 0, backlog >= 0, backlogExecutors > 0 else {
                throw ValidationError("--executors, --hosts, --tasks and --backlog-executors must be positive")
            }
            guard cluster.zk == nil else { return }
            let needed = Double(backlog) * 1_300 + 200 * 1_048_576
            guard let heap = parseSize(cluster.heap()), Double(heap) >= needed else {
                throw ValidationError(
                    "a backlog of \(Format.count(backlog)) jobs needs about \(Int((needed / 1_048_576).rounded(.up))) MB of heap on each ZooKeeper server: "
                        + "pass --zk-heap \(Int((needed / 1_073_741_824).rounded(.up)))g (or a smaller --backlog)")
            }
        }

        func run() async throws {
            let bench = try await BenchCluster.start(cluster)
            let directory = NSTemporaryDirectory() + "drover-bench-scale-\(getpid())"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            do {
                let many = try await manyExecutors(bench, directory: directory)
                let deep = try await deepBacklog(bench, directory: directory)
                await bench.stop()
                let verdicts: [TargetVerdict] = [
                    .atLeast("scale-placement-at-depth", deep.rateAtDepth, limit: deep.rateEmpty, unit: "tasks/s", ratio: 0.8),
                    .atMost("scale-largest-znode", Double(deep.largestZnode.bytes), limit: 256 * 1024, unit: "bytes", ratio: 1),
                    .atMost("scale-largest-directory", Double(deep.largestDirectory.children), limit: 10_000, unit: "children", ratio: 1),
                ]
                if cluster.json {
                    struct Output: Encodable {
                        let executors: ManyExecutors
                        let backlog: DeepBacklog
                        let targets: [TargetVerdict]
                    }
                    try printJSON(Output(executors: many, backlog: deep, targets: verdicts))
                } else {
                    print(
                        """
                        \(Format.count(many.executors)) executors in \(hosts) processes: registered in \(Format.fixed(many.registrationSeconds, decimals: 1)) s; \
                        \(Format.count(many.tasks)) tasks at \(Format.count(Int(many.tasksPerSecond))) tasks/s
                        manager memory: \(many.managerMemory)

                        backlog of \(Format.count(deep.backlog)) jobs: submitted at \(Format.count(Int(deep.submitsPerSecond))) jobs/s, \
                        filed as waiting after \(Format.fixed(deep.filedSeconds, decimals: 0)) s
                        placement (\(backlogExecutors) executors, \(Format.count(tasks)) tasks): empty queue \(Format.count(Int(deep.rateEmpty))) tasks/s, \
                        at depth \(Format.count(Int(deep.rateAtDepth))) tasks/s
                        manager memory at depth: \(deep.managerMemory)
                        ZooKeeper: \(Format.count(deep.znodes)) znodes, \(mebibytes(deep.approximateDataBytes)) of data, \
                        largest server \(mebibytes(deep.largestServerResidentBytes)) resident
                        largest directory: \(deep.largestDirectory.path) (\(Format.count(deep.largestDirectory.children)) children)
                        largest znode seen: \(deep.largestZnode.path) (\(Format.count(deep.largestZnode.bytes)) bytes)

                        """)
                    for verdict in verdicts { print(verdict.line) }
                }
            } catch {
                await bench.stop()
                throw error
            }
        }

        struct ManyExecutors: Encodable {
            var executors: Int
            var registrationSeconds: Double
            var tasks: Int
            var tasksPerSecond: Double
            var managerMemory: ProcessMemory
        }

        struct DeepBacklog: Encodable {
            typealias Directory = BenchDirectory
            struct Znode: Encodable {
                var path: String
                var bytes: Int
            }
            var backlog: Int
            var submitsPerSecond: Double
            var filedSeconds: Double
            var rateEmpty: Double
            var rateAtDepth: Double
            var managerMemory: ProcessMemory
            var znodes: Int
            var approximateDataBytes: Int
            var largestServerResidentBytes: Int
            var largestDirectory: Directory
            var largestZnode: Znode
        }

        private func manyExecutors(_ bench: BenchCluster, directory: String) async throws -> ManyExecutors {
            let root = try await bench.makeRoot("scale-executors")
            try bench.startManager("m1", root: root)
            let zookeeper = try await ZooKeeperClient.connect(to: root, sessionTimeout: .seconds(30))
            let client = DroverClient(zookeeper: zookeeper)
            let clock = ContinuousClock()
            let started = clock.now
            let perHost = (executors + hosts - 1) / hosts
            var countFiles: [String] = []
            for host in 0..<hosts where host * perHost < executors {
                let file = directory + "/ran-x\(host)"
                countFiles.append(file)
                try bench.startExecutorHost(
                    "x\(host)", root: root, prefix: "x", first: host * perHost + 1, count: min(perHost, executors - host * perHost),
                    slots: executorSlots, labels: [], countFile: file)
            }
            StandardError.writeLine("\(Format.count(executors)) executors: registering")
            try await waitForRegistrations(zookeeper, client.layout, count: executors, within: .seconds(300))
            let registration = (clock.now - started).seconds
            StandardError.writeLine("  registered in \(Format.fixed(registration, decimals: 1)) s; running \(Format.count(tasks)) tasks")
            let rate = try await timeTasks(client, count: tasks, spec: JobSpec(method: "bench.noop"), countFiles: countFiles)
            let memory = ProcessMemory(pid: bench.process("m1")?.pid)
            await zookeeper.close()
            await bench.stopDaemons()
            return ManyExecutors(
                executors: executors, registrationSeconds: registration, tasks: tasks, tasksPerSecond: rate,
                managerMemory: memory)
        }

        private func deepBacklog(_ bench: BenchCluster, directory: String) async throws -> DeepBacklog {
            let root = try await bench.makeRoot("scale-backlog")
            try bench.startManager("m2", root: root)
            let zookeeper = try await ZooKeeperClient.connect(to: root, sessionTimeout: .seconds(30))
            let client = DroverClient(zookeeper: zookeeper)
            let clock = ContinuousClock()
            // Backlog jobs need the label only these executors have.
            let spec = JobSpec(method: "bench.noop", constraints: ["pool": "backlog"])
            func startExecutors(_ name: String) throws -> String {
                let file = directory + "/ran-\(name)"
                try bench.startExecutorHost(
                    name, root: root, prefix: "b", first: 1, count: backlogExecutors, slots: backlogSlots, labels: ["pool=backlog"],
                    countFile: file)
                return file
            }

            let first = try startExecutors("b-empty")
            try await waitForRegistrations(zookeeper, client.layout, count: backlogExecutors, within: .seconds(60))
            StandardError.writeLine("backlog: \(backlogExecutors) executors run \(Format.count(tasks)) tasks on an empty queue")
            let rateEmpty = try await timeTasks(client, count: tasks, spec: spec, countFiles: [first])
            await bench.kill("b-empty")
            try await waitForRegistrations(zookeeper, client.layout, count: 0, within: .seconds(60))

            StandardError.writeLine("backlog: submitting \(Format.count(backlog)) jobs while no executor can run them")
            let submitStart = clock.now
            let submitted = LockedValue(0)
            try await withThrowingTaskGroup(of: Void.self) { group in
                let lanes = 4
                for lane in 0..<lanes {
                    let share = backlog / lanes + (lane < backlog % lanes ? 1 : 0)
                    group.addTask {
                        var left = share
                        while left > 0 {
                            let batch = min(left, 1_000)
                            _ = try await client.submit(Array(repeating: spec, count: batch))
                            left -= batch
                            let total = submitted.update { $0 += batch; return $0 }
                            if total % 50_000 < batch { StandardError.writeLine("  \(Format.count(total)) submitted") }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let submitSeconds = (clock.now - submitStart).seconds
            let queue = DurableQueue(client: zookeeper, root: client.layout.queue)
            var lastReport = clock.now
            while try await queue.count() > 0 {
                if clock.now - lastReport > .seconds(10) {
                    StandardError.writeLine("  the leader is filing the backlog: \(Format.count(try await queue.count())) left on the queue")
                    lastReport = clock.now
                }
                try await Task.sleep(for: .milliseconds(500))
            }
            let filedSeconds = (clock.now - submitStart).seconds

            StandardError.writeLine("backlog: measuring ZooKeeper")
            let statistics = try await bench.zookeeperStatistics()
            let largestDirectory = try await BenchCluster.largestDirectory(zookeeper, client.layout)
            let largestZnode = try await self.largestZnode(zookeeper, client.layout)
            let memory = ProcessMemory(pid: bench.process("m2")?.pid)

            StandardError.writeLine("backlog: \(backlogExecutors) executors run \(Format.count(tasks)) tasks off the front of the backlog")
            let second = try startExecutors("b-depth")
            try await waitForRegistrations(zookeeper, client.layout, count: backlogExecutors, within: .seconds(60))
            let rateAtDepth = try await timeRuns(count: tasks, countFiles: [second])
            await zookeeper.close()
            await bench.stopDaemons()
            return DeepBacklog(
                backlog: backlog, submitsPerSecond: Double(backlog) / submitSeconds, filedSeconds: filedSeconds, rateEmpty: rateEmpty,
                rateAtDepth: rateAtDepth, managerMemory: memory,
                znodes: statistics.znodes, approximateDataBytes: statistics.dataBytes,
                largestServerResidentBytes: bench.zookeeperPIDs.map { ProcessMemory(pid: $0).residentBytes }.max() ?? 0,
                largestDirectory: largestDirectory, largestZnode: largestZnode)
        }

        /// Submits `count` jobs in bulk and returns tasks run per second, from the first submit
        /// to the last run counted by the executor hosts.
        private func timeTasks(_ client: DroverClient, count: Int, spec: JobSpec, countFiles: [String]) async throws -> Double {
            let before = ranSoFar(countFiles)
            let clock = ContinuousClock()
            let start = clock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await client.submit(Array(repeating: spec, count: count)) }
                try await group.waitForAll()
            }
            try await waitForRuns(before + count, countFiles: countFiles)
            return Double(count) / (clock.now - start).seconds
        }

        /// Tasks run per second until `count` more have run (the jobs are already waiting).
        private func timeRuns(count: Int, countFiles: [String]) async throws -> Double {
            let clock = ContinuousClock()
            let start = clock.now
            try await waitForRuns(count, countFiles: countFiles)
            return Double(count) / (clock.now - start).seconds
        }

        private func waitForRuns(_ total: Int, countFiles: [String]) async throws {
            let clock = ContinuousClock()
            var lastReport = clock.now
            var lastCount = 0
            var lastProgress = clock.now
            while true {
                let ran = ranSoFar(countFiles)
                if ran >= total { return }
                if ran > lastCount {
                    lastCount = ran
                    lastProgress = clock.now
                } else if clock.now - lastProgress > .seconds(120) {
                    throw ValidationError("no task ran for 120 s (\(Format.count(ran)) of \(Format.count(total))): see the daemons' logs in \(NSTemporaryDirectory())")
                }
                if clock.now - lastReport > .seconds(5) {
                    StandardError.writeLine("  \(Format.count(ran))/\(Format.count(total)) ran")
                    lastReport = clock.now
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }

        /// The largest znode among every executor's assignments, progress and registration, the queue's nodes
        /// and `sampleRecords` job records.
        private func largestZnode(_ zookeeper: ZooKeeperClient, _ layout: Layout) async throws -> DeepBacklog.Znode {
            var paths: [String] = [layout.queue]
            for id in (try? await zookeeper.children(layout.executors).names) ?? [] {
                paths += [layout.executorAssignments(id), layout.executorProgress(id), layout.executorAlive(id)]
            }
            var sampled = 0
            for shard in 0..<Layout.jobShards where sampled < sampleRecords {
                let names = (try? await zookeeper.children(layout.jobShard(shard)).names) ?? []
                for name in names.prefix(max(1, sampleRecords / Layout.jobShards)) {
                    paths.append(layout.job(name))
                    sampled += 1
                }
            }
            return try await withThrowingTaskGroup(of: DeepBacklog.Znode.self) { group in
                for path in paths {
                    group.addTask { DeepBacklog.Znode(path: path, bytes: (try? await zookeeper.exists(path))?.map { Int($0.dataLength) } ?? 0) }
                }
                return try await group.reduce(DeepBacklog.Znode(path: "-", bytes: 0)) { $1.bytes > $0.bytes ? $1 : $0 }
            }
        }
    }

    /// `drover-bench executor-host`: many executors in one process, for `scale`.
    struct ExecutorHost: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "executor-host",
            abstract: "Runs many executors in this process, each with its own ZooKeeper session (used by scale).",
            discussion: """
                Each executor runs the method bench.noop (and, with --unit-slots, work units of sample.echo specs); the number of \
                tasks and units run so far is written to --count-file, and the unit segment writes that lost their \
                compare-and-set to <count-file>.conflicts.
                """,
            shouldDisplay: false)
        @Option(help: "ZooKeeper servers and chroot.") var zk: String
        @Option(help: "Executor ids are <prefix><n>.") var prefix = "x"
        @Option(help: "The first n.") var first = 1
        @Option(help: "Executors to run.") var count = 250
        @Option(help: "Slots of each.") var slots = 4
        @Option(help: "A label key=value of every executor (repeatable).") var label: [String] = []
        @Option(help: "Where the count of tasks run is kept.") var countFile: String
        @Option(help: "Unit slots of each (0: no work units).") var unitSlots = 0

        func run() async throws {
            MetricsServer.bootstrap()  // the executors' conflict counter, read back below
            let ran = LockedValue(0)
            let labels = Dictionary(label.map { item in
                let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
                return (parts[0], parts.count > 1 ? parts[1] : "")
            }, uniquingKeysWith: { _, last in last })
            let handlers: [String: TaskHandler] = [
                "bench.noop": { _ in
                    ran.update { $0 += 1 }
                    return nil
                },
                "sample.echo": { _ in
                    ran.update { $0 += 1 }
                    return nil
                },
            ]
            var logger = Logger(label: "drover.executor-host")
            logger.logLevel = .warning
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in first..<(first + count) {
                    group.addTask { [zk, prefix, slots, logger] in
                        let client = try await ZooKeeperClient.connect(to: zk, sessionTimeout: .seconds(10))
                        let executor = try Executor(
                            client: client,
                            configuration: .init(
                                id: "\(prefix)\(index)", capacity: Resources(cpu: 1, memoryMB: 1024, slots: slots), labels: labels, unitSlots: unitSlots),
                            handlers: handlers, logger: logger)
                        try await executor.run()
                    }
                }
                group.addTask { [countFile] in
                    var written = -1
                    var conflictsWritten = -1
                    var ticks = 0
                    while true {
                        let value = ran.value
                        if value != written {
                            try Data("\(value)\n".utf8).write(to: URL(fileURLWithPath: countFile), options: .atomic)
                            written = value
                        }
                        // The registry's whole exposition is costly: read it twice a second.
                        let conflicts = ticks % 25 == 0 ? Self.writeConflicts() : conflictsWritten
                        ticks += 1
                        if conflicts != conflictsWritten {
                            try Data("\(conflicts)\n".utf8).write(to: URL(fileURLWithPath: countFile + ".conflicts"), options: .atomic)
                            conflictsWritten = conflicts
                        }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        }

        /// `drover_unit_write_conflicts_total` of this process, from its Prometheus registry.
        static func writeConflicts() -> Int {
            let line = MetricsServer.registry.emitToString().split(separator: "\n").first { $0.hasPrefix("drover_unit_write_conflicts_total ") }
            return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? 0
        }
    }
}

func mebibytes(_ bytes: Int) -> String { "\(Format.fixed(Double(bytes) / 1_048_576, decimals: 0)) MiB" }

/// "256m", "3g", "1024k" or bytes.
func parseSize(_ text: String) -> Int? {
    let units: [Character: Int] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30]
    guard let last = text.lowercased().last else { return nil }
    if let unit = units[last] { return Int(text.dropLast()).map { $0 * unit } }
    return Int(text)
}

/// Sends a four-letter word (`mntr`, `srvr`) to `server` (host:port) and returns the answer.
func fourLetterWord(_ word: String, server: String) throws -> String {
    let parts = server.split(separator: ":")
    guard parts.count == 2, let port = UInt16(parts[1]) else { throw ValidationError("not host:port: \(server)") }
    let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socketFD >= 0 else { throw ValidationError("socket: \(String(cString: strerror(errno)))") }
    defer { close(socketFD) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    inet_pton(AF_INET, String(parts[0]), &address.sin_addr)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw ValidationError("cannot connect to \(server): \(String(cString: strerror(errno)))") }
    _ = word.utf8CString.withUnsafeBufferPointer { send(socketFD, $0.baseAddress, word.utf8.count, 0) }
    var answer: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let read = recv(socketFD, &buffer, buffer.count, 0)
        if read <= 0 { break }
        answer += buffer[0..<read]
    }
    return String(decoding: answer, as: UTF8.self)
}
