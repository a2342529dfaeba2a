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
            Starts two managers and three executors as separate processes against the ZooKeeper given, \
            and goes through: a one-off command and its output, a finite job, an infinite one, retries with \
            back-off, a schedule, a bulk submit, kill -9 of the leading manager during a burst, and kill -9 \
            of an executor in the middle of a task that checkpoints (restarted, it resumes from its checkpoint).

            Without --keep it works under its own path (/drover-tour-<random>), and deletes it and stops \
            everything it started at the end. With --keep (what `make run` does) it works under /drover and \
            leaves the managers and executors running, their pids in --state-dir (`make stop` stops them).
            """)

    @OptionGroup var zookeeper: ZooKeeperOptions
    @Option(help: "Jobs in the bulk submit.")
    var bulk: Int = 1_000
    @Flag(help: "Leave the cluster running afterwards, under /drover (its pids in --state-dir).")
    var keep = false
    @Option(help: "With --keep: where the daemons' pid files and task output go.")
    var stateDir: String = ".run/cluster"

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
        let base = keep ? "" : "/drover-tour-\(UUID().uuidString.prefix(8).lowercased())"
        let admin: ZooKeeperClient
        do {
            admin = try await ZooKeeperClient.connect(to: hosts, connectTimeout: .seconds(zookeeper.connectTimeout))
        } catch let error as ZooKeeperError {
            throw ExitMessage(error.message)
        }
        if !base.isEmpty { try await admin.createPath(base) }
        let directory =
            keep
            ? URL(fileURLWithPath: stateDir, isDirectory: true).standardizedFileURL
            : FileManager.default.temporaryDirectory.appendingPathComponent("drover-tour-\(getpid())")
        let cluster = TourCluster(zk: hosts + base, directory: directory, keep: keep)
        if keep {
            await cluster.stopLeftRunning()
            // The kept managers serve the dashboard on 8080 and 8081: a manager that cannot listen
            // would exit, and the tour would wait for it.
            for port in [8080, 8081] where !TourCluster.isFree(port: port) {
                await admin.close()
                throw ExitMessage("port \(port) on 127.0.0.1 is in use (the kept managers serve the dashboard on 8080 and 8081): stop what listens there, then run again")
            }
        }
        do {
            try await tour(cluster)
        } catch {
            await cluster.stop()
            if !base.isEmpty { try? await admin.deleteRecursively(base) }
            await admin.close()
            throw error
        }
        if keep {
            await admin.close()
            print(
                """

                The cluster keeps running: managers m1, m2 and executors e1, e2, e3 (pids in \(directory.path); logs:
                  \(cluster.logPaths().sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: "\n  "))
                The dashboard: http://127.0.0.1:8080/ (m1; m2 serves it on 8081), the API under /v1 (docs/openapi.yaml).
                Try it:
                  export DROVER_ZK=\(hosts)
                  .build/debug/drover jobs; .build/debug/drover executors; .build/debug/drover submit -- echo hello
                  make stop    # stops the daemons and the ensemble
                """)
            return
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
        let helloRecord = try await client.finalRecord(hello)
        let ran = helloRecord.history.last?.executor ?? "?"
        detail("\(helloRecord.state.rawValue) on \(ran) \(format(clock.now - begin)) after the submit; its output:")
        for line in cluster.output(executor: ran, job: hello, run: 1) { detail("  \(line)") }

        step("A finite job: the same command 3 times in a row  (--count 3)")
        begin = clock.now
        let finite = try await client.submit(JobSpec(method: "shell", arguments: Self.command("date +%T.%N"), kind: .finite, count: 3))
        let finiteRecord = try await client.finalRecord(finite)
        detail("runs \(finiteRecord.history.map { "\($0.run) on \($0.executor)" }.joined(separator: ", ")): \(finiteRecord.state.rawValue) in \(format(clock.now - begin))")

        step("An infinite job: runs again each time it ends, until stopped  (--forever), stopped after 3 runs")
        begin = clock.now
        let forever = try await client.submit(JobSpec(method: "sample.sleep", arguments: ["seconds": 0.2], kind: .infinite))
        for try await record in client.updates(forever) where record.runsEnded >= 3 { break }
        try await client.stop(forever)
        let foreverRecord = try await client.finalRecord(forever)
        detail("\(foreverRecord.runsEnded) runs in \(format(clock.now - begin)), then \(foreverRecord.state.rawValue)")

        step("Retries with back-off: a command that fails twice, then works  (--retry 3 --retry-delay 1s)")
        let counter = cluster.directory.appendingPathComponent("tries").path
        begin = clock.now
        let flaky = try await client.submit(
            JobSpec(
                method: "shell", arguments: Self.command("n=$(cat \(counter) 2>/dev/null || echo 0); n=$((n+1)); echo $n > \(counter); [ $n -ge 3 ]"),
                retry: RetryPolicy(maxAttempts: 3, initialDelaySeconds: 1)))
        let flakyRecord = try await client.finalRecord(flaky)
        detail(
            flakyRecord.history.map { "attempt \($0.attempt ?? 1) \($0.outcome.rawValue)" + ($0.error.map { " (\($0))" } ?? "") }.joined(separator: "; ")
                + " — \(format(clock.now - begin)) in all, the waits doubling (1 s, 2 s)")

        step("A schedule: every 2 seconds on a fixed grid  (--every 2s), stopped after 3 runs")
        let reference = Date()
        let referenceMilliseconds = Timestamp((reference.timeIntervalSince1970 * 1000).rounded())
        let scheduled = try await client.submit(
            JobSpec(method: "sample.echo", kind: .infinite, schedule: Schedule(reference: reference, interval: .seconds(2))))
        for try await record in client.updates(scheduled) where record.runsEnded >= 3 { break }
        try await client.stop(scheduled)
        let scheduledRecord = try await client.finalRecord(scheduled)
        // Each start against its time on the grid (reference + k × 2 s).
        let starts = scheduledRecord.history.prefix(3).compactMap(\.startedAt).map { $0 - referenceMilliseconds }
        let slots = starts.map { ($0 + 1_000) / 2_000 }
        let latest = zip(starts, slots).map { $0 - $1 * 2_000 }.max() ?? 0
        detail(
            "runs at " + slots.map { "+\($0 * 2) s" }.joined(separator: ", ") + " on the grid, each started within \(latest) ms of its time; "
                + "then \(scheduledRecord.state.rawValue)")

        step("\(bulk) jobs in one bulk submit (one ZooKeeper write per 100)")
        begin = clock.now
        let ids = try await client.submit((0..<bulk).map { JobSpec(method: "sample.echo", arguments: ["n": .number(Double($0))]) })
        let submittedIn = clock.now - begin
        var perExecutor: [String: Int] = [:]
        for id in ids {
            let record = try await client.finalRecord(id)
            guard record.state == .succeeded else { throw ExitMessage("tour: job \(id) ended \(record.state.rawValue)") }
            perExecutor[record.history.last?.executor ?? "?", default: 0] += 1
        }
        let took = clock.now - begin
        detail(
            "submitted in \(format(submittedIn)); all \(bulk) succeeded in \(format(took)) (\(Int(Double(bulk) / took.seconds)) jobs/s), "
                + "on " + perExecutor.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))

        step("A work spec of 10,000 small units, claimed in batches by the executors  (drover spec create; drover units add)")
        let units = client.workSpecs
        let specName = "tour-\(Timestamp.now())"
        let spec = WorkSpec(name: specName, method: "sample.echo", maxGetwork: 200, buckets: 8)
        try await units.create(spec)
        begin = clock.now
        let added = try await units.add((0..<10_000).map { WorkUnit(key: "unit-\($0)", data: ["n": .number(Double($0))]) }, to: specName)
        let addedIn = clock.now - begin
        // Every bucket's index says when its units have all ended (watched, not polled).
        var finished = 0
        for bucket in 0..<spec.buckets {
            for try await update in zk.dataUpdates(of: client.layout.specBucket(specName, bucket)) {
                guard case .present(let node) = update, let counts = try? Codec.decode(UnitBucket.self, node.data).counts else { continue }
                if counts.unfinished == 0 {
                    finished += counts.finished
                    break
                }
            }
        }
        let unitsTook = clock.now - begin
        detail(
            "added in \(format(addedIn)) (\(added.writes) ZooKeeper writes); \(finished) of 10000 finished \(format(unitsTook)) after the add "
                + "(\(Int(10_000 / unitsTook.seconds)) units/s); `drover spec status \(specName)` shows the counts")

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
        for id in burst where try await client.finalRecord(id).state == .succeeded { succeeded += 1 }
        detail(
            "\(newLeader ?? "?") took over \(format(takeover)) later (the dead leader's session had to expire); "
                + "\(succeeded) of 300 succeeded, \(300 - succeeded) lost")
        try cluster.start(manager: oldLeader)

        step("kill -9 an executor in the middle of a task that counts to 40 and checkpoints each step, then restart it")
        let long = try await client.submit(JobSpec(method: "sample.count", arguments: ["to": 40, "stepMilliseconds": 100]))
        var victim = "?"
        for try await record in client.updates(long) where record.state == .running {
            victim = record.executor ?? "?"
            break
        }
        try await Task.sleep(for: .milliseconds(1500))
        await cluster.kill(victim)
        detail("\(victim) killed 1.5 s into the count")
        try cluster.start(executor: victim)
        begin = clock.now
        let longRecord = try await client.finalRecord(long)
        let result = longRecord.history.last?.result
        detail(
            "restarted, \(longRecord.history.last?.executor ?? "?") took its task back and resumed from its checkpoint at "
                + "\(Int(result?["resumedAt"]?.numberValue ?? 0)) of 40 (attempt \(Int(result?["attempt"]?.numberValue ?? 0))): "
                + "\(longRecord.state.rawValue), \(format(clock.now - begin)) after the restart; nothing lost")

        step("Done in \(format(clock.now - started)).")
    }

    private static func command(_ script: String) -> JSONValue { ["command": .array(["sh", "-c", .string(script)])] }
    private static func shell(_ script: String) -> JobSpec { JobSpec(method: "shell", arguments: command(script)) }

}

/// The tour's daemons: separate `drover` processes that exit with the tour, or (`keep`) stay,
/// each with a pid file in `directory`.
final class TourCluster: @unchecked Sendable {
    let zk: String
    let directory: URL
    let keep: Bool
    private var processes: [String: ChildProcess] = [:]
    private let lock = NSLock()

    init(zk: String, directory: URL, keep: Bool) {
        self.zk = zk
        self.directory = directory
        self.keep = keep
    }

    /// Stops the daemons an earlier `--keep` run left (their ids would be taken).
    func stopLeftRunning() async {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for file in files where file.hasSuffix(".pid") {
            let path = directory.appendingPathComponent(file).path
            if let text = try? String(contentsOfFile: path, encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)),
                let command = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8), command.contains("drover")
            {
                Glibc.kill(pid, SIGKILL)
                // Until it is gone (its ports and its executor id free): not our child, so no wait(2);
                // a SIGKILL'd process is gone within milliseconds.
                var waited = 0
                while Glibc.kill(pid, 0) == 0 && waited < 500 {
                    usleep(10_000)
                    waited += 1
                }
            }
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    private var executable: String { URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path }

    /// With `keep`, m1 serves the API and the dashboard on 127.0.0.1:8080 and m2 on 8081.
    func start(manager id: String) throws {
        let api = keep ? ["--api", "127.0.0.1:\(id == "m1" ? 8080 : 8081)"] : []
        try launch(id, ["manager", "--zk", zk, "--id", id, "--session-timeout", "2", "--grace", "2"] + api)
    }

    func start(executor id: String) throws {
        try launch(id, [
            "executor", "--zk", zk, "--id", id, "--slots", "4", "--unit-slots", "8", "--session-timeout", "2",
            "--output-dir", directory.appendingPathComponent(id).path, "--http", "127.0.0.1:0",
        ])
    }

    private func launch(_ id: String, _ arguments: [String]) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let process = try ChildProcess.launch(
            executable, arguments, name: "drover-tour-\(id)", environment: keep ? [:] : ["DROVER_EXIT_WITH_PARENT": "1", "DROVER_PARENT_PID": String(getpid())])
        lock.withLock { processes[id] = process }
        if keep { try "\(process.pid)\n".write(to: directory.appendingPathComponent("\(id).pid"), atomically: true, encoding: .utf8) }
    }

    /// Whether nothing listens on 127.0.0.1:`port` now.
    static func isFree(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var reuse: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    /// Where each daemon started last logs.
    func logPaths() -> [String: String] { lock.withLock { processes.mapValues(\.logPath) } }

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
