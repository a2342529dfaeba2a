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
