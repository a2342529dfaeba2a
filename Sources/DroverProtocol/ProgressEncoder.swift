import Synchronization

/// Encodes an executor's progress document as ``Codec/encode(_:)`` does, re-encoding only the
/// entries that changed since the last document it encoded. The bytes are the same, except where
/// Swift's equality is looser than the bytes (`-0` and `0`; a string's composed and decomposed
/// forms): an entry equal to a cached one gets that one's bytes, which decode to an equal entry.
///
/// An executor rewrites its whole progress on every start and end, and most entries are the same
/// as in the write before (tasks that ended and wait for the leader to collect them, claims not
/// adopted yet). Encoding every entry each time took a fifth of an executor's CPU on the direct
/// path (perf, `drover-bench throughput --placement random`).
public final class ProgressEncoder: Sendable {
    /// Each entry of the last document encoded, and its bytes.
    private let entries = Mutex<[TaskProgress: [UInt8]]>([:])

    public init() {}

    /// The document's JSON: `{"executor":…,"format":…,"tasks":[…]}` — keys sorted and no
    /// whitespace, as every Drover document.
    public func encode(_ progress: ExecutorProgress) throws -> [UInt8] {
        try entries.withLock { cache in
            var next: [TaskProgress: [UInt8]] = [:]
            next.reserveCapacity(progress.tasks.count)
            var bytes: [UInt8] = Array(#"{"executor":"#.utf8)
            bytes += try Codec.encode(progress.executor)
            bytes += Array(#","format":"#.utf8)
            bytes += Array(String(progress.format).utf8)
            bytes += Array(#","tasks":["#.utf8)
            for (position, entry) in progress.tasks.enumerated() {
                if position > 0 { bytes.append(UInt8(ascii: ",")) }
                let encoded = try next[entry] ?? cache[entry] ?? Codec.encode(entry)
                next[entry] = encoded
                bytes += encoded
            }
            bytes += Array("]}".utf8)
            cache = next
            return bytes
        }
    }
}
