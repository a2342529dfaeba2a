import Foundation
import ZooKeeperServers
import ZooKeeperTesting

/// A manager and executors as `drover` processes on `root`, started as a user starts them (each
/// executor with an output directory of its own); ``stop()`` kills them.
struct Daemons {
    let manager: ChildProcess
    let executors: [String: ChildProcess]

    /// - Parameters:
    ///   - manager: Flags added to `drover manager --zk ROOT --id m1`.
    ///   - executors: Executor ids and the flags added to each `drover executor`.
    static func launch(
        root: String, name: String, manager: [String] = [], executors: [(id: String, flags: [String])] = [("e1", [])]
    ) throws -> Daemons {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("drover-\(name)-\(UUID().uuidString.prefix(8))").path
        let managerProcess = try ChildProcess.launchDaemon(
            ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", "m1"] + manager, name: "\(name)-manager")
        var executorProcesses: [String: ChildProcess] = [:]
        for (id, flags) in executors {
            executorProcesses[id] = try ChildProcess.launchDaemon(
                ChildProcess.droverExecutable, ["executor", "--zk", root, "--id", id, "--output-dir", output + "/" + id] + flags,
                name: "\(name)-\(id)")
        }
        return Daemons(manager: managerProcess, executors: executorProcesses)
    }

    func stop() {
        manager.signal(SIGKILL)
        for process in executors.values { process.signal(SIGKILL) }
    }
}
