import ArgumentParser
import DroverClient
import DroverProtocol
import Foundation
import Logging
import ZKRecipes
import ZooKeeper
import ZooKeeperServers

/// `drover tour`: the scheduler doing its job on a real ZooKeeper, narrated — what `make run` shows.
struct Tour: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the scheduler working: a local cluster runs each kind of job, then loses its leader and an executor to kill -9.",
        discussion: """
            Starts two managers and three executors as separate processes against the ZooKeeper given \
            (under its own path, /drover-tour-<random>, deleted at the end), and goes through: a one-off \
            command and its output, a finite job, retries with back-off, a schedule, a bulk submit, kill -9 \
            of the leading manager during a burst, and kill -9 of an executor in the middle of a task. \
            Everything it starts stops when it ends. For a cluster that stays up: drover dev.
            """)

    @OptionGroup var zookeeper: ZooKeeperOptions
    @Option(help: "Jobs in the bulk submit.")
    var bulk: Int = 1_000

    func validate() throws {
        guard (1...100_000).contains(bulk) else { throw ValidationError("--bulk must be 1 to 100000") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .error
            return handler
        }
        applyCLibraryLogLevel()
        let hosts = zookeeper.resolvedConnectionString.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
        let base = "/drover-tour-\(UUID().uuidString.prefix(8).lowercased())"
        let admin: ZooKeeperClient
        do {
            admin = try await ZooKeeperClient.connect(to: hosts, connectTimeout: .seconds(zookeeper.connectTimeout))
        } catch let error as ZooKeeperError {
            throw ExitMessage(error.message)
        }
        try await admin.createPath(base)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("drover-tour-\(getpid())")
        let cluster = TourCluster(zk: hosts + base, directory: directory)
        do {
            try await tour(cluster)
        } catch {
            await cluster.stop()
            try? await admin.deleteRecursively(base)
            await admin.close()
            throw error
        }
        await cluster.stop()
        try await admin.deleteRecursively(base)
        await admin.close()
        try? FileManager.default.removeItem(at: directory)
    }

    private func tour(_ cluster: TourCluster) async throws {
        let clock = ContinuousClock()
        let started = clock.now
        step("A cluster: 2 managers and 3 executors, each its own process, on ZooKeeper at \(cluster.zk)")
        for id in ["m1", "m2"] { try cluster.start(manager: id) }
        for id in ["e1", "e2", "e3"] { try cluster.start(executor: id) }
        let zk = try await ZooKeeperClient.connect(to: cluster.zk)
        let client = DroverClient(zookeeper: zk)
        defer { Task { await zk.close() } }
        for id in ["e1", "e2", "e3"] {
            for try await update in zk.dataUpdates(of: client.layout.executorAlive(id)) {
                if case .present = update { break }
            }
        }
        let election = LeaderElection(client: zk, path: client.layout.election, participantID: "drover-tour")
        var leader: String? = nil
        for try await _ in zk.childrenUpdates(of: client.layout.election) {
            leader = try await election.currentLeader()
            if leader != nil { break }
        }
        detail("\(leader ?? "?") leads, the other stands by; executors e1, e2, e3 registered with 4 slots each")

        step("A one-off command:  drover submit -- sh -c 'echo hello from $(hostname)'")
        var begin = clock.now
        let hello = try await client.submit(Self.shell("echo hello from $(hostname)"))
        let helloRecord = try await final(client, hello)
        let ran = helloRecord.history.last?.executor ?? "?"
        detail("\(helloRecord.state.rawValue) on \(ran) \(format(clock.now - begin)) after the submit; its output:")
        for line in cluster.output(executor: ran, job: hello, run: 1) { detail("  \(line)") }

        step("A finite job: the same command 3 times in a row  (--count 3)")
        begin = clock.now
        let finite = try await client.submit(JobSpec(method: "shell", arguments: Self.command("date +%T.%N"), kind: .finite, count: 3))
        let finiteRecord = try await final(client, finite)
        detail("runs \(finiteRecord.history.map { "\($0.run) on \($0.executor)" }.joined(separator: ", ")): \(finiteRecord.state.rawValue) in \(format(clock.now - begin))")

        step("Retries with back-off: a command that fails twice, then works  (--retry 3 --retry-delay 1s)")
        let counter = cluster.directory.appendingPathComponent("tries").path
        begin = clock.now
        let flaky = try await client.submit(
            JobSpec(
                method: "shell", arguments: Self.command("n=$(cat \(counter) 2>/dev/null || echo 0); n=$((n+1)); echo $n > \(counter); [ $n -ge 3 ]"),
                retry: RetryPolicy(maxAttempts: 3, initialDelaySeconds: 1)))
        let flakyRecord = try await final(client, flaky)
        detail(
            flakyRecord.history.map { "attempt \($0.attempt ?? 1) \($0.outcome.rawValue)" + ($0.error.map { " (\($0))" } ?? "") }.joined(separator: "; ")
                + " — \(format(clock.now - begin)) in all, the waits doubling (1 s, 2 s)")

        step("A schedule: every 2 seconds on a fixed grid  (--every 2s), stopped after 3 runs")
        let scheduled = try await client.submit(
            JobSpec(method: "sample.echo", kind: .infinite, schedule: Schedule(reference: Date(), interval: .seconds(2))))
        for try await record in client.updates(scheduled) where record.runsEnded >= 3 { break }
        try await client.stop(scheduled)
        let scheduledRecord = try await final(client, scheduled)
        let first = scheduledRecord.history.first?.startedAt ?? 0
        detail(
            "runs started at " + scheduledRecord.history.prefix(3).map { String(format: "+%.1f s", Double(($0.startedAt ?? first) - first) / 1000) }
                .joined(separator: ", ") + "; then stopped (\(scheduledRecord.state.rawValue))")

        step("\(bulk) jobs in one bulk submit (one ZooKeeper write per 100)")
        begin = clock.now
        let ids = try await client.submit((0..<bulk).map { JobSpec(method: "sample.echo", arguments: ["n": .number(Double($0))]) })
        let submittedIn = clock.now - begin
        var perExecutor: [String: Int] = [:]
        for id in ids {
            let record = try await final(client, id)
            guard record.state == .succeeded else { throw ExitMessage("tour: job \(id) ended \(record.state.rawValue)") }
            perExecutor[record.history.last?.executor ?? "?", default: 0] += 1
        }
        let took = clock.now - begin
        detail(
            "submitted in \(format(submittedIn)); all \(bulk) succeeded in \(format(took)) (\(Int(Double(bulk) / took.seconds)) jobs/s), "
                + "on " + perExecutor.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))

        guard let oldLeader = try await election.currentLeader() else { throw ExitMessage("tour: no manager leads") }
        step("kill -9 the leading manager (\(oldLeader)) while 300 jobs are on their way")
        let burst = try await client.submit((0..<300).map { JobSpec(method: "sample.sleep", arguments: ["seconds": .number(0.2), "n": .number(Double($0))]) })
        await cluster.kill(oldLeader)
        begin = clock.now
        var newLeader: String? = nil
        for try await _ in zk.childrenUpdates(of: client.layout.election) {
            newLeader = try await election.currentLeader()
            if let newLeader, newLeader != oldLeader { break }
        }
        let takeover = clock.now - begin
        var succeeded = 0
        for id in burst where try await final(client, id).state == .succeeded { succeeded += 1 }
        detail(
            "\(newLeader ?? "?") took over \(format(takeover)) later (the dead leader's session had to expire); "
                + "\(succeeded) of 300 succeeded, \(300 - succeeded) lost")
        try cluster.start(manager: oldLeader)

        step("kill -9 an executor in the middle of a 4-second task")
        let long = try await client.submit(JobSpec(method: "sample.sleep", arguments: ["seconds": 4]))
        var victim = "?"
        for try await record in client.updates(long) where record.state == .running {
            victim = record.executor ?? "?"
            break
        }
        try await Task.sleep(for: .seconds(1))
        await cluster.kill(victim)
        begin = clock.now
        let longRecord = try await final(client, long)
        detail(
            "\(victim) died 1 s in; once its session expired and the grace period passed, the task ran again on "
                + "\(longRecord.history.last?.executor ?? "?"): \(longRecord.state.rawValue), \(format(clock.now - begin)) after the kill")

        step("Done in \(format(clock.now - started)). Everything the tour started stops now.")
        detail("For a cluster that stays up: .build/debug/drover dev  (then drover submit / jobs / logs in another terminal)")
    }

    private static func command(_ script: String) -> JSONValue { ["command": .array(["sh", "-c", .string(script)])] }
    private static func shell(_ script: String) -> JobSpec { JobSpec(method: "shell", arguments: command(script)) }

    private func final(_ client: DroverClient, _ id: String) async throws -> JobRecord {
        for try await record in client.updates(id) where record.state.isFinal { return record }
        return try await client.status(id)
    }

    private func step(_ text: String) { print("==> \(text)") }
    private func detail(_ text: String) { print("    \(text)") }
    private func format(_ duration: Duration) -> String {
        let ms = duration.seconds * 1000
        return ms >= 1000 ? String(format: "%.1f s", ms / 1000) : String(format: "%.0f ms", ms)
    }
}

/// The tour's daemons: separate `drover` processes that exit with the tour.
final class TourCluster: @unchecked Sendable {
    let zk: String
    let directory: URL
    private var processes: [String: ChildProcess] = [:]
    private let lock = NSLock()

    init(zk: String, directory: URL) {
        self.zk = zk
        self.directory = directory
    }

    private var executable: String { URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path }

    func start(manager id: String) throws {
        try launch(id, ["manager", "--zk", zk, "--id", id, "--session-timeout", "2", "--grace", "2"])
    }

    func start(executor id: String) throws {
        try launch(id, [
            "executor", "--zk", zk, "--id", id, "--slots", "4", "--session-timeout", "2",
            "--output-dir", directory.appendingPathComponent(id).path, "--http", "127.0.0.1:0",
        ])
    }

    private func launch(_ id: String, _ arguments: [String]) throws {
        let process = try ChildProcess.launch(executable, arguments, name: "drover-tour-\(id)", environment: ["DROVER_EXIT_WITH_PARENT": "1"])
        lock.withLock { processes[id] = process }
    }

    func kill(_ id: String) async {
        await lock.withLock { processes[id] }?.crash()
    }

    func stop() async {
        for process in lock.withLock({ Array(processes.values) }) { await process.crash() }
    }

    /// What the shell method wrote to standard output for a run.
    func output(executor: String, job: String, run: Int) -> [String] {
        let path = directory.appendingPathComponent("\(executor)/\(job)/\(run).log").path
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            line.range(of: "stdout| ").map { String(line[$0.upperBound...]) }
        }
    }
}
