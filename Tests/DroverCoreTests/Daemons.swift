import DroverClient
import DroverProtocol
import Foundation
import ZKRecipes
import ZooKeeper
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

/// Waits until an executor is registered; fails with the daemon's output if it exited first.
/// A `drover executor` process in `root` with a 2-second session (tests that kill it).
func launchExecutor(_ id: String, root: String, slots: Int = 4, onStop: String = "finish") throws -> ChildProcess {
    try ChildProcess.launchDaemon(
        ChildProcess.droverExecutable,
        ["executor", "--zk", root, "--id", id, "--slots", "\(slots)", "--session-timeout", "2", "--on-stop", onStop],
        name: "executor-\(id)")
}

/// A `drover manager` process in `root` with a 2-second session and `grace` seconds of grace.
func launchManager(_ id: String, root: String, grace: Double = 2) throws -> ChildProcess {
    try ChildProcess.launchDaemon(
        ChildProcess.droverExecutable, ["manager", "--zk", root, "--id", id, "--grace", "\(grace)", "--session-timeout", "2"],
        name: "manager-\(id)")
}

func waitForRegistration(_ client: DroverClient, of process: ChildProcess) async throws {
    while try await client.executors().first?.registration == nil {
        if process.hasExited { throw LocalEnsembleError("the executor exited before it registered:\n\(process.log)") }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// Waits until the job's run on `executor` has saved a checkpoint of at least `count`.
/// Fails (instead of waiting forever) if the run ended before that was seen.
func waitForCheckpoint(_ zk: ZooKeeperClient, executor: String, job: String, atLeast count: Double) async throws {
    let progress = VersionedDocument<ExecutorProgress>(client: zk, path: Layout().executorProgress(executor))
    let assignments = VersionedDocument<ExecutorState>(client: zk, path: Layout().executorAssignments(executor))
    var seen = false
    for try await version in progress.updates() {
        // The executor's tasks as it sees them: the progress of a run already collected (an earlier
        // step of the same workflow) stays in the progress until its next write, not in the view.
        let tasks = try await assignments.read()?.document.merging(version?.document).tasks ?? []
        let task = tasks.first { $0.job == job }
        if let reached = task?.checkpoint?["count"]?.numberValue, reached >= count { return }
        if task != nil { seen = true }
        if seen && (task == nil || task!.state.isFinished) {
            throw LocalEnsembleError("the run of \(job) ended before it reached checkpoint \(count): the machine is too slow for this test's timing")
        }
    }
}
