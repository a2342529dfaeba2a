import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A plain HTTP/1.1 GET to 127.0.0.1, as tests send it: the status code and the body (of a
/// response with a length, not a chunked one). On a thread of its own, so its blocking reads never
/// hold the threads an in-process server runs on.
public func httpGet(port: Int, _ target: String, headers: [String] = []) async throws -> (status: Int, body: String) {
    try await httpRequest("GET", port: port, target, headers: headers)
}

/// An HTTP/1.1 request with an optional body (sent with its length), as ``httpGet(port:_:headers:)``.
public func httpRequest(
    _ method: String, port: Int, _ target: String, body: String? = nil, headers: [String] = []
) async throws -> (status: Int, body: String) {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            continuation.resume(
                with: Result {
                    let fd = try connectToLoopback(port: port)
                    defer { close(fd) }
                    // A body, or a bodiless request other than a GET, goes as JSON (what an API client sends).
                    let typed = headers.contains { $0.lowercased().hasPrefix("content-type:") }
                    let length =
                        body != nil || method != "GET"
                        ? ["Content-Length: \(body?.utf8.count ?? 0)"] + (typed ? [] : ["Content-Type: application/json"]) : []
                    let request =
                        (["\(method) \(target) HTTP/1.1"] + (headers.contains { $0.lowercased().hasPrefix("host:") } ? [] : ["Host: 127.0.0.1"])
                            + ["Connection: close"] + length + headers).joined(separator: "\r\n")
                        + "\r\n\r\n" + (body ?? "")
                    _ = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
                    var response = [UInt8]()
                    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
                    // Until the server closes, or the body its Content-Length announces is in
                    // (some servers keep the connection open whatever the request asked).
                    while true {
                        let count = recv(fd, &buffer, buffer.count, 0)
                        if count <= 0 { break }
                        response += buffer[0..<count]
                        if let end = response.firstRange(of: Array("\r\n\r\n".utf8)) {
                            let head = String(decoding: response[..<end.lowerBound], as: UTF8.self).lowercased()
                            if let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
                                let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)),
                                response.count - end.upperBound >= length
                            {
                                break
                            }
                        }
                    }
                    let text = String(decoding: response, as: UTF8.self)
                    let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
                    return (status, text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n"))
                })
        }.start()
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on now (the system's choice for port 0). Another
/// process could take it before the caller binds it; tests accept that small chance.
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A plain HTTP/1.1 GET to 127.0.0.1 whose response is handed on as it arrives (head and body
/// as raw text, chunk framing included): for streamed responses. Ends when the server closes.
public func httpStream(port: Int, _ target: String) -> AsyncThrowingStream<String, any Error> {
    loopbackExchange(port: port, sending: "GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
}

/// Sends `request` to 127.0.0.1:`port` from this process and hands on what comes back as it
/// arrives (as text), until the other side closes. On a thread of its own, as ``httpRequest``.
public func loopbackExchange(port: Int, sending request: String) -> AsyncThrowingStream<String, any Error> {
    AsyncThrowingStream { continuation in
        Thread {
            let fd: Int32
            do {
                fd = try connectToLoopback(port: port)
            } catch {
                return continuation.finish(throwing: error)
            }
            defer { close(fd) }
            _ = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            var buffer = [UInt8](repeating: 0, count: 16 * 1024)
            while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count <= 0 { break }
                continuation.yield(String(decoding: buffer[0..<count], as: UTF8.self))
            }
            continuation.finish()
        }.start()
    }
}

/// A blocking TCP socket connected to 127.0.0.1:`port`, whose reads give up after 60 s (a
/// server that never answers fails the request, not the whole test run).
func connectToLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(fd)
        throw POSIXError(.ECONNREFUSED)
    }
    var timeout = timeval(tv_sec: 60, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}
