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

    /// Tasks it claimed on the direct path that have not ended, adopted by the leader or not yet.
    public var claimedTasks: Int { state.map(Self.claimedTasks(of:)) ?? 0 }

    /// Tasks of `state` claimed on the direct path that have not ended (a claim's placement names
    /// it, before and after the leader adopts it).
    public static func claimedTasks(of state: ExecutorState) -> Int {
        state.tasks.filter { ($0.claimed != nil || $0.placement?.hasPrefix(ClaimedTask.placementPrefix) == true) && !$0.state.isFinished }.count
    }
}
