import Foundation
import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTLS
import ZooKeeperTesting

/// The C client through the TLS bridge, against servers that serve only TLS.
@Suite("TLS to ZooKeeper through the bridge", .serialized, .timeLimit(.minutes(4)))
struct TLSBridgeTests {
    @Test func aClientReachesATLSOnlyServerThroughTheBridgeAndPlainTCPDoesNot() async throws {
        try await LocalEnsemble.with(nodes: 1, tls: true) { ensemble in
            let zk = try await ZooKeeperClient.connect(to: ensemble.reachable(ensemble.connectionString))
            try await closing(zk) {
                let path = try await zk.create("/through-tls", data: Array("hello".utf8))
                #expect(try await zk.getData(path).data == Array("hello".utf8))
            }
            await #expect {
                _ = try await ZooKeeperClient.connect(to: ensemble.connectionString, connectTimeout: .seconds(2))
            } throws: { error in
                (error as? ZooKeeperError)?.code == .connectTimeout
            }
        }
    }

    @Test func aServerCertificateFromAnotherAuthorityIsRefusedAndTheBridgeSaysWhy() async throws {
        try await LocalEnsemble.with(nodes: 1, tls: true) { ensemble in
            // The client certificate is not the authority that signed the server's.
            let wrong = TLSBridgeConfiguration(certificateAuthorityFile: try #require(ensemble.tls?.certificateFile))
            let bridge = try await TLSBridge.start(connectionString: ensemble.connectionString, configuration: wrong)
            await #expect {
                _ = try await ZooKeeperClient.connect(to: bridge.connectionString, connectTimeout: .seconds(2))
            } throws: { error in
                (error as? ZooKeeperError)?.code == .connectTimeout
            }
            let reason = try #require(bridge.lastFailureDescription)
            #expect(reason.contains("certificate was not accepted"), "\(reason)")
            await bridge.shutdown()
        }
    }

    @Test func unusableSettingsAreRefusedWithTheFileNamed() async throws {
        await #expect {
            _ = try await TLSBridge.start(
                connectionString: "127.0.0.1:2281", configuration: TLSBridgeConfiguration(certificateAuthorityFile: "/nonexistent/ca.pem"))
        } throws: { error in
            "\(error)".contains("/nonexistent/ca.pem")
        }
        await #expect {
            _ = try await TLSBridge.start(
                connectionString: "127.0.0.1:2281",
                configuration: TLSBridgeConfiguration(certificateAuthorityFile: "/etc/hostname", certificateFile: "/etc/hostname"))
        } throws: { error in
            "\(error)".contains("/etc/hostname")
        }
        await #expect {
            _ = try await TLSBridge.start(
                connectionString: "127.0.0.1",
                configuration: TLSBridgeConfiguration(certificateAuthorityFile: "/nonexistent/ca.pem"))
        } throws: { error in
            "\(error)".contains("is not host:port")
        }
    }

    /// With a client certificate, ZooKeeper names the session `x509:<subject>`: an ACL can give a
    /// node to that identity alone, with no secret on the wire.
    @Test func aClientCertificateIsAnIdentityACLsCanName() async throws {
        try await LocalEnsemble.with(nodes: 1, tls: true) { ensemble in
            let owner = try await ZooKeeperClient.connect(to: ensemble.reachable(ensemble.connectionString))
            let path = try await owner.create(
                "/only-drover-client", data: Array("x".utf8), acl: [ACL(permissions: .all, scheme: "x509", id: "CN=drover-client")])
            #expect(try await owner.getData(path).data == Array("x".utf8))
            await owner.close()

            let tls = try #require(ensemble.tls)
            for configuration in [
                TLSBridgeConfiguration(certificateAuthorityFile: tls.certificateAuthorityFile),
                try await ensemble.issueCertificate("someone-else"),
            ] {
                let bridge = try await TLSBridge.start(connectionString: ensemble.connectionString, configuration: configuration)
                let other = try await ZooKeeperClient.connect(to: bridge.connectionString)
                await #expect {
                    _ = try await other.getData(path)
                } throws: { error in
                    (error as? ZooKeeperError)?.code == .noAuth
                }
                await other.close()
                await bridge.shutdown()
            }
        }
    }

    /// A process knows its own x509 identity from its certificate: the subject as ZooKeeper
    /// writes it (RFC 2253, last part first, commas escaped) — checked against the server itself,
    /// which lets a session showing the certificate read a node only that identity may read.
    @Test func aCertificatesSubjectIsReadAsZooKeeperNamesIt() async throws {
        try await LocalEnsemble.with(nodes: 1, tls: true) { ensemble in
            let tls = ensemble.directory.appendingPathComponent("tls").path
            let name = "\(tls)/acme-\(UUID().uuidString.prefix(8))"
            let log = name + ".log"
            for arguments in [
                ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/C=US/O=Acme, Inc./OU=Ops/CN=e1",
                 "-keyout", name + ".key", "-out", name + ".csr"],
                ["x509", "-req", "-in", name + ".csr", "-CA", tls + "/ca.pem", "-CAkey", tls + "/ca.key", "-CAcreateserial", "-days", "1",
                 "-out", name + ".pem"],
            ] {
                #expect(try await runAndWait("/usr/bin/openssl", arguments, stdout: log, stderr: log) == 0, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
            let subject = try CertificateSubject.rfc2253(ofPEMFile: name + ".pem")
            #expect(subject == #"CN=e1,OU=Ops,O=Acme\, Inc.,C=US"#)
            #expect(try CertificateSubject.rfc2253(ofPEMFile: tls + "/client.pem") == "CN=drover-client")

            let owner = try await ZooKeeperClient.connect(to: ensemble.reachable(ensemble.connectionString))
            let path = try await owner.create("/only-acme", data: Array("x".utf8), acl: [ACL(permissions: .all, scheme: "x509", id: subject)])
            await owner.close()
            let configuration = TLSBridgeConfiguration(
                certificateAuthorityFile: tls + "/ca.pem", certificateFile: name + ".pem", privateKeyFile: name + ".key")
            let bridge = try await TLSBridge.start(connectionString: ensemble.connectionString, configuration: configuration)
            let acme = try await ZooKeeperClient.connect(to: bridge.connectionString)
            #expect(try await acme.getData(path).data == Array("x".utf8))
            await acme.close()
            await bridge.shutdown()
        }
        #expect(throws: CertificateSubjectError.self) { try CertificateSubject.rfc2253(ofPEMFile: "/etc/hostname") }
    }

    /// The bridge serves its own process only: the same bytes (ZooKeeper's `srvr`) sent to its
    /// port from this process are answered by the server, and from another process get nothing —
    /// another local user must not reach ZooKeeper with this process's certificate and role.
    @Test func theBridgeRefusesConnectionsFromOtherProcesses() async throws {
        try await LocalEnsemble.with(nodes: 1, tls: true) { ensemble in
            let tls = try #require(ensemble.tls)
            let bridge = try await TLSBridge.start(connectionString: ensemble.connectionString, configuration: tls)
            let port = try #require(bridge.ports.first)
            var here = ""
            for try await text in loopbackExchange(port: port, sending: "srvr") { here += text }
            #expect(here.contains("Zookeeper version"), "this process's own connection: \(here)")
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("bridge-other-\(UUID().uuidString.prefix(8))").path
            defer { try? FileManager.default.removeItem(atPath: output) }
            let status = try await runAndWait(
                "/bin/bash", ["-c", "exec 3<>/dev/tcp/127.0.0.1/\(port) && printf srvr >&3 && timeout 5 cat <&3"], stdout: output, stderr: output)
            let there = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            #expect(!there.contains("Zookeeper version"), "another process was served (exit \(status)): \(there)")
            await bridge.shutdown()
        }
    }

    /// Each server of a 3-node TLS ensemble is killed in turn: the session moves through the
    /// bridge to another server each time and lives on, and every write is kept.
    @Test func aSessionFailsOverBetweenServersThroughTheBridge() async throws {
        try await LocalEnsemble.with(nodes: 3, tls: true) { ensemble in
            let zk = try await ZooKeeperClient.connect(to: ensemble.reachable(ensemble.connectionString), sessionTimeout: .seconds(8))
            try await closing(zk) {
                let session = zk.sessionID
                for node in 1...3 {
                    try await ensemble.kill(node: node)
                    let killed = ContinuousClock.now
                    _ = try await retryingConnectionLoss(zk) { try await zk.create("/after-kill-\(node)") }
                    print("node \(node) killed: a write went through \(ContinuousClock.now - killed) later")
                    try await ensemble.restart(node: node)
                }
                #expect(zk.sessionID == session, "the session was lost instead of moving to another server")
                for node in 1...3 { #expect(try await zk.exists("/after-kill-\(node)") != nil) }
            }
        }
    }

    /// A create that lost its connection (or whose connection timed out while the servers chose a
    /// new leader) may or may not have been applied: once connected again,
    /// try again, and take "exists" as done.
    private func retryingConnectionLoss(_ zk: ZooKeeperClient, _ body: () async throws -> String) async throws -> String? {
        while true {
            do {
                return try await body()
            } catch let error as ZooKeeperError where error.code == .connectionLoss || error.code == .operationTimeout {
                try await zk.waitUntilConnected(timeout: .seconds(30))
            } catch let error as ZooKeeperError where error.code == .nodeExists {
                return nil
            }
        }
    }
}
