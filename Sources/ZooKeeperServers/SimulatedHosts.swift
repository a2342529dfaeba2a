import Foundation

/// Simulated hosts on this machine (`Deploy/sim-hosts`): network namespaces `drover-h1`… joined
/// by a bridge, each with its own address, whose links can be cut, cut one way or made to lose
/// packets — for running ZooKeeper servers and Drover's daemons as a multi-host deployment
/// would, and failing the network between them. Needs root.
public struct SimulatedHosts: Sendable {
    /// The hosts' names, `h1`…`hN`.
    public let names: [String]
    /// Each host's address on the bridge, by name (as `up` printed them).
    public let addresses: [String: String]

    /// Which way packets are dropped on a host's link.
    public enum Direction: String, Sendable {
        /// What the host receives.
        case incoming = "in"
        /// What the host sends.
        case outgoing = "out"
        case both
    }

    /// Whether this machine has what simulated hosts need, judged without trying: root, `ip`
    /// and `nft`. ``check()`` tries.
    public static var mayRunHere: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")
            && FileManager.default.isExecutableFile(atPath: "/usr/sbin/nft")
    }

    /// Whether this machine allows simulated hosts; when not, why (the script's own words).
    public static func check() async -> (allowed: Bool, report: String) {
        do {
            let output = try await run(["check"])
            return (true, output)
        } catch {
            return (false, "\(error)")
        }
    }

    /// Creates hosts `h1`…`hN`. Hosts a crashed run left (nothing running on them) are removed
    /// first; it refuses while programs run on existing hosts (another run uses them).
    public static func up(_ count: Int) async throws -> SimulatedHosts {
        // One line per host: "h1 10.77.0.11".
        let lines = try await run(["up", "\(count)"]).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        let addresses = Dictionary(lines.filter { $0.count == 2 }.map { ($0[0], $0[1]) }) { first, _ in first }
        let names = (1...count).map { "h\($0)" }
        guard names.allSatisfy({ addresses[$0] != nil }) else {
            throw LocalEnsembleError("sim-hosts up \(count) did not name every host's address: \(lines)")
        }
        return SimulatedHosts(names: names, addresses: addresses)
    }

    /// Removes every host and link the script made (and the processes still on them).
    public func down() async {
        _ = try? await Self.run(["down"])
    }

    /// The command prefix that runs a program on `host` (in its network namespace).
    public static func command(on host: String) -> [String] { ["/usr/sbin/ip", "netns", "exec", "drover-\(host)"] }

    /// Cuts the host's link: it reaches no other host, and none reaches it.
    public func cut(_ host: String) async throws { _ = try await Self.run(["cut", host]) }
    /// Brings the host's link back.
    public func heal(_ host: String) async throws { _ = try await Self.run(["heal", host]) }
    /// Drops `percent` of the packets the host receives, sends, or both (100: a one-way cut).
    public func drop(_ host: String, _ direction: Direction, percent: Int) async throws {
        _ = try await Self.run(["drop", host, direction.rawValue, "\(percent)"])
    }
    /// Stops dropping packets on the host's link.
    public func clear(_ host: String) async throws { _ = try await Self.run(["clear", host]) }

    /// `Deploy/sim-hosts`, beside `Deploy/zk-ensemble`.
    public static var scriptPath: String {
        URL(fileURLWithPath: LocalEnsemble.scriptPath).deletingLastPathComponent().appendingPathComponent("sim-hosts").path
    }

    @discardableResult
    static func run(_ arguments: [String]) async throws -> String {
        try await runBashScript(scriptPath, arguments)
    }
}
