import DroverClient
import DroverProtocol
import Foundation
import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// `--metrics`: a manager and an executor serve Prometheus metrics that parse and move with the work.
@Suite("Prometheus metrics", .timeLimit(.minutes(2)))
struct MetricsTests {
    /// `name{labels} value` lines, by the series' full text (`name{a="1",b="2"}`); comments checked for form.
    static func parse(_ exposition: String) throws -> [String: Double] {
        var series: [String: Double] = [:]
        for line in exposition.split(separator: "\n") {
            if line.hasPrefix("#") {
                #expect(line.hasPrefix("# TYPE ") || line.hasPrefix("# HELP "), "bad comment: \(line)")
                continue
            }
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                Issue.record("not a sample: \(line)")
                continue
            }
            let name = String(line[..<space])
            #expect(name.first.map { $0.isLetter || $0 == "_" } == true && !name.contains(" "), "bad series name: \(name)")
            series[name] = value
        }
        return series
    }

    @Test func aManagerAndAnExecutorExposeMetricsThatMoveWithTheWork() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("metrics")
        let (managerPort, executorPort) = (try freeLoopbackPort(), try freeLoopbackPort())
        let daemons = try Daemons.launch(
            root: root, name: "metrics", manager: ["--metrics", "127.0.0.1:\(managerPort)"],
            executors: [("e1", ["--slots", "3", "--metrics", "127.0.0.1:\(executorPort)"])])
        defer { daemons.stop() }
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        try await client.waitForRegistration(of: ["e1"])
        // Two jobs one after the other: the leader counts the first's end before it places the second.
        for _ in 1...2 {
            let id = try await client.submit(JobSpec(method: "sample.echo", arguments: ["x": 1]))
            #expect(try await finalRecord(client, id).state == .succeeded)
        }
        let failing = try await client.submit(JobSpec(method: "sample.fail", arguments: [:]))
        #expect(try await finalRecord(client, failing).state == .failed)
        _ = try await finalRecord(client, try await client.submit(JobSpec(method: "sample.echo", arguments: [:])))

        let scraped = try await httpGet(port: managerPort, "/metrics")
        #expect(scraped.status == 200)
        let leader = try Self.parse(scraped.body)
        #expect(leader["drover_leader"] == 1)
        #expect((leader["drover_leader_commits_total"] ?? 0) >= 4)
        #expect((leader[#"drover_runs_total{outcome="succeeded",failure=""}"#] ?? leader[#"drover_runs_total{failure="",outcome="succeeded"}"#] ?? 0) >= 2, "\(leader.keys.sorted())")
        #expect((leader[#"drover_runs_total{outcome="failed",failure="failed"}"#] ?? leader[#"drover_runs_total{failure="failed",outcome="failed"}"#] ?? 0) == 1)
        #expect((leader["drover_queue_items_consumed_total"] ?? 0) >= 4)
        #expect(leader["drover_queue_items"] != nil, "the queue's depth is counted from the leader's first tick")
        #expect(leader.keys.contains { $0.hasPrefix("drover_leader_commit_bytes_bucket") })
        #expect(leader.keys.contains { $0.hasPrefix("drover_zookeeper_request_seconds_bucket") && $0.contains(#"operation="multi""#) })
        #expect(leader["drover_zookeeper_connected"] == 1)
        // Four jobs went from submit to placement, and each started here once.
        #expect(leader["drover_submit_to_placement_seconds_count"] == 4, "\(leader.keys.filter { $0.contains("placement") })")

        // A job for zone b, submitted while e2 (zone b) runs and due once e2 has left, waits for an
        // executor, not for room: none of those alive could ever run it. The leader records the
        // metric with no suspension before it writes the counts: once the counts say so (a
        // watch), so does the metric.
        let zoneB = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", "e2", "--label", "zone=b", "--slots", "1"], name: "metrics-e2")
        defer { zoneB.signal(SIGKILL) }
        try await client.waitForRegistration(of: ["e2"])
        // Far enough that a loaded machine (the whole suite in parallel) still sees e2 leave first:
        // 5 s was once too short.
        let due = Timestamp.now() + 15_000
        _ = try await client.submit(JobSpec(method: "sample.echo", constraints: ["zone": "b"], notBefore: due))
        zoneB.signal(SIGTERM)  // an idle executor deregisters and exits at once
        _ = await zoneB.wait()
        try #require(Timestamp.now() < due, "e2 took over 15 s to leave: the job ran there")
        while true {
            let (events, watcher) = Watcher.makeStream()
            let node = try await zk.getData(Layout().active, watcher: watcher)
            // Counts written before the leader saw e2 go say the job waits for room: the next ones
            // (written once it has) say it waits for an executor.
            if let counts = ActiveIndex.read(node.data)?.counts, counts.waiting == 1, counts.waitingForNoExecutor == 1 { break }
            var changes = events.makeAsyncIterator()
            _ = await changes.next()
        }
        let waiting = try Self.parse(try await httpGet(port: managerPort, "/metrics").body)
        #expect(waiting[#"drover_jobs_waiting_by_reason{reason="noExecutor"}"#] == 1, "\(waiting.keys.filter { $0.contains("waiting") })")
        #expect(waiting[#"drover_jobs_waiting_by_reason{reason="room"}"#] == 0)
        // The four jobs' first runs, recorded as each ended (the leader's loop recorded the last before
        // it wrote the counts just read).
        #expect(waiting["drover_submit_to_start_seconds_count"] == 4, "\(waiting.keys.filter { $0.contains("submit") })")
        let jobs = try await ChildProcess.runDrover(["jobs", "--zk", root])
        #expect(jobs.stdout.contains("1 waiting for room (1 of them fit no executor"), "\(jobs.stdout)")

        let executorMetrics = try Self.parse(try await httpGet(port: executorPort, "/metrics").body)
        #expect(executorMetrics[#"drover_executor_runs_total{outcome="succeeded"}"#] == 3)
        #expect(executorMetrics[#"drover_executor_runs_total{outcome="failed"}"#] == 1)
        #expect(executorMetrics[#"drover_executor_slots{kind="total"}"#] == 3)
        #expect(executorMetrics["drover_executor_start_delay_seconds_count"] == 4)
        #expect((try await httpGet(port: executorPort, "/nothing")).status == 404)
        await zk.close()
    }
}
