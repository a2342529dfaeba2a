import DroverClient
import DroverExecutor
import DroverManager
import DroverProtocol
import DroverStore
import Foundation
import Testing
import ZKRecipes
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// Workflows end to end (issue 18): a real ZooKeeper, a manager and executors.
@Suite("Workflows end to end", .serialized, .timeLimit(.minutes(4)))
struct WorkflowIntegrationTests {
    /// What each library step was called with, in order.
    actor Calls {
        var calls: [(method: String, arguments: JSONValue)] = []
        func add(_ method: String, _ arguments: JSONValue) { calls.append((method, arguments)) }
    }

    static func handlers(_ calls: Calls, failNetwork: Bool = false) -> [String: TaskHandler] {
        [
            "net": { context in
                await calls.add("net", context.arguments)
                if failNetwork { throw DroverError(.jobFailed, "no VLAN left in \(context.arguments["zone"]?.stringValue ?? "?")") }
                return ["vlan": 42]
            },
            "disk": { context in
                await calls.add("disk", context.arguments)
                return ["path": "/dev/vd1"]
            },
            "ip": { context in
                await calls.add("ip", context.arguments)
                return ["ips": ["10.0.0.7"]]
            },
            "vm": { context in
                await calls.add("vm", context.arguments)
                return context.arguments
            },
        ]
    }

    @Test func theVirtualMachineWorkflowRunsInOrderWithResultsPassedOn() async throws {
        let cluster = try await Cluster.start("workflow-vm")
        let calls = Calls()
        try await cluster.with(handlers: Self.handlers(calls)) { client in
            let id = try await client.submit(LeaderStateTests.virtualMachine)
            let record = try await finalRecord(client, id)
            #expect(record.state == .succeeded)
            #expect(record.steps?.map(\.state) == [.succeeded, .succeeded, .succeeded, .succeeded])
            // The machine step got the disk's and the address's results.
            #expect(record.history.last?.result == ["disk": "/dev/vd1", "ip": "10.0.0.7"])
            let made = await calls.calls
            // disk and address run at once, after network; the machine after both.
            #expect(made.map(\.method).first == "net" && made.map(\.method).last == "vm")
            #expect(Set(made.map(\.method).dropFirst().dropLast()) == ["disk", "ip"])
            #expect(made.first?.arguments == ["zone": "eu-1"])
            #expect(made.first { $0.method == "ip" }?.arguments == ["vlan": 42])
            // No step started before every step it runs after had ended.
            let steps = try #require(record.steps)
            let dependencies = WorkflowGraph.dependencies(of: LeaderStateTests.virtualMachine.steps!)
            for (index, step) in steps.enumerated() {
                for before in dependencies[index] {
                    #expect(try #require(step.startedAt) >= (try #require(steps[before].endedAt)), "\(step.id) started before \(steps[before].id) ended")
                }
            }
        }
        await cluster.close()
    }

    @Test func aFiniteWorkflowRunsItsGraphAgainWithSharedDataKept() async throws {
        let cluster = try await Cluster.start("workflow-repeat")
        let handlers: [String: TaskHandler] = [
            "tick": { context in
                try await context.shared.update { value in value = ["ticks": .number((value["ticks"]?.numberValue ?? 0) + 1)] }
                return nil
            }
        ]
        try await cluster.with(handlers: handlers) { client in
            var spec = JobSpec.workflow(steps: [WorkflowStep(id: "a", method: "tick"), WorkflowStep(id: "b", method: "tick", after: [])])
            spec.kind = .finite
            spec.count = 3
            let id = try await client.submit(spec)
            let record = try await finalRecord(client, id)
            #expect(record.state == .succeeded)
            #expect(record.iterations == 3 && record.runsEnded == 6)
            #expect(try await client.sharedData(of: id) == ["ticks": 6], "kept from one time to the next")
        }
        await cluster.close()
    }

    @Test func aFailingNetworkStepAbortsTheRest() async throws {
        let cluster = try await Cluster.start("workflow-abort")
        let calls = Calls()
        try await cluster.with(handlers: Self.handlers(calls, failNetwork: true)) { client in
            let id = try await client.submit(LeaderStateTests.virtualMachine)
            let record = try await finalRecord(client, id)
            #expect(record.state == .failed)
            #expect(record.steps?.map(\.state) == [.failed, .skipped, .skipped, .skipped])
            #expect(record.steps?.first?.error?.contains("no VLAN left in eu-1") == true)
            let made = await calls.calls
            #expect(made.map(\.method) == ["net"], "no step after the failed one ran")
        }
        await cluster.close()
    }

    @Test func stepsAreInjectedByAHandlerAndThroughTheCLI() async throws {
        let cluster = try await Cluster.start("workflow-inject")
        let gate = AsyncStream<Void>.makeStream()
        let handlers: [String: TaskHandler] = [
            "plan": { context in
                // Adds a step of its own, then waits until the test has injected one too.
                try await context.inject([WorkflowStep(id: "part", method: "echo", arguments: ["n": ["$from": "plan.result.n"]])])
                for await _ in gate.stream { break }
                return ["n": 3]
            },
            "echo": { context in context.arguments },
        ]
        let root = cluster.root
        try await cluster.with(handlers: handlers) { client in
            defer { gate.continuation.finish() }  // a failed expectation must not leave the handler waiting
            let id = try await client.submit(JobSpec.workflow(steps: [WorkflowStep(id: "plan", method: "plan")]))
            for try await record in client.updates(id) where record.steps?.first?.state == .running && record.state == .running { break }
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("inject-\(UUID().uuidString.prefix(8)).yaml")
            // "part", which the handler injects, is added only when "plan" ends: "tail" cannot name it yet.
            try "- {id: tail, method: echo, after: [plan], arguments: {from: {$from: plan.result.n}}}\n".write(to: file, atomically: true, encoding: .utf8)
            let injected = try await ChildProcess.runDrover(["inject", "--zk", root, id, "-f", file.path])
            #expect(injected.status == 0, "\(injected.stderr)")
            #expect(injected.stdout.contains("adding 1 step requested for \(id)"))
            try await withDiagnosis(client, id) {
                for try await record in client.updates(id) where record.spec.steps?.count == 2 { break }
            }
            gate.continuation.yield()
            let record = try await finalRecord(client, id)
            #expect(record.state == .succeeded)
            #expect(record.spec.steps?.map(\.id) == ["plan", "tail", "part"])
            #expect(record.steps?.map(\.state) == [.succeeded, .succeeded, .succeeded])
            // Both ran after "plan" (at once), with its result.
            #expect(record.history.first?.result == ["n": 3])
            #expect(Set(record.history.dropFirst().compactMap(\.result)) == [["from": 3], ["n": 3]])
            #expect(record.spec.steps?.last?.after == ["plan"])
            let late = try await ChildProcess.runDrover(["inject", "--zk", root, id, "-f", file.path])
            #expect(late.status != 0)
            #expect(late.stderr.contains("has ended (succeeded): nothing can be added to it"), "\(late.stderr)")
        }
        await cluster.close()
    }

    /// Steps running at once update the workflow's shared data: compare-and-set loses no update.
    @Test func sharedDataUnderConcurrentStepsLosesNoUpdate() async throws {
        let cluster = try await Cluster.start("workflow-shared")
        let handlers: [String: TaskHandler] = [
            "add": { context in
                for _ in 0..<20 {
                    try await context.shared.update { value in
                        let count = value["count"]?.numberValue ?? 0
                        value = .object((value.objectValue ?? [:]).merging(["count": .number(count + 1)]) { _, new in new })
                    }
                }
                return nil
            },
            "sum": { context in try await context.shared.read() },
        ]
        try await cluster.with(
            executors: [("e1", Resources(cpu: 4, memoryMB: 4096, slots: 3), [:]), ("e2", Resources(cpu: 4, memoryMB: 4096, slots: 3), [:])],
            handlers: handlers
        ) { client in
            let adders = (1...6).map { WorkflowStep(id: "add-\($0)", method: "add", after: []) }
            let id = try await client.submit(
                JobSpec.workflow(steps: adders + [WorkflowStep(id: "sum", method: "sum", after: adders.map(\.id))]))
            let record = try await finalRecord(client, id)
            #expect(record.state == .succeeded)
            #expect(record.history.last?.result == ["count": 120], "the last step read every update")
            #expect(try await client.sharedData(of: id) == ["count": 120])
            // Bad shared data is refused where it is written, with the reason.
            await #expect(throws: DroverError.self) {
                try await SharedDocument(zookeeper: client.zookeeper, layout: client.layout).update(id) { $0 = .array([]) }
            }
        }
        await cluster.close()
    }

    /// An executor killed with SIGKILL while a step runs: started again with its id, it resumes
    /// the step from its checkpoint, and the workflow goes on.
    @Test func aStepResumesFromItsCheckpointAfterItsExecutorsKill() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("workflow-executor-kill")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        func executor() throws -> ChildProcess { try launchExecutor("e1", root: root, slots: 2) }
        let manager = try launchManager("m1", root: root, grace: 60)
        var worker = try executor()
        do {
            try await waitForRegistration(client, of: worker)
            let id = try await client.submit(
                JobSpec.workflow(steps: [
                    WorkflowStep(id: "prepare", method: "sample.echo", arguments: ["to": 100]),
                    WorkflowStep(id: "count", method: "sample.count", arguments: ["to": ["$from": "prepare.result.to"], "stepMilliseconds": 50]),
                    WorkflowStep(id: "report", method: "sample.echo", arguments: ["counted": ["$from": "count.result.count"]]),
                ]))
            for try await record in client.updates(id) where record.steps?[1].executor != nil { break }
            try await waitForCheckpoint(zk, executor: "e1", job: id, atLeast: 5)
            await worker.crash()
            worker = try executor()
            let record = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
            #expect(record.state == .succeeded)
            #expect(record.steps?.map(\.state) == [.succeeded, .succeeded, .succeeded])
            let counted = try #require(record.history.first { $0.run == record.steps?[1].run })
            #expect(counted.attempts == 2, "the count step started twice: before and after the kill")
            #expect((counted.result?["resumedAt"]?.numberValue ?? 0) >= 5, "it resumed from its checkpoint")
            #expect(record.history.last?.result == ["counted": 100])
        } catch {
            print(worker.log, manager.log)
            throw error
        }
        await worker.crash()
        await manager.crash()
        await zk.close()
    }

    /// Shell steps from a YAML file through the CLI, with results passed on through
    /// `$DROVER_RESULT`; the leading manager is killed with SIGKILL while the middle step runs.
    @Test func aShellWorkflowSurvivesTheLeadersKillAndShowsItsSteps() async throws {
        let root = try await LocalEnsemble.shared().makeChroot("workflow-crash")
        let zk = try await ZooKeeperClient.connect(to: root)
        let client = DroverClient(zookeeper: zk)
        let managers = try ["m1", "m2"].map { try launchManager($0, root: root) }
        let worker = try launchExecutor("e1", root: root, slots: 2)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("workflow-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let gate = directory.appendingPathComponent("disk-may-end").path
        let file = directory.appendingPathComponent("vm.yaml")
        try """
            name: vm
            arguments: {zone: eu-1}
            steps:
              - id: network
                method: shell
                arguments:
                  command: [sh, -c, 'printf "{\\"vlan\\": \\"%s-42\\"}" "$0" > "$DROVER_RESULT"', {$from: inputs.zone}]
              - id: disk
                method: shell
                arguments:
                  command: [sh, -c, 'while [ ! -e "$0" ]; do sleep 0.1; done; echo "{\\"path\\": \\"/dev/vd1\\"}" > "$DROVER_RESULT"', \(gate)]
              - id: machine
                method: shell
                after: [network, disk]
                arguments:
                  command: [sh, -c, 'printf "{\\"made\\": \\"%s on %s\\"}" "$0" "$1" > "$DROVER_RESULT"', {$from: disk.result.path}, {$from: network.result.vlan}]
            """.write(to: file, atomically: true, encoding: .utf8)
        do {
            try await waitForRegistration(client, of: worker)
            let submitted = try await ChildProcess.runDrover(["submit", "--zk", root, "-f", file.path])
            #expect(submitted.status == 0, "\(submitted.stderr)")
            let id = try #require(submitted.stdout.split(whereSeparator: \.isWhitespace).last.map(String.init))
            // The disk step runs (it waits for the gate): kill the leader now.
            for try await record in client.updates(id) where record.steps?[1].state == .running && record.state == .running { break }
            let election = LeaderElection(client: zk, path: Layout().election, participantID: "observer")
            let leader = try await election.awaitLeader()
            await managers[leader == "m1" ? 0 : 1].crash()
            #expect(FileManager.default.createFile(atPath: gate, contents: nil))
            let record = try await withDiagnosis(client, id) { try await finalRecord(client, id) }
            #expect(record.state == .succeeded)
            #expect(record.steps?.map(\.state) == [.succeeded, .succeeded, .succeeded])
            #expect(record.history.last?.result == ["made": "/dev/vd1 on eu-1-42"])
            // Each step succeeded once: one run each.
            #expect(record.history.map(\.run) == [1, 2, 3])
            let status = try await ChildProcess.runDrover(["status", "--zk", root, id])
            #expect(status.stdout.contains("workflow of 3 steps"), "\(status.stdout)")
            #expect(status.stdout.contains("✓ machine  succeeded  after network, disk  run 3"), "\(status.stdout)")

            // A job of three tasks from the command line: each knows its index, all run at once.
            let many = try await ChildProcess.runDrover(["submit", "--zk", root, "--tasks", "3", "--", "sh", "-c", #"echo "{\"index\": $DROVER_TASK_INDEX}" > "$DROVER_RESULT""#])
            #expect(many.status == 0, "\(many.stderr)")
            let manyID = try #require(many.stdout.split(whereSeparator: \.isWhitespace).last.map(String.init))
            let tasksRecord = try await withDiagnosis(client, manyID) { try await finalRecord(client, manyID) }
            #expect(tasksRecord.state == .succeeded)
            #expect(Set(tasksRecord.history.compactMap { $0.result?["index"]?.numberValue }) == [0, 1, 2])
            let manyStatus = try await ChildProcess.runDrover(["status", "--zk", root, manyID])
            #expect(manyStatus.stdout.contains("3 tasks at once") && manyStatus.stdout.contains("✓ task-2"), "\(manyStatus.stdout)")
        } catch {
            print(worker.log, managers[0].log, managers[1].log)
            throw error
        }
        await worker.crash()
        for manager in managers { await manager.crash() }
        await zk.close()
    }
}
