import DroverProtocol
import DroverStore
import Logging
import ServiceLifecycle
import ZKRecipes
import ZooKeeper

/// The manager daemon: stands for election; the leader consumes the operation queue, places
/// tasks on executors, reruns finite and infinite jobs, fires scheduled ones and takes back the
/// work of executors that stay dead past the grace period. Standbys wait.
///
/// Every write of the leader is one `multi` fenced by its election node (ARCHITECTURE.md,
/// promises 1 and 2): a deposed leader cannot write.
public final class Manager: Service, Sendable {
    public struct Configuration: Sendable {
        /// Shown as the leader's identity (e.g. the host name).
        public var participantID: String
        /// How long an executor may stay unregistered before its tasks are taken back.
        public var gracePeriod: Duration
        /// Runs kept in each job's history.
        public var historyLimit: Int
        /// Queue operations taken per transaction.
        public var batchSize: Int
        /// How often timers (schedules, grace periods) are checked.
        public var tick: Duration
        /// After a failed run an infinite job waits `restartBackoff` before the next, doubled
        /// per further failure in a row up to `restartBackoffMaximum`.
        public var restartBackoff: Duration
        public var restartBackoffMaximum: Duration
        /// Set-aside queue items kept at most; the oldest beyond are deleted and counted.
        public var setAsideLimit: Int
        /// How long the records of finished jobs are kept; nil keeps them for ever.
        public var retention: Duration?
        /// The most jobs that may wait before clients refuse new submits (``Admission``); nil: no bound.
        public var maxWaiting: Int?
        /// Build the active-job index from every record when leading, even if it says it is
        /// complete (after a manager older than the index led: docs/DEPLOY.md).
        public var rebuildActiveIndex = false
        /// How long the tasks of a job on the direct path wait for executors' claims before the
        /// leader takes the unclaimed ones over and places them itself (sooner when every
        /// executor holding a reservation is gone or draining).
        public var claimTimeout: Duration = .seconds(30)

        public init(
            participantID: String, gracePeriod: Duration = .seconds(10), historyLimit: Int = 20, batchSize: Int = 100,
            tick: Duration = .milliseconds(100), restartBackoff: Duration = .seconds(1), restartBackoffMaximum: Duration = .seconds(300),
            setAsideLimit: Int = 1_000, retention: Duration? = .seconds(7 * 86_400), maxWaiting: Int? = nil
        ) {
            self.retention = retention
            self.maxWaiting = maxWaiting
            self.setAsideLimit = max(1, setAsideLimit)
            self.participantID = participantID
            self.gracePeriod = gracePeriod
            self.historyLimit = historyLimit
            self.batchSize = batchSize
            self.tick = tick
            self.restartBackoff = restartBackoff
            self.restartBackoffMaximum = restartBackoffMaximum
        }
    }

    public let client: ZooKeeperClient
    public let layout: Layout
    public let configuration: Configuration
    let logger: Logger

    public init(client: ZooKeeperClient, layout: Layout = Layout(), configuration: Configuration, logger: Logger = Logger(label: "drover.manager")) {
        self.client = client
        self.layout = layout
        self.configuration = configuration
        self.logger = logger
    }

    /// Stands for election and leads whenever elected, until cancelled or shut down.
    ///
    /// It first reads how the deployment is protected (`<root>/access`): in a secured deployment
    /// everything it creates gets the ACL of the role table, and its client must carry the
    /// manager's credentials.
    /// When the policy changes (`drover init` adds an executor or rotates a role), it steps down
    /// and stands again under the new one, so nothing it creates keeps an old ACL.
    /// - Throws: ``DroverError`` `.notPermitted` when the deployment is secured and the client's
    ///   credentials may not read it, or no longer belong to it.
    public func run() async throws {
        try await cancelWhenGracefulShutdown { [self] in
            var access = try await repeatingAfterLostAnswers(client, logger: logger, "reading the deployment's access policy") {
                try await Access.load(client, layout: layout)
            }
            while true {
                let election = LeaderElection(
                    client: client, path: layout.election, participantID: configuration.participantID,
                    directoryACL: access.acl(for: .election), nodeACL: access.acl(for: .electionNode), logger: logger)
                let changed = try await withThrowingTaskGroup(of: AccessPolicy?.self) { [access] group in
                    if case .secured(let policy) = access {
                        group.addTask { [client, layout] in
                            do {
                                return try await Access.nextChange(after: policy, client, layout: layout)
                            } catch is CancellationError {
                                return nil  // shutting down
                            }
                        }
                    }
                    group.addTask { [self] in
                        try await election.leadUntilCancelled { [self] leadership in
                            try await LeaderLoop(manager: self, leadership: leadership, access: access).run()
                        }
                        return nil
                    }
                    defer { group.cancelAll() }
                    return try await group.next() ?? nil
                }
                guard let changed else { return }
                logger.info("the deployment's access policy changed: standing again under it")
                access = .secured(changed)
            }
        }
    }
}
