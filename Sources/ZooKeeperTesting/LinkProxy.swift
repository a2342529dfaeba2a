import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One daemon's network link to the ZooKeeper servers: a TCP relay on loopback, one listening
/// port per server, so the harness can cut the daemon off (a network partition: the process and
/// its commands go on, ZooKeeper hears nothing from it and expires its session) and heal it.
///
/// While cut, nothing passes in either direction and nothing is closed: bytes wait (as TCP would
/// retransmit them) and new connections are accepted but not carried on, so both sides see only
/// silence, as across a real partition. Userspace, because this machine's kernel has no
/// `sch_netem` and no nftables (Deploy/sim-hosts check).
public final class LinkProxy: @unchecked Sendable {
    private let condition = NSCondition()
    /// Guarded by `condition`.
    private var isCut = false
    /// Added to every chunk relayed, each way (guarded by `condition`).
    private var latency: Duration = .zero
    /// The relay's port for each server, in the order of the servers.
    public let ports: [Int]

    /// Listens on a free loopback port for each of `servers` (`host:port`), relaying to it.
    public init(servers: [String]) throws {
        var ports: [Int] = []
        var listeners: [(Int32, String, Int)] = []
        for server in servers {
            let parts = server.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]) else { throw ProxyError("not host:port: \(server)") }
            let listener = try Self.listen()
            ports.append(try Self.localPort(of: listener))
            listeners.append((listener, String(parts[0]), port))
        }
        self.ports = ports
        for (listener, host, port) in listeners {
            let thread = Thread { [self] in acceptLoop(listener, host: host, port: port) }
            thread.start()
        }
    }

    /// The connection string through the relay, with `chroot` (e.g. `/tests/chaos-1`).
    public func connectionString(chroot: String = "") -> String {
        ports.map { "127.0.0.1:\($0)" }.joined(separator: ",") + chroot
    }

    /// Partitions the daemon from every server.
    public func cut() {
        condition.lock()
        isCut = true
        condition.unlock()
    }

    /// Ends the partition: held bytes and connections go on.
    public func heal() {
        condition.lock()
        isCut = false
        condition.broadcast()
        condition.unlock()
    }

    /// Delays every chunk by `latency` each way (`.zero`: none), as a slow or distant link would.
    public func setLatency(_ latency: Duration) {
        condition.lock()
        self.latency = latency
        condition.unlock()
    }

    /// Waits out a cut; returns the latency to add.
    @discardableResult
    private func waitWhileCut() -> Duration {
        condition.lock()
        while isCut { condition.wait() }
        let latency = self.latency
        condition.unlock()
        return latency
    }

    private func acceptLoop(_ listener: Int32, host: String, port: Int) {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            let thread = Thread { [self] in relay(client, host: host, port: port) }
            thread.start()
        }
    }

    private func relay(_ client: Int32, host: String, port: Int) {
        waitWhileCut()
        guard let server = Self.connect(host: host, port: port) else {
            close(client)
            return
        }
        Self.noDelay(client)
        let pair = PairCloser(client, server)
        for (from, to) in [(client, server), (server, client)] {
            let thread = Thread { [self] in
                pump(from: from, to: to)
                pair.oneDirectionEnded()
            }
            thread.start()
        }
    }

    /// Copies bytes one way until the reading side ends; every write (and the end) waits out a cut.
    private func pump(from: Int32, to: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            let latency = waitWhileCut()
            if latency > .zero {
                Thread.sleep(forTimeInterval: Double(latency.components.seconds) + Double(latency.components.attoseconds) / 1e18)
            }
            guard count > 0 else {
                shutdown(to, Int32(SHUT_WR))
                return
            }
            var sent = 0
            while sent < count {
                // MSG_NOSIGNAL: a peer that has gone must not end the harness with SIGPIPE.
                let written = buffer.withUnsafeBytes { send(to, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else {
                    shutdown(from, Int32(SHUT_RD))
                    return
                }
                sent += written
            }
        }
    }

    private static func listen() throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ProxyError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 64) == 0 else {
            close(fd)
            throw ProxyError("bind/listen: \(String(cString: strerror(errno)))")
        }
        return fd
    }

    private static func localPort(of fd: Int32) throws -> Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let found = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard found == 0 else { throw ProxyError("getsockname: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func connect(host: String, port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            return nil
        }
        noDelay(fd)
        return fd
    }

    /// ZooKeeper's small request and reply packets must not wait for Nagle's algorithm.
    private static func noDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }
}

/// Closes both sockets of a relayed connection once both directions have ended.
private final class PairCloser: @unchecked Sendable {
    private let lock = NSLock()
    private var ended = 0
    private let sockets: (Int32, Int32)

    init(_ a: Int32, _ b: Int32) { sockets = (a, b) }

    func oneDirectionEnded() {
        lock.lock()
        ended += 1
        let last = ended == 2
        lock.unlock()
        guard last else { return }
        close(sockets.0)
        close(sockets.1)
    }
}

public struct ProxyError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
