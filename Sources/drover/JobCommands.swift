import ArgumentParser
import DroverClient
import DroverExecutor
import DroverManager
import DroverProtocol
import DroverShell
import DroverStore
import Foundation
import Yams
import ZooKeeper

/// Options every client command shares: where ZooKeeper is and how to print.
struct ClientOptions: ParsableArguments {
    @OptionGroup var zookeeper: ZooKeeperOptions
    @Flag(help: "Print JSON instead of a table.")
    var json = false
}

/// Runs a client command with a connected client, closes it, and turns errors into messages.
func withClient<T>(_ options: ClientOptions, _ body: (DroverClient) async throws -> T) async throws -> T {
    try await withClient(options.zookeeper, body)
}

/// ``withClient(_:_:)`` for commands without `--json`.
func withClient<T>(_ zookeeper: ZooKeeperOptions, _ body: (DroverClient) async throws -> T) async throws -> T {
    let connection = try await connect(zookeeper, sessionTimeout: 10)
    do {
        let client = try await DroverClient.load(zookeeper: connection)
        let result = try await body(client)
        await connection.close()
        return result
    } catch {
        await connection.close()
        switch Access.explain(error, layout: Layout(), credentials: try? zookeeper.resolvedCredentials()) {
        case let error as DroverError: throw ExitMessage(error.message)
        case let error as ZooKeeperError: throw ExitMessage(error.message)
        default: throw error
        }
    }
}

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit a job from a file, or a command to run.",
        discussion: """
            From a file: drover submit -f job.yaml   (a job spec, YAML or JSON; see docs/PROTOCOL.md)
                         drover submit -f jobs.jsonl  (one spec per line, with progress)
            A workflow:  drover submit -f vm.yaml     (a file with `steps:`, each with an id, a method,
                         arguments and `after: [ids]`; {$from: <step>.result.<field>} passes results
                         on; a shell step's result is the JSON it writes to $DROVER_RESULT; see README)
            A command:   drover submit -- bash scripts/count.sh 10
                         drover submit --count 3 -- ./report.sh
                         drover submit --forever -- ./serve.sh
                         drover submit --every 10m --from 2021-01-31T21:01:00Z -- ./nightly.sh
                         drover submit --cron '0 3 * * *' --time-zone Europe/Berlin -- ./nightly.sh
            Many tasks:  drover submit --tasks 8 -- ./shard.sh     (8 at once, $DROVER_TASK_INDEX 0-7; ends when all have)
            Direct:      drover submit --placement batchLateBinding --tasks 8 -- ./shard.sh
                         (no leader between submit and start: executors sampled by their load take
                         reservations and claim the tasks; docs/PLACEMENT.md)
            Retries:     drover submit --retry 3 --retry-delay 10s -- ./flaky.sh
                         (3 attempts in all; the wait doubles each time, up to --retry-max-delay)
            Priority:    drover submit --priority 80 -- ./urgent.sh   (1-100, default 50; higher first)
            Later:       drover submit --at 2026-12-24T18:00:00Z -- ./greet.sh   (or --at 10m)
            Then:        drover suspend|resume|trigger|stop JOB
            Prints the new job id (with --json: {"id": ...}).
            """)

    @OptionGroup var options: ClientOptions
    @Option(name: [.short, .customLong("file")], help: "A job spec file: .yaml/.yml or .json, or .jsonl with one spec per line.")
    var file: String?
    @Option(help: "Run the command as this many tasks at once, each with $DROVER_TASK_INDEX (0…N-1), done when all are (1 to 1000); with --count, --forever, --every or --cron the whole set runs again.")
    var tasks: Int?
    @Option(help: "Run the command this many times, one after another (a finite job).")
    var count: Int?
    @Flag(help: "Run the command again whenever it exits, until stopped (an infinite job).")
    var forever = false
    @Option(help: "Run on a schedule every INTERVAL (e.g. 30s, 10m, 2h, 1d), until stopped (with --count: that many runs).")
    var every: String?
    @Option(help: "The schedule's reference time (ISO 8601; default: now).")
    var from: String?
    @Option(help: "Start the (first) run no earlier than TIME: ISO 8601 (2026-12-24T18:00:00Z) or a wait such as 10m.")
    var at: String?
    @Option(
        help: ArgumentHelp(
            "Run on a cron schedule, until stopped (with --count: that many runs): \"MIN HOUR DAY MONTH WEEKDAY\" or @hourly, @daily, @weekly, @monthly, @yearly.",
            discussion: "e.g. --cron '30 2 * * mon-fri' --time-zone Europe/Berlin. A time skipped by a daylight-saving change runs at the end of the gap; a repeated one runs once."))
    var cron: String?
    @Option(help: "The IANA time zone of --cron (e.g. Europe/Berlin, America/New_York; default UTC).")
    var timeZone: String?
    @Option(
        help: ArgumentHelp(
            "With --every/--cron, when a time comes while a run runs: forbid (default: the run goes on), replace (stop it, run anew) or allow (run beside it).",
            discussion: "allow runs up to --max-concurrent runs at once (2 by default); a time that comes while that many run passes. Not with --retry or --missed catchUp."))
    var overlap: OverlapPolicy?
    @Option(help: "With --overlap allow: runs at once at most (1 to 100; default 2).")
    var maxConcurrent: Int?
    @Option(
        help: ArgumentHelp(
            "With --every/--cron, times that passed without a run: runOnce (default: one run now), skip, or catchUp (each, in turn).",
            discussion: "skip and catchUp take --starting-deadline (how late a run may start; 60s / 1h by default); catchUp takes --max-catch-up (10)."))
    var missed: MissedRunPolicy.Policy?
    @Option(help: "How late a scheduled run may start (e.g. 5m) before --missed skips it.")
    var startingDeadline: String?
    @Option(help: "With --missed catchUp: runs of passed times in a row at most (default 10).")
    var maxCatchUp: Int?
    @Option(help: "A label key=value the executor must have (repeatable).")
    var constraint: [String] = []
    @Option(help: "Task slots the job needs.")
    var slots: Int = 1
    @Option(help: "Seconds after which the command is stopped.")
    var timeout: Double?
    @Option(help: "A name for people.")
    var name: String?
    @Option(help: "Try a run that fails up to this many times in all (the first attempt included).")
    var retry: Int?
    @Option(help: "The wait before the first retry (e.g. 10s, 5m; default 1s); it doubles for each further one.")
    var retryDelay: String?
    @Option(help: "The longest wait between retries (default 5m).")
    var retryMaxDelay: String?
    @Option(help: "Which ends are retried: failed, timedOut, lost, comma-separated (default: all three).")
    var retryOn: String?
    @Option(help: "With --count: what a run that failed for good does to the rest: stop (default) or continue.")
    var onFailure: FailurePolicy?
    @Option(help: "Higher places first among waiting jobs: \(Bounds.priority.lowerBound) to \(Bounds.priority.upperBound) (default \(JobSpec.defaultPriority)).")
    var priority: Int?
    @Option(
        help: ArgumentHelp(
            "How the tasks find executors: \(PlacementPolicy.names) (default central: the leader places them).",
            discussion: "The others are the direct path, for one-off jobs: the client reserves executors by their published load (random: one at random per task; powerOfTwo: the less loaded of two per task; batch: the least loaded of probe-ratio x tasks; batchLateBinding: reservations on probe-ratio x tasks executors, the first with a free slot claims each task) and executors start tasks without the leader."))
    var placement: PlacementPolicy?
    @Option(help: "With --placement batch or batchLateBinding: executors probed per task, 1 to 10 (default 2).")
    var probeRatio: Double?
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        // Arguments travel as JSON text: bytes that are not UTF-8 would arrive changed (U+FFFD).
        for (index, argument) in Self.rawArguments().enumerated() where argument == nil {
            throw ValidationError("argument \(index) is not valid UTF-8: a command's arguments must be text")
        }
        if file != nil && !command.isEmpty { throw ValidationError("give either -f FILE or a command after --, not both") }
        if file == nil && command.isEmpty { throw ValidationError("nothing to submit: give -f FILE or a command after --") }
        if file != nil {
            // The file says everything about its jobs: a flag that would change them is refused,
            // not silently ignored.
            let given: [(String, Bool)] = [
                ("--count", count != nil), ("--forever", forever), ("--every", every != nil), ("--cron", cron != nil), ("--from", from != nil),
                ("--time-zone", timeZone != nil), ("--at", at != nil), ("--constraint", !constraint.isEmpty), ("--slots", slots != 1), ("--timeout", timeout != nil),
                ("--name", name != nil), ("--retry", retry != nil), ("--retry-delay", retryDelay != nil),
                ("--retry-max-delay", retryMaxDelay != nil), ("--retry-on", retryOn != nil), ("--on-failure", onFailure != nil),
                ("--priority", priority != nil), ("--overlap", overlap != nil), ("--missed", missed != nil),
                ("--starting-deadline", startingDeadline != nil), ("--max-catch-up", maxCatchUp != nil), ("--tasks", tasks != nil),
                ("--max-concurrent", maxConcurrent != nil), ("--placement", placement != nil), ("--probe-ratio", probeRatio != nil),
            ]
            let flags = given.filter(\.1).map(\.0)
            if !flags.isEmpty {
                throw ValidationError("\(flags.joined(separator: ", ")) cannot be combined with -f: set the job's fields in the file (docs/PROTOCOL.md)")
            }
        }
        if let count, !Bounds.count.contains(count) { throw ValidationError("--count \(count): expected \(Bounds.count.lowerBound) to \(Bounds.count.upperBound)") }
        if count != nil && forever { throw ValidationError("--count and --forever exclude each other") }
        if tasks != nil && (overlap != nil || missed != nil) {
            throw ValidationError("--overlap and --missed are not for --tasks (yet): a time that comes while the tasks run waits for them to end")
        }
        if let cron, cron.isEmpty { throw ValidationError("--cron: empty (e.g. --cron '0 3 * * *')") }
        if let every, parseInterval(every) == nil {
            throw ValidationError(
                "--every \(every): expected a number with s, m, h or d (e.g. 10m), \(Bounds.describeSeconds(Bounds.intervalMilliseconds)) (10 years)")
        }
        if let timeout, !Bounds.timeoutSeconds.contains(timeout) {
            throw ValidationError("--timeout \(timeout): expected seconds between \(Bounds.timeoutSeconds.lowerBound) and \(Int(Bounds.timeoutSeconds.upperBound)) (a year)")
        }
        if !Bounds.slots.contains(slots) { throw ValidationError("--slots \(slots): expected \(Bounds.slots.lowerBound) to \(Bounds.slots.upperBound)") }
        if from != nil && every == nil { throw ValidationError("--from needs --every") }
        if let from, Schedule.parse(from) == nil { throw ValidationError("--from \(from): expected an ISO 8601 time such as 2021-01-31T21:01:00Z") }
        for item in constraint where !item.contains("=") { throw ValidationError("--constraint \(item): expected key=value") }
        if retry == nil && (retryDelay != nil || retryMaxDelay != nil || retryOn != nil) {
            throw ValidationError("--retry-delay, --retry-max-delay and --retry-on need --retry N (the attempts in all)")
        }
        for (flag, value) in [("--retry-delay", retryDelay), ("--retry-max-delay", retryMaxDelay)] {
            if let value, parseInterval(value) == nil { throw ValidationError("\(flag) \(value): expected a number with s, m, h or d (e.g. 10s)") }
        }
        if let maximum = retryMaxDelay.flatMap(parseInterval), maximum < retryDelay.flatMap(parseInterval) ?? .seconds(1) {
            throw ValidationError("--retry-max-delay \(retryMaxDelay!): shorter than the first wait (--retry-delay, 1s by default)")
        }
        if cron != nil && every != nil { throw ValidationError("--cron and --every exclude each other") }
        if let at, Self.parseAt(at, now: Date()) == nil {
            throw ValidationError("--at \(at): expected an ISO 8601 time such as 2026-12-24T18:00:00Z, or a wait such as 10m")
        }
        if at != nil && every != nil { throw ValidationError("--at applies to unscheduled jobs: with --every, --from sets where the grid starts") }
        if at != nil && cron != nil { throw ValidationError("--at applies to unscheduled jobs: a --cron job runs at its times") }
        if (overlap != nil || missed != nil) && every == nil && cron == nil {
            throw ValidationError("--overlap and --missed apply to scheduled jobs: add --every or --cron")
        }
        if maxConcurrent != nil && overlap != .allow { throw ValidationError("--max-concurrent needs --overlap allow (the other policies run one run at a time)") }
        if let maxConcurrent, !Bounds.concurrentRuns.contains(maxConcurrent) {
            throw ValidationError("--max-concurrent \(maxConcurrent): expected \(Bounds.concurrentRuns.lowerBound) to \(Bounds.concurrentRuns.upperBound)")
        }
        if (startingDeadline != nil || maxCatchUp != nil) && (missed == nil || missed == .runOnce) {
            throw ValidationError("--starting-deadline and --max-catch-up need --missed skip or --missed catchUp (runOnce runs a late time whatever its lateness)")
        }
        if let startingDeadline, parseInterval(startingDeadline) == nil {
            throw ValidationError("--starting-deadline \(startingDeadline): expected a duration with s, m, h or d (e.g. 5m)")
        }
        if timeZone != nil && cron == nil { throw ValidationError("--time-zone needs --cron (an --every grid is the same in every zone)") }
        if onFailure != nil && count == nil { throw ValidationError("--on-failure needs --count (it is what a finite job does after a failed run)") }
        // The rest (ranges, the kinds of --retry-on) as the leader checks them, naming the flag.
        if file == nil {
            do {
                try commandSpec().validate()
            } catch {
                let flags = [
                    "retry.maxAttempts": "--retry", "retry.initialDelaySeconds": "--retry-delay", "retry.maxDelaySeconds": "--retry-max-delay",
                    "retry.on": "--retry-on", "priority": "--priority", "schedule.cron": "--cron \(cron ?? "")",
                    "schedule.timeZone": "--time-zone \(timeZone ?? "")", "missedRuns.maxRuns": "--max-catch-up",
                    "missedRuns.startingDeadlineSeconds": "--starting-deadline", "tasks": "--tasks", "placement": "--placement",
                    "probeRatio": "--probe-ratio",
                ]
                throw ValidationError("\(flags[error.field] ?? error.field): \(error.reason)")
            }
        }
    }

    func run() async throws {
        let specs = try file.map(Self.load) ?? [(1, commandSpec())]
        try await withClient(options) { client in
            let ids: [String]
            do {
                // Many specs go in batches (one ZooKeeper write per batch), with progress.
                ids = try await client.submit(specs.map(\.1)) { submitted in
                    if specs.count > 1 { FileHandle.standardError.write(Data("submitted \(submitted)/\(specs.count)\n".utf8)) }
                }
            } catch let error as BulkSubmitError {
                error.submitted.forEach { print($0) }
                let underlying = Access.explain(error.underlying, layout: client.layout, credentials: try? options.zookeeper.resolvedCredentials())
                let message = file.map { "\($0):\(specs[error.index].0): \(underlying)" } ?? "\(underlying)"
                throw ExitMessage(message + (error.submitted.isEmpty ? "" : " (the \(error.submitted.count) jobs before it were submitted; their ids are printed above)"))
            }
            if options.json {
                print(ids.count == 1 ? #"{"id":"\#(ids[0])"}"# : #"{"ids":[\#(ids.map { "\"\($0)\"" }.joined(separator: ","))]}"#)
            } else {
                ids.forEach { print($0) }
            }
            // Accepted and durable, but nothing will place it until a manager runs: say so.
            if try await client.managers().isEmpty {
                FileHandle.standardError.write(
                    Data("drover: no manager is running: the job waits in the queue until one starts (drover manager --id m1)\n".utf8))
            }
        }
    }

    /// `--at`: an ISO 8601 time, or a wait from `now` (`10m`).
    static func parseAt(_ text: String, now: Date) -> Date? {
        if let date = Schedule.parse(text) { return date }
        return parseInterval(text).map { now.addingTimeInterval($0.seconds) }
    }

    /// This process's arguments as given, nil where one is not valid UTF-8 (Swift's
    /// `CommandLine.arguments` would have replaced the bad bytes silently).
    static func rawArguments() -> [String?] {
        (0..<Int(CommandLine.argc)).map { index in
            CommandLine.unsafeArgv[index].flatMap { String(validatingCString: $0) }
        }
    }

    func commandSpec() -> JobSpec {
        var arguments: [String: JSONValue] = ["command": .array(command.map(JSONValue.string))]
        if let timeout { arguments["timeoutSeconds"] = .number(timeout) }
        let schedule =
            cron.map { Schedule(cron: $0, timeZone: timeZone ?? "UTC") }
            ?? every.flatMap(parseInterval).map { interval in
                Schedule(reference: from.flatMap(Schedule.parse) ?? Date(), interval: interval)
            }
        let constraints = Dictionary(
            constraint.map { $0.split(separator: "=", maxSplits: 1).map(String.init) }.map { ($0[0], $0.count > 1 ? $0[1] : "") },
            uniquingKeysWith: { _, last in last })
        let retryPolicy = retry.map { attempts in
            var policy = RetryPolicy(maxAttempts: attempts)
            if let delay = retryDelay.flatMap(parseInterval) { policy.initialDelaySeconds = delay.seconds }
            if let delay = retryMaxDelay.flatMap(parseInterval) { policy.maxDelaySeconds = delay.seconds }
            if let kinds = retryOn {
                policy.on = kinds.split(separator: ",").map { FailureKind(rawValue: $0.trimmingCharacters(in: .whitespaces)) }
            }
            // A first delay longer than the default cap raises the cap with it.
            if retryMaxDelay == nil { policy.maxDelaySeconds = max(policy.maxDelaySeconds, policy.initialDelaySeconds) }
            return policy
        }
        return JobSpec(
            name: name, method: "shell", arguments: .object(arguments), resources: Resources(slots: slots), constraints: constraints,
            // A schedule (--every or --cron) repeats until stopped unless --count bounds it.
            kind: forever || (schedule != nil && count == nil) ? .infinite : (count != nil ? .finite : .once), count: count, schedule: schedule,
            retry: retryPolicy, onFailure: onFailure, priority: priority,
            notBefore: at.flatMap { Self.parseAt($0, now: Date()) }.map { Timestamp(($0.timeIntervalSince1970 * 1000).rounded()) },
            overlap: overlap,
            missedRuns: missed.map {
                MissedRunPolicy(policy: $0, startingDeadlineSeconds: startingDeadline.flatMap(parseInterval)?.seconds, maxRuns: maxCatchUp)
            }, tasks: tasks, maxConcurrentRuns: maxConcurrent, placement: placement, probeRatio: probeRatio)
    }

    /// Reads specs from a .json file (one spec) or a .jsonl file (one per line), naming the
    /// line and the field of the first problem. Fields a spec does not have are refused, and the
    /// `shell` method's arguments are checked as the executor will check them.
    static func load(_ path: String) throws -> [(Int, JobSpec)] {
        guard let data = FileManager.default.contents(atPath: path) else { throw ExitMessage("cannot read \(path)") }
        guard String(validating: data, as: UTF8.self) != nil else { throw ExitMessage("\(path): not UTF-8 text") }
        let lines: [(Int, Data)] =
            path.hasSuffix(".jsonl")
            ? String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated()
                .filter { !$0.element.trimmingCharacters(in: .whitespaces).isEmpty }.map { ($0.offset + 1, Data($0.element.utf8)) }
            : [(1, data)]
        guard !lines.isEmpty else { throw ExitMessage("\(path): no job specs in it (nothing was submitted)") }
        let isYAML = path.hasSuffix(".yaml") || path.hasSuffix(".yml")
        return try lines.map { line, data in
            do {
                let text = String(decoding: data, as: UTF8.self)
                let document = isYAML ? try YAMLDecoder().decode(JSONValue.self, from: text) : try JSONDecoder().decode(JSONValue.self, from: data)
                if let field = JobSpec.unknownField(in: document) {
                    throw ExitMessage("\(path):\(line): \(field): not a field of a job spec (see docs/PROTOCOL.md)")
                }
                let spec = isYAML ? try YAMLDecoder().decode(JobSpec.self, from: text) : try JSONDecoder().decode(JobSpec.self, from: data)
                try spec.validate()
                if spec.method == "shell" {
                    do {
                        // A job of many tasks with their own arguments: each task's are checked.
                        for arguments in spec.taskArguments ?? [spec.arguments] { try ShellMethod.check(arguments) }
                    } catch let error as DroverError {
                        throw ExitMessage("\(path):\(line): arguments: \(error.message)")
                    }
                }
                // A workflow's shell steps, those whose arguments hold no reference (the rest are
                // checked by the executor once their references are resolved).
                for (index, step) in (spec.steps ?? []).enumerated() where step.method == "shell" && !WorkflowGraph.hasReferences(step.arguments) {
                    do {
                        try ShellMethod.check(step.arguments)
                    } catch let error as DroverError {
                        throw ExitMessage("\(path):\(line): steps[\(index)].arguments: step \(step.id): \(error.message)")
                    }
                }
                return (line, spec)
            } catch let error as SpecError {
                throw ExitMessage("\(path):\(line): \(error.field): \(error.reason)")
            } catch let error as DecodingError {
                throw ExitMessage("\(path):\(line): \(JobRecord.describe(error))")
            } catch let error as YamlError {
                throw ExitMessage("\(path): not valid YAML: \(error)")
            }
        }
    }
}

/// `10m` → 10 minutes; plain numbers are seconds. Nil when not a number, or outside
/// ``Bounds/intervalMilliseconds``.
func parseInterval(_ text: String) -> Duration? {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
    var number = Substring(text)
    var multiplier = 1.0
    if let last = text.last, let unit = units[last] {
        number = text.dropLast()
        multiplier = unit
    }
    guard let value = Double(number), let milliseconds = Bounds.milliseconds(fromSeconds: value * multiplier, in: Bounds.intervalMilliseconds) else {
        return nil
    }
    return .milliseconds(milliseconds)
}

extension Duration {
    /// In seconds, with fractions.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

extension FailurePolicy: ExpressibleByArgument {}
extension OverlapPolicy: ExpressibleByArgument {}
extension MissedRunPolicy.Policy: ExpressibleByArgument {}
extension PlacementPolicy: ExpressibleByArgument {}

struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List jobs, oldest first, a page at a time.",
        discussion: """
            drover jobs --state running; drover jobs --limit 50 --after j-…  (the id the previous page ended with)

            --state waiting and --state running read only the jobs in those states (the managers keep an index of them); \
            other listings read records in submission order until the page is full. The last line counts the jobs that wait for \
            room, wait for their time (suspended ones left out) or run, as the leader last counted them (at most once a second).
            """)
    @OptionGroup var options: ClientOptions
    @Option(help: "Only jobs in this state (\(JobState.allCases.map(\.rawValue).joined(separator: ", "))); repeatable.")
    var state: [String] = []
    @Option(help: "Only jobs with this name.")
    var name: String?
    @Option(help: "Show at most this many jobs.")
    var limit: Int = 100
    @Option(help: "Start after this job id (the last of the previous page).")
    var after: String?

    func validate() throws {
        for value in state where JobState(rawValue: value) == nil {
            throw ValidationError("--state \(value): expected one of \(JobState.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard (1...100_000).contains(limit) else { throw ValidationError("--limit must be 1 to 100000") }
        if let after, !Layout.isValidID(after) { throw ValidationError("--after \(after): not a job id") }
    }

    func run() async throws {
        let filter = state.isEmpty ? nil : Set(state.compactMap(JobState.init(rawValue:)))
        let (page, counts) = try await withClient(options) { client in
            (try await client.page(states: filter, name: name, after: after, limit: limit), try? await client.activeCounts())
        }
        let (records, unusable) = (page.records, page.unusable)
        var more: String? = nil
        if let next = page.next {
            more = "(more: drover jobs --after \(next)" + (limit != 100 ? " --limit \(limit)" : "") + state.map { " --state \($0)" }.joined()
                + (name.map { " --name \($0)" } ?? "") + ")"
        }
        // Records that cannot be used are reported, never hidden: they are failed jobs.
        let notes = unusable.map { "drover: \($0)" }
        if options.json {
            (notes + (more.map { [$0] } ?? [])).forEach { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            return try printJSON(records)
        }
        printTable(
            ["ID", "NAME", "METHOD", "KIND", "STATE", "RUNS", "SUBMITTED"],
            records.map { record in
                [
                    record.id, record.spec.name ?? "-", record.spec.method, kindText(record.spec),
                    record.state.rawValue + (record.suspended == true ? " (suspended)" : ""),
                    "\(record.runsEnded)", relative(record.submittedAt),
                ]
            } + unusable.map { [$0.job, "-", "-", "-", "failed", "-", "(record unusable)"] })
        notes.forEach { print($0) }
        if let more { print(more) }
        if let (counts, at) = counts ?? nil {
            let nowhere = counts.waitingForNoExecutor.flatMap { $0 > 0 ? " (\($0) of them fit no executor: `drover status JOB` says why)" : nil } ?? ""
            print("in all: \(counts.waiting) waiting for room\(nowhere), \(counts.scheduled) waiting for their time, \(counts.running) running (the leader's count as of their last change, \(relative(at)))")
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a job: its state, why it waits, its latest runs.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The job id.") var job: String

    func run() async throws {
        let record = try await withClient(options) { try await $0.status(job) }
        if options.json { return try printJSON(record) }
        print("job        \(record.id)\(record.spec.name.map { "  (\($0))" } ?? "")")
        print("method     \(record.spec.method)  \(kindText(record.spec))")
        print("state      \(record.state.rawValue)\(record.waitingReason.map { ": \($0)" } ?? "")")
        if let executor = record.executor { print("executor   \(executor)") }
        for run in record.concurrentRuns ?? [] {
            let time = run.scheduledFor.map { "for its time \(relative($0))" } ?? "triggered"
            let place = run.executor.map { "on \($0)" } ?? "waiting to be placed" + (run.waitingReason.map { ": \($0)" } ?? "")
            print("running    \(run.run.map { "run \($0)" } ?? "a new run") \(time), \(place)\(run.stopRequested == true ? " (asked to stop)" : "")")
        }
        if let next = record.nextRunAt { print("next run   \(relative(next))") }
        if record.suspended == true { print("suspended  yes: no new run starts until drover resume \(record.id)") }
        if record.replacing == true { print("replacing  the running run was asked to stop: the schedule's next time came (overlap: replace)") }
        if let cron = record.spec.schedule?.cron, !record.state.isFinal, let zone = cron.zone {
            let upcoming = cron.nextRuns(after: max(.now(), (record.nextRunAt ?? 0) - 1), count: 3)
            print("schedule   cron \"\(cron.expression)\" in \(cron.timeZone); next: \(upcoming.map { localTime($0, in: zone) }.joined(separator: ", "))")
        }
        var runs = "\(record.runsEnded) ended, \(record.runsStarted) started"
        if let retried = record.runsRetried, retried > 0 { runs += ", \(retried) retried" }
        if let failed = record.runsFailed, failed > 0 { runs += ", \(failed) failed for good" }
        print("runs       \(runs)")
        if let retry = record.spec.retry {
            print(
                "retry      up to \(retry.maxAttempts) attempts when a run ends \(retry.on.map(\.rawValue).joined(separator: ", ")); "
                    + "waits \(retry.initialDelaySeconds)s ×\(retry.multiplier) up to \(retry.maxDelaySeconds)s"
                    + (retry.jitter > 0 ? ", less up to \(Int(retry.jitter * 100))% jitter" : ""))
            if let attempt = record.attempt { print("attempt    \(attempt) of \(retry.maxAttempts)") }
        }
        if let policy = record.spec.onFailure { print("on failure \(policy.rawValue)") }
        if record.spec.schedule != nil {
            let missed = record.spec.missedRuns
            print(
                "policies   overlap \(record.spec.overlap?.rawValue ?? "forbid")"
                    + (record.spec.overlap == .allow ? " (at most \(record.spec.effectiveMaxConcurrentRuns) runs at once)" : "") + ", missed runs \(missed?.policy.rawValue ?? "runOnce")"
                    + (missed.map { $0.policy == .runOnce ? "" : " (starting deadline \($0.startingDeadlineMilliseconds / 1000)s" + ($0.policy == .catchUp ? ", at most \($0.catchUpLimit) in a row)" : ")") } ?? ""))
        }
        print("priority   \(record.spec.effectivePriority)")
        print("submitted  \(relative(record.submittedAt))")
        if let steps = record.spec.workflowSteps {
            let shared = try await withClient(options) { try await $0.sharedData(of: job) }
            if shared != .object([:]) { print("shared     \(Bounds.truncated(compactJSON(shared), toBytes: 2_000))") }
            printSteps(steps, of: record)
        }
        guard !record.history.isEmpty else { return }
        print("")
        printTable(
            ["RUN", "EXECUTOR", "OUTCOME", "ATTEMPT", "STARTS", "ENDED", "RESULT"],
            record.history.map { run in
                [
                    "\(run.run)", run.executor, run.failure.map { $0 == .failed ? "failed" : "failed (\($0))" } ?? run.outcome.rawValue,
                    "\(run.attempt ?? 1)", "\(run.attempts)", relative(run.endedAt),
                    run.error ?? run.result.map(compactJSON) ?? "-",
                ]
            })
    }
}

struct ResultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "result", abstract: "Print the result of a job's run (the latest by default).")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The job id.") var job: String
    @Option(help: "The run number.") var run: Int?

    func run() async throws {
        let record = try await withClient(options) { try await $0.status(job) }
        guard let entry = run.map({ number in record.history.first { $0.run == number } }) ?? record.history.last else {
            throw ExitMessage(
                run.map { "job \(job) has no run \($0) in its history (kept: \(record.history.map(\.run)))" }
                    ?? "job \(job) has no finished run yet (state: \(record.state.rawValue))")
        }
        if options.json { return try printJSON(entry) }
        if let error = entry.error { throw ExitMessage("run \(entry.run) \(entry.outcome.rawValue): \(error)") }
        print(entry.result.map(compactJSON) ?? "null")
    }
}

/// Asks for one operation on a job (queued for the leader) and says so.
func request(_ verb: String, for job: String, _ options: ClientOptions, _ operation: (DroverClient, String) async throws -> Void) async throws {
    try await withClient(options) { try await operation($0, job) }
    print("\(verb) requested for \(job)")
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a job that has not started running.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The job id.") var job: String
    func run() async throws {
        try await request("cancel", for: job, options) { try await $0.cancel($1) }
    }
}

struct Stop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop a job: its running task is stopped and it does not run again.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The job id.") var job: String
    func run() async throws {
        try await request("stop", for: job, options) { try await $0.stop($1) }
    }
}

struct Suspend: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Suspend a job: no new run starts until drover resume; a running run finishes.",
        discussion: """
            For scheduled jobs above all: times that pass while it is suspended are skipped. A \
            workflow's run is one pass through its graph: the pass under way finishes its steps, \
            and the next waits for drover resume.
            """)
    @OptionGroup var options: ClientOptions
    @Argument(help: "The job id.") var job: String
    func run() async throws {
        try await request("suspend", for: job, options) { try await $0.suspend($1) }
    }
}

struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Resume a suspended job: a scheduled one at its next time, another at once.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The job id.") var job: String
    func run() async throws {
        try await request("resume", for: job, options) { try await $0.resume($1) }
    }
}

struct Trigger: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a job once now, outside its schedule (refused while one of its runs is running; an --overlap allow job: while its maximum runs).")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The job id.") var job: String
    func run() async throws {
        try await request("trigger", for: job, options) { try await $0.trigger($1) }
    }
}

struct Inject: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add steps to a workflow that has not ended.",
        discussion: """
            The file (YAML or JSON) holds a list of steps, or {steps: [...]}, as in a workflow's spec:
              - id: extra-disk
                method: shell
                after: [disk]
                arguments: {command: [make-disk, {$from: network.result.vlan}]}
            A first step without `after` depends on nothing; the others run after the one before,
            as in a spec. The whole graph is checked again: a repeated id, a cycle or a reference to
            a step it does not run after is refused, naming the step. The leader adds the steps;
            if the workflow ended meanwhile, `drover setaside` says so.
            """)
    @OptionGroup var options: ClientOptions
    @Argument(help: "The workflow's job id.") var job: String
    @Option(name: [.short, .customLong("file")], help: "The steps: .yaml/.yml or .json.") var file: String

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw ExitMessage("cannot read \(file)") }
        let text = String(decoding: data, as: UTF8.self)
        let steps: [WorkflowStep]
        do {
            var document = file.hasSuffix(".json") ? try JSONDecoder().decode(JSONValue.self, from: data) : try YAMLDecoder().decode(JSONValue.self, from: text)
            if case .array = document { document = ["steps": document] }
            guard case .object(let fields) = document, let list = fields["steps"], fields.count == 1 else {
                throw ExitMessage("\(file): expected a list of steps, or {steps: [...]}")
            }
            if let field = JobSpec.unknownField(in: ["steps": list]) {
                throw ExitMessage("\(file): \(field): not a field of a step (see docs/PROTOCOL.md)")
            }
            steps = try JSONDecoder().decode([WorkflowStep].self, from: Data(Codec.encode(list)))
        } catch let error as DecodingError {
            throw ExitMessage("\(file): \(JobRecord.describe(error).replacingOccurrences(of: "document", with: "steps"))")
        } catch let error as YamlError {
            throw ExitMessage("\(file): not valid YAML: \(error)")
        }
        try await request("adding \(steps.count) step\(steps.count == 1 ? "" : "s")", for: job, options) { try await $0.inject(steps, into: $1) }
    }
}

struct Executors: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List executors with their load and whether they are alive.",
        discussion: """
            SLOTS, CPU and MEMORY MB: held / capacity. TASKS: the tasks it holds (ended ones count until
            the manager collects them). DIRECT: for jobs placed on the direct path (drover submit
            --placement), the reservations waiting in its inbox that it has seen and the tasks it
            claimed that have not ended; "-" when it publishes no load (not connected). An executor
            lists its inbox when it has a slot free, so a busy one may hold more reservations than
            it shows.
            """)
    @OptionGroup var options: ClientOptions
    func run() async throws {
        let executors = try await withClient(options) { try await $0.executors() }
        if options.json {
            struct Row: Encodable {
                let id: String
                let registration: ExecutorRegistration?
                let state: ExecutorState?
                let load: ExecutorLoad?
                let claimed: Int
            }
            return try printJSON(executors.map { Row(id: $0.id, registration: $0.registration, state: $0.state, load: $0.load, claimed: $0.claimedTasks) })
        }
        printTable(
            ["ID", "ALIVE", "SLOTS", "CPU", "MEMORY MB", "TASKS", "DIRECT", "LABELS", "DRAINING"],
            executors.map { executor in
                let (id, registration, state) = (executor.id, executor.registration, executor.state)
                // Held: what placement counts as taken — finished runs too, until the leader collects them.
                let used = state?.held ?? .zero
                let capacity = registration?.capacity
                let finished = state?.tasks.filter(\.state.isFinished).count ?? 0
                return [
                    id, registration != nil ? "yes" : state == nil ? "never started" : "no",
                    "\(used.slots)/\(capacity.map { "\($0.slots)" } ?? "?")", "\(used.cpu)/\(capacity.map { "\($0.cpu)" } ?? "?")",
                    "\(used.memoryMB)/\(capacity.map { "\($0.memoryMB)" } ?? "?")",
                    "\(state?.tasks.count ?? 0)" + (finished > 0 ? " (\(finished) ended, not collected)" : ""),
                    executor.load.map { "\($0.reserved) reserved, \(executor.claimedTasks) claimed" } ?? "-",
                    registration?.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") ?? "-",
                    state?.draining == true ? "yes" : "no",
                ]
            })
    }
}

struct SetAside: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "setaside",
        abstract: "List the queue items the manager set aside (could not read or apply), newest first.",
        discussion: """
            Each item shows when, a code for programs (unreadableItem, emptyBatch, unreadableOperation,
            noJob), the reason, and the start of the item as it was. They stay in ZooKeeper under
            /drover/setaside until removed (zkCli.sh deleteall, or delete one node).
            """)
    @OptionGroup var options: ClientOptions
    @Option(help: "Show at most this many.") var limit: Int = 20
    /// What a manager keeps unless told otherwise (`drover manager --set-aside-limit`).
    static let keptByDefault = 1_000

    func validate() throws {
        guard limit > 0 else { throw ValidationError("--limit must be at least 1") }
    }

    func run() async throws {
        let (items, total, dropped) = try await withClient(options) { try await $0.setAsideItems(limit: limit) }
        if options.json { return try printJSON(items.map(\.item)) }
        printTable(
            ["ITEM", "AT", "CODE", "REASON", "DATA"],
            items.map { name, item in
                let data = item.data.count > 60 ? String(item.data.prefix(60)) + "…" : item.data
                return [
                    name, relative(item.at), item.code?.rawValue ?? "-", item.reason,
                    data.replacingOccurrences(of: "\n", with: " ") + (item.bytes.map { " (\($0) bytes)" } ?? ""),
                ]
            })
        if total > items.count { print("(\(total - items.count) older items not shown: --limit)") }
        if dropped > 0 { print("(\(dropped) older items were dropped by the manager, which keeps the newest \(Self.keptByDefault))") }
    }
}

struct Forget: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove a dead executor that holds no tasks from the cluster.",
        discussion: "Refused while the executor is alive or its assignments still hold tasks (the manager takes a dead executor's tasks back after the grace period).")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The executor id.") var executor: String
    func run() async throws {
        try await withClient(options) { try await $0.forget(executor: executor) }
        print("forgot executor \(executor)")
    }
}

struct Undrain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Place tasks on a drained executor again.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The executor id.") var executor: String
    func run() async throws {
        try await withClient(options) { try await $0.undrain(executor: executor) }
        print("undrain requested for \(executor)")
    }
}

struct Drain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Place no new tasks on an executor; its running tasks finish.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The executor id.") var executor: String
    func run() async throws {
        try await withClient(options) { try await $0.drain(executor: executor) }
        print("drain requested for \(executor)")
    }
}

// MARK: Output

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func compactJSON(_ value: JSONValue) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "?"
}

func printTable(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
    for row in [header] + rows {
        print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
            .trimmingCharacters(in: .whitespaces))
    }
}

func kindText(_ spec: JobSpec) -> String {
    var prefix = ""
    if let steps = spec.steps { prefix = "workflow of \(steps.count) step\(steps.count == 1 ? "" : "s")" }
    if let tasks = spec.taskCount { prefix = "\(tasks) task\(tasks == 1 ? "" : "s") at once" }
    if !prefix.isEmpty {
        guard spec.kind != .once || spec.schedule != nil else { return prefix }
        var repeating = spec
        repeating.steps = nil
        repeating.tasks = nil
        return prefix + ", " + kindText(repeating)
    }
    let kind =
        switch spec.kind {
        case .once: "once"
        case .finite: "×\(spec.count ?? 0)"
        case .infinite: "forever"
        }
    guard let schedule = spec.schedule else { return kind }
    if let cron = schedule.cron { return "\(kind) cron \"\(cron.expression)\" \(cron.timeZone)" }
    return "\(kind) every \(Double(schedule.intervalMilliseconds) / 1000)s"
}

/// `2026-03-29 03:00 CEST`: a time on the wall clock of `zone`.
func localTime(_ time: Timestamp, in zone: TimeZone) -> String {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = zone
    let date = Date(timeIntervalSince1970: Double(time) / 1000)
    let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: date)
    let text = String(format: "%04d-%02d-%02d %02d:%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0, parts.hour ?? 0, parts.minute ?? 0)
    return text + " " + (zone.abbreviation(for: date) ?? zone.identifier)
}

/// "3m ago", "in 20s".
func relative(_ time: Timestamp) -> String {
    let delta = Double(time - Timestamp.now()) / 1000
    let magnitude = abs(delta)
    let text =
        magnitude < 60
        ? "\(Int(magnitude))s" : magnitude < 3600 ? "\(Int(magnitude / 60))m" : magnitude < 86_400 ? "\(Int(magnitude / 3600))h" : "\(Int(magnitude / 86_400))d"
    return delta >= 0 ? "in \(text)" : "\(text) ago"
}

/// A workflow's steps as a text graph: one line per step in the spec's order, with the steps it
/// runs after, its state, its run (for `drover logs JOB --run N`) and where it runs or why it
/// waits, its attempt and duration.
func printSteps(_ steps: [WorkflowStep], of record: JobRecord) {
    print("")
    let dependencies = WorkflowGraph.dependencies(of: steps)
    let width = steps.map(\.id.count).max() ?? 4
    for (index, step) in steps.enumerated() {
        let progress = record.steps?.indices.contains(index) == true ? record.steps![index] : StepProgress(id: step.id)
        let mark =
            switch progress.state {
            case .succeeded: "✓"
            case .failed: "✗"
            case .running: "▶"
            case .stopped: "■"
            case .skipped: "-"
            case .pending: "·"
            }
        let after = dependencies[index].map { steps[$0].id }
        var line = "\(mark) \(step.id.padding(toLength: width, withPad: " ", startingAt: 0))  \(progress.state.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0))"
        line += after.isEmpty ? "  (first)" : "  after \(after.joined(separator: ", "))"
        if let run = progress.run { line += "  run \(run)" }
        if progress.state == .running {
            if let executor = progress.executor {
                line += " on \(executor)"
            } else if let reason = progress.waitingReason {
                line += "  waiting: \(reason)"
            } else if let due = progress.nextRunAt {
                line += "  retrying \(relative(due))"
            }
        }
        if let attempt = progress.attempt, attempt > 1 { line += "  attempt \(attempt)" }
        if let started = progress.startedAt, let ended = progress.endedAt { line += "  \(Double(max(0, ended - started)) / 1000)s" }
        if let error = progress.error { line += "  — \(error)" }
        print(line)
    }
}
