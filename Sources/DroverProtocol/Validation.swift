import Foundation

/// A job spec that cannot be accepted: which field, and why. Nothing has been written.
public struct SpecError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The offending field, as a JSON path (`count`, `resources.cpu`, `schedule.intervalSeconds`).
    public let field: String
    public let reason: String

    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }

    public var description: String { "invalid job: \(field): \(reason)" }
}

extension JobSpec {
    /// The largest encoded spec accepted, in bytes. Keeps every znode that carries a spec small.
    public static let maximumEncodedBytes = 64 * 1024

    /// Checks everything that can be checked without the cluster; throws the first problem.
    public func validate() throws(SpecError) {
        guard format >= 1, format <= Self.currentFormat else {
            throw SpecError(field: "format", reason: "format \(format) is not one this Drover reads (1...\(Self.currentFormat)) — upgrade Drover")
        }
        guard !method.isEmpty, method.count <= 128,
            method.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-:".contains($0)) })
        else {
            throw SpecError(field: "method", reason: "\"\(method)\" is not a method name (letters, digits, . _ - : ; at most 128)")
        }
        if let name, name.count > 256 { throw SpecError(field: "name", reason: "longer than 256 characters") }
        switch kind {
        case .once, .infinite:
            if let count { throw SpecError(field: "count", reason: "only finite jobs have a count (got \(count) for a \(kind.rawValue) job)") }
        case .finite:
            guard let count else { throw SpecError(field: "count", reason: "a finite job needs a count of runs") }
            guard count > 0 else { throw SpecError(field: "count", reason: "must be at least 1 (got \(count))") }
        }
        guard resources.cpu >= 0, resources.cpu.isFinite else {
            throw SpecError(field: "resources.cpu", reason: "must be a non-negative number of cores (got \(resources.cpu))")
        }
        guard resources.memoryMB >= 0 else {
            throw SpecError(field: "resources.memoryMB", reason: "must not be negative (got \(resources.memoryMB))")
        }
        guard resources.slots >= 1 else {
            throw SpecError(field: "resources.slots", reason: "a task takes at least 1 slot (got \(resources.slots))")
        }
        for (label, value) in constraints where label.isEmpty || value.count > 256 {
            throw SpecError(field: "constraints", reason: "labels must be non-empty and values at most 256 characters")
        }
        if let schedule {
            guard schedule.intervalMilliseconds > 0 else {
                throw SpecError(field: "schedule.intervalSeconds", reason: "must be positive (got \(Double(schedule.intervalMilliseconds) / 1000))")
            }
        }
        let size = (try? JSONEncoder().encode(self).count) ?? Int.max
        guard size <= Self.maximumEncodedBytes else {
            throw SpecError(
                field: "arguments",
                reason: "the job is \(size) bytes encoded, over the limit of \(Self.maximumEncodedBytes) — pass large inputs by reference (a path or URL)")
        }
    }
}
