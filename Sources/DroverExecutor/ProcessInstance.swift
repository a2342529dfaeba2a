import Foundation

/// Which process on which machine an executor registration belongs to:
/// `<host>/<boot id>/<pid namespace>/<pid>/<start ticks>`. The boot id (from the kernel) and the pid
/// namespace tell machines and containers apart even when their host names are the same; the start
/// time in clock ticks since boot (from `/proc/<pid>/stat`) tells a process from another that got
/// its pid later.
struct ProcessInstance: Hashable, CustomStringConvertible {
    var host: String
    var bootID: String
    var pidNamespace: String
    var pid: Int32
    var startTicks: UInt64

    static let current = ProcessInstance(
        host: ProcessInfo.processInfo.hostName, bootID: currentBootID, pidNamespace: currentPIDNamespace, pid: getpid(),
        startTicks: process(getpid())?.startTicks ?? 0)

    var description: String { "\(host)/\(bootID)/\(pidNamespace)/\(pid)/\(startTicks)" }

    init(host: String, bootID: String, pidNamespace: String, pid: Int32, startTicks: UInt64) {
        self.host = host
        self.bootID = bootID
        self.pidNamespace = pidNamespace
        self.pid = pid
        self.startTicks = startTicks
    }

    /// Parses ``description``; nil for anything else.
    init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 5, !parts[0].isEmpty, let pid = Int32(parts[3]), pid > 0, let ticks = UInt64(parts[4]) else { return nil }
        self.init(host: String(parts[0]), bootID: String(parts[1]), pidNamespace: String(parts[2]), pid: pid, startTicks: ticks)
    }

    /// Whether this process is running now; nil when this process cannot tell — it is on another
    /// machine or in another pid namespace, or `/proc` cannot be read here.
    var isRunning: Bool? {
        let here = ProcessInstance.current
        guard host == here.host, !bootID.isEmpty, bootID == here.bootID, !pidNamespace.isEmpty, pidNamespace == here.pidNamespace,
            here.startTicks > 0
        else { return nil }
        // Gone, killed but not yet reaped by its parent (a zombie runs nothing), or another process
        // that got the pid since.
        guard let process = Self.process(pid), !["Z", "X", "x"].contains(process.state) else { return false }
        return process.startTicks == startTicks
    }

    /// Fields 3 (state) and 22 (start time, in clock ticks since boot) of `/proc/<pid>/stat`.
    static func process(_ pid: Int32) -> (state: String, startTicks: UInt64)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")  // the command name may hold spaces and parentheses
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the name: the state is field 3, so the start time (22) is the 20th from here.
        guard fields.count >= 20, let ticks = UInt64(fields[19]) else { return nil }
        return (String(fields[0]), ticks)
    }

    static let currentBootID =
        ((try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        .filter { $0 != "/" }

    /// The inode of this process's pid namespace (`/proc/self/ns/pid` → `pid:[4026531836]`).
    static let currentPIDNamespace: String = {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid") else { return "" }
        return target.filter(\.isNumber)
    }()
}
