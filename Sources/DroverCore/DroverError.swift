/// An error of the scheduler (not of ZooKeeper), with what to do about it.
public struct DroverError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public static let unknownJob = Code(name: "unknownJob")
        public static let invalidSpec = Code(name: "invalidSpec")
        public static let unplaceable = Code(name: "unplaceable")
        public static let jobFailed = Code(name: "jobFailed")
        public static let jobNotCancellable = Code(name: "jobNotCancellable")
        public static let unknownExecutor = Code(name: "unknownExecutor")
        public var description: String { name }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
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
