import DroverClient
import DroverProtocol
import DroverStore
import Foundation
import Hummingbird

/// Work specs through the API (docs/openapi.yaml, `/v1/specs…`): what `drover spec` and `drover
/// units` do. Specs and units are written straight to ZooKeeper, as the CLI writes them (no
/// queue: no leader is on the units' path).
extension APIServer.Handlers {
    /// The fields a client may give when it creates a spec, and those it may change.
    static let specFields: Set<String> = [
        "name", "method", "arguments", "priority", "weight", "maxRetries", "leaseSeconds", "maxGetwork", "buckets", "paused", "maxRunning", "then",
    ]
    static let changeableSpecFields = specFields.subtracting(["name", "buckets"])

    private var store: UnitStore { client.workSpecs }

    /// Every spec with its counts: the leader's (one read, `countedAt` says when), or summed
    /// now for a spec it has not counted.
    func specs() async throws -> Response {
        struct Entry: Encodable {
            let spec: WorkSpec
            let counts: UnitCounts
        }
        struct Listing: Encodable {
            let specs: [Entry]
            let countedAt: Timestamp?
        }
        let (specs, countedAt) = try await zooKeeper { try await store.everySpec() }
        return try json(Listing(specs: specs.map { Entry(spec: $0.spec, counts: $0.counts) }, countedAt: countedAt))
    }

    /// One spec and its counts, summed from its buckets now.
    func spec(_ name: String) async throws -> Response {
        let spec = try await existingSpec(name)
        let counts = try await zooKeeper { try await store.counts(of: spec) }
        return try json(["spec": JSONValue(encoding: spec), "counts": JSONValue(encoding: counts)] as [String: JSONValue])
    }

    /// Creates a spec from the fields given (the rest take their defaults, as `drover spec create`).
    func createSpec(_ request: Request) async throws -> Response {
        let fields = try await objectBody(of: request, allowed: Self.specFields, what: "a work spec")
        guard fields["name"]?.stringValue != nil, fields["method"]?.stringValue != nil else {
            throw APIError(.badRequest, "invalidSpec", "name and method are required")
        }
        var spec = try decodeSpec(overlaying: fields, on: WorkSpec(name: "", method: ""))
        spec.createdAt = Timestamp.now()
        spec.format = spec.requiredFormat  // as the store writes it
        try await zooKeeper { try await store.create(spec) }
        return try json(JSONValue(encoding: spec), status: .created)
    }

    /// pause, resume, retry (failed and expired units), update (body: the fields to change;
    /// `maxRunning` 0 or null and `then` "" or null remove them), clear (units; body, optional:
    /// `{"states": [...]}`), or delete.
    func specAction(_ name: String, _ action: String, _ request: Request) async throws -> Response {
        switch action {
        case "pause", "resume":
            _ = try await existingSpec(name)
            let spec = try await zooKeeper { try await store.update(name) { $0.paused = action == "pause" } }
            return try json(["name": .string(name), "action": .string(action), "spec": JSONValue(encoding: spec)] as [String: JSONValue], status: .accepted)
        case "retry":
            let spec = try await existingSpec(name)
            let retried = try await zooKeeper { try await store.retryFailed(of: spec) }
            return try json(["name": .string(name), "action": .string(action), "units": .number(Double(retried))] as [String: JSONValue], status: .accepted)
        case "update":
            let fields = try await objectBody(of: request, allowed: Self.changeableSpecFields, what: "a work spec's changes (name and buckets cannot change)")
            _ = try await existingSpec(name)
            let spec = try await zooKeeper {
                try await store.update(name) { current in
                    var fields = fields
                    if fields["maxRunning"] == .number(0) { fields["maxRunning"] = .null }
                    if fields["then"] == .string("") { fields["then"] = .null }
                    current = try decodeSpec(overlaying: fields, on: current)
                }
            }
            return try json(["name": .string(name), "action": .string(action), "spec": JSONValue(encoding: spec)] as [String: JSONValue], status: .accepted)
        case "clear":
            let spec = try await existingSpec(name)
            let fields = try await objectBody(of: request, allowed: ["states"], what: "what to clear ({\"states\": [\"finished\", …]}; none: every unit)", emptyIsNone: true)
            var states: Set<UnitState>?
            if let given = fields["states"] {
                guard case .array(let names) = given, !names.isEmpty else {
                    throw APIError(.badRequest, "badRequest", "states: a list of states (leave it out to clear every unit)")
                }
                states = try Set(
                    names.map { name in
                        guard let state = name.stringValue.flatMap(UnitState.init(rawValue:)) else {
                            throw APIError(.badRequest, "badRequest", "states: \(name.stringValue ?? String(decoding: (try? Codec.encode(name)) ?? [], as: UTF8.self)) is not one of \(UnitState.allCases.map(\.rawValue).joined(separator: ", "))")
                        }
                        return state
                    })
            }
            let removed = try await zooKeeper { try await store.clear(spec, states: states) }
            return try json(["name": .string(name), "action": .string(action), "units": .number(Double(removed))] as [String: JSONValue], status: .accepted)
        case "delete":
            _ = try await existingSpec(name)
            try await zooKeeper { try await store.delete(name) }
            return try json(["name": name, "action": action], status: .accepted)
        default:
            throw APIError(.notFound, "notFound", "no action \(action) on a work spec: pause, resume, retry, update, clear, delete (units: POST …/units)")
        }
    }

    /// Adds units: the body is `{"units": [{"key", "data"?}, …]}` or the list alone. A bad unit
    /// refuses the whole add, naming it; keys the spec has already are left as they are.
    func addUnits(to name: String, _ request: Request) async throws -> Response {
        _ = try await existingSpec(name)
        var document = try await jsonBody(of: request, advice: ": add fewer units at a time (drover units add -f sends a file in batches)")
        if case .array = document { document = ["units": document] }
        guard case .object(let fields) = document, fields.count == 1, case .array(let items)? = fields["units"] else {
            throw APIError(.badRequest, "badRequest", "expected {\"units\": [{\"key\": …, \"data\": …}, …]}")
        }
        guard !items.isEmpty else { throw APIError(.badRequest, "badRequest", "units: an empty list (nothing was added)") }
        var units: [WorkUnit] = []
        for (index, item) in items.enumerated() {
            guard case .object(let unit) = item, let key = unit["key"]?.stringValue else {
                throw APIError(.badRequest, "invalidSpec", "units[\(index)]: a unit is {\"key\": \"…\", \"data\": {…}}")
            }
            if let extra = unit.keys.first(where: { $0 != "key" && $0 != "data" }) {
                throw APIError(.badRequest, "invalidSpec", "units[\(index)].\(extra): not a field of a unit (key, data)")
            }
            units.append(WorkUnit(key: key, data: unit["data"]))
        }
        let report = try await zooKeeper { try await store.add(units, to: name) }
        return try json(
            ["name": .string(name), "added": .number(Double(report.added)), "alreadyPresent": .number(Double(report.alreadyPresent))] as [String: JSONValue],
            status: .created)
    }

    /// A page of a spec's units, optionally in one state.
    func units(of name: String, _ request: Request) async throws -> Response {
        let spec = try await existingSpec(name)
        let query = request.uri.queryParameters
        var state: UnitState?
        if let text = query.get("state") {
            guard let parsed = UnitState(rawValue: text) else {
                throw APIError(.badRequest, "badRequest", "state \(text): expected one of \(UnitState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            state = parsed
        }
        let limitText = query.get("limit") ?? "100"
        guard let limit = Int(limitText), (1...1_000).contains(limit) else { throw APIError(.badRequest, "badRequest", "limit \(limitText): expected 1 to 1000") }
        let page = try await zooKeeper { try await store.units(of: spec, state: state, limit: limit, after: query.get("after")) }
        struct Page: Encodable {
            let units: [WorkUnit]
            let next: String?
        }
        return try json(Page(units: page.units, next: page.next))
    }

    /// One unit by key (`?key=`: keys may hold `/`), with its last attempt.
    func unit(of name: String, _ request: Request) async throws -> Response {
        let spec = try await existingSpec(name)
        guard let key = request.uri.queryParameters.get("key"), !key.isEmpty else {
            throw APIError(.badRequest, "badRequest", "key: required (…/unit?key=img%2F7.png)")
        }
        guard let unit = try await zooKeeper({ try await store.unit(key, of: spec) }) else {
            throw APIError(.notFound, "unknownUnit", "no unit \(key) in work spec \(name)")
        }
        return try json(unit)
    }

    // MARK: Helpers

    private func existingSpec(_ name: String) async throws -> WorkSpec {
        guard Layout.isValidID(name), let spec = try await zooKeeper({ try await store.spec(name)?.document }) else {
            throw APIError(.notFound, "unknownSpec", "no work spec named \(name) (GET /v1/specs lists them)")
        }
        return spec
    }

    /// The body as a JSON object whose fields are all in `allowed` (with `emptyIsNone`, no body
    /// is an empty object).
    private func objectBody(of request: Request, allowed: Set<String>, what: String, emptyIsNone: Bool = false) async throws -> [String: JSONValue] {
        guard case .object(let fields) = try await jsonBody(of: request, advice: "", ifEmpty: emptyIsNone ? .object([:]) : nil) else {
            throw APIError(.badRequest, "badRequest", "the body must be a JSON object: \(what)")
        }
        if let unknown = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw APIError(.badRequest, "invalidSpec", "\(unknown): not a field of \(what) (fields: \(allowed.sorted().joined(separator: ", ")))")
        }
        return fields
    }

    /// `base` with `fields` written over it (null removes an optional field).
    private func decodeSpec(overlaying fields: [String: JSONValue], on base: WorkSpec) throws -> WorkSpec {
        guard case .object(var merged) = JSONValue(encoding: base) else { throw APIError(.internalServerError, "internal", "a spec did not encode as an object") }
        for (field, value) in fields {
            if value == .null { merged.removeValue(forKey: field) } else { merged[field] = value }
        }
        do {
            return try Codec.decode(WorkSpec.self, try Codec.encode(JSONValue.object(merged)))
        } catch let error as DecodingError {
            throw APIError(.badRequest, "invalidSpec", JobRecord.describe(error).replacingOccurrences(of: "document", with: "work spec"))
        }
    }
}

extension JSONValue {
    /// A value's JSON, as a JSONValue.
    init(encoding value: some Encodable) {
        self = (try? Codec.decode(JSONValue.self, try Codec.encode(value))) ?? .null
    }
}
