import Foundation
import Testing

@testable import DroverExecutor

/// How an executor tells a live holder of its id from an earlier incarnation of its own (issue 13).
@Suite("Process instances")
struct ProcessInstanceTests {
    @Test func thisProcessIsRunningAnotherStartOfItsPidIsNot() throws {
        let current = ProcessInstance.current
        #expect(current.startTicks > 0 && !current.bootID.isEmpty && !current.pidNamespace.isEmpty)
        #expect(ProcessInstance(current.description) == current)
        #expect(current.isRunning == true)
        var other = current
        // The same pid with another start time: a process that had the pid before (or after) this one.
        other.startTicks += 1
        #expect(other.isRunning == false)
        // A pid with no process.
        other = current
        other.pid = Int32.max - 7
        #expect(other.isRunning == false)
        // Another machine (even of the same name), another pid namespace: this one cannot tell.
        for change in [{ (instance: inout ProcessInstance) in instance.host += "-elsewhere" }, { $0.bootID = "another-boot" }, { $0.pidNamespace = "1" }] {
            other = current
            change(&other)
            #expect(other.isRunning == nil)
        }
    }

    /// Found in review: a killed executor its parent has not reaped yet is a zombie in /proc with
    /// its start time; a restart must take over from it, not refuse.
    @Test func aKilledProcessNotYetReapedIsNotRunning() throws {
        var pid: pid_t = 0
        var attributes: posix_spawnattr_t = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        let arguments: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("30"), nil]
        defer { arguments.forEach { free($0) } }
        try #require(posix_spawn(&pid, "/bin/sleep", nil, &attributes, arguments, environ) == 0)
        let started = try #require(ProcessInstance.process(pid))
        var child = ProcessInstance.current
        child.pid = pid
        child.startTicks = started.startTicks
        #expect(child.isRunning == true)
        kill(pid, SIGKILL)
        // Not reaped: wait (without reaping) until the kernel says it is a zombie.
        var info = siginfo_t()
        _ = waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT)
        #expect(ProcessInstance.process(pid)?.state == "Z")
        #expect(child.isRunning == false)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    @Test(arguments: ["", "host", "host/12", "host/b/n/x/3", "/b/n/12/3", "host/b/n/-4/3", "host/b/n/12/-3", "a/b/c/d/e/f", "host/12/3"])
    func textThatIsNotAnInstanceIsNone(text: String) {
        #expect(ProcessInstance(text) == nil)
    }
}
