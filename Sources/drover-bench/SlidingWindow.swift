/// Runs many independent asynchronous operations with a bounded number in flight.
///
/// Operations `0..<count` start in order; as soon as one finishes, the next starts, so up to
/// `width` are outstanding at any time (a sliding window, not batches that wait for their
/// slowest member). Everything runs as child tasks of one task group: the first error cancels
/// the operations still in flight and is rethrown once they have finished.
enum SlidingWindow {
    /// - Parameters:
    ///   - count: how many operations to run.
    ///   - width: the most operations in flight at once (at least 1).
    ///   - onCompletion: called in the calling task after each completion, with the number of
    ///     operations completed so far.
    ///   - operation: the operation with index `0..<count`.
    static func run(
        count: Int,
        width: Int,
        onCompletion: (Int) -> Void = { _ in },
        operation: @escaping @Sendable (Int) async throws -> Void
    ) async throws {
        precondition(width >= 1, "a sliding window needs room for at least one operation")
        guard count > 0 else { return }
        try await withThrowingTaskGroup(of: Void.self) { group in
            var started = 0
            while started < Swift.min(width, count) {
                let index = started
                group.addTask { try await operation(index) }
                started += 1
            }
            var completed = 0
            while try await group.next() != nil {
                completed += 1
                onCompletion(completed)
                if started < count {
                    let index = started
                    group.addTask { try await operation(index) }
                    started += 1
                }
            }
        }
    }
}
