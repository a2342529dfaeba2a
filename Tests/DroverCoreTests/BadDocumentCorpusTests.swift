@testable import DroverManager
import DroverProtocol
import Foundation
import Testing
import ZKRecipes
import ZooKeeper

/// A seeded corpus of malformed and extreme documents — truncated JSON, wrong types, missing
/// and extra fields, huge and non-finite numbers, deep nesting, megabyte strings, invalid UTF-8,
/// future formats, ids with `/`, `..`, NUL and control characters — fed to every decoder and to
/// the leader's decisions. Nothing may trap; every document is either read or refused with a
/// reason (issue 13). A failure prints the seed and the document's number to replay it.
@Suite("A corpus of bad documents (no server)")
struct BadDocumentCorpusTests {
    /// SplitMix64: the same seed, the same corpus.
    struct Random: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let seed: UInt64 = 20_261_203

    static let record: JSONValue = [
        "format": 1, "id": "j-1",
        "spec": [
            "format": 1, "name": "n", "method": "shell", "arguments": ["command": ["echo", "x"], "timeoutSeconds": 5],
            "resources": ["cpu": 0.5, "memoryMB": 64, "slots": 1], "constraints": ["zone": "a"], "kind": "finite", "count": 3,
            "schedule": ["reference": "2021-01-31T21:01:00Z", "intervalSeconds": 60],
        ],
        "state": "queued", "submittedAt": 0, "runsStarted": 0, "runsEnded": 0, "history": [], "stopRequested": false,
        "resume": ["attempts": 1, "checkpoint": ["step": 2]],
    ]
    static let task: JSONValue = [
        "job": "j-1", "run": 1, "method": "shell", "arguments": ["command": ["true"]], "resources": ["cpu": 0, "memoryMB": 0, "slots": 1],
        "state": "running", "assignedAt": 0, "startedAt": 1, "attempts": 1, "stopRequested": false,
    ]
    static let executorState: JSONValue = ["format": 1, "executor": "e1", "draining": false, "tasks": [task, task]]
    static let registration: JSONValue = [
        "format": 1, "id": "e1", "capacity": ["cpu": 2, "memoryMB": 1024, "slots": 4], "labels": ["zone": "a"], "methods": ["shell"],
        "startedAt": 0,
    ]
    static let operation: JSONValue = ["format": 1, "op": "submit", "job": "j-1", "record": record]
    static let batch: JSONValue = ["format": 2, "operations": [operation, ["format": 1, "op": "stop", "job": "j-2"]]]
    static let templates: [JSONValue] = [record, executorState, registration, operation, batch, record["spec"]!]

    /// Bad values, as JSON text, put in place of any value of a template.
    static let badValues: [String] = [
        "null", "true", "\"x\"", "[]", "{}", "1e400", "-1e400", "1e300", "-1e300", "-1", "0", "9223372036854775808",
        "-9223372036854775809", "1.5", "99999999999999999999999999", "\"\\u0000\"", "\"../..\"", "\"a/b\"", "\"\\u001b[31m\"",
        "\"2021-13-45T99:99:99Z\"", "\"\(String(repeating: "x", count: 200_000))\"", String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000),
        "2", "999999999999", "\"sometimes\"",
    ]

    /// JSON text of `value` with its `target`-th value (in document order) replaced by `replacement`;
    /// `counter` counts the values seen.
    static func text(_ value: JSONValue, replacing target: Int, with replacement: String, counter: inout Int, dropKey: Bool, extraKey: Bool) -> String {
        let index = counter
        counter += 1
        if index == target { return replacement }
        switch value {
        case .null: return "null"
        case .bool(let flag): return flag ? "true" : "false"
        case .number(let number): return number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        case .string(let string): return String(decoding: try! JSONEncoder().encode(string), as: UTF8.self)
        case .array(let values):
            return "[" + values.map { text($0, replacing: target, with: replacement, counter: &counter, dropKey: dropKey, extraKey: extraKey) }.joined(separator: ",") + "]"
        case .object(let members):
            var parts: [String] = []
            for (position, key) in members.keys.sorted().enumerated() {
                let child = text(members[key]!, replacing: target, with: replacement, counter: &counter, dropKey: dropKey, extraKey: extraKey)
                // Drop the member that holds the target, or add one beside it.
                if dropKey && index + 1 + position == target { continue }
                parts.append("\"\(key)\":" + child)
            }
            if extraKey && index + 1 == target { parts.append("\"unknownField\":1") }
            return "{" + parts.joined(separator: ",") + "}"
        }
    }

    static func count(_ value: JSONValue) -> Int {
        switch value {
        case .array(let values): 1 + values.map(count).reduce(0, +)
        case .object(let members): 1 + members.values.map(count).reduce(0, +)
        default: 1
        }
    }

    /// The corpus: `size` documents, each a template with one thing wrong (or several).
    static func corpus(size: Int) -> [[UInt8]] {
        var random = Random(state: seed)
        var documents: [[UInt8]] = []
        for _ in 0..<size {
            let template = templates.randomElement(using: &random)!
            var counter = 0
            let target = Int.random(in: 0..<count(template), using: &random)
            let mode = Int.random(in: 0..<6, using: &random)
            var bytes = Array(
                text(
                    template, replacing: mode < 3 ? target : -1, with: badValues.randomElement(using: &random)!, counter: &counter,
                    dropKey: mode == 3, extraKey: mode == 4
                ).utf8)
            switch Int.random(in: 0..<8, using: &random) {
            case 0: bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random)))  // truncated
            case 1:  // invalid UTF-8 somewhere
                bytes.insert(contentsOf: [0xC3, 0x28, 0xFF], at: Int.random(in: 0...bytes.count, using: &random))
            case 2:  // a NUL or a control character in the text
                bytes.insert([0x00, 0x01, 0x1B, 0x7F].randomElement(using: &random)!, at: Int.random(in: 0...bytes.count, using: &random))
            default: break
            }
            documents.append(bytes)
        }
        return documents
    }

    static let documents = corpus(size: 3_000)

    @Test func everyDecoderReadsOrRefusesEveryDocument() throws {
        var read = 0
        var refused = 0
        for (number, bytes) in Self.documents.enumerated() {
            do {
                let record = try JobRecord.read(bytes, job: "j-1")
                #expect(record.problem(asJob: "j-1") == nil, "document \(number) of seed \(Self.seed)")
                // A record that reads is one the leader can write back within its bounds.
                #expect(try Codec.encode(record).count <= JobRecord.maximumEncodedBytes + 256 * 1024, "document \(number)")
                read += 1
            } catch let error as UnusableRecordError {
                #expect(!error.reason.isEmpty)
                refused += 1
            }
            let content = LeaderState.content(of: bytes)
            #expect(!content.operations.isEmpty || !content.unreadable.isEmpty, "document \(number): an item must be applied or set aside")
            for item in content.unreadable { #expect(SetAsideItem(code: item.code, reason: item.reason, data: item.data).data.utf8.count <= 3 * Bounds.setAsideDataBytes) }
            _ = try? Codec.decode(ExecutorState.self, bytes)
            _ = try? Codec.decode(ExecutorProgress.self, bytes)
            _ = try? Codec.decode(ExecutorRegistration.self, bytes)
            if let spec = try? Codec.decode(JobSpec.self, bytes) { _ = try? spec.validate() }
            _ = LoadedRecord(id: "j-1", node: NodeData(data: bytes, stat: Stat()))
        }
        // The corpus is not all garbage: some documents survive their one change.
        #expect(read > 0 && refused > read)
    }

    /// Before, `{"format": 99, "executor": "e1", "tasks": []}` read as progress with no tasks:
    /// the executor did not keep it aside, and the leader took the executor's ended runs for
    /// never started and placed them again (chaos: `fenced-writes`).
    @Test func anExecutorDocumentOfAFormatThisDroverDoesNotKnowIsRefused() throws {
        for format in [0, 2, 99] {
            let progress = Array(#"{"format": \#(format), "executor": "e1", "tasks": []}"#.utf8)
            let assignments = Array(#"{"format": \#(format), "executor": "e1", "draining": false, "tasks": []}"#.utf8)
            #expect(throws: DecodingError.self, "format \(format)") { try Codec.decode(ExecutorProgress.self, progress) }
            #expect(throws: DecodingError.self, "format \(format)") { try Codec.decode(ExecutorState.self, assignments) }
        }
        // The formats this Drover writes still read, and say what they are.
        let progress = try Codec.decode(ExecutorProgress.self, Codec.encode(ExecutorProgress(executor: "e1")))
        #expect(progress.format == ExecutorProgress.currentFormat && progress.executor == "e1")
        let assignments = try Codec.decode(ExecutorState.self, Codec.encode(ExecutorState(executor: "e1", draining: true)))
        #expect(assignments == ExecutorState(executor: "e1", draining: true))
        do {
            _ = try Codec.decode(ExecutorProgress.self, Array(#"{"format": 99, "executor": "e1", "tasks": []}"#.utf8))
        } catch {
            #expect("\(error)".contains("upgrade Drover"))
        }
    }

    @Test func theLeaderDecidesOnEveryDocumentWithoutTrapping() throws {
        var state = LeaderState(configuration: .init(gracePeriod: .seconds(10), historyLimit: 20, batchSize: 100))
        let start = ContinuousClock.now
        state.executorListed("e1", at: start)
        state.livenessChanged("e1", ExecutorRegistration(id: "e1", capacity: Resources(cpu: 8, memoryMB: 8192, slots: 1_000)), at: start)
        state.assignmentsChanged("e1", Versioned(document: ExecutorState(executor: "e1"), version: 0), bytes: 100)
        for (number, bytes) in Self.documents.enumerated() {
            let (operations, unreadable) = LeaderState.content(of: bytes)
            // Each operation's record is this same document, as if another program wrote it there.
            var loaded: [String: LoadedRecord] = [:]
            var rounds = 0
            plan: while rounds < 5 {
                rounds += 1
                switch state.planQueueBatch(operations, unreadable: unreadable, now: 1_700_000_000_000, loaded: loaded, placing: true) {
                case .read(let ids):
                    for id in ids { loaded[id] = LoadedRecord(id: id, node: NodeData(data: bytes, stat: Stat())) }
                case .nothing: break plan
                case .confirmGone(let id):
                    Issue.record("a queue batch asked to look at executor \(id)'s registration: only a take-back does")
                    break plan
                case .commit(let transaction):
                    do {
                        let encoded = try state.encode(transaction, layout: Layout(), acls: .open)
                        state.committed(transaction, encoded)
                    } catch is Transaction.OverBudget {
                        _ = state.overBudget(.init(bytes: 0, jobs: 1))
                    }
                    break plan
                }
            }
            #expect(rounds < 5, "document \(number) of seed \(Self.seed): the leader kept asking for reads")
        }
    }
}
