import DroverExecutor
import DroverOutput
import DroverShell
import Foundation
import Logging
import NIOCore
import Synchronization
import Testing
import ZooKeeperTesting

/// The executor's output endpoint against misuse (issue 16): a token when one is set, only files
/// named by a valid job id and run number, and a bound on followed streams. A real server on
/// loopback, spoken to in raw HTTP so that nothing normalises the paths first.
@Suite("The executor's output endpoint", .timeLimit(.minutes(1)))
struct OutputEndpointTests {
    /// Runs a server over a directory holding one run's output (and a secret beside it), and `body`
    /// with its port.
    func withServer(
        token: String? = nil, maximumFollowers: Int = 8, tls: HTTPServerTLS? = nil,
        holds: @escaping @Sendable (String, Int) -> Bool = { _, _ in false }, _ body: @Sendable (Int, ShellMethod) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("output-\(UUID().uuidString.prefix(8))")
        let shell = ShellMethod(outputDirectory: directory.appendingPathComponent("output"))
        let file = shell.outputFile(job: "j-1", run: 1)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try "hello\n".write(to: file, atomically: true, encoding: .utf8)
        try "TOP-SECRET-CONTENT\n".write(to: directory.appendingPathComponent("secret.txt"), atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try OutputServer(
            shell: shell, host: "127.0.0.1", port: 0, advertisedHost: "127.0.0.1", token: token, maximumFollowers: maximumFollowers, tls: tls,
            holds: holds, logger: Logger(label: "test.output"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let address = try await server.address
            let port = Int(address.split(separator: ":").last!)!
            try await body(port, shell)
            group.cancelAll()
        }
    }

    /// Sends a GET of `target` as it is (the test kit's plain HTTP client) and returns the status code and body.
    func raw(_ port: Int, _ target: String, headers: [String] = []) async throws -> (status: Int, body: String) {
        try await httpGet(port: port, target, headers: headers)
    }

    @Test func pathsThatTryToLeaveTheOutputDirectoryAreRefused() async throws {
        try await withServer { port, _ in
            #expect(try await raw(port, "/v1/output/j-1/1").status == 200)
            for target in [
                "/v1/output/../secret.txt/1", "/v1/output/%2e%2e/1", "/v1/output/..%2fsecret.txt/1", "/v1/output/j-1%2f..%2f..%2fsecret.txt/1",
                "/v1/output//etc/passwd/1", "/v1/output/%2fetc%2fpasswd/1", "/v1/output/j-1/..", "/v1/output/j-1/-1", "/v1/output/j-1/0",
                "/v1/output/j-1/1?offset=-5", "/v1/output/j-1/99999999999999999999", "/v1/output/j%00/1",
            ] {
                let (status, body) = try await raw(port, target)
                #expect([400, 404].contains(status), "\(target): \(status)")
                #expect(!body.contains("TOP-SECRET-CONTENT") && !body.contains("root:x:"), "\(target): \(body)")
            }
        }
    }

    @Test func withATokenOnlyRequestsThatCarryItAreServed() async throws {
        try await withServer(token: "s3cret-token") { port, _ in
            #expect(try await raw(port, "/v1/output/j-1/1").status == 401)
            #expect(try await raw(port, "/v1/output/j-1/1", headers: ["Authorization: Bearer wrong"]).status == 401)
            #expect(try await raw(port, "/v1/output/j-1/1", headers: ["Authorization: Bearer s3cret-token-and-more"]).status == 401)
            let refused = try await raw(port, "/v1/output/j-1/1")
            #expect(refused.body.contains("--http-token-file"), "\(refused.body)")
            let served = try await raw(port, "/v1/output/j-1/1", headers: ["Authorization: Bearer s3cret-token"])
            #expect(served.status == 200 && served.body.contains("hello"))
            // The scheme's name in any case (RFC 9110).
            #expect(try await raw(port, "/v1/output/j-1/1", headers: ["Authorization: bearer s3cret-token"]).status == 200)
            #expect(try await raw(port, "/v1/health").status == 200)
            // The client sends it; without it the failure says what to do.
            var received = ""
            _ = try await OutputClient.fetch(from: "http://127.0.0.1:\(port)", job: "j-1", run: 1, offset: 0, follow: false, token: "s3cret-token") {
                received += String(buffer: $0)
            }
            #expect(received == "hello\n")
            await #expect(throws: OutputClient.Failure.self) {
                _ = try await OutputClient.fetch(from: "http://127.0.0.1:\(port)", job: "j-1", run: 1, offset: 0, follow: false) { _ in }
            }
        }
    }

    @Test func followedStreamsBeyondTheLimitAreRefusedUntilOneEnds() async throws {
        try await withServer(maximumFollowers: 0) { port, _ in
            let refused = try await raw(port, "/v1/output/j-1/1?follow=1")
            #expect(refused.status == 503, "\(refused)")
            #expect(refused.body.contains("try again"))
            #expect(try await raw(port, "/v1/output/j-1/1").status == 200, "reading without following is not limited")
        }
    }

    /// Found in a clean-clone CI run: a follow request for a run placed on the executor but not
    /// started yet answered 404. It waits for the output to begin, then follows it to the end.
    @Test func followingARunPlacedButNotStartedWaitsForItsOutput() async throws {
        let held = Mutex(true)
        // Each look the server takes at whether the executor holds j-2's run: the test starts the
        // command once the server is seen waiting (a second look), not after a guessed pause.
        let looks = AsyncStream<Void>.makeStream()
        try await withServer(holds: { job, run in
            guard job == "j-2" && run == 1 else { return false }
            looks.continuation.yield()
            return held.withLock { $0 }
        }) { port, shell in
            #expect(try await raw(port, "/v1/output/j-2/1").status == 404, "without follow: nothing to show yet")
            async let followed = raw(port, "/v1/output/j-2/1?follow=1")
            var seen = 0
            for await _ in looks.stream {
                seen += 1
                if seen == 2 { break }
            }
            _ = try await shell.handler(TaskContext(job: "j-2", run: 1, arguments: ["command": ["sh", "-c", "echo first; sleep 0.3; echo second"]]))
            held.withLock { $0 = false }
            let response = try await followed
            #expect(response.status == 200, "\(response)")
            #expect(response.body.contains("stdout| first") && response.body.contains("stdout| second"), "\(response.body)")
            // A run the executor does not hold, never started here: 404 at once.
            #expect(try await raw(port, "/v1/output/j-3/1?follow=1").status == 404)
        }
    }

    @Test func aTokenFileMustBeTheOwnersAlone() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("token-\(UUID().uuidString.prefix(6))").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "abc123\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
        #expect(throws: TokenFileError.self) { try OutputClient.readToken(file: path) }
        chmod(path, 0o600)
        #expect(try OutputClient.readToken(file: path) == "abc123")
        try "\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(throws: TokenFileError.self) { try OutputClient.readToken(file: path) }
    }

    /// With TLS the output is served over HTTPS only; a client trusting the authority reads it; a
    /// client trusting another (the system's) is refused at the handshake; with a client authority,
    /// only a client showing a certificate it signed is served.
    @Test func overTLSOnlyAClientThatTrustsTheServerAndShowsWhatItAsksIsServed() async throws {
        let certificates = try await TestCertificates.make()
        defer { try? FileManager.default.removeItem(atPath: certificates.directory) }
        let trusting = HTTPClientTLS(certificateAuthorityFile: certificates.authority)
        try await withServer(tls: HTTPServerTLS(certificateFile: certificates.serverCertificate, privateKeyFile: certificates.serverKey)) { port, _ in
            var received = ""
            _ = try await OutputClient.fetch(from: "https://127.0.0.1:\(port)", job: "j-1", run: 1, offset: 0, follow: false, tls: trusting) {
                received += String(buffer: $0)
            }
            #expect(received == "hello\n")
            await #expect(throws: OutputClient.Failure.self) {
                _ = try await OutputClient.fetch(from: "https://127.0.0.1:\(port)", job: "j-1", run: 1, offset: 0, follow: false) { _ in }
            }
            // Plain HTTP to the TLS port gets no output.
            let plain = try? await raw(port, "/v1/output/j-1/1")
            #expect(plain?.body.contains("hello") != true)
        }
        let mutual = HTTPServerTLS(
            certificateFile: certificates.serverCertificate, privateKeyFile: certificates.serverKey, clientCertificateAuthorityFile: certificates.authority)
        try await withServer(tls: mutual) { port, _ in
            await #expect(throws: OutputClient.Failure.self) {
                _ = try await OutputClient.fetch(from: "https://127.0.0.1:\(port)", job: "j-1", run: 1, offset: 0, follow: false, tls: trusting) { _ in }
            }
            var received = ""
            let showing = HTTPClientTLS(
                certificateAuthorityFile: certificates.authority, certificateFile: certificates.clientCertificate, privateKeyFile: certificates.clientKey)
            _ = try await OutputClient.fetch(from: "https://127.0.0.1:\(port)", job: "j-1", run: 1, offset: 0, follow: false, tls: showing) {
                received += String(buffer: $0)
            }
            #expect(received == "hello\n")
        }
    }
}
