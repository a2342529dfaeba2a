import Foundation

/// A job record that exists but cannot be used: garbled, of a newer format, over its size bound, or
/// with a spec that breaks the rules. The job ends `failed` with this reason; every reader reports
/// it (ARCHITECTURE.md, promise 7).
public struct UnusableRecordError: Error, Sendable, Hashable, CustomStringConvertible {
    public let job: String
    /// Which field and what is wrong with it, e.g. `spec.kind: "sometimes" is not a kind`.
    public let reason: String
    /// The record is the leader's note that it failed the job for this reason (``UnusableJobRecord``).
    public let isLeadersNote: Bool

    public init(job: String, reason: String, isLeadersNote: Bool = false) {
        self.job = job
        self.reason = reason
        self.isLeadersNote = isLeadersNote
    }

    public var description: String { "job \(job) cannot be used: \(reason)" }
}

/// What the leader writes over a job record it cannot use, so that the job ends `failed` with the
/// reason instead of waiting for ever: `jobs/<shard>/<id>` then holds
/// `{"format": 1, "id": …, "state": "failed", "unusable": "<reason>", "original": "<the first 4 KiB>", "originalBytes": N, "at": ms}`.
public struct UnusableJobRecord: Codable, Sendable, Hashable {
    public var format: Int = 1
    public var id: String
    public var state: JobState
    /// Why the record could not be used, naming the field.
    public var unusable: String
    /// The start of the record as it was (its first ``Bounds/setAsideDataBytes`` bytes).
    public var original: String
    public var originalBytes: Int
    public var at: Timestamp

    public init(id: String, reason: String, original: [UInt8], at: Timestamp = .now()) {
        self.id = id
        self.state = .failed
        self.unusable = reason
        self.original = String(decoding: original.prefix(Bounds.setAsideDataBytes), as: UTF8.self)
        self.originalBytes = original.count
        self.at = at
    }
}

extension JobRecord {
    /// The largest record a reader uses: a spec (≤ 64 KiB) and a full history of runs with
    /// results and errors at their bounds fit well within it; one transaction can always rewrite it.
    public static let maximumEncodedBytes = 512 * 1024

    /// The document format this Drover writes and the newest it reads.
    public static let currentFormat = 1

    /// Decodes and checks a record read from the job's znode — the one way every reader (leader,
    /// client, CLI) reads a record, so they all agree on what is usable.
    /// - Throws: ``UnusableRecordError`` naming the field, or the reason the leader recorded when it
    ///   failed the job for its record (``UnusableJobRecord``).
    public static func read(_ data: [UInt8], job id: String) throws(UnusableRecordError) -> JobRecord {
        guard data.count <= maximumEncodedBytes else {
            throw UnusableRecordError(job: id, reason: "the record is \(data.count) bytes, over the limit of \(maximumEncodedBytes)")
        }
        let record: JobRecord
        do {
            record = try JSONDecoder().decode(JobRecord.self, from: Data(data))
        } catch let error as DecodingError {
            if let stub = try? JSONDecoder().decode(UnusableJobRecord.self, from: Data(data)) {
                throw UnusableRecordError(job: id, reason: stub.unusable, isLeadersNote: true)
            }
            throw UnusableRecordError(job: id, reason: Self.describe(error))
        } catch {
            throw UnusableRecordError(job: id, reason: "\(error)")
        }
        if let problem = record.problem(asJob: id) { throw problem }
        return record
    }

    /// Why this decoded record cannot be used as job `id`'s (its format, its id, its spec), or nil.
    public func problem(asJob id: String) -> UnusableRecordError? {
        guard (1...Self.currentFormat).contains(format) else {
            return UnusableRecordError(job: id, reason: "format: \(format) is not one this Drover reads (1...\(Self.currentFormat)) — upgrade Drover")
        }
        guard self.id == id else { return UnusableRecordError(job: id, reason: "id: the record says \"\(self.id)\"") }
        do {
            try spec.validate(checkingSize: false, asReader: true)
        } catch {
            return UnusableRecordError(job: id, reason: "spec.\(error.field): \(error.reason)")
        }
        if let steps {
            // A workflow's progress is one entry per step of its spec, in order (a prefix, before
            // the leader added the ones injected since).
            guard let specSteps = spec.workflowSteps, steps.count <= specSteps.count,
                zip(steps, specSteps).allSatisfy({ $0.id == $1.id })
            else {
                return UnusableRecordError(job: id, reason: "steps: the progress does not match the spec's steps")
            }
        }
        return nil
    }

    /// A decoding error as `field.path: what is wrong`.
    public static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context, _ key: (any CodingKey)? = nil) -> String {
            let keys = context.codingPath + (key.map { [$0] } ?? [])
            let text = keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return text.isEmpty ? "document" : String(text.drop { $0 == "." })
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context, key)): missing"
        case .typeMismatch(let type, let context): return "\(path(context)): expected \(type)"
        case .valueNotFound(let type, let context): return "\(path(context)): expected \(type), found null"
        case .dataCorrupted(let context):
            let detail = (context.underlyingError as? NSError)?.userInfo[NSDebugDescriptionErrorKey] as? String
            return "\(path(context)): \(context.debugDescription)\(detail.map { " (\($0))" } ?? "")"
        @unknown default: return "\(error)"
        }
    }
}
