import DroverClient
import Foundation
import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// A WebDriver session with headless Chromium (Debian's `chromium` and `chromium-driver`, which
/// Deploy/install-deps installs for `make test`).
struct Browser {
    let driver: Process
    let port: Int
    let session: String

    static func start() async throws -> Browser {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver") else {
            throw BrowserError("no /usr/bin/chromedriver: Deploy/install-deps installs chromium and chromium-driver (make test runs it first)")
        }
        let port = try freeLoopbackPort()
        let driver = Process()
        driver.executableURL = URL(fileURLWithPath: "/usr/bin/chromedriver")
        driver.arguments = ["--port=\(port)"]
        let output = Pipe()
        driver.standardOutput = output
        driver.standardError = FileHandle.nullDevice
        try driver.run()
        // Ready once it says so on its standard output (read as it comes, not polled).
        let ready: Bool = await withCheckedContinuation { continuation in
            Thread {
                var seen = ""
                while true {
                    let data = output.fileHandleForReading.availableData
                    if data.isEmpty { return continuation.resume(returning: false) }
                    seen += String(decoding: data, as: UTF8.self)
                    if seen.contains("started successfully") { return continuation.resume(returning: true) }
                }
            }.start()
        }
        guard ready else { throw BrowserError("chromedriver exited before it was ready") }
        let capabilities: [String: Any] = [
            "capabilities": [
                "alwaysMatch": [
                    "browserName": "chrome",
                    "goog:chromeOptions": [
                        "binary": "/usr/bin/chromium",
                        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,860"],
                    ],
                ]
            ]
        ]
        let created = try await call(port, "POST", "/session", capabilities)
        guard let session = (created["value"] as? [String: Any])?["sessionId"] as? String else {
            throw BrowserError("no WebDriver session: \(created)")
        }
        let browser = Browser(driver: driver, port: port, session: session)
        // Finding an element waits for it (up to 20 s): the browser watches the page for us.
        _ = try await browser.command("POST", "/timeouts", ["implicit": 20_000])
        return browser
    }

    static func call(_ port: Int, _ method: String, _ path: String, _ body: [String: Any]? = nil) async throws -> [String: Any] {
        let text = try body.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
        let response = try await httpRequest(method, port: port, path, body: text)
        return (try? JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any]) ?? ["status": response.status]
    }

    func command(_ method: String, _ path: String, _ body: [String: Any]? = nil) async throws -> [String: Any] {
        try await Self.call(port, method, "/session/\(session)" + path, body)
    }

    func open(_ url: String) async throws { _ = try await command("POST", "/url", ["url": url]) }

    /// Whether an element matching `selector` is (or appears within the wait) on the page.
    func has(_ selector: String) async throws -> Bool {
        let found = try await command("POST", "/element", ["using": "css selector", "value": selector])
        return (found["value"] as? [String: Any])?.keys.contains { $0.hasPrefix("element-") } == true
    }

    /// Clicks the element matching `selector` (waiting for it as ``has(_:)`` does). The page
    /// re-renders its tables every second: an element replaced between finding and clicking is a
    /// "stale element reference", and is found again and clicked.
    func click(_ selector: String) async throws {
        for _ in 0..<10 {
            let found = try await command("POST", "/element", ["using": "css selector", "value": selector])
            guard let element = (found["value"] as? [String: Any])?.first(where: { $0.key.hasPrefix("element-") })?.value as? String else {
                throw BrowserError("no element \(selector) to click: \(found)")
            }
            let clicked = try await command("POST", "/element/\(element)/click", [:])
            guard let error = (clicked["value"] as? [String: Any])?["error"] as? String else { return }
            guard error == "stale element reference" else { throw BrowserError("clicking \(selector): \(clicked)") }
        }
        throw BrowserError("\(selector) was replaced each time it was clicked")
    }

    /// What the page says of itself, for a failure's message: the job panel's last read error,
    /// the header's error, and the output panel's state.
    func diagnosis() async -> String {
        let script = #"return JSON.stringify({job: document.getElementById("job").dataset.error || null, error: document.getElementById("error").textContent, log: (document.getElementById("log").dataset || {}).state || null, executors: document.body.dataset.executors || null})"#
        let result = try? await command("POST", "/execute/sync", ["script": script, "args": [Any]()])
        return (result?["value"] as? String) ?? "(the page could not be asked)"
    }

    func screenshot(to path: String) async throws {
        let shot = try await command("GET", "/screenshot")
        guard let base64 = shot["value"] as? String, let data = Data(base64Encoded: base64) else { throw BrowserError("no screenshot") }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// Ends the session (the browser closes) and the driver.
    func quit() async {
        _ = try? await command("DELETE", "")
        // chromedriver does not exit on SIGTERM while it has children to reap.
        kill(driver.processIdentifier, SIGKILL)
    }
}

struct BrowserError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@Suite("The dashboard in a real browser", .timeLimit(.minutes(2)))
struct DashboardTests {
    @Test func aSubmittedJobEndsInThePageAndAKilledExecutorTurnsDead() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("dashboard")
        let port = try freeLoopbackPort()
        let daemons = try Daemons.launch(
            root: root, name: "dashboard", manager: ["--api", "127.0.0.1:\(port)"], executors: [("e1", []), ("e2", ["--session-timeout", "2"])])
        defer { daemons.stop() }
        let zk = try await ZooKeeperClient.connect(to: root)
        try await DroverClient(zookeeper: zk).waitForRegistration(of: ["e1", "e2"])
        try await APITests.waitForAManager(zk)

        let browser = try await Browser.start()
        do {
            try await browser.open("http://127.0.0.1:\(port)/")
            #expect(try await browser.has("[data-executor='e1'][data-state='alive']"))
            #expect(try await browser.has("[data-executor='e2'][data-state='alive']"))

            let submitted = try await httpRequest("POST", port: port, "/v1/jobs", body: #"{"method": "sample.sleep", "arguments": {"seconds": 1}, "name": "from-the-test"}"#)
            let id = try #require(APITests.object(submitted.body)["id"] as? String)
            #expect(try await browser.has("tr[data-job='\(id)']"), "the job never appeared in the page")
            #expect(try await browser.has("tr[data-job='\(id)'][data-state='succeeded']"), "the job never ended in the page")

            // A running shell job's output streams into the page while it runs: one line, then
            // (once the page shows it) the test lets the run go on through a FIFO.
            let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("dashboard-\(UUID().uuidString.prefix(8))").path
            #expect(mkfifo(fifo, 0o600) == 0)
            defer { unlink(fifo) }
            let shell = try await httpRequest(
                "POST", port: port, "/v1/jobs",
                body: #"{"method": "shell", "name": "live", "arguments": {"command": ["sh", "-c", "echo first line; read x < \#(fifo); echo then $x"]}}"#)
            let shellID = try #require(APITests.object(shell.body)["id"] as? String)
            try await browser.click("tr[data-job='\(shellID)'][data-state='running']")
            let streamed = try await browser.has("#log[data-run='\(shellID)#1'][data-state='following'] [data-text*='stdout| first line']")
            let diagnosis = streamed ? "" : await browser.diagnosis()
            #expect(streamed, "the output never streamed into the page: \(diagnosis)")
            let handle = try #require(FileHandle(forWritingAtPath: fifo))
            handle.write(Data("released\n".utf8))
            try handle.close()
            #expect(try await browser.has("#log[data-run='\(shellID)#1'] [data-text*='stdout| then released']"), "the line written later never came")
            #expect(try await browser.has("#log[data-state='ended']"), "the followed output never ended with the run")

            // A workflow's steps as a graph: network first, disk and address beside each other
            // after it, the machine after both.
            let workflow = try await httpRequest(
                "POST", port: port, "/v1/jobs",
                body: #"{"name": "vm", "steps": [{"id": "network", "method": "sample.echo"}, {"id": "disk", "method": "sample.echo", "after": ["network"]}, {"id": "address", "method": "sample.echo", "after": ["network"]}, {"id": "machine", "method": "sample.echo", "after": ["disk", "address"]}]}"#)
            let workflowID = try #require(APITests.object(workflow.body)["id"] as? String)
            try await browser.click("tr[data-job='\(workflowID)'][data-state='succeeded']")
            #expect(try await browser.has("#steps .column:nth-child(1) [data-step='network'][data-state='succeeded']"), "the first step is not in the first column")
            #expect(try await browser.has("#steps .column:nth-child(2) [data-step='disk'] + [data-step='address']"), "disk and address are not side by side")
            #expect(try await browser.has("#steps .column:nth-child(3) [data-step='machine'][data-state='succeeded']"), "the machine is not last")
            try await browser.screenshot(to: APITests.repository.appendingPathComponent(".build/test-artifacts/dashboard-workflow.png").path)

            // Executors come from the event stream (the page stops reading them while it is open).
            #expect(try await browser.has("body[data-executors='events']"), "the page never got the executors from /v1/events")
            // A task claimed on the direct path shows on its executor while it runs (a FIFO holds it).
            let directFIFO = fifo + "-direct"
            #expect(mkfifo(directFIFO, 0o600) == 0)
            defer { unlink(directFIFO) }
            let direct = try await httpRequest(
                "POST", port: port, "/v1/jobs",
                body: #"{"method": "shell", "name": "direct", "placement": "random", "arguments": {"command": ["sh", "-c", "read x < \#(directFIFO)"]}}"#)
            let directID = try #require(APITests.object(direct.body)["id"] as? String)
            #expect(try await browser.has(".executor[data-claimed='1'] .direct"), "the claimed task never showed on its executor")
            // Its slot is the bar's purple part (the slots the API counts as claimed).
            #expect(try await browser.has(".executor[data-claimed='1'] .claimed:not([style='width:0%'])"), "the claimed slot is not drawn")
            try await browser.screenshot(to: APITests.repository.appendingPathComponent(".build/test-artifacts/dashboard-direct.png").path)
            let listed = try await httpGet(port: port, "/v1/executors")
            #expect(listed.body.contains(#""claimed":1"#) && listed.body.contains(#""claimedSlots":1"#) && listed.body.contains(#""reserved":0"#), "\(listed.body)")
            let directHandle = try #require(FileHandle(forWritingAtPath: directFIFO))
            directHandle.write(Data("go\n".utf8))
            try directHandle.close()
            #expect(try await finalRecord(DroverClient(zookeeper: zk), directID).state == .succeeded)
            #expect(try await browser.has("[data-executor='e1'][data-claimed='0'] ~ [data-executor='e2'][data-claimed='0']"), "the claim never left the page")
            await daemons.executors["e2"]!.crash()
            #expect(try await browser.has("[data-executor='e2'][data-state='dead']"), "the killed executor never turned dead in the page")
            #expect(try await browser.has("#leader"))

            let shot = APITests.repository.appendingPathComponent(".build/test-artifacts/dashboard.png").path
            try await browser.screenshot(to: shot)
            print("dashboard screenshot: \(shot)")
        } catch {
            await browser.quit()
            throw error
        }
        await browser.quit()
        await zk.close()
    }
}
