import Foundation
import Testing

@testable import ZooKeeper

@Suite("Session state machine (no server)")
struct SessionStateMachineTests {
    @Test func connectsThenSuspendsAndReconnects() {
        var machine = SessionStateMachine(renewsExpiredSessions: true)
        #expect(machine.publicState == .connecting)
        #expect(machine.connectionEvent(.connecting, generation: 0) == .none)
        #expect(machine.connectionEvent(.connected(sessionID: 7), generation: 0) == .publish(.connected(sessionID: 7)))
        #expect(machine.connectionEvent(.connecting, generation: 0) == .publish(.suspended))
        #expect(machine.publicState == .suspended)
        #expect(machine.connectionEvent(.connecting, generation: 0) == .none)
        #expect(machine.connectionEvent(.connected(sessionID: 7), generation: 0) == .publish(.connected(sessionID: 7)))
        #expect(machine.liveGeneration == 0)
    }

    @Test func expiryRenewsWithTheNextGeneration() {
        var machine = SessionStateMachine(renewsExpiredSessions: true)
        _ = machine.connectionEvent(.connected(sessionID: 1), generation: 0)
        #expect(machine.connectionEvent(.expired, generation: 0) == .sessionExpired(generation: 0, renew: true))
        #expect(machine.publicState == .connecting)
        #expect(machine.liveGeneration == 1)
        // Late events of the retired handle change nothing.
        #expect(machine.connectionEvent(.connected(sessionID: 1), generation: 0) == .none)
        #expect(machine.connectionEvent(.expired, generation: 0) == .none)
        #expect(machine.connectionEvent(.connected(sessionID: 2), generation: 1) == .publish(.connected(sessionID: 2)))
    }

    @Test func expiryWithoutRenewalIsFinalUntilClosed() {
        var machine = SessionStateMachine(renewsExpiredSessions: false)
        _ = machine.connectionEvent(.connected(sessionID: 1), generation: 0)
        _ = machine.connectionEvent(.connecting, generation: 0)
        #expect(machine.connectionEvent(.expired, generation: 0) == .sessionExpired(generation: 0, renew: false))
        #expect(machine.publicState == .expired)
        #expect(machine.liveGeneration == nil)
        #expect(machine.connectionEvent(.connected(sessionID: 1), generation: 0) == .none)
        #expect(machine.closeRequested() == .closeHandle)
        #expect(machine.closed() == .publish(.closed))
    }

    @Test func authFailureIsTerminal() {
        var machine = SessionStateMachine(renewsExpiredSessions: true)
        #expect(machine.connectionEvent(.authFailed, generation: 0) == .authFailed)
        #expect(machine.publicState == .authFailed)
        #expect(machine.publicState.isTerminal)
        #expect(machine.connectionEvent(.connected(sessionID: 3), generation: 0) == .none)
    }

    @Test func closeHappensOnce() {
        var machine = SessionStateMachine(renewsExpiredSessions: true)
        _ = machine.connectionEvent(.connected(sessionID: 1), generation: 0)
        #expect(machine.closeRequested() == .closeHandle)
        #expect(machine.closeRequested() == .waitForClose)
        #expect(machine.publicState == .closed)
        #expect(machine.liveGeneration == nil)
        // Events racing with the close are ignored.
        #expect(machine.connectionEvent(.expired, generation: 0) == .none)
        #expect(machine.closed() == .publish(.closed))
        #expect(machine.closed() == .none)
        #expect(machine.closeRequested() == .waitForClose)
    }
}

@Suite("Errors and ACL helpers (no server)")
struct ErrorAndACLTests {
    @Test(arguments: ZooKeeperError.Code.allZooKeeperCodes)
    func everyCodeHasANameAndAMessage(code: ZooKeeperError.Code) {
        let error = ZooKeeperError(code, operation: "getData", path: "/x")
        #expect(!code.description.hasPrefix("code("), "code \(code.rawValue) has no name")
        #expect(!error.message.isEmpty)
        #expect(error.description.contains("getData"))
    }

    @Test func messagesSayWhatToDo() {
        #expect(ZooKeeperError(.noNode, operation: "create", path: "/a/b").message == "no node /a — create the parent first")
        #expect(ZooKeeperError(.badVersion, operation: "setData", path: "/s").message.contains("re-read"))
        #expect(ZooKeeperError(.nodeExists, operation: "create", path: "/s").message.contains("/s already exists"))
        #expect(ZooKeeperError(.noNode, operation: "multi", path: "/q", failedOperationIndex: 2).message.hasPrefix("operation #2"))
        #expect(ZooKeeperError(.connectionLoss, operation: "create").isRetryable)
        #expect(!ZooKeeperError(.noNode, operation: "create").isRetryable)
    }

    @Test func sha1MatchesKnownVectors() {
        let hex = { (bytes: [UInt8]) in bytes.map { String(format: "%02x", $0) }.joined() }
        #expect(hex(SHA1.hash(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hex(SHA1.hash(Array(repeating: UInt8(ascii: "a"), count: 1000))) == "291e9a6c66994949b57ba5e650361e98fc36b1ba")
    }

    @Test func digestIDIsZooKeepers() {
        #expect(ACL.digestID(user: "alice", password: "secret") == "alice:aYXlLOpEooaV1cRAvUL1fp9Qt7E=")
    }

    @Test(arguments: ["relative", "/trailing/", "/a//b", "/a/./b", "/a/.."])
    func invalidPathsAreNamed(path: String) {
        #expect(pathProblem(path) != nil)
    }

    @Test(arguments: ["/", "/a", "/a/b-0000000001", "/_c_x-lock"])
    func validPathsPass(path: String) {
        #expect(pathProblem(path) == nil)
    }

    @Test func unprotectedNameStripsTheMarker() {
        let name = "_c_0f8c7c54-3c3e-4d8e-9d43-2a1f7a1b2c3d-lock-0000000001"
        #expect(ZooKeeperClient.unprotectedName(name) == "lock-0000000001")
        #expect(ZooKeeperClient.unprotectedName("lock-0000000001") == "lock-0000000001")
    }
}
