import DroverAPI
import DroverClient
import DroverProtocol
import DroverStore
import Foundation
import Testing
import Yams
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// The HTTP API through HTTP, against a live manager and executor (docs/openapi.yaml).
@Suite("HTTP API", .timeLimit(.minutes(2)))
struct APITests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func theOpenAPIDocumentListsExactlyTheRoutesServed() throws {
        let text = try String(contentsOf: Self.repository.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        let document = try #require(try Yams.load(yaml: text) as? [String: Any])
        let paths = try #require(document["paths"] as? [String: Any])
        var documented: Set<String> = []
        for (path, item) in paths {
            for method in (item as? [String: Any] ?? [:]).keys where ["get", "post", "put", "delete", "patch"].contains(method) {
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        #expect(documented == Set(APIServer.routeList), "documented but not served: \(documented.subtracting(APIServer.routeList)); served but not documented: \(Set(APIServer.routeList).subtracting(documented))")
    }

    /// Waits, on a watch, until a manager has stood for election: its API listens by then.
    static func waitForAManager(_ zk: ZooKeeperClient) async throws {
        for try await update in zk.childrenUpdates(of: Layout().election) {
            if case .present(let children) = update, !children.names.isEmpty { return }
        }
    }

    /// `{"code", "message"}` of an error response, or nil when the body is not one.
    static func error(_ body: String) -> (code: String, message: String)? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: String], let code = object["code"],
            let message = object["message"]
        else { return nil }
        return (code, message)
    }

    static func object(_ body: String) -> [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:] }

    @Test func everyRouteAnswersAndEveryMistakeIsAJSON4xx() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("api")
        let port = try freeLoopbackPort()
        let daemons = try Daemons.launch(root: root, name: "api", manager: ["--api", "127.0.0.1:\(port)", "--api-host", "drover.internal"])
        defer { daemons.stop() }
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        try await client.waitForRegistration(of: ["e1"])
        try await Self.waitForAManager(zk)
        #expect(try await httpGet(port: port, "/v1/health").status == 200)

        // DNS rebinding: a page on a name this API was not given is refused, reads included.
        let rebound = try await httpGet(port: port, "/v1/jobs", headers: ["Host: evil.example:\(port)"])
        #expect(rebound.status == 421 && Self.error(rebound.body)?.code == "unknownHost", "\(rebound.body)")
        for host in ["drover.internal:\(port)", "localhost:\(port)", "127.0.0.1:\(port)", "[::1]:\(port)"] {
            #expect(try await httpGet(port: port, "/v1/jobs", headers: ["Host: \(host)"]).status == 200, "Host: \(host)")
        }

        // Submit one, then many; read them back.
        let one = try await httpRequest("POST", port: port, "/v1/jobs", body: #"{"method": "sample.echo", "arguments": {"x": 1}}"#)
        #expect(one.status == 201, "\(one.body)")
        let id = try #require(Self.object(one.body)["id"] as? String)
        #expect(try await finalRecord(client, id).state == .succeeded)
        let job = try await httpGet(port: port, "/v1/jobs/\(id)")
        #expect(job.status == 200 && Self.object(job.body)["state"] as? String == "succeeded", "\(job.body)")
        let many = try await httpRequest(
            "POST", port: port, "/v1/jobs", body: #"{"jobs": [{"method": "sample.echo"}, {"method": "shell", "arguments": {"command": ["true"]}}]}"#)
        #expect(many.status == 201 && (Self.object(many.body)["ids"] as? [String])?.count == 2, "\(many.body)")
        // A shell job's output, read through the API from the executor that ran it.
        let shell = try await httpRequest("POST", port: port, "/v1/jobs", body: #"{"method": "shell", "arguments": {"command": ["echo", "hello through the API"]}}"#)
        let shellID = try #require(Self.object(shell.body)["id"] as? String)
        #expect(try await finalRecord(client, shellID).state == .succeeded)
        let log = try await httpGet(port: port, "/v1/jobs/\(shellID)/runs/1/log")
        #expect(log.status == 200 && log.body.contains("stdout| hello through the API"), "\(log.status) \(log.body)")
        let noRun = try await httpGet(port: port, "/v1/jobs/\(shellID)/runs/2/log")
        #expect(noRun.status == 404 && Self.error(noRun.body)?.code == "noOutput", "\(noRun.body)")
        let echoLog = try await httpGet(port: port, "/v1/jobs/\(id)/runs/1/log")
        #expect(echoLog.status == 404 && Self.error(echoLog.body)?.code == "noOutput", "\(echoLog.body)")
        #expect(try await httpGet(port: port, "/v1/jobs/\(shellID)/runs/zero/log").status == 400)

        // A workflow through the API, and a step injected into it while its first step waits.
        let gate = FileManager.default.temporaryDirectory.appendingPathComponent("api-gate-\(UUID().uuidString.prefix(8))").path
        let workflow = try await httpRequest(
            "POST", port: port, "/v1/jobs",
            body: #"{"steps": [{"id": "wait", "method": "shell", "arguments": {"command": ["sh", "-c", "while [ ! -e \"$0\" ]; do sleep 0.1; done; echo '{\"n\": 5}' > \"$DROVER_RESULT\"", "\#(gate)"]}}]}"#)
        #expect(workflow.status == 201, "\(workflow.body)")
        let workflowID = try #require(Self.object(workflow.body)["id"] as? String)
        let injected = try await httpRequest(
            "POST", port: port, "/v1/jobs/\(workflowID)/inject",
            body: #"{"steps": [{"id": "then", "method": "sample.echo", "after": ["wait"], "arguments": {"n": {"$from": "wait.result.n"}}}]}"#)
        #expect(injected.status == 202, "\(injected.body)")
        let badSteps = try await httpRequest(
            "POST", port: port, "/v1/jobs/\(workflowID)/inject", body: #"{"steps": [{"id": "wait", "method": "sample.echo"}]}"#)
        #expect(badSteps.status == 400 && Self.error(badSteps.body)?.code == "invalidSpec", "\(badSteps.body)")
        try await withDiagnosis(client, workflowID) {
            for try await record in client.updates(workflowID) where record.spec.steps?.count == 2 { break }
        }
        FileManager.default.createFile(atPath: gate, contents: nil)
        let finished = try await finalRecord(client, workflowID)
        #expect(finished.state == .succeeded && finished.history.last?.result == ["n": 5], "\(finished.history)")
        let late = try await httpRequest("POST", port: port, "/v1/jobs/\(workflowID)/inject", body: #"[{"id": "more", "method": "sample.echo"}]"#)
        #expect(late.status == 409 && Self.error(late.body)?.code == "jobNotCancellable", "\(late.body)")

        let page = try await httpGet(port: port, "/v1/jobs?limit=1")
        #expect(page.status == 200 && (Self.object(page.body)["jobs"] as? [Any])?.count == 1 && Self.object(page.body)["next"] is String, "\(page.body)")
        let succeeded = try await httpGet(port: port, "/v1/jobs?state=succeeded,failed&limit=10")
        #expect(succeeded.status == 200)

        // Act on jobs and executors; who leads.
        let forever = try #require(Self.object(try await httpRequest("POST", port: port, "/v1/jobs", body: #"{"method": "sample.echo", "kind": "infinite"}"#).body)["id"] as? String)
        #expect(try await httpRequest("POST", port: port, "/v1/jobs/\(forever)/stop").status == 202)
        #expect(try await finalRecord(client, forever).state == .stopped)
        let executors = try await httpGet(port: port, "/v1/executors")
        #expect(executors.status == 200 && executors.body.contains(#""id":"e1""#), "\(executors.body)")
        // The event stream sends the executors as they are, then again when they change.
        var events = httpStream(port: port, "/v1/events").makeAsyncIterator()
        var streamed = ""
        while !streamed.contains("event: executors") {
            guard let chunk = try await events.next() else { break }
            streamed += chunk
        }
        #expect(streamed.contains("text/event-stream") && streamed.contains(#""id":"e1""#), "\(streamed)")
        #expect(try await httpRequest("POST", port: port, "/v1/executors/e1/drain").status == 202)
        // While e1 drains a job waits: the leader counts it (seen on a watch), and /v1/counts says so.
        let held = try #require(Self.object(try await httpRequest("POST", port: port, "/v1/jobs", body: #"{"method": "sample.echo"}"#).body)["id"] as? String)
        for try await update in zk.dataUpdates(of: client.layout.active) {
            if case .present(let node) = update, ActiveIndex.read(node.data)?.counts?.waiting == 1 { break }
        }
        let counts = try await httpGet(port: port, "/v1/counts")
        #expect(counts.status == 200 && Self.object(counts.body)["waiting"] as? Int == 1, "\(counts.body)")
        #expect(Self.object(counts.body)["running"] is Int && Self.object(counts.body)["scheduled"] is Int, "\(counts.body)")
        // …and the stream said both: e1 draining, one job waiting.
        streamed = ""
        while !(streamed.contains(#""draining":true"#) && streamed.contains(#""waiting":1"#)) {
            guard let chunk = try await events.next() else { break }
            streamed += chunk
        }
        #expect(streamed.contains("event: counts") && streamed.contains(#""draining":true"#), "\(streamed)")
        #expect(try await httpRequest("POST", port: port, "/v1/executors/e1/undrain").status == 202)
        #expect(try await finalRecord(client, held).state == .succeeded)
        let managers = try await httpGet(port: port, "/v1/managers")
        #expect(Self.object(managers.body)["leader"] as? String == "m1", "\(managers.body)")

        // Mistakes: each a 4xx with a JSON code and message.
        let mistakes: [(String, String, String?, Int, String)] = [
            ("POST", "/v1/jobs", "not json", 400, "badRequest"),
            ("POST", "/v1/jobs", #"{"method": 42}"#, 400, "invalidSpec"),
            ("POST", "/v1/jobs", #"{"method": "sample.echo", "colour": "red"}"#, 400, "invalidSpec"),
            ("POST", "/v1/jobs", #"{"method": "shell", "arguments": {"command": []}}"#, 400, "invalidSpec"),
            ("POST", "/v1/jobs", #"{"jobs": []}"#, 400, "badRequest"),
            ("POST", "/v1/jobs", #"{"method": "nobody.has.this"}"#, 409, "unplaceable"),
            ("GET", "/v1/jobs?limit=0", nil, 400, "badRequest"),
            ("GET", "/v1/jobs?state=sleeping", nil, 400, "badRequest"),
            ("GET", "/v1/jobs?state=", nil, 400, "badRequest"),
            ("GET", "/v1/jobs?order=random", nil, 400, "badRequest"),
            ("GET", "/v1/jobs?after=..%2f..", nil, 400, "badRequest"),
            ("GET", "/v1/jobs/j-nope", nil, 404, "unknownJob"),
            ("GET", "/v1/jobs/..%2f..%2fetc", nil, 404, "unknownJob"),
            ("POST", "/v1/jobs/\(id)/explode", nil, 404, "notFound"),
            ("POST", "/v1/executors/e1/explode", nil, 404, "notFound"),
            ("POST", "/v1/executors/e404/drain", nil, 404, "unknownExecutor"),
            ("GET", "/v1/nothing", nil, 404, "notFound"),
            ("DELETE", "/v1/jobs", nil, 404, "notFound"),
        ]
        // Another site's page cannot make a browser write: JSON only, same origin only.
        let form = try await httpRequest("POST", port: port, "/v1/jobs/\(id)/stop", headers: ["Content-Type: text/plain"])
        #expect(form.status == 415, "\(form.body)")
        let crossOrigin = try await httpRequest("POST", port: port, "/v1/jobs", body: #"{"method": "sample.echo"}"#, headers: ["Origin: http://evil.example"])
        #expect(crossOrigin.status == 403 && Self.error(crossOrigin.body)?.code == "crossSite", "\(crossOrigin.body)")
        let crossSite = try await httpRequest("POST", port: port, "/v1/jobs", body: #"{"method": "sample.echo"}"#, headers: ["Sec-Fetch-Site: cross-site"])
        #expect(crossSite.status == 403, "\(crossSite.body)")
        let newest = try await httpGet(port: port, "/v1/jobs?order=newest&limit=1")
        #expect(((Self.object(newest.body)["jobs"] as? [[String: Any]])?.first?["id"] as? String) != id, "newest first: \(newest.body)")

        for (method, target, body, status, code) in mistakes {
            let response = try await httpRequest(method, port: port, target, body: body)
            #expect(response.status == status, "\(method) \(target): \(response.status) \(response.body)")
            #expect(Self.error(response.body)?.code == code, "\(method) \(target): \(response.body)")
            #expect(!(Self.error(response.body)?.message.isEmpty ?? true))
        }
        await zk.close()
    }

    /// Work specs through the API, as `drover spec` and `drover units`: create, add units, watch
    /// them run on an executor with unit slots, list and read them, change the spec, retry,
    /// delete; every mistake a JSON 4xx naming what is wrong.
    @Test func workSpecsAndTheirUnitsThroughTheAPI() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("api-specs")
        let port = try freeLoopbackPort()
        let daemons = try Daemons.launch(
            root: root, name: "api-specs", manager: ["--api", "127.0.0.1:\(port)"], executors: [("e1", ["--unit-slots", "4"])])
        defer { daemons.stop() }
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        try await Self.waitForAManager(zk)

        let created = try await httpRequest(
            "POST", port: port, "/v1/specs", body: #"{"name": "thumbs", "method": "sample.echo", "arguments": {"size": 64}, "buckets": 2, "maxRetries": 1}"#)
        #expect(created.status == 201 && Self.object(created.body)["buckets"] as? Int == 2, "\(created.body)")
        let added = try await httpRequest(
            "POST", port: port, "/v1/specs/thumbs/units", body: #"{"units": [{"key": "img/1.png", "data": {"n": 1}}, {"key": "img/2.png"}, {"key": "img/3.png"}]}"#)
        #expect(added.status == 201 && Self.object(added.body)["added"] as? Int == 3, "\(added.body)")
        let again = try await httpRequest("POST", port: port, "/v1/specs/thumbs/units", body: #"[{"key": "img/1.png"}]"#)
        #expect(Self.object(again.body)["alreadyPresent"] as? Int == 1, "\(again.body)")
        // Run by e1: the spec's counts, seen on the buckets' indexes.
        let spec = try #require(try await client.workSpecs.spec("thumbs")?.document)
        try await within(120, "every unit finished") {
            for bucket in 0..<spec.buckets {
                for try await update in zk.dataUpdates(of: client.layout.specBucket("thumbs", bucket)) {
                    if case .present(let node) = update, try Codec.decode(UnitBucket.self, node.data).counts.unfinished == 0 { break }
                }
            }
        }
        let one = try await httpGet(port: port, "/v1/specs/thumbs")
        #expect(one.status == 200 && (Self.object(one.body)["counts"] as? [String: Any])?["finished"] as? Int == 3, "\(one.body)")
        let listing = try await httpGet(port: port, "/v1/specs")
        #expect(listing.status == 200 && listing.body.contains(#""name":"thumbs""#), "\(listing.body)")
        let page = try await httpGet(port: port, "/v1/specs/thumbs/units?state=finished&limit=2")
        #expect((Self.object(page.body)["units"] as? [Any])?.count == 2 && Self.object(page.body)["next"] is String, "\(page.body)")
        let unit = try await httpGet(port: port, "/v1/specs/thumbs/unit?key=img%2F1.png")
        #expect(unit.status == 200 && Self.object(unit.body)["state"] as? String == "finished", "\(unit.body)")
        #expect(unit.body.contains(#""data":{"n":1}"#), "\(unit.body)")

        let paused = try await httpRequest("POST", port: port, "/v1/specs/thumbs/pause")
        #expect(paused.status == 202 && (Self.object(paused.body)["spec"] as? [String: Any])?["paused"] as? Bool == true, "\(paused.body)")
        let updated = try await httpRequest("POST", port: port, "/v1/specs/thumbs/update", body: #"{"weight": 3, "maxRunning": 4, "then": "thumbs"}"#)
        let changed = Self.object(updated.body)["spec"] as? [String: Any]
        #expect(updated.status == 202 && changed?["weight"] as? Double == 3 && changed?["maxRunning"] as? Int == 4 && changed?["format"] as? Int == 2, "\(updated.body)")
        let uncapped = try await httpRequest("POST", port: port, "/v1/specs/thumbs/update", body: #"{"maxRunning": 0, "then": null}"#)
        let plain = Self.object(uncapped.body)["spec"] as? [String: Any]
        #expect(plain?["maxRunning"] == nil && plain?["then"] == nil && plain?["format"] as? Int == 1, "\(uncapped.body)")
        #expect(try await httpRequest("POST", port: port, "/v1/specs/thumbs/retry").status == 202)
        let clearedFinished = try await httpRequest("POST", port: port, "/v1/specs/thumbs/clear", body: #"{"states": ["finished"]}"#)
        #expect(clearedFinished.status == 202 && Self.object(clearedFinished.body)["units"] as? Int == 3, "\(clearedFinished.body)")
        let clearedRest = try await httpRequest("POST", port: port, "/v1/specs/thumbs/clear")
        #expect(clearedRest.status == 202 && Self.object(clearedRest.body)["units"] as? Int == 0, "\(clearedRest.body)")
        #expect(try await client.workSpecs.counts(of: spec).total == 0)

        let mistakes: [(String, String, String?, Int, String)] = [
            ("POST", "/v1/specs", #"{"name": "x"}"#, 400, "invalidSpec"),
            ("POST", "/v1/specs", #"{"name": "x", "method": "m", "colour": "red"}"#, 400, "invalidSpec"),
            ("POST", "/v1/specs", #"{"name": "x", "method": "m", "weight": 0}"#, 400, "invalidSpec"),
            ("POST", "/v1/specs", #"{"name": "x", "method": "m", "leaseSeconds": "long"}"#, 400, "invalidSpec"),
            ("POST", "/v1/specs", #"{"name": "thumbs", "method": "m"}"#, 400, "invalidSpec"),
            ("POST", "/v1/specs/thumbs/update", #"{"buckets": 4}"#, 400, "invalidSpec"),
            ("POST", "/v1/specs/thumbs/units", #"{"units": [{"key": "a"}, {"key": "a"}]}"#, 400, "invalidSpec"),
            ("POST", "/v1/specs/thumbs/units", #"{"units": [{"key": "a", "colour": 1}]}"#, 400, "invalidSpec"),
            ("POST", "/v1/specs/thumbs/units", #"{"units": []}"#, 400, "badRequest"),
            ("POST", "/v1/specs/thumbs/explode", nil, 404, "notFound"),
            ("POST", "/v1/specs/thumbs/clear", #"{"states": ["asleep"]}"#, 400, "badRequest"),
            ("POST", "/v1/specs/thumbs/clear", #"{"state": "finished"}"#, 400, "invalidSpec"),
            ("GET", "/v1/specs/nope", nil, 404, "unknownSpec"),
            ("POST", "/v1/specs/nope/units", #"[{"key": "a"}]"#, 404, "unknownSpec"),
            ("GET", "/v1/specs/thumbs/units?state=asleep", nil, 400, "badRequest"),
            ("GET", "/v1/specs/thumbs/unit", nil, 400, "badRequest"),
            ("GET", "/v1/specs/thumbs/unit?key=none", nil, 404, "unknownUnit"),
        ]
        for (method, target, body, status, code) in mistakes {
            let response = try await httpRequest(method, port: port, target, body: body)
            #expect(response.status == status, "\(method) \(target): \(response.status) \(response.body)")
            #expect(Self.error(response.body)?.code == code, "\(method) \(target): \(response.body)")
        }
        #expect(try await httpRequest("POST", port: port, "/v1/specs/thumbs/delete").status == 202)
        #expect(try await httpGet(port: port, "/v1/specs/thumbs").status == 404)
        await zk.close()
    }

    @Test func aSecuredDeploymentAsksForARolesCredentials() async throws {
        let deployment = try await SecuredDeployment.make("api-secured")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("drover-api-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let managerFile = directory.appendingPathComponent("manager.json").path
        try SecretFile.create(managerFile, bytes: try Codec.encode(deployment.manager))
        let port = try freeLoopbackPort()
        let manager = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable,
            ["manager", "--zk", deployment.root, "--id", "m1", "--credentials", managerFile, "--api", "127.0.0.1:\(port)"], name: "api-secured")
        defer { manager.signal(SIGKILL) }
        let observer = try await deployment.connect(as: deployment.reader)
        try await Self.waitForAManager(observer)
        await observer.close()
        func basic(_ credentials: Credentials) -> [String] {
            ["Authorization: Basic " + Data("\(credentials.user):\(credentials.password)".utf8).base64EncodedString()]
        }
        let anonymous = try await httpGet(port: port, "/v1/jobs")
        #expect(anonymous.status == 401 && Self.error(anonymous.body)?.code == "unauthorized", "\(anonymous.body)")
        #expect(try await httpGet(port: port, "/v1/jobs", headers: basic(deployment.reader)).status == 200)
        let readerSubmit = try await httpRequest("POST", port: port, "/v1/jobs", body: #"{"method": "sample.echo"}"#, headers: basic(deployment.reader))
        #expect(readerSubmit.status == 403 && Self.error(readerSubmit.body)?.code == "notPermitted", "\(readerSubmit.body)")
        let executorRead = try await httpGet(port: port, "/v1/jobs", headers: basic(deployment.executors["e1"]!))
        #expect(executorRead.status == 403, "\(executorRead.body)")
        let wrong = Credentials(role: .client, user: deployment.client.user, password: "guess")
        #expect(try await httpGet(port: port, "/v1/jobs", headers: basic(wrong)).status == 401)
        // A client submits (it waits for an executor: none runs here).
        let clientSubmit = try await httpRequest("POST", port: port, "/v1/jobs", body: #"{"method": "sample.echo"}"#, headers: basic(deployment.client))
        #expect(clientSubmit.status == 201 && Self.object(clientSubmit.body)["id"] is String, "\(clientSubmit.body)")
        // Work specs too: a client creates one and adds units through the manager's connection; a reader may not.
        let spec = try await httpRequest("POST", port: port, "/v1/specs", body: #"{"name": "secured", "method": "sample.echo", "buckets": 2}"#, headers: basic(deployment.client))
        #expect(spec.status == 201, "\(spec.body)")
        let units = try await httpRequest("POST", port: port, "/v1/specs/secured/units", body: #"[{"key": "a"}, {"key": "b"}]"#, headers: basic(deployment.client))
        #expect(units.status == 201 && Self.object(units.body)["added"] as? Int == 2, "\(units.body)")
        #expect(try await httpRequest("POST", port: port, "/v1/specs/secured/pause", headers: basic(deployment.client)).status == 202)
        let readerSpec = try await httpRequest("POST", port: port, "/v1/specs/secured/delete", headers: basic(deployment.reader))
        #expect(readerSpec.status == 403, "\(readerSpec.body)")
        #expect(try await httpGet(port: port, "/v1/specs/secured", headers: basic(deployment.reader)).status == 200)
    }

    /// `--api-tls-cert`: the API (and the page) over HTTPS, and only there; with a client
    /// authority, only to clients showing a certificate it signed.
    @Test func theAPIServedOverTLS() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("api-tls")
        let certificates = try await TestCertificates.make()
        defer { try? FileManager.default.removeItem(atPath: certificates.directory) }
        let port = try freeLoopbackPort()
        let manager = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable,
            [
                "manager", "--zk", root, "--id", "m1", "--api", "127.0.0.1:\(port)", "--api-tls-cert", certificates.serverCertificate,
                "--api-tls-key", certificates.serverKey, "--api-tls-client-ca", certificates.authority,
            ], name: "api-tls")
        defer { manager.signal(SIGKILL) }
        let zk = try await ZooKeeperClient.connect(to: root)
        try await Self.waitForAManager(zk)
        await zk.close()
        let trusted = try await Self.https(port, "/v1/health", certificates: certificates, showCertificate: true)
        #expect(trusted.contains("HTTP/1.1 200"), "\(trusted)")
        let anonymous = try await Self.https(port, "/v1/health", certificates: certificates, showCertificate: false)
        #expect(!anonymous.contains("HTTP/1.1 200"), "served without a client certificate: \(anonymous)")
        let plain = try? await httpGet(port: port, "/v1/health")
        #expect(plain?.status != 200, "plain HTTP was served")
    }

    /// A GET over TLS with `openssl s_client` (what `make test` installs), trusting the test CA.
    static func https(_ port: Int, _ target: String, certificates: TestCertificates, showCertificate: Bool) async throws -> String {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("https-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let identity = showCertificate ? " -cert '\(certificates.clientCertificate)' -key '\(certificates.clientKey)'" : ""
        let command =
            "printf 'GET \(target) HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n' | "
            + "timeout 10 openssl s_client -quiet -connect 127.0.0.1:\(port) -CAfile '\(certificates.authority)'\(identity)"
        _ = try await runAndWait("/bin/sh", ["-c", command], stdout: output, stderr: "/dev/null")
        return (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
    }

    /// `follow=true` streams a running run's output as it is written and ends with the run;
    /// `offset` skips what a client has; bad values are a 400.
    @Test func aRunningRunsOutputIsFollowedThroughTheAPI() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("api-follow")
        let port = try freeLoopbackPort()
        let daemons = try Daemons.launch(root: root, name: "api-follow", manager: ["--api", "127.0.0.1:\(port)"])
        defer { daemons.stop() }
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        try await client.waitForRegistration(of: ["e1"])
        try await Self.waitForAManager(zk)
        // The run prints one line, then waits for the test to release it through a FIFO.
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("api-follow-\(UUID().uuidString.prefix(8))").path
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let submit = try await httpRequest(
            "POST", port: port, "/v1/jobs", body: #"{"method": "shell", "arguments": {"command": ["sh", "-c", "echo first; read x < \#(fifo); echo second $x"]}}"#)
        let id = try #require(Self.object(submit.body)["id"] as? String)
        // Started on e1, not only placed: until the executor starts the command there is no output
        // to follow (a record that says `running` was only placed — CI once asked in between and got 404).
        for try await update in zk.dataUpdates(of: Layout().executorProgress("e1")) {
            if case .present(let node) = update,
                try Codec.decode(ExecutorProgress.self, node.data).tasks.contains(where: { $0.job == id && $0.state == .running })
            {
                break
            }
        }
        var received = ""
        var released = false
        for try await text in httpStream(port: port, "/v1/jobs/\(id)/runs/1/log?follow=true") {
            received += text
            // The first line came while the run still waits: the response streams.
            if !released && received.contains("stdout| first") {
                released = true
                let handle = try #require(FileHandle(forWritingAtPath: fifo))
                handle.write(Data("released\n".utf8))
                try handle.close()
            }
        }
        #expect(released, "the first line never came: \(received)")
        #expect(received.hasPrefix("HTTP/1.1 200"), "\(received)")
        #expect(received.contains("stdout| second released"), "the stream ended before the run's last line: \(received)")
        #expect(try await finalRecord(client, id).state == .succeeded)

        // Offsets: the whole output, then nothing past its end.
        let whole = try await httpGet(port: port, "/v1/jobs/\(id)/runs/1/log")
        let rest = try await httpGet(port: port, "/v1/jobs/\(id)/runs/1/log?offset=\(whole.body.utf8.count)")
        #expect(rest.status == 200 && rest.body.isEmpty, "\(rest.status) \(rest.body)")
        // A finished run's follow answers what there is and ends.
        let followedDone = try await httpGet(port: port, "/v1/jobs/\(id)/runs/1/log?follow=true")
        #expect(followedDone.status == 200 && followedDone.body == whole.body)
        for bad in ["follow=yes", "offset=-1", "offset=abc"] {
            let answer = try await httpGet(port: port, "/v1/jobs/\(id)/runs/1/log?\(bad)")
            #expect(answer.status == 400 && Self.error(answer.body)?.code == "badRequest", "\(bad): \(answer.body)")
        }
        await zk.close()
    }
}
