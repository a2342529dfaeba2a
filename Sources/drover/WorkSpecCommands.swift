import ArgumentParser
import DroverClient
import DroverProtocol
import DroverStore
import Foundation
import Synchronization

/// `drover spec …`: work specs, each many small units run by one method.
struct SpecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spec",
        abstract: "Work specs: many small work units (a key and a little data each) run by one method.",
        discussion: """
            A work spec names a method and arguments common to its units; `drover units add` adds \
            the units. Executors started with --unit-slots claim units in batches straight from \
            ZooKeeper (no manager on the path) and run them: specs of the highest priority first, \
            then in proportion to their weights. A failed or expired attempt is tried again up to \
            --max-retries times; an attempt's lease that runs out (its executor died) frees the unit. \
            --max-running caps the units running at once; --then names a spec that finished units \
            feed (their handler's result lists the new units under "output"). An executor stopped \
            gracefully lets its units finish, or with --on-stop hand-back gives them back at once. \
            docs/PROTOCOL.md ("Work specs") has the details.
            """,
        subcommands: [
            SpecCreate.self, SpecList.self, SpecStatus.self, SpecUpdate.self, SpecPause.self, SpecResume.self, SpecRetry.self, SpecClear.self,
            SpecDelete.self,
        ])
}

/// The settings of a spec, optional so that `update` changes only those given.
struct SpecSettings: ParsableArguments {
    @Option(help: ArgumentHelp("Arguments common to every unit, as JSON (an object).", valueName: "json"))
    var arguments: String?
    @Option(help: "Strict priority: units of a lower priority spec run only when no higher one has units to claim (-1000 to 1000; default 0).")
    var priority: Int?
    @Option(help: "Share among specs of equal priority: units are claimed in proportion to the weights (above 0; default 1).")
    var weight: Double?
    @Option(help: "Tries after the first, for a unit whose attempt failed or whose lease ran out (0 to 100; default 0).")
    var maxRetries: Int?
    @Option(help: "Seconds an attempt holds its unit; executors renew the leases of units still running (default 120).")
    var leaseSeconds: Double?
    @Option(help: "The most units one executor claims in one write (1 to 1000; default 100).")
    var maxGetwork: Int?
    @Option(help: "The most units of the spec running at once, all executors together (default: no cap; 0 removes it). Shared among its buckets, so at least one per bucket.")
    var maxRunning: Int?
    @Option(help: ArgumentHelp("The spec that finished units feed: the units a handler's result lists under \"output\" (keys, {\"key\", \"data\"} objects, or keys to data) are added to it (default: none; '' removes it).", valueName: "spec"))
    var then: String?

    func parsedArguments() throws -> JSONValue? {
        guard let arguments else { return nil }
        do {
            let value = try JSONDecoder().decode(JSONValue.self, from: Data(arguments.utf8))
            guard case .object = value else { throw ValidationError("--arguments must be a JSON object, e.g. '{\"size\": 64}'") }
            return value
        } catch let error as ValidationError {
            throw error
        } catch {
            throw ValidationError("--arguments is not valid JSON: \(error)")
        }
    }

    func apply(to spec: inout WorkSpec) throws {
        if let arguments = try parsedArguments() { spec.arguments = arguments }
        if let priority { spec.priority = priority }
        if let weight { spec.weight = weight }
        if let maxRetries { spec.maxRetries = maxRetries }
        if let leaseSeconds { spec.leaseSeconds = leaseSeconds }
        if let maxGetwork { spec.maxGetwork = maxGetwork }
        if let maxRunning { spec.maxRunning = maxRunning == 0 ? nil : maxRunning }
        if let then { spec.then = then.isEmpty ? nil : then }
    }
}

struct SpecCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a work spec.",
        discussion: """
            Example: drover spec create thumbnails --method shell \
            --arguments '{"command": ["sh", "-c", "convert \\"$DROVER_UNIT_KEY\\" -resize 64 out/"]}'
            A shell unit gets its key in $DROVER_UNIT_KEY and its data (JSON) in $DROVER_UNIT_DATA.
            """)
    @OptionGroup var options: ClientOptions
    @Argument(help: "The spec's name (letters, digits, '.', '_', '-').") var name: String
    @Option(help: "The executor method that runs each unit (shell, or one an embedding program registers).") var method: String
    @OptionGroup var settings: SpecSettings
    @Option(help: "Buckets the units are spread over, fixed at creation (1 to 256): about one per 100,000 units you expect. More buckets: fewer conflicts between executors, more reads for a count.")
    var buckets: Int = 16
    @Flag(help: "Create it paused: units can be added, none run until `drover spec resume`.") var paused = false

    func run() async throws {
        var spec = WorkSpec(name: name, method: method, buckets: buckets, paused: paused, createdAt: Timestamp.now())
        try settings.apply(to: &spec)
        try await withClient(options) { try await $0.workSpecs.create(spec) }
        print("created work spec \(name) (method \(method), \(buckets) buckets\(paused ? ", paused" : "")): add units with `drover units add \(name) -f units.jsonl`")
    }
}

struct SpecUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "update", abstract: "Change a work spec's settings (those given; the others stay).")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The spec's name.") var name: String
    @Option(help: "Another method for its units (attempts running now finish with the old one).") var method: String?
    @OptionGroup var settings: SpecSettings

    func run() async throws {
        _ = try settings.parsedArguments()
        let spec = try await withClient(options) { client in
            try await client.workSpecs.update(name) { spec in
                if let method { spec.method = method }
                try settings.apply(to: &spec)
            }
        }
        if options.json { return try printJSON(spec) }
        print("updated work spec \(name)")
    }
}

struct SpecPause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pause", abstract: "Start no more units of a spec (attempts running now finish).")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The spec's name.") var name: String
    func run() async throws {
        try await withClient(options) { _ = try await $0.workSpecs.update(name) { $0.paused = true } }
        if options.json { return try printJSON(["name": name, "action": "pause"]) }
        print("paused work spec \(name)")
    }
}

struct SpecResume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Run a paused spec's units again.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The spec's name.") var name: String
    func run() async throws {
        try await withClient(options) { _ = try await $0.workSpecs.update(name) { $0.paused = false } }
        if options.json { return try printJSON(["name": name, "action": "resume"]) }
        print("resumed work spec \(name)")
    }
}

struct SpecRetry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry", abstract: "Make every failed and expired unit of a spec retryable, its tries counted afresh.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The spec's name.") var name: String
    func run() async throws {
        let retried = try await withClient(options) { client in
            guard let spec = try await client.workSpecs.spec(name)?.document else { throw DroverError(.invalidSpec, "no work spec named \(name)") }
            return try await client.workSpecs.retryFailed(of: spec)
        }
        if options.json { return try printJSON(["name": .string(name), "action": "retry", "units": .number(Double(retried))] as [String: JSONValue]) }
        print("\(retried) unit\(retried == 1 ? "" : "s") of \(name) will be tried again")
    }
}

struct SpecClear: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clear",
        abstract: "Remove a work spec's units (every one, or those in the states given); the spec stays.",
        discussion: """
            Units are removed a segment at a time; a segment left empty is deleted (units added while \
            the clear runs stay). Attempts running on units removed go on but cannot record their \
            ends, and no longer count against --max-running: to keep those, pause the spec and let \
            them finish first, or clear only units that have ended, e.g. --state finished --state failed.
            """)
    @OptionGroup var options: ClientOptions
    @Argument(help: "The spec's name.") var name: String
    @Option(name: .customLong("state"), help: "Only units in this state (repeatable): \(UnitState.allCases.map(\.rawValue).joined(separator: ", ")).")
    var states: [String] = []

    func validate() throws {
        if let bad = states.first(where: { UnitState(rawValue: $0) == nil }) {
            throw ValidationError("--state \(bad): expected one of \(UnitState.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        let chosen = states.isEmpty ? nil : Set(states.compactMap(UnitState.init(rawValue:)))
        let removed = try await withClient(options) { client in
            guard let spec = try await client.workSpecs.spec(name)?.document else { throw DroverError(.invalidSpec, "no work spec named \(name)") }
            return try await client.workSpecs.clear(spec, states: chosen)
        }
        if options.json { return try printJSON(["name": .string(name), "action": "clear", "units": .number(Double(removed))] as [String: JSONValue]) }
        let which = chosen.map { " " + $0.map(\.rawValue).sorted().joined(separator: " or ") } ?? ""
        print("removed \(removed)\(which) unit\(removed == 1 ? "" : "s") of \(name)")
    }
}

struct SpecDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a work spec and all its units (attempts running now cannot record their ends).")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The spec's name.") var name: String
    func run() async throws {
        try await withClient(options) { try await $0.workSpecs.delete(name) }
        if options.json { return try printJSON(["name": name, "action": "delete"]) }
        print("deleted work spec \(name)")
    }
}

struct SpecList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List work specs with their units' counts by state.",
        discussion: """
            The counts are those the leading manager published (one read for every spec, a few \
            seconds old at most); --exact sums each spec's buckets now instead (a read per bucket). \
            A spec the leader has not counted yet is summed now.
            """)
    @OptionGroup var options: ClientOptions
    @Flag(help: "Sum every spec's buckets now instead of reading the leader's counts.") var exact = false
    func run() async throws {
        let (rows, countedAt) = try await withClient(options) { client in try await client.workSpecs.everySpec(exact: exact) }
        if options.json {
            struct Row: Encodable {
                let spec: WorkSpec
                let counts: UnitCounts
            }
            return try printJSON(rows.map { Row(spec: $0.0, counts: $0.1) })
        }
        printTable(
            ["NAME", "METHOD", "PRIORITY", "WEIGHT", "PAUSED"] + UnitState.allCases.map { $0.rawValue.uppercased() },
            rows.map { spec, counts in
                [spec.name, spec.method, "\(spec.priority)", "\(spec.weight)", spec.paused ? "yes" : "no"] + UnitState.allCases.map { "\(counts[$0])" }
            })
        if let countedAt, !rows.isEmpty {
            print("(counted by the leader \(max(0, Timestamp.now() - countedAt) / 1000) s ago; --exact counts now)")
        }
    }
}

struct SpecStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "A work spec's settings and how many of its units are in each state.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The spec's name.") var name: String
    func run() async throws {
        let (spec, counts) = try await withClient(options) { client in
            guard let spec = try await client.workSpecs.spec(name)?.document else { throw DroverError(.invalidSpec, "no work spec named \(name)") }
            return (spec, try await client.workSpecs.counts(of: spec))
        }
        if options.json {
            struct Status: Encodable {
                let spec: WorkSpec
                let counts: UnitCounts
            }
            return try printJSON(Status(spec: spec, counts: counts))
        }
        print("work spec \(spec.name): method \(spec.method), arguments \(compactJSON(spec.arguments))")
        print(
            "priority \(spec.priority), weight \(spec.weight), max retries \(spec.maxRetries), lease \(spec.leaseSeconds) s, "
                + "max getwork \(spec.maxGetwork), \(spec.buckets) buckets"
                + (spec.maxRunning.map { ", max running \($0)" } ?? "") + (spec.then.map { ", then \($0)" } ?? "") + (spec.paused ? ", PAUSED" : ""))
        print("units: \(counts.total)")
        for state in UnitState.allCases { print("  \(state.rawValue): \(counts[state])") }
    }
}

/// `drover units …`: a spec's work units.
struct UnitsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "units", abstract: "Add, list and show a work spec's units.",
        subcommands: [UnitsAdd.self, UnitsList.self, UnitsShow.self])
}

struct UnitsAdd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add", abstract: "Add units to a work spec from a file of JSON lines.",
        discussion: """
            One unit per line: {"key": "images/0001.png", "data": {"size": 64}} ("data" is \
            optional; a line that is a JSON string is a key alone). Keys are unique in a spec (up to \
            256 bytes), data up to 1 KiB. A bad line, or a key twice in the file, refuses the whole \
            add before anything is written, naming the line. A key the spec has already is left as \
            it is and counted, so an add that was interrupted can be run again.
            """)
    @OptionGroup var options: ClientOptions
    @Argument(help: "The spec's name.") var name: String
    @Option(name: .shortAndLong, help: ArgumentHelp("The units file ('-': standard input).", valueName: "file")) var file: String

    func run() async throws {
        let text: Data
        do {
            text = file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw ExitMessage("\(file): cannot read it: \(error.localizedDescription)")
        }
        let units = try Self.parse(text, file: file)
        guard !units.isEmpty else { throw ExitMessage("\(file): no units in it") }
        let start = ContinuousClock.now
        let total = units.count
        let report = try await withClient(options) { client in
            let added = AddedCount()
            return try await client.workSpecs.add(units, to: name) { count in
                let (now, before) = added.add(count)
                // Progress on long adds, every 100,000 units.
                if total >= 100_000, now / 100_000 != before / 100_000 {
                    FileHandle.standardError.write(Data("added \(now)/\(total)\n".utf8))
                }
            }
        }
        let seconds = (ContinuousClock.now - start) / .seconds(1)
        if options.json { return try printJSON(["added": report.added, "alreadyPresent": report.alreadyPresent, "writes": report.writes]) }
        print(
            "added \(report.added) unit\(report.added == 1 ? "" : "s") to \(name) in \(String(format: "%.1f", seconds)) s (\(report.writes) writes)"
                + (report.alreadyPresent > 0 ? "; \(report.alreadyPresent) already there, left as they were" : ""))
    }

    /// The units of a JSON-lines file; the first bad line refuses it all.
    static func parse(_ text: Data, file: String) throws -> [WorkUnit] {
        var units: [WorkUnit] = []
        let decoder = JSONDecoder()
        for (number, line) in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.drop(while: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D })
            guard !trimmed.isEmpty, !trimmed.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) else { continue }
            let value: JSONValue
            do {
                value = try decoder.decode(JSONValue.self, from: Data(trimmed))
            } catch {
                throw ExitMessage("\(file):\(number + 1): not JSON; nothing was added")
            }
            switch value {
            case .string(let key): units.append(WorkUnit(key: key))
            case .object(let members):
                guard case .string(let key)? = members["key"] else { throw ExitMessage("\(file):\(number + 1): a unit needs a \"key\" (a string); nothing was added") }
                if let unknown = members.keys.first(where: { $0 != "key" && $0 != "data" }) {
                    throw ExitMessage("\(file):\(number + 1): unknown field \"\(unknown)\" (a unit has \"key\" and \"data\"); nothing was added")
                }
                units.append(WorkUnit(key: key, data: members["data"]))
            default:
                throw ExitMessage("\(file):\(number + 1): a unit is {\"key\": …, \"data\": …} or a key as a JSON string; nothing was added")
            }
            do {
                try units[units.count - 1].validate()
            } catch {
                throw ExitMessage("\(file):\(number + 1): \(error.field): \(error.reason); nothing was added")
            }
        }
        return units
    }
}

/// Counts units added from concurrent bucket writes, for progress.
final class AddedCount: Sendable {
    private let value = Mutex(0)
    func add(_ count: Int) -> (now: Int, before: Int) { value.withLock { $0 += count; return ($0, $0 - count) } }
}

struct UnitsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List a spec's units, a page at a time.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The spec's name.") var name: String
    @Option(help: "Only units in this state: \(UnitState.allCases.map(\.rawValue).joined(separator: ", ")).") var state: String?
    @Option(help: "Units per page.") var limit: Int = 50
    @Option(help: "Where the page starts: the `next` a previous page printed.") var after: String?

    func validate() throws {
        if let state, UnitState(rawValue: state) == nil {
            throw ValidationError("--state \(state): one of \(UnitState.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be 1 to 10000") }
    }

    func run() async throws {
        let (units, next) = try await withClient(options) { client in
            guard let spec = try await client.workSpecs.spec(name)?.document else { throw DroverError(.invalidSpec, "no work spec named \(name)") }
            return try await client.workSpecs.units(of: spec, state: state.flatMap(UnitState.init(rawValue:)), limit: limit, after: after)
        }
        if options.json {
            struct Page: Encodable {
                let units: [WorkUnit]
                let next: String?
            }
            return try printJSON(Page(units: units, next: next))
        }
        printTable(
            ["KEY", "STATE", "ATTEMPTS", "LAST EXECUTOR", "LAST OUTCOME"],
            units.map { [$0.key, $0.state.rawValue, "\($0.attempts)", $0.last?.executor ?? "-", $0.last?.outcome?.rawValue ?? ($0.last == nil ? "-" : "running")] })
        if let next { print("(more: --after \(next))") }
    }
}

struct UnitsShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one unit: its data, state and attempts (the last and up to 4 before it).")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The spec's name.") var name: String
    @Argument(help: "The unit's key.") var key: String
    func run() async throws {
        let unit = try await withClient(options) { client in
            guard let spec = try await client.workSpecs.spec(name)?.document else { throw DroverError(.invalidSpec, "no work spec named \(name)") }
            guard let unit = try await client.workSpecs.unit(key, of: spec) else { throw DroverError(.invalidSpec, "work spec \(name) has no unit \(key)") }
            return unit
        }
        if options.json { return try printJSON(unit) }
        print("unit \(unit.key) of \(name): \(unit.state.rawValue), \(unit.attempts) attempt\(unit.attempts == 1 ? "" : "s")")
        if let data = unit.data { print("data: \(compactJSON(data))") }
        // Oldest first; the earlier ones as far as kept (docs/PROTOCOL.md: at most 4 before the last).
        let shown = (unit.earlier ?? []) + (unit.last.map { [$0] } ?? [])
        for (position, attempt) in shown.enumerated() {
            let label = position == shown.count - 1 ? "last attempt" : "earlier attempt"
            print("\(label): executor \(attempt.executor), started \(relative(attempt.startedAt))" + (attempt.endedAt.map { ", ended \(relative($0))" } ?? ", running"))
            if let outcome = attempt.outcome { print("  outcome: \(outcome.rawValue)") }
            if let error = attempt.error { print("  error: \(error)") }
            if let result = attempt.result { print("  result: \(compactJSON(result))") }
        }
        if let lease = unit.lease { print("lease: \(lease.executor) until \(relative(lease.until))") }
    }
}
