import Foundation
import Testing

@testable import DroverExecutor

/// How an executor tells a live holder of its id from an earlier incarnation of its own (issue 13).
@Suite("Process instances")
struct ProcessInstanceTests {
    @Test func thisProcessIsRunningAnotherStartOfItsPidIsNot() throws {
        let current = ProcessInstance.current
        #expect(current.startTicks > 0)
        #expect(ProcessInstance(current.description) == current)
        #expect(current.isRunning == true)
        // The same pid with another start time: a process that had the pid before (or after) this one.
        #expect(ProcessInstance(host: current.host, pid: current.pid, startTicks: current.startTicks + 1).isRunning == false)
        // A pid with no process.
        #expect(ProcessInstance(host: current.host, pid: Int32.max - 7, startTicks: 1).isRunning == false)
        // Another host: this one cannot tell.
        #expect(ProcessInstance(host: current.host + "-elsewhere", pid: current.pid, startTicks: current.startTicks).isRunning == nil)
    }

    @Test(arguments: ["", "host", "host/12", "host/x/3", "/12/3", "host/-4/3", "host/12/-3", "a/b/c/d"])
    func textThatIsNotAnInstanceIsNone(text: String) {
        #expect(ProcessInstance(text) == nil)
    }
}
