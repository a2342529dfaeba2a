import ArgumentParser
import DroverChaos
import DroverClient
import DroverProtocol
import DroverStore
import Foundation
import ZKRecipes
import Logging
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// `drover-chaos`: runs a cluster, submits a mix of jobs, kills and pauses anything at random
/// (seeded) and checks that nothing accepted was lost.
@main
struct DroverChaosCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drover-chaos",
        abstract: "Kill anything, lose nothing: a fault-injection run with a ledger checker.",
        discussion: """
            Starts a 3-node ZooKeeper ensemble on loopback, 2 managers and --executors executors (separate \
            drover processes), submits once (with random priorities), retrying, finite, infinite and scheduled jobs and work units whose handler (sample.ledger) \
            appends every start and end to a ledger file per executor, and for --duration seconds injects \
            faults at random: kill -9 an executor (restarted, or left dead past the grace period), kill -9 the \
            leading manager, kill -9 a ZooKeeper server (the ensemble leader included), SIGSTOP an executor or \
            the leading manager past its session timeout, cut a daemon off the network past its session, slow \
            its link. With --tls ZooKeeper serves only TLS; with --secure the deployment runs under ACL roles. \
            With --hosts N (root; Deploy/sim-hosts) it runs on N simulated hosts instead of loopback — a \
            ZooKeeper server on each of h1-h3, the managers on the last two hosts, the executors spread over \
            all — and the network faults are the hosts': a host cut off from every other (the leading \
            manager's, the ZooKeeper leader's: the ensemble splits 2/1), a one-way cut, a flapping link, \
            packet loss. A fault on a host is a fault on everything that runs there. \
            Then it lets the system settle and checks:

              lost           runs owed (once, finite) that never completed, or recorded without running  (must be 0)
              over-run       finite jobs that ran more than their count; retried jobs (sample.ledger's
                             failUntilRun, a retry policy) that ran more attempts than maxAttempts or
                             a run after the one that succeeded                                        (must be 0)
              duplicates     runs that completed twice (the documented at-least-once window)            (reported)
              scheduled      due windows matched to distinct runs; misses explained by the faults       (reported)
              fenced-writes  writes committed by a deposed leader (managers audit each commit's zxid
                             and leadership term; terms must never go down in zxid order), and runs
                             recorded as ended by an executor and attempt whose handler never ended
                             them (a stale executor write)                                             (must be 0)
              unsettled      accepted jobs not final when the settle timeout ran out                  (must be 0)
              concurrent copies
                             the most copies of one run whose handlers ran at the same time, and the
                             longest overlap; an overlap is explained only by a fault on the older
                             copy's executor (cut off, frozen, killed) lasting until it could notice (reported;
                                                                                    unexplained must be 0)
              overlap-allow  the most runs of one overlap-allow job that ran at once; more than its
                             maxConcurrentRuns is explained only by a fault on an executor running
                             one of them                                   (reported; unexplained must be 0)
              garbage        bad documents written into ZooKeeper as another program would (queue
                             items, job records that cannot be used): each must be set aside or its
                             job failed with a reason                                                 (unaccounted must be 0)
              units          work units added (two specs), whose handler ended (ran); lost: added but
                             gone, or recorded finished with no handler's end; stuck: not finished at
                             the end; finished twice: the at-least-once window, explained by a fault
                             on the earlier executor; stale ends: recorded finished by an attempt
                             whose handler never ended it              (lost, stuck, unexplained, stale must be 0)
              zookeeper-lost-writes
                             writes of the harness's own (a znode every 200 ms) that ZooKeeper
                             acknowledged and then lost: when not 0, ZooKeeper itself forgot committed
                             transactions and the other figures cannot be Drover's alone              (must be 0)

            The last line is the summary; the exit status is 1 when a "must be 0" is not. The same --seed \
            replays the same workload and fault sequence (timings differ from run to run).
            """)

    @Option(help: "Seed of the workload and the faults (default: random; printed in the summary).")
    var seed: UInt64?
    @Option(help: "Seconds of fault injection.")
    var duration: Double = 60
    @Option(help: "Once jobs to submit.")
    var tasks: Int = 2000
    @Option(help: "Once jobs whose first 0 to 3 runs fail, under a retry policy of 1 to 4 attempts.")
    var retrying: Int = 200
    @Option(help: "Workflows of five steps (a fan-out and a fan-in, results passed on; one in four compensates a failing step, one in four injects two steps from a handler); the checker verifies each ended as its spec says and that no step started before the steps it runs after had ended.")
    var workflows: Int = 40
    @Option(help: "One once job in this many goes the direct path (reservations and claims; each policy in turn, 1 to 3 tasks); 0: none. The direct jobs draw from their own random numbers, so a seed draws the same faults whatever this is.")
    var directEvery: Int = 8
    @Option(help: "Work units to add, to two work specs (weights 1 and 2; handler sample.ledger, lease 15 s — a dead executor's units are freed by the leader after the grace period first — 50 retries), in batches through the first half of the faults; each executor runs 4 at a time beside its tasks.")
    var units: Int = 3000
    @Option(help: "Finite jobs to submit (2 to 5 runs each).")
    var finite: Int = 100
    @Option(help: "Infinite jobs (stopped when the faults end).")
    var infinite: Int = 4
    @Option(help: "Scheduled jobs, every --schedule-interval seconds (stopped when the faults end); of each four, one replaces a run still running, one catches up missed times, one runs the next time beside it (overlap allow, two at most).")
    var scheduled: Int = 4
    @Option(help: "Seconds between a scheduled job's runs.")
    var scheduleInterval: Double = 2
    @Option(help: "Executors to run.")
    var executors: Int = 4
    @Option(help: "Average seconds between faults (they may overlap).")
    var faultInterval: Double = 2
    @Option(help: "Session timeout of the daemons, in seconds.")
    var sessionTimeout: Double = 2
    @Option(help: "Seconds a dead executor's tasks wait before they move.")
    var grace: Double = 3
    @Option(help: "Seconds to wait for every job to finish after the faults end.")
    var settleTimeout: Double = 240
    @Option(help: "Java heap of each ZooKeeper server. A server restarted after kill -9 catches up with a full snapshot of the leader's tree: give room for the tree (`make chaos-long`'s 100,000 jobs ran 256m out of memory).")
    var zkHeap: String = "256m"
    @Option(help: "Where ledgers, audits and logs go (default: a new temporary directory).")
    var workDirectory: String?
    @Flag(help: "Secure the deployment first, as `drover init` does (ACL roles; each daemon runs with its own credentials).")
    var secure = false
    @Flag(help: "Run ZooKeeper TLS-only (clients and quorum); every daemon and the harness reach it through a TLS bridge (--zk-ca).")
    var tls = false
    @Option(
        help: ArgumentHelp(
            "Run on this many simulated hosts (network namespaces; needs root, see Deploy/sim-hosts check), with network faults between them.",
            valueName: "n"))
    var hosts: Int?

    func validate() throws {
        guard executors >= 2 else { throw ValidationError("--executors must be at least 2 (one is always left running)") }
        guard duration > 0, faultInterval > 0, scheduleInterval >= 1 else {
            throw ValidationError("--duration and --fault-interval must be positive, --schedule-interval at least 1")
        }
        guard tasks >= 0, finite >= 0, infinite >= 0, scheduled >= 0, retrying >= 0, units >= 0 else { throw ValidationError("job counts must not be negative") }
        if let hosts, !(5...30).contains(hosts) {
            throw ValidationError("--hosts must be 5 to 30: three run ZooKeeper servers, and a fault on one host must leave a manager and an executor elsewhere")
        }
    }

    func run() async throws {
        let seed = self.seed ?? UInt64.random(in: 1...999_999)
        var random = SeededRandom(seed: seed)
        let directory = URL(fileURLWithPath: workDirectory ?? NSTemporaryDirectory() + "drover-chaos-\(seed)-\(getpid())", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        say("seed \(seed); ledgers, audits and logs in \(directory.path)")
        var simulated: SimulatedHosts?
        if let hosts {
            let (allowed, report) = await SimulatedHosts.check()
            guard allowed else {
                throw ValidationError("--hosts needs simulated hosts, which this machine does not allow: \(report)")
            }
            simulated = try await SimulatedHosts.up(hosts)
            say("\(hosts) simulated hosts up (Deploy/sim-hosts status lists them)")
        }
        // Whatever happens, the servers stop and the hosts go.
        var ensemble: LocalEnsemble?
        func cleanUp() async {
            await ensemble?.stop()
            await simulated?.down()
        }
        let report: ChaosReport
        do {
            say("starting a 3-node ZooKeeper ensemble\(tls ? " that serves only TLS" : "")\(simulated != nil ? ", a server on each of h1, h2, h3" : "")")
            let started = try await LocalEnsemble.start(nodes: 3, heap: zkHeap, tls: tls, hosts: simulated == nil ? [] : ["h1", "h2", "h3"])
            ensemble = started
            report = try await run(ensemble: started, directory: directory, seed: seed, hosts: simulated, random: &random)
        } catch {
            await cleanUp()
            throw error
        }
        await cleanUp()
        for line in report.details.prefix(60) { say(line) }
        if report.details.count > 60 { say("… \(report.details.count - 60) more") }
        print(report.summary(seed: seed))
        if !report.passed { throw ExitCode(1) }
    }

    /// Where each daemon runs on simulated hosts: the managers on the last two hosts, executor k
    /// on host k (round the hosts), so the first hosts also run a ZooKeeper server.
    private func placement(hosts: SimulatedHosts) -> [String: String] {
        var placement = ["m1": hosts.names[hosts.names.count - 1], "m2": hosts.names[hosts.names.count - 2]]
        for index in 1...executors { placement["e\(index)"] = hosts.names[(index - 1) % hosts.names.count] }
        return placement
    }

    private func run(ensemble: LocalEnsemble, directory: URL, seed: UInt64, hosts: SimulatedHosts?, random: inout SeededRandom) async throws
        -> ChaosReport
    {
        let (root, zookeeper, credentialsFiles) = try await prepare(ensemble, directory: directory)
        let cluster = Cluster(
            ensemble: ensemble, root: root, directory: directory, sessionTimeout: sessionTimeout, grace: grace, credentialsFiles: credentialsFiles,
            hosts: hosts, placement: hosts.map(placement(hosts:)) ?? [:])
        for index in 1...2 { try await cluster.start("m\(index)", as: .manager) }
        for index in 1...executors { try await cluster.start("e\(index)", as: .executor) }
        let client = try await DroverClient.load(zookeeper: zookeeper)
        do {
            while try await client.executors().filter({ $0.registration != nil }).count < executors {
                try await Task.sleep(for: .milliseconds(100))
            }
            say("\(executors) executors and 2 managers up; submitting and injecting faults for \(Int(duration)) s")
            let workload = Workload.make(
                once: tasks, finite: finite, infinite: infinite, scheduled: scheduled, retrying: retrying, workflows: workflows,
                directEvery: directEvery, scheduleInterval: scheduleInterval,
                random: &random)
            let faultSeed = random.next()
            async let accepted = workload.submit(with: client, over: .milliseconds(Int(duration * 500)))
            async let addedUnits = UnitWorkload(count: units).add(with: client, over: .milliseconds(Int(duration * 500)))
            let garbage = GarbageLog()
            // Writes of the harness's own through the faults: if ZooKeeper loses one it acknowledged,
            // the summary says the loss was ZooKeeper's.
            let witness = Witness(zookeeper: zookeeper, root: "")
            let witnessing = Task { try await witness.run(every: .milliseconds(200)) }
            let faults = try await injectFaults(cluster: cluster, zookeeper: zookeeper, garbage: garbage, seed: faultSeed)
            witnessing.cancel()
            _ = await witnessing.result
            let submitted = try await accepted
            let unitKeys = try await addedUnits
            say("faults over: \(FaultRecord.distinctFaults(faults)) injected; stopping the infinite and scheduled jobs")

            var scheduledJobs: [ChaosChecker.ScheduledJob] = []
            for (id, spec) in submitted where spec.kind == .infinite {
                let stoppedAt = Timestamp.now()
                try await Self.throughTheLastFaults(client, "stopping \(id)") { try await client.stop(id) }
                if let schedule = spec.schedule { scheduledJobs.append(.init(id: id, schedule: schedule, stoppedAt: stoppedAt)) }
            }
            let settleDeadline = ContinuousClock.now + .milliseconds(Int(settleTimeout * 1000))
            let records = try await settle(client, jobs: submitted.map(\.id))
            let finalUnits = try await UnitWorkload.settle(client, specs: unitKeys.keys.sorted(), deadline: settleDeadline)
            let unaccounted = try await Self.throughTheLastFaults(client, "accounting for the garbage") { try await accountFor(garbage, client: client) }
            let (lostWitnesses, witnesses) = try await Self.throughTheLastFaults(client, "reading the witnesses") { try await witness.missing() }
            if lostWitnesses.isEmpty { say("ZooKeeper kept all \(witnesses) writes of the harness's own it acknowledged") }
            await cluster.stopAll()
            await zookeeper.close()
            let ledger = await readLines(of: .executor, in: cluster) { LedgerEntry(line: $0, executor: $1) }
            let writes = await readLines(of: .manager, in: cluster) { FencedWrite(line: $0, process: $1) }
            say("checking \(records.count) jobs and \(finalUnits.values.map(\.count).reduce(0, +)) units against \(ledger.count) ledger lines and \(writes.count) audited leader writes")
            var report = ChaosChecker.check(
                accepted: submitted.map(\.id), jobs: records, scheduled: scheduledJobs, ledger: ledger, writes: writes, faults: faults)
            ChaosChecker.checkUnits(added: unitKeys, units: finalUnits, ledger: ledger, faults: faults, into: &report)
            report.garbage = await garbage.count
            report.unaccountedGarbage = unaccounted.count
            report.details += unaccounted
            report.witnesses = witnesses
            report.zookeeperLostWrites = lostWitnesses.count
            // The witnesses catch a loss only when one of them fell in the truncated stretch;
            // the servers themselves notice when their data trees differ.
            let divergences = Self.digestMismatches(in: ensemble.directory)
            report.zookeeperDivergences = divergences.count
            if let first = divergences.first {
                report.details.insert(
                    "ZooKeeper's servers found their data trees differ \(divergences.count) times (\"digest mismatch\" in their "
                        + "server.log, first: \(first)): the ensemble lost or diverged on committed writes, so losses below may be "
                        + "ZooKeeper's, not Drover's (replay the servers' transaction logs to tell)",
                    at: 0)
            }
            if !lostWitnesses.isEmpty {
                report.details.insert(
                    "ZooKeeper lost \(lostWitnesses.count) of the \(witnesses) writes of the harness's own it had acknowledged "
                        + "(\(lostWitnesses.prefix(3).joined(separator: ", "))…): the ensemble forgot committed transactions, "
                        + "so losses below may be ZooKeeper's, not Drover's (see the servers' logs for TRUNC)",
                    at: 0)
            }
            return report
        } catch {
            await cluster.stopAll()
            await zookeeper.close()
            throw error
        }
    }

    /// The distinct "digest mismatch" errors in the ensemble's server logs (a restarted server
    /// logs the same one again while it replays its log: counted once), each as "node: txn".
    static func digestMismatches(in directory: URL) -> [String] {
        var seen: [String] = []
        for node in 1...9 {
            let log = directory.appendingPathComponent("node\(node)/server.log")
            guard let text = try? String(contentsOf: log, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") where line.contains("digest mismatch") {
                let transaction = line.components(separatedBy: "on txn:").last?.trimmingCharacters(in: .whitespaces) ?? String(line.suffix(80))
                let entry = "node\(node): \(transaction)"
                if !seen.contains(entry) { seen.append(entry) }
            }
        }
        return seen
    }

    /// Secures the deployment as `drover init` does; the harness's own client becomes the admin
    /// (it writes garbage anywhere). Returns each daemon's credentials file.
    /// The run's chroot, the harness's session in it and (with --secure) each daemon's credentials
    /// file. A new ensemble can still be settling (seen in CI: a create that timed out right after
    /// every node said it served, once on the chroot, once while securing it on a second session):
    /// every step here can be done again on a fresh chroot, so a retryable failure starts over.
    private func prepare(_ ensemble: LocalEnsemble, directory: URL) async throws -> (String, ZooKeeperClient, [String: String]) {
        var attempt = 1
        while true {
            var session: ZooKeeperClient?
            do {
                let root = try await ensemble.makeChroot("chaos")
                let zookeeper = try await ZooKeeperClient.connect(to: ensemble.reachable(root), sessionTimeout: .seconds(10))
                session = zookeeper
                var credentialsFiles: [String: String] = [:]
                if secure {
                    credentialsFiles = try await secureDeployment(zookeeper, directory: directory)
                    say("secured: every daemon runs with its own credentials; the harness is the admin")
                }
                return (root, zookeeper, credentialsFiles)
            } catch let error as ZooKeeperError where error.isRetryable && attempt < 4 {
                await session?.close()
                say("ZooKeeper did not answer while the ensemble settled (\(error)): starting again on a new chroot (attempt \(attempt + 1) of 4)")
                attempt += 1
            } catch {
                await session?.close()
                throw error
            }
        }
    }

    private func secureDeployment(_ zookeeper: ZooKeeperClient, directory: URL) async throws -> [String: String] {
        let admin = Credentials.generate(.admin)
        let manager = Credentials.generate(.manager)
        let executorCredentials = (1...executors).map { Credentials.generate(.executor, executor: "e\($0)") }
        let policy = AccessPolicy(
            admin: admin, manager: manager, client: .generate(.client), reader: .generate(.reader), executors: executorCredentials)
        try await zookeeper.addAuth(credentials: admin.authentication)
        try await AccessSetup(zookeeper: zookeeper).apply(policy)
        var files: [String: String] = [:]
        for (ids, credentials) in [(["m1", "m2"], manager)] + executorCredentials.map({ ([$0.executor!], $0) }) {
            let path = directory.appendingPathComponent("credentials-\(credentials.executor ?? "manager").json").path
            try SecretFile.create(path, bytes: try Codec.encode(credentials))
            for id in ids { files[id] = path }
        }
        return files
    }

    /// Starts a fault every `faultInterval` seconds on average (exponential gaps) until the
    /// duration is over, and waits for every fault to be healed.
    private func injectFaults(cluster: Cluster, zookeeper: ZooKeeperClient, garbage: GarbageLog, seed: UInt64) async throws -> [FaultRecord] {
        var random = SeededRandom(seed: seed)
        let end = ContinuousClock.now + .milliseconds(Int(duration * 1000))
        let available = Fault.available(onHosts: cluster.hosts != nil)
        return try await withThrowingTaskGroup(of: [FaultRecord].self) { group in
            var number = 0
            while ContinuousClock.now < end {
                let gap = -log(Double.random(in: 0.0001...1, using: &random)) * faultInterval
                try await Task.sleep(for: .milliseconds(Int(min(gap, faultInterval * 4) * 1000)))
                let fault = available.randomElement(using: &random)!
                let faultSeed = random.next()
                number += 1
                let label = number
                group.addTask {
                    var faultRandom = SeededRandom(seed: faultSeed)
                    let records = try await inject(fault, cluster: cluster, zookeeper: zookeeper, garbage: garbage, random: &faultRandom)
                    if let record = records.first { say("fault \(label): \(record.description)") }
                    return records
                }
            }
            var records: [FaultRecord] = []
            for try await hit in group { records += hit }
            return records
        }
    }

    /// The garbage not accounted for once the system settled: a job whose record is not the
    /// leader's note that it cannot be used, or fewer set-aside items than bad queue items.
    private func accountFor(_ garbage: GarbageLog, client: DroverClient) async throws -> [String] {
        var problems: [String] = []
        let deadline = ContinuousClock.now + .seconds(30)
        for id in await garbage.jobs {
            var accounted = false
            while !accounted && ContinuousClock.now < deadline {
                do {
                    _ = try await client.status(id)
                } catch let error as DroverError where error.code == .unknownJob {
                    problems.append("garbage: job \(id) was written, but its record is gone (\(error.message))")
                    break
                } catch let error as DroverError where error.code == .unusableRecord {
                    let node = try await client.zookeeper.getData(client.layout.job(id))
                    accounted = (try? Codec.decode(UnusableJobRecord.self, node.data)) != nil
                }
                if !accounted { try await Task.sleep(for: .milliseconds(200)) }
            }
            if !accounted && ContinuousClock.now >= deadline {
                problems.append("garbage: job \(id)'s record cannot be used, but its job was not failed with a reason")
            }
        }
        // Each garbled executor progress is kept aside and replaced by progress the executor can read.
        for id in await garbage.executorStates {
            let layout = client.layout
            if try await client.zookeeper.exists(layout.executorUnreadableProgress(id)) == nil {
                problems.append("garbage: executor \(id)'s progress was garbled, but nothing was kept aside at \(layout.executorUnreadableProgress(id))")
            }
            let progress = try await client.zookeeper.getData(layout.executorProgress(id))
            if (try? Codec.decode(ExecutorProgress.self, progress.data)) == nil {
                problems.append("garbage: executor \(id)'s progress is still unreadable at the end")
            }
        }
        let listing = try await client.setAsideItems(limit: 1)
        let setAside = listing.total + listing.dropped
        if setAside < (await garbage.queueItems) {
            problems.append("garbage: \(await garbage.queueItems) bad queue items written, \(setAside) set aside")
        }
        return problems
    }

    /// Waits until every job is final (or the settle timeout), printing progress.
    /// Runs `body` again, once connected, while the harness's own session has no answer (CI: the
    /// last faults — a server killed, a host cut off — had not healed for the harness's connection
    /// when it went on: `getData failed (connectionLoss)` ended a run whose cluster was fine).
    static func throughTheLastFaults<T>(_ client: DroverClient, _ what: String, _ body: () async throws -> T) async throws -> T {
        try await repeatingAfterLostAnswers(client.zookeeper, logger: Logger(label: "drover.chaos"), what, body)
    }

    private func settle(_ client: DroverClient, jobs: [String]) async throws -> [JobRecord] {
        let wanted = Set(jobs)
        let deadline = ContinuousClock.now + .milliseconds(Int(settleTimeout * 1000))
        var lastProgress = ContinuousClock.now
        while true {
            let records = try await Self.throughTheLastFaults(client, "listing the jobs") { try await client.list() }.filter { wanted.contains($0.id) }
            let open = records.filter { !$0.state.isFinal }
            if open.isEmpty || ContinuousClock.now > deadline {
                if !open.isEmpty { say("settle timeout: \(open.count) jobs still open") }
                return records
            }
            if ContinuousClock.now - lastProgress > .seconds(5) {
                say("settling: \(records.count - open.count)/\(wanted.count) jobs final")
                lastProgress = ContinuousClock.now
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// Every line the processes of `role` appended to their files (ledgers or audits), parsed.
    private func readLines<Line>(
        of role: Cluster.Role, in cluster: Cluster, _ parse: (Substring, String) -> Line?
    ) async -> [Line] {
        var lines: [Line] = []
        for id in await cluster.ids(role) {
            let file = role == .executor ? await cluster.ledgerFile(id) : await cluster.auditFile(id)
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            lines += text.split(separator: "\n").compactMap { parse($0, id) }
        }
        return lines
    }
}

private let started = ContinuousClock.now

/// Progress on standard error, with the seconds since the start.
func say(_ text: String) {
    let elapsed = Double((ContinuousClock.now - started).components.seconds)
    FileHandle.standardError.write(Data("[\(Int(elapsed))s] \(text)\n".utf8))
}
