/// A work spec: many small work units run by one method, as Coordinate's work specs
/// (docs/PROTOCOL.md, "Work specs"). Stored at `specs/<name>`, written by clients with
/// compare-and-set; its units live in buckets beneath it (``UnitBucket``, ``UnitSegment``).
///
/// ```json
/// {"format": 1, "name": "thumbnails", "method": "sample.echo", "arguments": {"size": 64},
///  "priority": 0, "weight": 1, "maxRetries": 2, "leaseSeconds": 120, "maxGetwork": 100,
///  "buckets": 16, "paused": false}
/// ```
public struct WorkSpec: Codable, Sendable, Hashable {
    /// Format 2 adds `maxRunning` and `then`: a spec that sets either is written as format 2, so
    /// that an older executor passes it over (it would break the cap, or lose the units a `then`
    /// spec is owed) and an older CLI says to upgrade. Others stay format 1.
    public static let currentFormat = 2

    /// The oldest format that holds this spec.
    public var requiredFormat: Int { maxRunning != nil || then != nil ? 2 : 1 }

    public var format: Int = 1
    /// The spec's name: also its znode's name (letters, digits, `.`, `_`, `-`).
    public var name: String
    /// The executor method that runs each unit.
    public var method: String
    /// Arguments common to every unit; the handler gets them with the unit's key and data.
    public var arguments: JSONValue
    /// Strict: executors claim from a spec of lower priority only when no spec of higher
    /// priority has units to claim.
    public var priority: Int
    /// Among specs of equal priority, each gets units claimed in proportion to its weight.
    public var weight: Double
    /// How many times a unit is tried again after a failed or expired attempt.
    public var maxRetries: Int
    /// How long an attempt may run before its lease runs out and the unit may be claimed again
    /// (an executor renews the leases of units it still runs).
    public var leaseSeconds: Double
    /// The most units one executor claims in one write.
    public var maxGetwork: Int
    /// How many buckets the units are spread over, fixed when the spec is created: more buckets,
    /// fewer conflicts between executors claiming at once, more reads for a count.
    public var buckets: Int
    /// A paused spec keeps its units; no new attempts start.
    public var paused: Bool
    public var createdAt: Timestamp
    /// The most units of this spec running at once, all executors together (nil: no cap). Shared
    /// among the buckets (``UnitBucket/share(of:bucket:buckets:)``): at least one per bucket.
    public var maxRunning: Int?
    /// The spec a finished unit feeds (Coordinate's `then`): the units its handler's result
    /// lists under `output` are added to that spec before its end is recorded.
    public var then: String?

    public init(
        name: String, method: String, arguments: JSONValue = .object([:]), priority: Int = 0, weight: Double = 1, maxRetries: Int = 0,
        leaseSeconds: Double = 120, maxGetwork: Int = 100, buckets: Int = 16, paused: Bool = false, createdAt: Timestamp = 0,
        maxRunning: Int? = nil, then: String? = nil
    ) {
        self.maxRunning = maxRunning
        self.then = then
        self.name = name
        self.method = method
        self.arguments = arguments
        self.priority = priority
        self.weight = weight
        self.maxRetries = maxRetries
        self.leaseSeconds = leaseSeconds
        self.maxGetwork = maxGetwork
        self.buckets = buckets
        self.paused = paused
        self.createdAt = createdAt
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decodeFormat(upTo: Self.currentFormat, forKey: .format)
        name = try container.decode(String.self, forKey: .name)
        method = try container.decode(String.self, forKey: .method)
        arguments = try container.decode(JSONValue.self, forKey: .arguments)
        priority = try container.decode(Int.self, forKey: .priority)
        weight = try container.decode(Double.self, forKey: .weight)
        maxRetries = try container.decode(Int.self, forKey: .maxRetries)
        leaseSeconds = try container.decode(Double.self, forKey: .leaseSeconds)
        maxGetwork = try container.decode(Int.self, forKey: .maxGetwork)
        buckets = try container.decode(Int.self, forKey: .buckets)
        paused = try container.decode(Bool.self, forKey: .paused)
        createdAt = try container.decode(Timestamp.self, forKey: .createdAt)
        maxRunning = try container.decodeIfPresent(Int.self, forKey: .maxRunning)
        then = try container.decodeIfPresent(String.self, forKey: .then)
    }

    /// Checks every field a client sets; the error names the field and says what is allowed.
    public func validate() throws(SpecError) {
        guard (1...Self.currentFormat).contains(format) else {
            throw SpecError(field: "format", reason: "format \(format) is not one this Drover reads (1...\(Self.currentFormat)) — upgrade Drover")
        }
        guard Layout.isValidID(name) else {
            throw SpecError(field: "name", reason: "\"\(name.prefix(80))\" is not a spec name: 1 to 128 letters, digits, '.', '_' or '-'")
        }
        guard !method.isEmpty, method.utf8.count <= 128 else { throw SpecError(field: "method", reason: "a method name of 1 to 128 bytes is required") }
        guard Bounds.unitPriority.contains(priority) else {
            throw SpecError(field: "priority", reason: "\(priority) is out of range \(Bounds.unitPriority.lowerBound)...\(Bounds.unitPriority.upperBound)")
        }
        guard weight.isFinite, weight > 0 else { throw SpecError(field: "weight", reason: "\(weight) is not a weight: a number above 0") }
        guard (0...Bounds.unitMaximumRetries).contains(maxRetries) else {
            throw SpecError(field: "maxRetries", reason: "\(maxRetries) is out of range 0...\(Bounds.unitMaximumRetries)")
        }
        guard leaseSeconds.isFinite, leaseSeconds >= 1, leaseSeconds <= 7 * 86_400 else {
            throw SpecError(field: "leaseSeconds", reason: "\(leaseSeconds) is not a lease: 1 second to 7 days")
        }
        guard (1...Bounds.unitMaximumGetwork).contains(maxGetwork) else {
            throw SpecError(field: "maxGetwork", reason: "\(maxGetwork) is out of range 1...\(Bounds.unitMaximumGetwork)")
        }
        guard (1...Bounds.unitMaximumBuckets).contains(buckets) else {
            throw SpecError(field: "buckets", reason: "\(buckets) is out of range 1...\(Bounds.unitMaximumBuckets)")
        }
        if let maxRunning, !(buckets...Bounds.unitMaximumRunning).contains(maxRunning) {
            throw SpecError(
                field: "maxRunning",
                reason: "\(maxRunning) is out of range \(buckets)...\(Bounds.unitMaximumRunning): it is shared among the spec's \(buckets) buckets, at least one each (create the spec with fewer buckets to go lower)")
        }
        if let then, !Layout.isValidID(then) {
            throw SpecError(field: "then", reason: "\"\(then.prefix(80))\" is not a spec name: 1 to 128 letters, digits, '.', '_' or '-'")
        }
        let size = (try? Codec.encode(arguments).count) ?? Int.max
        guard size <= Bounds.unitSpecArgumentsBytes else {
            throw SpecError(field: "arguments", reason: "\(size) bytes encoded, over the limit of \(Bounds.unitSpecArgumentsBytes)")
        }
    }

    /// The bucket a unit key belongs to (FNV-1a, as job shards: every language computes the same).
    public func bucket(of key: String) -> Int { Self.bucket(of: key, buckets: buckets) }

    public static func bucket(of key: String, buckets: Int) -> Int { Int(Layout.fnv1a(key) % UInt32(buckets)) }
}

/// Where a unit is in its life. `available` and `retryable` units may be claimed.
public enum UnitState: String, Codable, Sendable, Hashable, CaseIterable {
    /// Never tried.
    case available
    /// An attempt holds a lease on it.
    case pending
    case finished
    /// Its last attempt failed and it has no tries left.
    case failed
    /// Its last attempt's lease ran out and it has no tries left.
    case expired
    /// Its last attempt failed or expired; it will be tried again.
    case retryable

    public var isClaimable: Bool { self == .available || self == .retryable }
}

/// One try of a unit.
public struct UnitAttempt: Codable, Sendable, Hashable {
    public enum Outcome: String, Codable, Sendable, Hashable {
        case finished, failed, expired
    }
    public var executor: String
    public var startedAt: Timestamp
    public var endedAt: Timestamp?
    /// Nil while the attempt runs.
    public var outcome: Outcome?
    /// Why it failed (cut to ``Bounds/unitErrorBytes``).
    public var error: String?
    /// The handler's result, when small (``Bounds/unitResultBytes``).
    public var result: JSONValue?

    public init(executor: String, startedAt: Timestamp, endedAt: Timestamp? = nil, outcome: Outcome? = nil, error: String? = nil, result: JSONValue? = nil) {
        self.executor = executor
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.outcome = outcome
        self.error = error
        self.result = result
    }
}

/// The hold an attempt has on a unit: `claim` fences the attempt's end, so an attempt whose
/// lease ran out and whose unit another executor claimed cannot record an end over the new one.
public struct UnitLease: Codable, Sendable, Hashable {
    public var executor: String
    public var claim: String
    public var until: Timestamp

    public init(executor: String, claim: String, until: Timestamp) {
        self.executor = executor
        self.claim = claim
        self.until = until
    }
}

/// One work unit: a key unique in its spec, a small data dictionary, and its state.
public struct WorkUnit: Codable, Sendable, Hashable {
    public var key: String
    public var data: JSONValue?
    public var state: UnitState
    /// Attempts started (the last one is ``last``).
    public var attempts: Int
    public var lease: UnitLease?
    public var last: UnitAttempt?
    /// The attempts before ``last``, oldest first: at most ``Bounds/unitEarlierAttempts``, fewer
    /// when the segment needs the room (nil: none).
    public var earlier: [UnitAttempt]?

    public init(key: String, data: JSONValue? = nil) {
        self.key = key
        self.data = data
        self.state = .available
        self.attempts = 0
    }

    /// Checks a unit a client adds: a key within bounds, data within bounds.
    public func validate() throws(SpecError) {
        guard !key.isEmpty, key.utf8.count <= Bounds.unitKeyBytes, !key.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
            throw SpecError(field: "key", reason: "a unit key is 1 to \(Bounds.unitKeyBytes) bytes without control characters")
        }
        if let data {
            let size = (try? Codec.encode(data).count) ?? Int.max
            guard size <= Bounds.unitDataBytes else {
                throw SpecError(field: "data", reason: "unit \"\(key.prefix(80))\": \(size) bytes encoded, over the limit of \(Bounds.unitDataBytes)")
            }
        }
    }
}

extension WorkUnit {
    /// The units a finished unit feeds to its spec's `then` spec: its result's `output`, as keys
    /// (`["a", "b"]`), units (`[{"key": "a", "data": {…}}]`) or keys to data (`{"a": {…}}`).
    /// A key given twice is added once. Nil result or no `output`: none.
    /// - Throws: ``SpecError`` for an `output` of another shape, more than
    ///   ``Bounds/unitMaximumOutputs`` units, or a unit out of bounds.
    public static func outputs(of result: JSONValue?) throws(SpecError) -> [WorkUnit] {
        guard let output = result?["output"] else { return [] }
        var units: [WorkUnit] = []
        switch output {
        case .array(let items):
            for item in items {
                if let key = item.stringValue {
                    units.append(WorkUnit(key: key))
                } else if let key = item["key"]?.stringValue {
                    units.append(WorkUnit(key: key, data: item["data"]))
                } else {
                    throw SpecError(field: "output", reason: "each item of a result's output is a key or {\"key\": …, \"data\": …}")
                }
            }
        case .object(let byKey):
            units = byKey.keys.sorted().map { WorkUnit(key: $0, data: byKey[$0]) }
        default:
            throw SpecError(field: "output", reason: "a result's output is a list of keys or units, or an object of keys to data")
        }
        guard units.count <= Bounds.unitMaximumOutputs else {
            throw SpecError(field: "output", reason: "\(units.count) output units, over the limit of \(Bounds.unitMaximumOutputs) per unit")
        }
        var seen: Set<String> = []
        units = units.filter { seen.insert($0.key).inserted }
        for unit in units { try unit.validate() }
        return units
    }
}

/// Every work spec's unit counts as the leader last summed them from the buckets' indexes, at
/// `<root>/unit-counts`: counting every spec is one read, at most a sweep interval (1–10 s) old.
///
/// ```json
/// {"format": 1, "countedAt": 1733300000000, "specs": {"thumbs": {"available": 10, "pending": 2, …}}}
/// ```
public struct SpecCounts: Codable, Sendable, Hashable {
    public static let currentFormat = 1

    public var format: Int = 1
    /// When the leader summed them (its wall clock, milliseconds).
    public var countedAt: Timestamp
    public var specs: [String: UnitCounts]

    public init(countedAt: Timestamp, specs: [String: UnitCounts]) {
        self.countedAt = countedAt
        self.specs = specs
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decodeFormat(upTo: Self.currentFormat, forKey: .format)
        countedAt = try container.decode(Timestamp.self, forKey: .countedAt)
        specs = try container.decode([String: UnitCounts].self, forKey: .specs)
    }
}

/// How many units are in each state.
public struct UnitCounts: Codable, Sendable, Hashable {
    public var available = 0
    public var pending = 0
    public var finished = 0
    public var failed = 0
    public var expired = 0
    public var retryable = 0

    public init() {}

    public init(_ units: some Sequence<WorkUnit>) {
        for unit in units { self[unit.state] += 1 }
    }

    public subscript(state: UnitState) -> Int {
        get {
            switch state {
            case .available: available
            case .pending: pending
            case .finished: finished
            case .failed: failed
            case .expired: expired
            case .retryable: retryable
            }
        }
        set {
            switch state {
            case .available: available = newValue
            case .pending: pending = newValue
            case .finished: finished = newValue
            case .failed: failed = newValue
            case .expired: expired = newValue
            case .retryable: retryable = newValue
            }
        }
    }

    public var total: Int { UnitState.allCases.reduce(0) { $0 + self[$1] } }
    public var claimable: Int { available + retryable }
    /// Units not yet at an end: claimable or running.
    public var unfinished: Int { available + retryable + pending }

    public static func + (left: UnitCounts, right: UnitCounts) -> UnitCounts {
        var sum = left
        for state in UnitState.allCases { sum[state] += right[state] }
        return sum
    }
}
