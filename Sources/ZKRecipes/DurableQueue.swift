import Logging
import Synchronization
import ZooKeeper

/// One item taken from a ``DurableQueue``.
public struct QueueItem: Sendable, Hashable {
    /// The item's znode.
    public let path: String
    /// The queue order: items are consumed in increasing position.
    public let position: QueuePosition
    public let data: [UInt8]
}

/// Where an item sits in the queue: its segment, then its sequence number in the segment.
public struct QueuePosition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let segment: Int
    public let sequence: Int
    public static func < (a: Self, b: Self) -> Bool { (a.segment, a.sequence) < (b.segment, b.sequence) }
    public var description: String { "\(segment).\(sequence)" }
}

/// zkmq: a durable, ordered, sharded queue in ZooKeeper.
///
/// Layout under `root`:
/// ```
/// root                      data: consumer cursor; its version serialises consumers
/// root/s-0000000000         a segment; data "" while open, "sealed" once full
/// root/s-0000000000/i-0000000000 … i-0000000999   items (persistent sequential)
/// root/s-0000000001         the next segment, created when the previous one is sealed
/// ```
/// No directory grows without bound: a segment is sealed once it holds `segmentCapacity`
/// items (a put that lands in a sealed segment fails its `check` and moves on), so a segment
/// holds at most `segmentCapacity` plus the puts in flight when it was sealed; empty sealed
/// segments are deleted by consumers. A backlog of a million items is a thousand segments of
/// a thousand.
///
/// Consumption never loses an item: ``consume(maxItems:fence:_:)`` deletes the items in the
/// same `multi` that applies what the consumer did with them (and bumps the root's version, so
/// concurrent consumers commit one batch at a time, in queue order). A consumer that dies
/// between reading and committing leaves the items in place for the next one.
public final class DurableQueue: Sendable {
    /// The ACLs of the nodes a queue creates: its root, segments and items.
    public struct NodeACLs: Sendable, Hashable {
        public var root: [ACL]
        public var segment: [ACL]
        public var item: [ACL]
        public init(root: [ACL], segment: [ACL], item: [ACL]) {
            self.root = root
            self.segment = segment
            self.item = item
        }
        /// Anyone may do anything (ZooKeeper's `world:anyone`).
        public static let open = NodeACLs(root: ACL.openUnsafe, segment: ACL.openUnsafe, item: ACL.openUnsafe)
    }

    public let client: ZooKeeperClient
    public let root: String
    public let segmentCapacity: Int
    /// The largest item accepted (bytes).
    public let maximumItemBytes: Int
    public let acls: NodeACLs
    let logger: Logger
    /// The segment producers are writing to, as last seen.
    private let openSegment = Mutex<Int?>(nil)
    private let statistics = Mutex(Statistics())
    /// Where the next item will be, from the last time this consumer found the queue empty: the
    /// next ``consume(maxItems:fence:_:)`` reads it in the same round trip as the listings.
    private let expectedNext = Mutex<QueuePosition?>(nil)
    /// The last item this instance consumed.
    private let lastConsumed = Mutex<QueuePosition?>(nil)

    /// What this queue instance observed, for tests and metrics.
    public struct Statistics: Sendable {
        /// The highest item sequence number seen in any segment, plus one: an upper bound of the
        /// number of children any segment ever had.
        public var largestSegmentSeen = 0
        /// The most segments seen at once.
        public var mostSegmentsSeen = 0
        /// Commits lost to another consumer (the batch is retried).
        public var consumerConflicts = 0
        /// The highest segment number seen: segment numbers never go back.
        public var highestSegmentSeen = 0
        /// Items whose data was read in the same round trip as the queue's listing (an item that
        /// came to an empty queue where it was expected).
        public var itemsReadAhead = 0
    }

    public init(
        client: ZooKeeperClient, root: String, segmentCapacity: Int = 1_000, maximumItemBytes: Int = 64 * 1024,
        acls: NodeACLs = .open, logger: Logger = Logger(label: "zookeeper.queue")
    ) {
        precondition(segmentCapacity > 0, "segmentCapacity must be positive")
        self.client = client
        self.root = root
        self.segmentCapacity = segmentCapacity
        self.maximumItemBytes = maximumItemBytes
        self.acls = acls
        self.logger = logger
    }

    public var stats: Statistics { statistics.withLock { $0 } }

    // MARK: Producing

    /// The operations that put `items` at the tail, for the caller's own `multi` (so they are
    /// queued atomically with its other changes — a consumer putting items back, say). When that
    /// `multi` fails on the segment's `check` (sealed or deleted meanwhile), call
    /// ``segmentChanged()`` and ask again. The segment is not sealed here: the next put that fills
    /// it seals it.
    public func putOperations(_ items: [[UInt8]]) async throws -> [MultiOperation] {
        let segmentPath = Self.segmentPath(root, try await currentSegment())
        return [.check(path: segmentPath, version: 0)] + items.map { .create(path: segmentPath + "/i-", data: $0, mode: .persistentSequential, acl: acls.item) }
    }

    /// Forgets the open segment as last seen: the next put looks again.
    public func segmentChanged() { openSegment.withLock { $0 = nil } }

    /// Appends one item. Items put by one caller, one after another, are consumed in that order.
    @discardableResult
    public func put(_ item: [UInt8], alongWith extra: [MultiOperation] = []) async throws -> String {
        try await put([item], alongWith: extra)[0]
    }

    /// Appends items atomically and in order (one `multi`): all of them or none.
    ///
    /// `alongWith` operations are applied in the same transaction (e.g. creating the record the
    /// items refer to), so the items are queued if and only if those operations succeed.
    /// - Throws: `.requestTooLarge` when the batch exceeds ZooKeeper's request limit; the error
    ///   of a failing `alongWith` operation (its `failedOperationIndex` counts from 0 within them).
    @discardableResult
    public func put(_ items: [[UInt8]], alongWith extra: [MultiOperation] = []) async throws -> [String] {
        guard !items.isEmpty else { return [] }
        for item in items where item.count > maximumItemBytes {
            throw ZooKeeperError(
                .requestTooLarge, operation: "put", path: root,
                message: "a queue item of \(item.count) bytes is over the limit of \(maximumItemBytes) — keep items small")
        }
        while true {
            let segment = try await currentSegment()
            let segmentPath = Self.segmentPath(root, segment)
            var operations: [MultiOperation] = [.check(path: segmentPath, version: 0)]
            operations += items.map { .create(path: segmentPath + "/i-", data: $0, mode: .persistentSequential, acl: acls.item) }
            operations += extra
            do {
                let results = try await client.multi(operations)
                let paths = results.dropFirst().prefix(items.count).compactMap { result -> String? in
                    if case .created(let path) = result { return path }
                    return nil
                }
                if let last = paths.last, let sequence = Self.sequence(of: last), sequence + 1 >= segmentCapacity {
                    // The items are in: sealing is best effort (the next put that fills the
                    // segment seals it too), so its failure must not look like a failed put.
                    do {
                        try await seal(segment)
                    } catch {
                        logger.debug("could not seal a queue segment", metadata: ["segment": "\(segment)", "error": "\(error)"])
                    }
                }
                return paths
            } catch let error as ZooKeeperError where error.failedOperationIndex == 0 && (error.code == .badVersion || error.code == .noNode) {
                // Sealed or deleted: move to the segment after it.
                openSegment.withLock { if $0 == segment { $0 = nil } }
            } catch let error as ZooKeeperError where (error.failedOperationIndex ?? 0) > items.count {
                throw ZooKeeperError(
                    error.code, operation: error.operation, path: error.path,
                    failedOperationIndex: error.failedOperationIndex! - items.count - 1)
            }
        }
    }

    private func currentSegment() async throws -> Int {
        if let segment = openSegment.withLock({ $0 }) { return segment }
        // A server that lags behind could show an old list and make this producer re-create
        // a segment that was drained and deleted: sync first, and never go below a segment
        // number already seen.
        try? await client.sync(root)
        let segments = try await listSegments()
        let floor = statistics.withLock { $0.highestSegmentSeen }
        var segment = max(segments.last ?? 0, floor)
        if try await isSealed(segment) { segment += 1 }
        if !segments.contains(segment) {
            do {
                _ = try await client.create(Self.segmentPath(root, segment), acl: acls.segment)
            } catch let error as ZooKeeperError where error.code == .nodeExists {
            } catch let error as ZooKeeperError where error.code == .noNode {
                try await client.createPath(root, acl: acls.root)
                return try await currentSegment()
            }
        }
        openSegment.withLock { $0 = segment }
        return segment
    }

    private func seal(_ segment: Int) async throws {
        do {
            try await client.setData(Self.segmentPath(root, segment), data: Array("sealed".utf8), version: 0)
        } catch let error as ZooKeeperError where error.code == .badVersion || error.code == .noNode {
            // Someone else sealed it first.
        }
        openSegment.withLock { if $0 == segment { $0 = nil } }
    }

    /// True when the segment is sealed, or was deleted (only drained, sealed ones are). A
    /// segment that was never created is not sealed.
    private func isSealed(_ segment: Int) async throws -> Bool {
        guard let stat = try await client.exists(Self.segmentPath(root, segment)) else {
            return segment < statistics.withLock { $0.highestSegmentSeen }
        }
        return stat.version > 0
    }

    // MARK: Consuming

    /// Takes up to `maxItems` items from the head of the queue and commits what `handle` did
    /// with them: one `multi` of `fence` (e.g. a leader's fencing check), the operations
    /// `handle` returns, the deletion of the items and a compare-and-set of the queue root.
    ///
    /// `handle` may run more than once for the same items when another consumer commits first
    /// (then it gets the items that are left), so it must not have effects outside the
    /// operations it returns. Returns the items consumed: empty when the queue is empty.
    @discardableResult
    public func consume(
        maxItems: Int, fence: [MultiOperation] = [], _ handle: ([QueueItem]) async throws -> [MultiOperation]
    ) async throws -> [QueueItem] {
        precondition(maxItems > 0, "maxItems must be positive")
        while true {
            guard let (cursorVersion, items) = try await head(maxItems: maxItems) else { return [] }
            let effects = try await handle(items)
            // The cursor's compare-and-set comes right after the fence: when another consumer
            // committed first it fails before any effect can fail for the same reason.
            var operations = fence
            operations.append(.setData(path: root, data: Array("\(items.last!.position)".utf8), version: cursorVersion))
            operations += effects
            operations += items.map { .delete(path: $0.path) }
            do {
                try await client.multi(operations)
                lastConsumed.withLock { $0 = items.last?.position }
                return items
            } catch let error as ZooKeeperError
                where (error.code == .noNode || error.code == .badVersion)
                    && (error.failedOperationIndex == fence.count || (error.failedOperationIndex ?? 0) > fence.count + effects.count)
            {
                // Another consumer committed first. Take the head again.
                statistics.withLock { $0.consumerConflicts += 1 }
            }
        }
    }

    /// Waits until the queue may have items: returns at once if it has some now, else at the
    /// first change to the segments or to the last one's items.
    ///
    /// It does not read the queue again after the change to see whether an item came: the
    /// consumer reads the head next anyway, and two reads less are most of a round trip off
    /// every submit's latency. A change that brought no item (one consumed, a segment gone)
    /// costs the caller one empty ``consume(maxItems:fence:_:)``.
    public func waitForItems() async throws {
        let (events, watcher) = Watcher.makeStream()
        let segments = try await listSegments(watcher: watcher)
        for segment in segments {
            let names = try await segmentItems(segment, watcher: segment == segments.last ? watcher : nil)
            if !names.isEmpty { return }
        }
        expectNext(inLastSegment: segments.last)
        for await _ in events { break }
        try Task.checkCancellation()
    }

    /// The number of items in the queue now (reads every segment's child count).
    public func count() async throws -> Int {
        var total = 0
        for segment in try await listSegments() {
            total += Int(try await client.exists(Self.segmentPath(root, segment))?.numberOfChildren ?? 0)
        }
        return total
    }

    /// The root's version and the first items, oldest first; nil when the queue is empty.
    private func head(maxItems: Int) async throws -> (Int32, [QueueItem])? {
        // Where the queue stood empty, the segment and its next item are read in the same round
        // trip as the root (three reads in flight at once instead of one after another): the
        // way a lone item, the common case of an idle queue, is picked up. Whatever the guess
        // got wrong is read the usual way below.
        let expected = expectedNext.withLock { expected in
            defer { expected = nil }
            return expected
        }
        async let expectedListing = listingIfExpected(expected)
        async let expectedItem = itemIfExpected(expected)
        // One read gives both the segments and the cursor's version (the root's stat): one
        // round trip less on every batch, and the two are of the same instant.
        let listing: NodeChildren
        do {
            listing = try await client.children(root)
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil
        }
        let cursorVersion = listing.stat.version
        let segments = segments(named: listing.names)
        var known: [Int: [String]] = [:]
        var prefetched: [String: [UInt8]] = [:]
        if let expected {
            known[expected.segment] = await expectedListing
            if let data = await expectedItem { prefetched[Self.itemPath(root, expected)] = data }
        }
        var items: [QueueItem] = []
        for segment in segments {
            let names: [String]
            if let listed = known[segment] { names = listed } else { names = try await segmentItems(segment) }
            if names.isEmpty {
                // A sealed, empty segment that is not the last one will never fill again.
                if segment != segments.last, try await isSealed(segment) { await deleteSegment(segment) }
                continue
            }
            let segmentPath = Self.segmentPath(root, segment)
            let wanted = names.prefix(maxItems - items.count)
            // Read them concurrently: reads are answered in order, each costs no write.
            let read = try await withThrowingTaskGroup(of: (Int, QueueItem?).self) { group in
                var found = [QueueItem?](repeating: nil, count: wanted.count)
                for (offset, name) in wanted.enumerated() {
                    let path = segmentPath + "/" + name
                    let position = QueuePosition(segment: segment, sequence: Self.sequence(of: name) ?? 0)
                    if let data = prefetched[path] {
                        found[offset] = QueueItem(path: path, position: position, data: data)
                        statistics.withLock { $0.itemsReadAhead += 1 }
                        continue
                    }
                    group.addTask { [client] in
                        do {
                            let node = try await client.getData(path)
                            return (offset, QueueItem(path: path, position: position, data: node.data))
                        } catch let error as ZooKeeperError where error.code == .noNode {
                            return (offset, nil)  // consumed meanwhile
                        }
                    }
                }
                for try await (offset, item) in group { found[offset] = item }
                return found
            }
            // Stop at the first gap: a later item must not be consumed before an earlier one.
            for item in read {
                guard let item else { break }
                items.append(item)
            }
            if items.count >= maxItems || items.count < wanted.count { break }
        }
        if items.isEmpty {
            expectNext(inLastSegment: segments.last)
            return nil
        }
        return (cursorVersion, items)
    }

    /// The queue was found empty: the next item will be put in its last segment, right after the
    /// last one this consumer took (ZooKeeper numbers a parent's sequential children one after
    /// another), unless a new segment is opened first.
    private func expectNext(inLastSegment segment: Int?) {
        guard let segment, let last = lastConsumed.withLock({ $0 }), last.segment == segment else { return }
        expectedNext.withLock { $0 = QueuePosition(segment: segment, sequence: last.sequence + 1) }
    }

    private func segmentItems(_ segment: Int, watcher: Watcher? = nil) async throws -> [String] {
        do {
            let names = try await client.children(Self.segmentPath(root, segment), watcher: watcher).names
            let sorted = names.sorted()
            if let last = sorted.last, let sequence = Self.sequence(of: last) {
                statistics.withLock { $0.largestSegmentSeen = max($0.largestSegmentSeen, sequence + 1) }
            }
            return sorted
        } catch let error as ZooKeeperError where error.code == .noNode {
            return []
        }
    }

    /// The expected segment's items, or nil (no guess, or the read failed: it is read again).
    private func listingIfExpected(_ expected: QueuePosition?) async -> [String]? {
        guard let expected else { return nil }
        return try? await segmentItems(expected.segment)
    }

    /// The expected item's data, or nil (no guess, not there, or the read failed).
    private func itemIfExpected(_ expected: QueuePosition?) async -> [UInt8]? {
        guard let expected else { return nil }
        return try? await client.getData(Self.itemPath(root, expected)).data
    }

    private func deleteSegment(_ segment: Int) async {
        do {
            try await client.delete(Self.segmentPath(root, segment))
        } catch {
            // Already deleted, or an item arrived after all (not possible once sealed): leave it.
        }
    }

    /// The segment numbers among the root's children, in order (and noted in the statistics).
    private func segments(named names: [String]) -> [Int] {
        let segments = names.compactMap(Self.sequence(of:)).sorted()
        statistics.withLock {
            $0.mostSegmentsSeen = max($0.mostSegmentsSeen, segments.count)
            $0.highestSegmentSeen = max($0.highestSegmentSeen, segments.last ?? 0)
        }
        return segments
    }

    private func listSegments(watcher: Watcher? = nil) async throws -> [Int] {
        do {
            return segments(named: try await client.children(root, watcher: watcher).names)
        } catch let error as ZooKeeperError where error.code == .noNode {
            // Wait for the root to appear; if it appeared meanwhile, list it after all.
            if let watcher, try await client.exists(root, watcher: watcher) != nil {
                return try await listSegments(watcher: watcher)
            }
            return []
        }
    }

    static func segmentPath(_ root: String, _ segment: Int) -> String {
        root + "/s-" + zeroPadded(segment)
    }

    /// The path ZooKeeper gives the item at `position` (sequential names have 10 digits).
    static func itemPath(_ root: String, _ position: QueuePosition) -> String {
        segmentPath(root, position.segment) + "/i-" + zeroPadded(position.sequence)
    }

    private static func zeroPadded(_ number: Int) -> String {
        String(repeating: "0", count: max(0, 10 - String(number).count)) + String(number)
    }

    /// The number after the last `-` of a node name (`i-0000000042` → 42).
    static func sequence(of name: some StringProtocol) -> Int? {
        guard let dash = name.lastIndex(of: "-") else { return nil }
        return Int(name[name.index(after: dash)...])
    }
}
