import DroverClient
import DroverExecutor
import DroverManager
import DroverProtocol
import Foundation
import Testing
import ZooKeeper
import ZooKeeperServers
import ZooKeeperTesting

/// Found by the chaos run: when a task's end could not be written (the ZooKeeper server went
/// away mid-write) the executor gave up on it: the task stayed "running" until something else
/// changed the executor's state, and then ran a second time on the same executor.
@Suite("Connection loss while a task ends", .serialized, .timeLimit(.minutes(2)))
struct ConnectionLossTests {
    @Test func aLostAnswerToATasksEndDoesNotRunItAgain() async throws {
        // A server of its own: the test freezes it.
        let ensemble = try await LocalEnsemble.start(nodes: 1)
        let root = try await ensemble.makeChroot("lost-end")
        let starts = LockedValue(0)
        let (reached, signalReached) = AsyncStream.makeStream(of: Void.self)
        let (release, signalRelease) = AsyncStream.makeStream(of: Void.self)
        let handlers: [String: TaskHandler] = [
            "test.gated": { _ in
                starts.update { $0 += 1 }
                signalReached.yield()
                for await _ in release { break }
                return ["done": true]
            }
        ]
        let managerZK = try await ZooKeeperClient.connect(to: root, sessionTimeout: .seconds(6))
        let executorZK = try await ZooKeeperClient.connect(to: root, sessionTimeout: .seconds(6))
        let clientZK = try await ZooKeeperClient.connect(to: root, sessionTimeout: .seconds(20))
        let manager = Manager(client: managerZK, configuration: .init(participantID: "m1", gracePeriod: .seconds(30)))
        let executor = try Executor(
            client: executorZK, configuration: .init(id: "e1", capacity: Resources(cpu: 1, memoryMB: 256, slots: 1)), handlers: handlers)
        let record: JobRecord = try await withThrowingTaskGroup(of: JobRecord?.self) { group in
            group.addTask {
                try await manager.run()
                return nil
            }
            group.addTask {
                try await executor.run()
                return nil
            }
            group.addTask {
                let client = DroverClient(zookeeper: clientZK)
                try await client.waitForRegistration(of: ["e1"])
                let id = try await client.submit(JobSpec(method: "test.gated"))
                for await _ in reached { break }
                // Freeze the server, let the handler end: its end is written into the void
                // until the executor's client gives the connection up.
                let executorStates = executorZK.sessionStates()
                try await ensemble.pause(node: 1)
                signalRelease.finish()
                for await state in executorStates where state == .suspended { break }
                try await ensemble.resume(node: 1)
                // Bounded: before the fix the task could stay "running" for good (nothing else
                // changed the executor's state to make it look again).
                return try await withThrowingTaskGroup(of: JobRecord?.self) { wait in
                    wait.addTask { try await finalRecord(client, id) }
                    wait.addTask {
                        try await Task.sleep(for: .seconds(30))
                        return nil
                    }
                    defer { wait.cancelAll() }
                    if let record = try await wait.next() ?? nil { return record }
                    Issue.record("the task did not end within 30 s of the server coming back")
                    return try await client.status(id)
                }
            }
            defer { group.cancelAll() }
            while let next = try await group.next() {
                if let record = next { return record }
            }
            throw CancellationError()
        }
        #expect(record.state == .succeeded)
        #expect(record.history.first?.attempts == 1)
        #expect(starts.value == 1, "the handler ran \(starts.value) times")
        for zk in [managerZK, executorZK, clientZK] { await zk.close() }
        await ensemble.stop()
    }
}
