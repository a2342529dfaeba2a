import Logging
import Testing

@testable import ZooKeeper

/// What a request's caller is told when the C client gives up a request because its handle is
/// being closed.
@Suite("Replies to requests a closing handle gave up")
struct PendingReplyTests {
    func outcome(of code: ZooKeeperError.Code, core: ClientCore) async -> ZooKeeperError.Code? {
        let reply = PendingReply<Void>(operation: "getData", path: "/x", inflight: (core, 1))
        do {
            try await withCheckedThrowingContinuation { continuation in
                _ = reply.install(continuation)
                reply.fail(code)
            }
            return nil
        } catch {
            return (error as? ZooKeeperError)?.code
        }
    }

    /// While the client lives, a handle closes only because its session expired: the request
    /// failed with the session, and the caller may go on in the next one.
    @Test func aRequestGivenUpWithAnExpiredSessionsHandleFailsAsExpired() async {
        let core = ClientCore(
            connectionString: "127.0.0.1:1", sessionTimeoutMilliseconds: 2_000, renewsExpiredSessions: true, logger: Logger(label: "test"))
        #expect(await outcome(of: .closing, core: core) == .sessionExpired)
        #expect(await outcome(of: .connectionLoss, core: core) == .connectionLoss)
        await core.close()
        #expect(await outcome(of: .closing, core: core) == .closing)
    }
}
