import Logging
import ZooKeeper

/// Runs `body` until it does not fail for want of an answer (the connection was lost, the
/// request timed out, the session expired), waiting for the connection between attempts.
///
/// `body` must be safe to repeat: an attempt whose answer was lost may have been applied.
/// Cancellation ends the waiting (it throws `CancellationError`).
public func repeatingAfterLostAnswers<T>(
    _ client: ZooKeeperClient, logger: Logger, _ what: String, isolation: isolated (any Actor)? = #isolation,
    _ body: () async throws -> T
) async throws -> T {
    while true {
        do {
            return try await body()
        } catch let error as ZooKeeperError where error.isRetryable || error.code == .sessionExpired {
            logger.info("ZooKeeper did not answer: trying again once connected", metadata: ["step": "\(what)", "error": "\(error.code)"])
            do {
                try await client.waitUntilConnected(timeout: client.sessionTimeout * 2)
            } catch let error as ZooKeeperError where error.code == .connectTimeout {}
        }
    }
}
