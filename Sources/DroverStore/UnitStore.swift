import DroverProtocol
import ZooKeeper

/// Work specs and their units in ZooKeeper (docs/PROTOCOL.md, "Work specs"): the reads and
/// compare-and-set writes that clients and executors share. Every change to a segment is one
/// `multi` with its bucket's index, so the counts in the index are always the segment's.
public struct UnitStore: Sendable {
    public let zookeeper: ZooKeeperClient
    public let layout: Layout
    public let access: Access
    /// Called each time a segment's write loses its compare-and-set to another writer and is
    /// read and applied again (an executor counts these: `drover_unit_write_conflicts_total`).
    public let onConflict: @Sendable () -> Void

    public init(zookeeper: ZooKeeperClient, layout: Layout = Layout(), access: Access = .open, onConflict: @escaping @Sendable () -> Void = {}) {
        self.zookeeper = zookeeper
        self.layout = layout
        self.access = access
        self.onConflict = onConflict
    }

    /// A document as read, with the version a compare-and-set writes over.
    public struct Read<Document: Sendable>: Sendable {
        public var document: Document
        public var version: Int32
    }

    // MARK: Specs

    /// The names of every work spec.
    public func specNames() async throws -> [String] {
        do {
            return try await zookeeper.children(layout.specs).names.filter(Layout.isValidID).sorted()
        } catch let error as ZooKeeperError where error.code == .noNode {
            return []
        }
    }

    /// The spec, or nil when there is none of that name.
    public func spec(_ name: String) async throws -> Read<WorkSpec>? {
        guard let node = try await data(layout.spec(name)) else { return nil }
        return Read(document: try decode(WorkSpec.self, node, at: layout.spec(name)), version: node.stat.version)
    }

    /// Creates `spec` with its buckets, in one transaction.
    /// - Throws: ``DroverError`` `.invalidSpec` when it is not valid or a spec of that name exists.
    public func create(_ spec: WorkSpec) async throws {
        var spec = spec
        spec.format = spec.requiredFormat
        do {
            try spec.validate()
        } catch {
            throw DroverError(.invalidSpec, "work spec: \(error.field): \(error.reason)")
        }
        if try await zookeeper.exists(layout.specs) == nil {
            try await zookeeper.createPath(layout.specs) { [access, layout] in access.acl(at: $0, in: layout) }
        }
        let empty = try Codec.encode(UnitBucket())
        var operations: [MultiOperation] = [.create(path: layout.spec(spec.name), data: try Codec.encode(spec), acl: access.acl(for: .spec))]
        for bucket in 0..<spec.buckets {
            operations.append(.create(path: layout.specBucket(spec.name, bucket), data: empty, acl: access.acl(for: .specBucket)))
        }
        do {
            try await zookeeper.multi(operations)
        } catch let error as ZooKeeperError where error.code == .nodeExists {
            throw DroverError(.invalidSpec, "a work spec named \(spec.name) exists: update it, or delete it first")
        }
    }

    /// Applies `change` to the spec with compare-and-set. The method, buckets and name stay as
    /// they are (units were placed by them).
    /// - Throws: ``DroverError`` `.invalidSpec` when there is no such spec or the change is not valid.
    @discardableResult
    public func update(_ name: String, _ change: (inout WorkSpec) throws -> Void) async throws -> WorkSpec {
        while true {
            guard let current = try await spec(name) else { throw DroverError(.invalidSpec, "no work spec named \(name)") }
            var next = current.document
            try change(&next)
            next.format = next.requiredFormat
            guard next.name == current.document.name, next.buckets == current.document.buckets else {
                throw DroverError(.invalidSpec, "a work spec's name and buckets cannot change (its units are placed by them): create another spec")
            }
            do {
                try next.validate()
            } catch {
                throw DroverError(.invalidSpec, "work spec: \(error.field): \(error.reason)")
            }
            do {
                _ = try await zookeeper.setData(layout.spec(name), data: try Codec.encode(next), version: current.version)
                return next
            } catch let error as ZooKeeperError where error.code == .badVersion {
                continue
            }
        }
    }

    /// Deletes the spec and every unit in it.
    /// - Throws: ``DroverError`` `.invalidSpec` when there is no such spec.
    public func delete(_ name: String) async throws {
        guard Layout.isValidID(name), try await zookeeper.exists(layout.spec(name)) != nil else {
            throw DroverError(.invalidSpec, "no work spec named \(name)")
        }
        try await zookeeper.deleteRecursively(layout.spec(name))
    }

    // MARK: Buckets and segments

    public func bucket(_ spec: String, _ bucket: Int) async throws -> Read<UnitBucket>? {
        let path = layout.specBucket(spec, bucket)
        guard let node = try await data(path) else { return nil }
        return Read(document: try decode(UnitBucket.self, node, at: path, reading: UnitBucket.decodedJSON), version: node.stat.version)
    }

    public func segment(_ spec: String, _ bucket: Int, _ name: String) async throws -> Read<UnitSegment>? {
        let path = layout.specSegment(spec, bucket, name)
        guard let node = try await data(path) else { return nil }
        return Read(document: try decode(UnitSegment.self, node, at: path, reading: UnitSegment.decodedJSON), version: node.stat.version)
    }

    /// Every bucket's index of `spec`, read in parallel (nil for a bucket that is missing).
    public func buckets(of spec: WorkSpec) async throws -> [Read<UnitBucket>?] {
        try await withThrowingTaskGroup(of: (Int, Read<UnitBucket>?).self) { group in
            for index in 0..<spec.buckets {
                group.addTask { (index, try await self.bucket(spec.name, index)) }
            }
            var indexes = [Read<UnitBucket>?](repeating: nil, count: spec.buckets)
            for try await (index, read) in group { indexes[index] = read }
            return indexes
        }
    }

    /// The units of `spec` in each state, summed from its buckets' indexes (one small read per
    /// bucket; the indexes are exact).
    public func counts(of spec: WorkSpec) async throws -> UnitCounts {
        try await buckets(of: spec).reduce(UnitCounts()) { $0 + ($1?.document.counts ?? UnitCounts()) }
    }

    /// Applies `change` to one segment and writes it with its bucket's index in one `multi`,
    /// reading both again and re-applying on every conflict. `change` returns nil to write
    /// nothing. Returns `change`'s answer (nil when the segment or bucket is gone).
    ///
    /// `index`, when the caller has just read the bucket's index, saves reading it again: a stale
    /// one fails the compare-and-set and is read afresh.
    public func modify<T: Sendable>(
        _ spec: String, bucket: Int, segment name: String, startingFrom index: Read<UnitBucket>? = nil,
        _ change: (inout UnitSegment) throws -> T?
    ) async throws -> T? {
        try await modify(spec, bucket: bucket, segment: name, startingFrom: index) { (segment: inout UnitSegment, _: UnitBucket) in try change(&segment) }
    }

    /// The same, with the bucket's index as read beside the segment: a change that depends on the rest of the bucket (a claim under
    /// `maxRunning`) is exact, as the index is written with compare-and-set too.
    ///
    /// `knownSegment`, when the caller knows the segment as it last wrote it, saves reading it
    /// when the index (read now) still summarizes it so; a stale one fails the compare-and-set,
    /// and a change that writes nothing over it is made again on the segment read afresh (a
    /// stale copy must not answer for the segment). `wrote` is told the segment and version
    /// written, for the caller's next change.
    public func modify<T: Sendable>(
        _ spec: String, bucket: Int, segment name: String, startingFrom index: Read<UnitBucket>? = nil, knownSegment: Read<UnitSegment>? = nil,
        wrote: (Read<UnitSegment>) -> Void = { _ in },
        _ change: (inout UnitSegment, UnitBucket) throws -> T?
    ) async throws -> T? {
        var knownIndex = index
        var knownSegment = knownSegment
        while true {
            let read: Read<UnitBucket>?
            if let cached = knownIndex {
                read = cached
                knownIndex = nil
            } else {
                read = try await self.bucket(spec, bucket)
            }
            guard let index = read else { return nil }
            let current: Read<UnitSegment>?
            let fromCache: Bool
            if let cached = knownSegment, index.document.segments.first(where: { $0.name == name })?.summarizes(cached.document) == true {
                current = cached
                fromCache = true
            } else {
                current = try await self.segment(spec, bucket, name)
                fromCache = false
            }
            knownSegment = nil
            guard let segment = current else { return nil }
            var content = segment.document
            // Nothing to write over a kept copy: the segment itself decides (the index just read
            // is still good).
            guard let answer = try change(&content, index.document) else {
                if fromCache {
                    knownIndex = index
                    continue
                }
                return nil
            }
            if content == segment.document {
                if fromCache {
                    knownIndex = index
                    continue
                }
                return answer
            }
            var summary = index.document
            summary.summarize(name, content)
            let bytes = try encodeSegment(&content)
            do {
                try await zookeeper.multi([
                    .setData(path: layout.specBucket(spec, bucket), data: summary.encodedJSON(), version: index.version),
                    .setData(path: layout.specSegment(spec, bucket, name), data: bytes, version: segment.version),
                ])
                wrote(Read(document: content, version: segment.version &+ 1))
                return answer
            } catch let error as ZooKeeperError where error.code == .badVersion {
                // A kept copy gone stale is not another writer's conflict with this change.
                if !fromCache { onConflict() }
                continue
            } catch let error as ZooKeeperError where error.code == .noNode {
                return nil
            }
        }
    }

    // MARK: Adding units

    /// What an add did.
    public struct AddReport: Sendable, Hashable {
        /// Units added.
        public var added = 0
        /// Units whose key the spec had already (left as they were: an add can be repeated).
        public var alreadyPresent = 0
        /// Writes made.
        public var writes = 0
    }

    /// Adds `units` to `spec`. Every unit is checked first (a key or data over its bound, a key
    /// twice in this add): one bad unit refuses the whole add before anything is written. A unit
    /// whose key the spec has already is left as it is and counted, so an add that was
    /// interrupted can be run again. Buckets are written in parallel, each with compare-and-set.
    /// - Throws: ``DroverError`` `.invalidSpec` naming the first bad unit (its position, from 1).
    public func add(_ units: [WorkUnit], to specName: String, progress: @escaping @Sendable (Int) -> Void = { _ in }) async throws -> AddReport {
        guard let spec = try await self.spec(specName)?.document else { throw DroverError(.invalidSpec, "no work spec named \(specName)") }
        var seen: [String: Int] = [:]
        var byBucket: [Int: [WorkUnit]] = [:]
        for (position, unit) in units.enumerated() {
            do {
                try unit.validate()
            } catch {
                throw DroverError(.invalidSpec, "unit \(position + 1): \(error.field): \(error.reason); nothing was added")
            }
            if let first = seen.updateValue(position, forKey: unit.key) {
                throw DroverError(.invalidSpec, "unit \(position + 1): key \"\(unit.key.prefix(80))\" is also unit \(first + 1)'s; nothing was added")
            }
            var fresh = WorkUnit(key: unit.key, data: unit.data)
            fresh.state = .available
            byBucket[spec.bucket(of: unit.key), default: []].append(fresh)
        }
        let reports = try await withThrowingTaskGroup(of: AddReport.self) { group in
            for (bucket, bucketUnits) in byBucket {
                group.addTask { try await self.add(bucketUnits, to: spec.name, bucket: bucket, progress: progress) }
            }
            return try await group.reduce(into: [AddReport]()) { $0.append($1) }
        }
        return reports.reduce(into: AddReport()) {
            $0.added += $1.added
            $0.alreadyPresent += $1.alreadyPresent
            $0.writes += $1.writes
        }
    }

    /// The segments' bytes in one `multi` of an add: with the index at its bound, under
    /// ZooKeeper's 1 MB transport limit (small units: dozens of segments a write).
    static let segmentBytesPerAddWrite = 1024 * 1024 - Bounds.unitBucketIndexBytes - 32 * 1024

    private func add(_ units: [WorkUnit], to spec: String, bucket: Int, progress: @Sendable (Int) -> Void) async throws -> AddReport {
        var report = AddReport()
        var remaining = units[...]
        // The keys of each segment read so far: only segments not read yet and the last one
        // (another add may have filled it) are read on a retry. (Keys leave a segment only by a
        // clear: one that runs during this add may leave a key this add then counts as present.)
        var keysBySegment: [String: Set<String>] = [:]
        // A segment the index listed but that was gone, and that index's version.
        var missing: (name: String, version: Int32)?
        reading: while !remaining.isEmpty {
            guard let index = try await self.bucket(spec, bucket) else { throw DroverError(.invalidSpec, "work spec \(spec) was deleted while units were added") }
            var last: Read<UnitSegment>?
            // Keys this add finds in the bucket that it did not know: only those are looked for
            // among the units still to add (once per read, not once per segment: a large add
            // stays linear).
            var found: Set<String> = []
            for (position, summary) in index.document.segments.enumerated() {
                let isLast = position == index.document.segments.count - 1
                guard keysBySegment[summary.name] == nil || isLast else { continue }
                guard let segment = try await self.segment(spec, bucket, summary.name) else {
                    // A clear deleted it after the index was read: read the index again. Still
                    // listed by the same index, it was removed by another program.
                    guard let seen = missing, seen == (summary.name, index.version) else {
                        missing = (summary.name, index.version)
                        continue reading
                    }
                    throw DroverError(
                        .unusableRecord, "segment \(summary.name) of bucket \(bucket) of work spec \(spec) is in its index but missing: another program removed it")
                }
                let keys = Set(segment.document.units.map(\.key))
                found.formUnion(keysBySegment[summary.name].map { keys.subtracting($0) } ?? keys)
                keysBySegment[summary.name] = keys
                if isLast { last = segment }
            }
            // A unit's key is unique in its bucket, hence in its spec.
            if !found.isEmpty {
                let before = remaining.count
                remaining = remaining.filter { !found.contains($0.key) }[...]
                report.alreadyPresent += before - remaining.count
            }
            guard !remaining.isEmpty else { break }

            var next = index.document
            let (written, placed) = next.place(remaining, last: last?.document, maximumBytes: Self.segmentBytesPerAddWrite)
            let indexBytes = next.encodedJSON()
            guard indexBytes.count <= Bounds.unitBucketIndexBytes else {
                throw DroverError(
                    .invalidSpec,
                    "bucket \(bucket) of work spec \(spec) is full (\(index.document.counts.total) units): create a spec with more buckets (--buckets, up to \(Bounds.unitMaximumBuckets)) for this many units")
            }
            var operations: [MultiOperation] = [.setData(path: layout.specBucket(spec, bucket), data: indexBytes, version: index.version)]
            for segment in written {
                let path = layout.specSegment(spec, bucket, segment.name)
                var content = segment.segment
                let bytes = try encodeSegment(&content)
                if segment.isNew {
                    operations.append(.create(path: path, data: bytes, acl: access.acl(for: .specSegment)))
                } else {
                    operations.append(.setData(path: path, data: bytes, version: last?.version ?? -1))
                }
            }
            do {
                try await zookeeper.multi(operations)
            } catch let error as ZooKeeperError where error.code == .badVersion || error.code == .nodeExists {
                continue  // another writer changed the bucket: read it again
            }
            for segment in written { keysBySegment[segment.name] = Set(segment.segment.units.map(\.key)) }
            report.writes += 1
            report.added += placed
            remaining.removeFirst(placed)
            progress(placed)
        }
        return report
    }

    // MARK: Reading units

    /// One unit of `spec` by key, with the segment it is in.
    public func unit(_ key: String, of spec: WorkSpec) async throws -> WorkUnit? {
        let bucket = spec.bucket(of: key)
        guard let index = try await self.bucket(spec.name, bucket) else { return nil }
        for summary in index.document.segments {
            if let unit = try await self.segment(spec.name, bucket, summary.name)?.document.units.first(where: { $0.key == key }) { return unit }
        }
        return nil
    }

    /// A page of units of `spec` (in the state given, or any), in bucket and segment order,
    /// with where the next page starts (`nil`: this was the last). `after` is a page's `next`.
    public func units(of spec: WorkSpec, state: UnitState?, limit: Int, after cursor: String?) async throws -> (units: [WorkUnit], next: String?) {
        let limit = max(limit, 1)
        var position = UnitCursor(cursor) ?? UnitCursor(bucket: 0, segment: 0, offset: 0)
        var units: [WorkUnit] = []
        while position.bucket < spec.buckets {
            guard let index = try await self.bucket(spec.name, position.bucket) else {
                position = UnitCursor(bucket: position.bucket + 1, segment: 0, offset: 0)
                continue
            }
            // Segments by number (the index lists them in the order made): one a clear deleted
            // since the last page moves nothing else.
            for summary in index.document.segments {
                guard let number = UnitBucket.number(of: summary.name), number >= position.segment else { continue }
                if number > position.segment { position = UnitCursor(bucket: position.bucket, segment: number, offset: 0) }
                let wanted = state.map { summary.counts[$0] } ?? summary.counts.total
                if wanted > 0, let segment = try await self.segment(spec.name, position.bucket, summary.name) {
                    let content = segment.document.units
                    while position.offset < content.count {
                        if units.count == limit { return (units, position.description) }
                        if state == nil || content[position.offset].state == state { units.append(content[position.offset]) }
                        position.offset += 1
                    }
                }
                position = UnitCursor(bucket: position.bucket, segment: number + 1, offset: 0)
            }
            position = UnitCursor(bucket: position.bucket + 1, segment: 0, offset: 0)
        }
        return (units, nil)
    }

    /// Every spec with its units' counts — the leader's (one read for all) unless `exact`, and for
    /// a spec it has not counted summed from its buckets now — and when the leader counted (nil:
    /// none used). A spec another program garbled is left out, as executors pass it over.
    public func everySpec(exact: Bool = false) async throws -> (specs: [(spec: WorkSpec, counts: UnitCounts)], countedAt: Timestamp?) {
        let published = exact ? nil : try await countedByTheLeader()
        var specs: [(spec: WorkSpec, counts: UnitCounts)] = []
        for name in try await specNames() {
            guard let spec = try? await self.spec(name)?.document else { continue }
            if let counts = published?.specs[name] {
                specs.append((spec, counts))
            } else {
                specs.append((spec, try await counts(of: spec)))
            }
        }
        return (specs, published?.countedAt)
    }

    /// Every spec's counts as the leader last summed them (one read), or nil when no leader has
    /// (none leads, or a deployment secured before the document existed).
    public func countedByTheLeader() async throws -> SpecCounts? {
        guard let node = try await data(layout.unitCounts), !node.data.isEmpty else { return nil }
        return try decode(SpecCounts.self, node, at: layout.unitCounts)
    }

    /// Makes every failed and expired unit of `spec` retryable, its tries counted afresh.
    /// Returns how many.
    public func retryFailed(of spec: WorkSpec) async throws -> Int {
        var retried = 0
        for (bucket, index) in try await buckets(of: spec).enumerated() {
            for summary in index?.document.segments ?? [] where summary.counts.failed + summary.counts.expired > 0 {
                retried += try await modify(spec.name, bucket: bucket, segment: summary.name) { (segment: inout UnitSegment) -> Int? in segment.retryFailed() } ?? 0
            }
        }
        return retried
    }

    /// Removes the units of `spec` in `states` (nil: every unit), segment by segment with
    /// compare-and-set; a segment left empty is deleted with its index entry. Attempts running
    /// on units removed cannot record their ends. Returns how many units went.
    public func clear(_ spec: WorkSpec, states: Set<UnitState>? = nil) async throws -> Int {
        var removed = 0
        for bucket in 0..<spec.buckets {
            var segmentsDone: Set<String> = []
            // Segments made after the clear began (units added during it) are left alone: a
            // steady add would otherwise keep it going.
            var madeBefore: Int?
            while true {
                guard let index = try await self.bucket(spec.name, bucket) else { break }
                let bound = madeBefore ?? index.document.nextSegment
                madeBefore = bound
                // The next segment with units to remove (each is left with none once written).
                guard
                    let summary = index.document.segments.first(where: { summary in
                        !segmentsDone.contains(summary.name) && (UnitBucket.number(of: summary.name).map { $0 < bound } ?? false)
                            && (states.map { $0.contains { summary.counts[$0] > 0 } } ?? true)
                    })
                else { break }
                let path = layout.specSegment(spec.name, bucket, summary.name)
                guard let segment = try await self.segment(spec.name, bucket, summary.name) else {
                    segmentsDone.insert(summary.name)
                    continue
                }
                var kept = segment.document
                kept.units.removeAll { states?.contains($0.state) ?? true }
                let gone = segment.document.units.count - kept.units.count
                // The index counted units the segment no longer has: nothing to write.
                guard gone > 0 || kept.units.isEmpty else {
                    segmentsDone.insert(summary.name)
                    continue
                }
                var next = index.document
                var operations: [MultiOperation]
                if kept.units.isEmpty {
                    next.segments.removeAll { $0.name == summary.name }
                    operations = [.delete(path: path, version: segment.version)]
                } else {
                    next.summarize(summary.name, kept, room: kept.units.reduce(0) { $0 + UnitSegment.roomAsAdded(of: $1) })
                    let bytes = try encodeSegment(&kept)
                    operations = [.setData(path: path, data: bytes, version: segment.version)]
                }
                operations.insert(.setData(path: layout.specBucket(spec.name, bucket), data: next.encodedJSON(), version: index.version), at: 0)
                do {
                    try await zookeeper.multi(operations)
                    removed += gone
                    segmentsDone.insert(summary.name)
                } catch let error as ZooKeeperError where error.code == .badVersion || error.code == .noNode {
                    continue  // another writer changed the bucket: read it again
                }
            }
        }
        return removed
    }

    // MARK: Helpers

    private func data(_ path: String) async throws -> NodeData? {
        do {
            return try await zookeeper.getData(path)
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil
        }
    }

    private func decode<T: Decodable>(
        _ type: T.Type, _ node: NodeData, at path: String, reading read: ([UInt8]) throws -> T = { try Codec.decode(T.self, $0) }
    ) throws -> T {
        do {
            return try read(node.data)
        } catch {
            throw DroverError(.unusableRecord, "\(path) is not a valid \(type) (\(error)): another program wrote it; delete the spec or restore it")
        }
    }

    /// The segment's bytes, its units' earlier attempts dropped (oldest first) while it would
    /// pass its bound; `segment` is left as written.
    private func encodeSegment(_ segment: inout UnitSegment) throws -> [UInt8] {
        let bytes = segment.encodedJSON(fittingIn: Bounds.unitSegmentBytes)
        // The room kept for growth makes this unreachable; were it reached, ZooKeeper would refuse the write.
        guard bytes.count <= 3 * Bounds.unitSegmentBytes else {
            throw DroverError(.invalidSpec, "a unit segment grew to \(bytes.count) bytes, past its bound")
        }
        return bytes
    }
}

/// Where a page of units starts: bucket, segment number in the bucket (`s<n>`), unit offset in
/// the segment (a clear that removes units of that segment between pages may skip or repeat some
/// of its units).
struct UnitCursor: CustomStringConvertible {
    var bucket: Int
    var segment: Int
    var offset: Int

    init(bucket: Int, segment: Int, offset: Int) {
        self.bucket = bucket
        self.segment = segment
        self.offset = offset
    }

    init?(_ text: String?) {
        guard let parts = text?.split(separator: "."), parts.count == 3, let bucket = Int(parts[0]), let segment = Int(parts[1]), let offset = Int(parts[2]),
            bucket >= 0, segment >= 0, offset >= 0
        else { return nil }
        self.init(bucket: bucket, segment: segment, offset: offset)
    }

    var description: String { "\(bucket).\(segment).\(offset)" }
}
