import Foundation
import Testing
import ZooKeeperServers
import ZooKeeperTesting

/// `make install`'s files (Deploy/install, with the debug build): the units pass
/// `systemd-analyze verify`, the completions and the example settings are there, and a second
/// install keeps settings an operator changed.
@Suite("Deploy: what make install puts on a machine", .timeLimit(.minutes(2)))
struct DeployTests {
    let deploy = URL(fileURLWithPath: LocalEnsemble.scriptPath).deletingLastPathComponent()

    func run(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("deploy-\(UUID().uuidString.prefix(8))").path
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        let status = try await runAndWait(executable, arguments, stdout: base + ".out", stderr: base + ".err")
        return (status, (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? "", (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? "")
    }

    @Test func theInstalledUnitsVerifyAndTheCompletionsAndSettingsAreThere() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("drover-install-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let install = deploy.appendingPathComponent("install").path
        let arguments = ["--prefix", root + "/usr", "--sysconfdir", root + "/etc", "--binary", ChildProcess.droverExecutable]
        let installed = try await run("/bin/bash", [install] + arguments)
        #expect(installed.status == 0, "\(installed.stderr)")

        let units = root + "/usr/lib/systemd/system"
        let analyze = try #require(
            ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first { FileManager.default.isExecutableFile(atPath: $0) },
            "systemd-analyze is missing: Deploy/install-deps installs it (package systemd)")
        for unit in ["drover-manager.service", "drover-executor@e1.service", "drover-zookeeper.service"] {
            let verified = try await run(analyze, ["verify", "--man=no", units + "/" + unit])
            #expect(verified.status == 0 && verified.stderr.isEmpty, "\(unit): \(verified.stderr)")
        }
        let manager = try String(contentsOfFile: units + "/drover-manager.service", encoding: .utf8)
        #expect(manager.contains("ExecStart=\(root)/usr/bin/drover manager $DROVER_MANAGER_FLAGS"))
        #expect(manager.contains("EnvironmentFile=-\(root)/etc/drover/manager.env"))
        #expect(!manager.contains("@"), "a placeholder was left in the unit")

        for completion in ["bash-completion/completions/drover", "zsh/site-functions/_drover", "fish/vendor_completions.d/drover.fish"] {
            let script = try String(contentsOfFile: root + "/usr/share/" + completion, encoding: .utf8)
            #expect(script.contains("submit") && script.contains("executors"), "\(completion) does not complete drover's commands")
        }
        for example in ["config.yaml", "manager.env", "executor.env"] {
            #expect(FileManager.default.fileExists(atPath: root + "/etc/drover/" + example))
        }
        #expect(FileManager.default.fileExists(atPath: root + "/usr/share/doc/drover/DEPLOY.md"))

        // An operator's settings survive the next install.
        let config = root + "/etc/drover/config.yaml"
        try "zk: 10.0.0.1:2181/drover\n".write(toFile: config, atomically: true, encoding: .utf8)
        let again = try await run("/bin/bash", [install] + arguments)
        #expect(again.status == 0)
        #expect(again.stdout.contains("kept \(config)"))
        #expect(try String(contentsOfFile: config, encoding: .utf8) == "zk: 10.0.0.1:2181/drover\n")
    }

    @Test func aMissingBinaryIsRefusedWithWhatToDo() async throws {
        let refused = try await run("/bin/bash", [deploy.appendingPathComponent("install").path, "--prefix", "/tmp/never", "--binary", "/nonexistent/drover"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("build it first"))
    }
}
