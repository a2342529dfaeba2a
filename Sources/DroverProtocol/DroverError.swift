/// An error of the scheduler (not of ZooKeeper), with what to do about it.
public struct DroverError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public static let unknownJob = Code(name: "unknownJob")
        public static let invalidSpec = Code(name: "invalidSpec")
        public static let unplaceable = Code(name: "unplaceable")
        public static let jobFailed = Code(name: "jobFailed")
        /// A run passed its timeout. A handler that throws it marks its run `timedOut`, which a
        /// retry policy tells from other failures.
        public static let timedOut = Code(name: "timedOut")
        public static let jobNotCancellable = Code(name: "jobNotCancellable")
        public static let unknownExecutor = Code(name: "unknownExecutor")
        /// A job's record exists but cannot be used (garbled, a newer format, over its bound).
        public static let unusableRecord = Code(name: "unusableRecord")
        /// The executor is alive or still holds tasks (it cannot be forgotten now).
        public static let executorInUse = Code(name: "executorInUse")
        /// An executor's state is not a document it can read.
        public static let unreadableState = Code(name: "unreadableState")
        /// ZooKeeper refused an operation to the credentials in use (a secured deployment).
        public static let notPermitted = Code(name: "notPermitted")
        /// Too many jobs wait (the leader's ``Admission`` rule): submit again once they have run.
        public static let queueFull = Code(name: "queueFull")
        public var description: String { name }
    }

    public let code: Code
    public let message: String
    /// What caused it, when another error did.
    public let cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }

    public static func == (a: DroverError, b: DroverError) -> Bool { a.code == b.code && a.message == b.message }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }
}

/// A bulk submit that stopped part way: which spec, why, and the jobs submitted before it.
public struct BulkSubmitError: Error, Sendable, CustomStringConvertible {
    /// The position in the submitted list of the first spec that was not submitted.
    public let index: Int
    /// The ids of the jobs submitted before the failure (they will run).
    public let submitted: [String]
    /// What went wrong: a ``DroverError`` for a bad or unplaceable spec, else the ZooKeeper error.
    public let underlying: any Error

    public init(index: Int, submitted: [String], underlying: any Error) {
        self.index = index
        self.submitted = submitted
        self.underlying = underlying
    }

    public var description: String {
        "job \(index + 1): \(underlying)" + (submitted.isEmpty ? " (nothing was submitted)" : " (the \(submitted.count) jobs before it were submitted)")
    }
}
