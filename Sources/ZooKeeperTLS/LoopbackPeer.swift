import Foundation

/// Whether a loopback connection comes from this process. The bridge's ports are on 127.0.0.1,
/// where any local user could connect and be carried to ZooKeeper with this process's client
/// certificate — and with it the rights of the role the certificate holds. So the bridge serves
/// only its own process's sockets: the kernel's table of TCP sockets says which socket (inode) has
/// the peer's address, and `/proc/self/fd` says whether this process holds it.
enum LoopbackPeer {
    enum Owner: Equatable {
        /// This process holds the peer's socket.
        case thisProcess
        /// Another process does.
        case anotherProcess
        /// The peer's socket is gone already (closed before it was looked up: a client that gave
        /// up on a slow connection). Nothing to serve, and no sign of another process.
        case gone
        /// The kernel's tables could not be read: who holds it cannot be told.
        case unknown
    }

    /// Who holds the peer's end of the connection from 127.0.0.1:`peerPort` to
    /// 127.0.0.1:`localPort`. Where the kernel's tables cannot be read (not Linux), this process.
    static func owner(peerPort: Int, localPort: Int) -> Owner {
        #if os(Linux)
        let inode: String
        switch socketInode(localPort: peerPort, remotePort: localPort) {
        case .found(let found): inode = found
        case .absent: return .gone
        case .unreadable: return .unknown
        }
        let target = "socket:[\(inode)]"
        guard let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return .unknown }
        if descriptors.contains(where: { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) == target }) {
            return .thisProcess
        }
        // Not among this process's descriptors: another process's — unless this process's client
        // closed it between the two looks (it gave up on a slow connection; the kernel keeps the
        // closing socket in its table). Looked up again: a socket still open there is another's.
        return socketInode(localPort: peerPort, remotePort: localPort) == .found(inode) ? .anotherProcess : .gone
        #else
        return .thisProcess
        #endif
    }

    /// The inode of the socket 127.0.0.1:`localPort` → 127.0.0.1:`remotePort`, from the kernel's
    /// tables (`/proc/net/tcp`, and `tcp6` for a dual-stack socket, where the address is IPv4
    /// mapped); ports in hex.
    enum Lookup: Equatable {
        case found(String)
        case absent
        /// Neither table could be read.
        case unreadable
    }

    static func socketInode(localPort: Int, remotePort: Int) -> Lookup {
        let local = ":" + String(format: "%04X", localPort)
        let remote = ":" + String(format: "%04X", remotePort)
        let loopback: Set<String> = ["0100007F", "0000000000000000FFFF00000100007F"]
        var read = false
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            // Read to the end: a /proc file has no size, and a reader that trusts the size (or one
            // buffer) sees only the first sockets of a busy table.
            guard let handle = FileHandle(forReadingAtPath: file), let bytes = try? handle.readToEnd() else { continue }
            read = true
            try? handle.close()
            let table = String(decoding: bytes, as: UTF8.self)
            for line in table.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
                // An earlier connection between the same ports may linger (TIME_WAIT, inode 0).
                // Only an open (ESTABLISHED, "01") socket counts: one this process's client has
                // closed lingers in the table in a closing state with its inode for a while.
                guard fields.count > 9, fields[1].hasSuffix(local), fields[2].hasSuffix(remote), fields[9] != "0", fields[3] == "01",
                    loopback.contains(String(fields[1].dropLast(5))), loopback.contains(String(fields[2].dropLast(5)))
                else { continue }
                return .found(String(fields[9]))
            }
        }
        return read ? .absent : .unreadable
    }
}
