import DroverProtocol

/// An executor as `DroverClient.executors()` lists it: what it registered while alive, its tasks
/// (the leader's assignments with its progress laid over them) and the load it publishes for the
/// direct path. Each part is nil when not there (an executor gone, or that never started).
public struct ExecutorListing: Sendable {
    public var id: String
    /// Its registration while it is alive.
    public var registration: ExecutorRegistration?
    public var state: ExecutorState?
    /// Its load as last published (nil while it is not connected: the node is ephemeral).
    public var load: ExecutorLoad?

    public init(id: String, registration: ExecutorRegistration? = nil, state: ExecutorState? = nil, load: ExecutorLoad? = nil) {
        self.id = id
        self.registration = registration
        self.state = state
        self.load = load
    }

    /// An executor's listing from its documents as read: its tasks are the leader's assignments
    /// with its progress laid over them, and the claims its progress names that the leader has not
    /// adopted yet — also with no assignments (no leader wrote them yet); nil when neither was read.
    public init(
        id: String, registration: ExecutorRegistration?, assignments: ExecutorState?, progress: ExecutorProgress?, load: ExecutorLoad?
    ) {
        // Assignments with no task still say whether the executor drains.
        let state = progress == nil && assignments == nil ? nil : (assignments ?? ExecutorState(executor: id)).mergingClaims(progress)
        self.init(id: id, registration: registration, state: state, load: load)
    }

    /// Tasks it claimed on the direct path that have not ended, adopted by the leader or not yet.
    public var claimedTasks: Int { state.map(Self.claimedTasks(of:)) ?? 0 }

    /// The slots those tasks hold.
    public var claimedSlots: Int { state.map { Self.claimed(in: $0).reduce(0) { $0 + $1.resources.slots } } ?? 0 }

    /// Tasks of `state` claimed on the direct path that have not ended (a claim's placement names
    /// it, before and after the leader adopts it).
    public static func claimedTasks(of state: ExecutorState) -> Int { claimed(in: state).count }

    private static func claimed(in state: ExecutorState) -> [TaskRecord] {
        state.tasks.filter { ($0.claimed != nil || $0.placement?.hasPrefix(ClaimedTask.placementPrefix) == true) && !$0.state.isFinished }
    }
}
