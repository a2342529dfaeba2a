import Foundation

/// Which process on which host an executor registration belongs to: `<host>/<pid>/<start ticks>`
/// (the process's start time in clock ticks since boot, from `/proc/<pid>/stat`, so that a pid
/// used again by another process is not taken for the executor that had it).
struct ProcessInstance: Hashable, CustomStringConvertible {
    var host: String
    var pid: Int32
    var startTicks: UInt64

    static let current = ProcessInstance(
        host: ProcessInfo.processInfo.hostName, pid: getpid(), startTicks: startTicks(of: getpid()) ?? 0)

    var description: String { "\(host)/\(pid)/\(startTicks)" }

    init(host: String, pid: Int32, startTicks: UInt64) {
        self.host = host
        self.pid = pid
        self.startTicks = startTicks
    }

    /// Parses ``description``; nil for anything else.
    init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, let pid = Int32(parts[1]), pid > 0, let ticks = UInt64(parts[2]) else { return nil }
        self.init(host: String(parts[0]), pid: pid, startTicks: ticks)
    }

    /// Whether this process is running now: nil when it is on another host (this one cannot tell).
    var isRunning: Bool? {
        guard host == ProcessInstance.current.host else { return nil }
        guard let ticks = Self.startTicks(of: pid) else { return false }
        return ticks == startTicks
    }

    /// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
    static func startTicks(of pid: Int32) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")  // the command name may hold spaces and parentheses
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the name: state is field 3, so start time (22) is the 20th from here.
        guard fields.count >= 20 else { return nil }
        return UInt64(fields[19])
    }
}
