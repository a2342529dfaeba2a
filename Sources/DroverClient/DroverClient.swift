import DroverProtocol
import DroverStore
import Foundation
import Logging
import Synchronization
import ZKRecipes
import ZooKeeper

/// The client library: submit jobs, follow them, fetch their results, cancel and stop them.
///
/// A submit is one ZooKeeper `multi`: the job's record and its operation on the queue are
/// created together, so once `submit` returns the job cannot be lost.
public struct DroverClient: Sendable {
    public let zookeeper: ZooKeeperClient
    public let layout: Layout
    /// The ACLs this client gives the nodes it creates (queue items, job records).
    public let access: Access
    let queue: DurableQueue
    let store: JobStore
    let logger: Logger
    private let executorViews = CachedValue<[ExecutorView]>()
    /// The executors' loads, kept by watching once a job on the direct path is submitted.
    private let loads = ExecutorLoadView()
    private let admission = CachedValue<Admission?>()
    /// Only a request too large, or a failure on one job's node, is one job's fault.
    private let submitGroup = SubmitGroup<SubmitItem>(
        maximumItems: DroverClient.submitBatchJobs, maximumBytes: DroverClient.submitBatchBytes,
        isItemError: { error in
            guard let error = error as? ZooKeeperError else { return true }
            return error.code == .requestTooLarge || error.failedOperationIndex != nil
        })
    /// A job to submit: its id, encoded record and queue operation, and what else its transaction
    /// creates (a direct job's claims directory and reservations).
    typealias SubmitItem = (id: String, record: [UInt8], operation: [UInt8], creates: [MultiOperation])

    /// A client of a deployment whose access is known; ``load(zookeeper:layout:logger:)`` reads it.
    /// With `.open` (the default), the nodes it creates are `world:anyone` — right for an open
    /// deployment, too loose for a secured one.
    public init(zookeeper: ZooKeeperClient, layout: Layout = Layout(), access: Access = .open, logger: Logger = Logger(label: "drover.client")) {
        self.zookeeper = zookeeper
        self.layout = layout
        self.access = access
        self.logger = logger
        self.store = JobStore(zookeeper: zookeeper, layout: layout)
        // A bulk submit's operations travel in one item of up to submitBatchBytes.
        self.queue = DurableQueue(
            client: zookeeper, root: layout.queue, maximumItemBytes: Self.submitBatchBytes,
            acls: .init(root: access.acl(for: .queue), segment: access.acl(for: .queueSegment), item: access.acl(for: .queueItem)))
    }

    /// The same client, creating nodes with `access`'s ACLs.
    public func with(_ access: Access) -> DroverClient {
        DroverClient(zookeeper: zookeeper, layout: layout, access: access, logger: logger)
    }

    /// A client that first reads how the deployment is protected (``Access/load(_:layout:)``),
    /// so what it creates follows the deployment's role table. The ZooKeeper client must already
    /// carry the caller's credentials (`addAuth`).
    /// - Throws: ``DroverError`` `.notPermitted` when the deployment is secured and the
    ///   credentials may not read it.
    public static func load(zookeeper: ZooKeeperClient, layout: Layout = Layout(), logger: Logger = Logger(label: "drover.client")) async throws -> DroverClient {
        DroverClient(zookeeper: zookeeper, layout: layout, access: try await Access.load(zookeeper, layout: layout), logger: logger)
    }

    /// Work specs and their units (docs/PROTOCOL.md, "Work specs"): create, change, pause and
    /// delete specs, add units in bulk, count and list them.
    public var workSpecs: UnitStore { UnitStore(zookeeper: zookeeper, layout: layout, access: access) }

    /// Validates and submits a job; returns its id.
    /// - Throws: ``DroverError`` `.invalidSpec` (naming the field) or `.unplaceable` (no
    ///   registered executor could ever run it) — in both cases nothing is written.
    public func submit(_ spec: JobSpec) async throws -> String {
        do {
            return try await submit([spec])[0]
        } catch let error as BulkSubmitError {
            throw error.underlying
        }
    }

    /// Validates and submits many jobs; returns their ids in the order of `specs`.
    ///
    /// Every spec is validated and checked against the executors before anything is written.
    /// Then the jobs go in batches of up to ``submitBatchJobs`` (and ``submitBatchBytes``), each
    /// batch one ZooKeeper `multi` — records and one queue item holding all their operations — so a thousand jobs
    /// cost ten writes instead of a thousand. Batches are queued in order; `progress` is told
    /// how many jobs are in after each one.
    /// - Throws: ``BulkSubmitError``: which spec failed and why (``DroverError`` `.invalidSpec`
    ///   or `.unplaceable`, nothing written), or which batch failed after the jobs before it
    ///   were submitted (their ids are in the error). A batch whose answer was lost is checked
    ///   before it is reported failed; only when ZooKeeper cannot be reached for that check may
    ///   a batch reported failed have gone in.
    public func submit(_ specs: [JobSpec], progress: (Int) -> Void = { _ in }) async throws -> [String] {
        for (index, spec) in specs.enumerated() {
            do {
                try spec.validate()
            } catch {
                throw BulkSubmitError(index: index, submitted: [], underlying: DroverError(.invalidSpec, error.description))
            }
        }
        try await checkAdmission(submitting: specs.count)
        var checked: Set<Demand> = []
        for (index, spec) in specs.enumerated() where spec.isWorkflow || checked.insert(spec.demand).inserted {
            do {
                try await checkPlaceable(spec)
            } catch {
                throw BulkSubmitError(index: index, submitted: [], underlying: error)
            }
        }
        if specs.count == 1 {
            // One job: committed together with other callers' single submits made meanwhile.
            let item = try await submitItem(specs[0])
            do {
                try await submitGroup.submit([item], bytes: Self.bytes(of: item)) { try await self.submitBatch($0) }
            } catch {
                throw BulkSubmitError(index: 0, submitted: [], underlying: error)
            }
            return [item.id]
        }
        var ids: [String] = []
        var batch: [SubmitItem] = []
        var batchBytes = 0
        for (index, spec) in specs.enumerated() {
            let item = try await submitItem(spec)
            let bytes = Self.bytes(of: item)
            if !batch.isEmpty && (batch.count >= Self.submitBatchJobs || batchBytes + bytes > Self.submitBatchBytes) {
                do {
                    try await submitBatch(batch)
                } catch {
                    throw BulkSubmitError(index: index - batch.count, submitted: ids, underlying: error)
                }
                ids += batch.map(\.id)
                progress(ids.count)
                batch = []
                batchBytes = 0
            }
            batch.append(item)
            batchBytes += bytes
        }
        do {
            try await submitBatch(batch)
        } catch {
            throw BulkSubmitError(index: specs.count - batch.count, submitted: ids, underlying: error)
        }
        ids += batch.map(\.id)
        if specs.count > batch.count { progress(ids.count) }
        return ids
    }

    /// A new job's id, its record as created and its submit operation, encoded; for a job on the
    /// direct path, its claims directory and its reservations on executors sampled by its policy.
    func submitItem(_ spec: JobSpec) async throws -> SubmitItem {
        let id = Layout.newJobID()
        var created = JobRecord(id: id, spec: spec)
        var creates: [MultiOperation] = []
        if spec.effectivePlacement.isDirect, let tasks = spec.taskCount {
            let candidates = try await loads.candidates(for: spec.stepSpec(0).demand, zookeeper: zookeeper, layout: layout)
            var random = SystemRandomNumberGenerator()
            let reservedOn = DirectSampling.reservations(
                for: spec.effectivePlacement, tasks: tasks, probeRatio: spec.probeRatio ?? PlacementPolicy.defaultProbeRatio, among: candidates, using: &random)
            loads.reserved(on: reservedOn)
            // None to reserve (no executor that could run it publishes a load yet): the leader
            // takes the tasks over and places them, as it places any job.
            created.reservedOn = reservedOn
            let document = try Codec.encode(DirectJobDocument(spec: spec, reservedOn: reservedOn))
            creates.append(.create(path: layout.jobClaims(id), data: document, acl: access.acl(for: .jobClaims)))
            for (index, executor) in reservedOn.enumerated() {
                creates.append(
                    .create(
                        path: layout.reservation(job: id, index: index, on: executor, reusable: spec.effectivePlacement.reservationsAreReusable),
                        acl: access.acl(for: .reservation)))
            }
        }
        let record = try Codec.encode(created)
        let carried = record.count <= QueueOperation.carriedRecordBytes ? created : nil
        return (id, record, try Codec.encode(QueueOperation(.submit, job: id, record: carried)), creates)
    }

    /// What a submit transaction carries for `item`: its record and operation, and what else it
    /// creates (a direct job's claims document, with the spec again, and its reservations).
    static func bytes(of item: SubmitItem) -> Int {
        item.record.count + item.operation.count + item.creates.reduce(0) { total, operation in
            guard case .create(let path, let data, _, _) = operation else { return total }
            return total + path.utf8.count + data.count
        }
    }

    /// Jobs one submit transaction carries at most.
    public static let submitBatchJobs = QueueItemContent.maximumOperations
    /// Bytes (records and queue operations) one submit transaction carries at most — well under
    /// ZooKeeper's 1 MB request limit, which a batch of large specs would otherwise pass.
    public static let submitBatchBytes = 256 * 1024

    /// One `multi`: the jobs' records and their submit operations on the queue — one item for
    /// them all (format 2), so the leader reads the whole batch at once.
    private func submitBatch(_ batch: [SubmitItem]) async throws {
        guard !batch.isEmpty else { return }
        let operations = batch.count == 1 ? [batch[0].operation] : [QueueItemContent.batchItem(batch.map(\.operation))]
        // The records first (an error's operation index below them names a job), then the rest.
        let records = batch.map { MultiOperation.create(path: layout.job($0.id), data: $0.record, acl: access.acl(for: .jobRecord)) }
        let extras = batch.flatMap(\.creates)
        let creates = records + extras
        // The job ids are fixed before the first attempt, so a submit whose answer was lost (a
        // server failing over) is retried safely: if the first record exists, the earlier
        // attempt landed — every record and queue operation together, one multi.
        var lostAnswers = 0
        do {
            while true {
                do {
                    try await queue.put(operations, alongWith: creates)
                    return
                } catch let error as ZooKeeperError where error.code == .noNode && (error.failedOperationIndex ?? -1) >= 0 {
                    // A job's shard directory does not exist yet: make it once, then submit. (Making
                    // it on every submit would cost three writes through the leader per job.)
                    guard let index = error.failedOperationIndex, index < creates.count else { throw error }
                    // A claims shard, or an inbox its executor has not made (an older executor, which
                    // never takes the reservation: the leader takes the task over in time).
                    let path = index < batch.count ? layout.job(batch[index].id) : extras[index - batch.count].path
                    try await zookeeper.createPath(parentPath(of: path)) { [access, layout] in access.acl(at: $0, in: layout) }
                } catch let error as ZooKeeperError where error.code == .nodeExists && error.failedOperationIndex == 0 && lostAnswers > 0 {
                    return
                } catch let error as ZooKeeperError where error.isRetryable && lostAnswers < Self.submitRetries {
                    lostAnswers += 1
                    try await zookeeper.waitUntilConnected(timeout: zookeeper.sessionTimeout)
                }
            }
        } catch where lostAnswers > 0 {
            // Giving up after a lost answer: the lost attempt may have landed. It did if the first
            // record exists (the batch is one multi) — then the batch is in, not failed.
            if case .some(.some) = try? await zookeeper.exists(layout.job(batch[0].id)) { return }
            throw error
        }
    }

    /// How often a submit whose answer was lost is tried again before the error is reported.
    static let submitRetries = 5

    /// The job's record: its spec, state and latest runs.
    /// - Throws: ``DroverError`` `.unknownJob`, or `.unusableRecord` saying what is wrong with it.
    public func status(_ id: String) async throws -> JobRecord { try await store.record(id) }

    /// Every job, optionally only those in one of `states`, oldest first. Jobs whose records
    /// cannot be used are left out: ``listing(states:)`` reports them too.
    public func list(states: Set<JobState>? = nil) async throws -> [JobRecord] {
        try await store.listing(states: states).records
    }

    /// Every job, optionally only those in one of `states`, oldest first; and the jobs whose
    /// records cannot be used, with why (they count as `failed`).
    public func listing(states: Set<JobState>? = nil) async throws -> (records: [JobRecord], unusable: [UnusableRecordError]) {
        try await store.listing(states: states)
    }

    /// One page of jobs in submission order, after the job `after`, at most `limit`, optionally
    /// only in `states` or named `name`: reads the records it shows, not every record.
    public func page(
        states: Set<JobState>? = nil, name: String? = nil, after: String? = nil, limit: Int, newestFirst: Bool = false
    ) async throws -> JobStore.Page {
        try await store.page(states: states, name: name, after: after, limit: limit, newestFirst: newestFirst)
    }

    /// The jobs that wait or run, as the leader last counted them (at most a second behind while
    /// they change), and when; nil when no leader has counted (none leads yet, or a deployment
    /// secured before the active-job index existed, until `drover init` runs again). One read.
    public func activeCounts() async throws -> (counts: ActiveIndex.Counts, countedAt: Timestamp)? {
        guard let index = try await store.activeIndex(), let counts = index.counts, let at = index.countedAt else { return nil }
        return (counts, at)
    }

    /// The job's record once it is final (succeeded, failed, stopped or cancelled), waited for on a watch.
    public func finalRecord(_ id: String) async throws -> JobRecord {
        for try await record in updates(id) where record.state.isFinal { return record }
        return try await status(id)
    }

    /// The job's state now and after every change, until it reaches a final state.
    public func updates(_ id: String) -> AsyncThrowingStream<JobRecord, any Error> {
        let source = zookeeper.dataUpdates(of: layout.job(id))
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    var seen = false
                    for try await update in source {
                        guard case .present(let node) = update else {
                            // A job another process just submitted may not have reached this
                            // session's server yet (ZooKeeper's reads are not linearizable): the
                            // first time, ask again after the server caught up (`record` syncs and
                            // says "no job" only if it still has none); the watch, already set,
                            // brings the changes after that read.
                            guard !seen else { throw DroverError(.unknownJob, "no job \(id)") }
                            seen = true
                            let record = try await store.record(id)
                            continuation.yield(record)
                            if record.state.isFinal { break }
                            continue
                        }
                        seen = true
                        let record = try JobRecord.read(node.data, job: id)
                        continuation.yield(record)
                        if record.state.isFinal { break }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Submits a job and waits for the result of its first run that is not tried again (the
    /// synchronous path): a run that failed and is retried under the job's policy is waited past.
    /// - Throws: ``DroverError`` `.jobFailed` with the handler's error when the run fails for good.
    public func call(_ spec: JobSpec) async throws -> JSONValue? {
        let id = try await submit(spec)
        for try await record in updates(id) {
            guard let run = record.history.last else { continue }
            switch run.outcome {
            case .succeeded: return run.result
            case .failed where record.attempt != nil && !record.state.isFinal:
                continue  // tried again: its next attempt decides
            case .failed, .stopped:
                throw DroverError(.jobFailed, "job \(id) \(run.outcome.rawValue): \(run.error ?? "no reason given")")
            }
        }
        throw DroverError(.jobFailed, "job \(id) ended without a run")
    }

    /// Cancels a job that has not started running. Queued as an operation for the manager.
    public func cancel(_ id: String) async throws {
        let record = try await status(id)
        guard !record.state.isFinal else {
            throw DroverError(.jobNotCancellable, "job \(id) is already \(record.state.rawValue)")
        }
        guard record.state != .running else {
            throw DroverError(.jobNotCancellable, "job \(id) is running: cancel drops a job that has not started; drover stop \(id) stops it")
        }
        try await queue.put(try Codec.encode(QueueOperation(.cancel, job: id)))
    }

    /// Stops a job: its running task is cancelled and it is not run again.
    public func stop(_ id: String) async throws {
        let record = try await status(id)
        guard !record.state.isFinal else { return }
        try await queue.put(try Codec.encode(QueueOperation(.stop, job: id)))
    }

    /// A workflow's shared data (what its steps wrote with `context.shared.update`): `{}` when none.
    public func sharedData(of id: String) async throws -> JSONValue {
        try await SharedDocument(zookeeper: zookeeper, layout: layout).read(id)
    }

    /// Adds steps to a workflow that has not ended (a first step without `after` depends on
    /// nothing; the others as in a spec). Checked against the workflow as it is now; the leader
    /// checks again when it adds them, and sets the operation aside with the reason if the
    /// workflow ended meanwhile (`drover setaside`).
    /// - Throws: ``DroverError`` `.invalidSpec` naming the step and the reason, `.jobNotCancellable`
    ///   when the workflow has ended.
    public func inject(_ steps: [WorkflowStep], into id: String) async throws {
        var record = try await status(id)
        guard !record.state.isFinal else {
            throw DroverError(.jobNotCancellable, "workflow \(id) has ended (\(record.state.rawValue)): nothing can be added to it")
        }
        do {
            try record.inject(steps, by: nil)
        } catch {
            throw DroverError(.invalidSpec, "\(error.field): \(error.reason)")
        }
        for step in steps {
            var alone = JobSpec(method: step.method, resources: step.resources ?? record.spec.resources, constraints: step.constraints ?? record.spec.constraints)
            alone.name = step.id
            do {
                try await checkPlaceable(alone)
            } catch let error as DroverError where error.code == .unplaceable {
                throw DroverError(.unplaceable, "step \(step.id): \(error.message)")
            }
        }
        var operation = QueueOperation(.inject, job: id)
        operation.steps = steps
        try await queue.put(try Codec.encode(operation))
    }

    /// Suspends a job: no new run starts until ``resume(_:)``; a running run finishes.
    /// - Throws: ``DroverError`` `.jobNotCancellable` when the job is final or suspended already.
    public func suspend(_ id: String) async throws {
        let record = try await status(id)
        guard !record.state.isFinal else { throw DroverError(.jobNotCancellable, "job \(id) is already \(record.state.rawValue)") }
        guard record.suspended != true else { throw DroverError(.jobNotCancellable, "job \(id) is suspended already (drover resume \(id))") }
        try await queue.put(try Codec.encode(QueueOperation(.suspend, job: id)))
    }

    /// Resumes a suspended job: a scheduled one at its next time (times missed meanwhile are
    /// skipped), another at once.
    public func resume(_ id: String) async throws {
        let record = try await status(id)
        guard record.suspended == true, !record.state.isFinal else {
            throw DroverError(.jobNotCancellable, "job \(id) is not suspended (it is \(record.state.rawValue))")
        }
        try await queue.put(try Codec.encode(QueueOperation(.resume, job: id)))
    }

    /// Runs a job once now, outside its schedule (a suspended one too; it stays suspended).
    /// - Throws: ``DroverError`` `.jobNotCancellable` when a run is running or the job is final.
    public func trigger(_ id: String) async throws {
        let record = try await status(id)
        guard !record.state.isFinal else { throw DroverError(.jobNotCancellable, "job \(id) is already \(record.state.rawValue)") }
        if record.spec.overlap == .allow {
            let running = record.concurrentRuns?.count ?? 0
            guard running < record.spec.effectiveMaxConcurrentRuns else {
                throw DroverError(
                    .jobNotCancellable,
                    "job \(id) runs \(running) runs, its maximum at once (maxConcurrentRuns \(record.spec.effectiveMaxConcurrentRuns)): trigger it once one ends")
            }
        } else {
            guard record.state != .running else {
                throw DroverError(.jobNotCancellable, "job \(id) is running: runs of one job never overlap; trigger it once this run ends")
            }
        }
        try await queue.put(try Codec.encode(QueueOperation(.trigger, job: id)))
    }

    /// Removes a dead executor that holds no tasks from the cluster (its nodes, and the state it
    /// may have kept aside as unreadable); its id can be used again. An operator's action:
    /// one `multi`, so an executor that comes back meanwhile makes it fail, not half happen.
    /// - Throws: ``DroverError`` `.unknownExecutor`, or `.executorInUse` saying why not and what to do.
    public func forget(executor id: String) async throws {
        guard Layout.isValidID(id), try await zookeeper.exists(layout.executor(id)) != nil else {
            throw DroverError(.unknownExecutor, "no executor \(id) — see drover executors")
        }
        if try await zookeeper.exists(layout.executorAlive(id)) != nil {
            throw DroverError(.executorInUse, "executor \(id) is alive: stop it first (SIGTERM lets its tasks finish), then forget it")
        }
        var operations: [MultiOperation] = []
        do {
            let node = try await zookeeper.getData(layout.executorAssignments(id))
            if let state = try? Codec.decode(ExecutorState.self, node.data), !state.tasks.isEmpty {
                throw DroverError(
                    .executorInUse,
                    "executor \(id) still holds \(state.tasks.count) task(s): the manager takes them back once it has been gone for the grace period — try again then")
            }
            operations.append(.delete(path: layout.executorAssignments(id), version: node.stat.version))
        } catch let error as ZooKeeperError where error.code == .noNode {
            // None yet: made and removed in the same transaction, so one a leader makes meanwhile
            // fails it instead of staying behind for an executor that is gone.
            operations += [.create(path: layout.executorAssignments(id)), .delete(path: layout.executorAssignments(id))]
        }
        // Its own documents, and one left by a version before assignments and progress were split.
        for path in [
            layout.executorProgress(id), layout.executorUnreadableProgress(id), layout.legacyExecutorState(id),
            layout.executor(id) + "/unreadable-state",
        ]
        where try await zookeeper.exists(path) != nil {
            operations.append(.delete(path: path))
        }
        operations.append(.delete(path: layout.executor(id)))
        do {
            try await zookeeper.multi(operations)
        } catch let error as ZooKeeperError where [.badVersion, .noNode, .notEmpty, .nodeExists].contains(error.code) {
            throw DroverError(
                .executorInUse, "executor \(id) changed while it was being forgotten (did it start again?): see drover executors, then try again",
                cause: error)
        }
    }

    /// Places tasks on a drained executor again.
    public func undrain(executor id: String) async throws { try await queue(.undrain(executor: id), forExecutor: id) }

    /// Stops new placements on an executor; its running tasks finish.
    public func drain(executor id: String) async throws { try await queue(.drain(executor: id), forExecutor: id) }

    /// Queues an operation on an executor that exists.
    private func queue(_ operation: QueueOperation, forExecutor id: String) async throws {
        guard Layout.isValidID(id), try await zookeeper.exists(layout.executor(id)) != nil else {
            throw DroverError(.unknownExecutor, "no executor \(id) — see drover executors")
        }
        try await queue.put(try Codec.encode(operation))
    }

    /// The election nodes of the managers standing now, in election order (the first leads).
    /// Empty when none runs: then nothing places submitted jobs until one starts.
    public func managers() async throws -> [String] {
        do {
            return try await zookeeper.children(layout.election).names.sorted {
                ($0.split(separator: "-").last ?? "") < ($1.split(separator: "-").last ?? "")
            }
        } catch let error as ZooKeeperError where error.code == .noNode {
            return []
        }
    }

    /// The newest `limit` queue items the leader set aside, newest first, with their node names;
    /// how many there are in all; and how many older ones the leader dropped to keep the
    /// directory bounded.
    public func setAsideItems(limit: Int) async throws -> (items: [(name: String, item: SetAsideItem)], total: Int, dropped: Int) {
        let names: [String]
        let directory: NodeData
        do {
            directory = try await zookeeper.getData(layout.setAside)
            names = try await zookeeper.children(layout.setAside).names.sorted(by: >)
        } catch let error as ZooKeeperError where error.code == .noNode {
            return ([], 0, 0)
        }
        var items: [(String, SetAsideItem)] = []
        for name in names.prefix(limit) {
            if let item = try await readDocument(SetAsideItem.self, at: layout.setAsideItem(name)) { items.append((name, item)) }
        }
        return (items, names.count, (try? Codec.decode(SetAsideDirectory.self, directory.data).dropped) ?? 0)
    }

    /// An executor's registration while it is alive, or nil.
    public func registration(of id: String) async throws -> ExecutorRegistration? {
        do {
            return try Codec.decode(ExecutorRegistration.self, try await zookeeper.getData(layout.executorAlive(id)).data)
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil
        }
    }

    /// Registered executors with their tasks (alive or not) and their published load: the
    /// leader's assignments with the executor's progress laid over them — nil for an executor that
    /// never started (no progress of its own) and holds no task.
    public func executors() async throws -> [ExecutorListing] {
        // Every read issued at once: one round trip each in series was two per executor.
        let ids = try await executorIDs()
        return try await withThrowingTaskGroup(of: (Int, ExecutorListing).self) { group in
            for (index, id) in ids.enumerated() {
                group.addTask {
                    async let registration = readDocument(ExecutorRegistration.self, at: layout.executorAlive(id))
                    async let assignments = readDocument(ExecutorState.self, at: layout.executorAssignments(id))
                    async let progress = readDocument(ExecutorProgress.self, at: layout.executorProgress(id))
                    async let load = readDocument(ExecutorLoad.self, at: layout.executorLoad(id))
                    return (
                        index,
                        ExecutorListing(
                            id: id, registration: try await registration, assignments: try await assignments, progress: try await progress,
                            load: try await load)
                    )
                }
            }
            var result = ids.map { ExecutorListing(id: $0) }
            for try await (index, listing) in group { result[index] = listing }
            return result
        }
    }

    /// The registrations of the executors alive now, read all at once.
    public func registrations() async throws -> [ExecutorRegistration] {
        let ids = try await executorIDs()
        return try await withThrowingTaskGroup(of: ExecutorRegistration?.self) { group in
            for id in ids { group.addTask { try await readDocument(ExecutorRegistration.self, at: layout.executorAlive(id)) } }
            return try await group.reduce(into: []) { if let registration = $1 { $0.append(registration) } }.sorted { $0.id < $1.id }
        }
    }

    private func executorIDs() async throws -> [String] {
        do {
            return try await zookeeper.children(layout.executors).names.filter(Layout.isValidID).sorted()
        } catch let error as ZooKeeperError where error.code == .noNode {
            return []
        }
    }

    /// A document, or nil when the znode is missing or does not hold one (logged). A failed read
    /// is an error, never "missing": a lost connection must not look like no executors.
    private func readDocument<Document: Decodable>(_ type: Document.Type, at path: String) async throws -> Document? {
        let node: NodeData
        do {
            node = try await zookeeper.getData(path)
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil
        }
        do {
            return try Codec.decode(type, node.data)
        } catch {
            logger.warning("not a valid document: left out", metadata: ["path": "\(path)", "version": "\(node.stat.version)", "error": "\(error)"])
            return nil
        }
    }

    /// A read a submit makes before it writes, tried once more when the connection was lost (a
    /// server failing over): a submit should not fail for a read it can repeat.
    private func readingAgainOnceConnected<T>(_ read: () async throws -> T) async throws -> T {
        do {
            return try await read()
        } catch let error as ZooKeeperError where error.isRetryable {
            try await zookeeper.waitUntilConnected(timeout: zookeeper.sessionTimeout * 2)
            return try await read()
        }
    }

    /// Refuses when the leader says too many jobs wait (``Admission``; read at most once a second).
    private func checkAdmission(submitting count: Int) async throws {
        let rule = try await admission.value(maximumAge: .seconds(1)) { try await self.admissionRule() }
        guard let rule else { return }
        if rule.full {
            throw BulkSubmitError(
                index: 0, submitted: [],
                underlying: DroverError(
                    .queueFull,
                    "the queue is full: \(rule.waiting) jobs wait for an executor, and the leader takes no more than \(rule.maxWaiting) "
                        + "(drover manager --max-waiting); nothing was submitted — submit again once they have run, or add executors"))
        }
        if rule.waiting + count > rule.maxWaiting {
            throw BulkSubmitError(
                index: 0, submitted: [],
                underlying: DroverError(
                    .queueFull,
                    "these \(count) jobs would pass the bound on waiting jobs: \(rule.waiting) wait, the leader takes no more than "
                        + "\(rule.maxWaiting) (drover manager --max-waiting); nothing was submitted — submit fewer at a time"))
        }
    }

    /// The leader's admission rule; nil when there is none (no bound, no leader yet, or a document
    /// this client cannot read — a garbled one must not stop every submit).
    public func admissionRule() async throws -> Admission? {
        do {
            let data = try await readingAgainOnceConnected { try await zookeeper.getData(layout.admission).data }
            guard !data.isEmpty else { return nil }
            do {
                return try Codec.decode(Admission.self, data)
            } catch {
                logger.warning("the admission document cannot be read: submitting as if there were no bound", metadata: ["error": "\(error)"])
                return nil
            }
        } catch let error as ZooKeeperError where error.code == .noNode {
            return nil
        }
    }

    /// Refuses a job no registered executor could ever run. Executors' capacities and labels
    /// change rarely, so the view is reused for a few seconds (a bulk submit would otherwise
    /// read every executor for every job); an `impossible` verdict is checked again on a fresh
    /// view before it is given, so a newly registered executor is never missed.
    private func checkPlaceable(_ spec: JobSpec) async throws {
        if let steps = spec.steps {
            // A workflow: each step must be placeable (it would stop the workflow there).
            for index in steps.indices {
                do {
                    try await checkPlaceable(spec.stepSpec(index))
                } catch let error as DroverError where error.code == .unplaceable {
                    throw DroverError(.unplaceable, "step \(steps[index].id): \(error.message)")
                }
            }
            return
        }
        var views = try await executorViews.value(maximumAge: .seconds(5)) { try await self.readExecutorViews() }
        if views.isEmpty || Placement.decide(spec.demand, among: views).isImpossible {
            // A verdict from no executors at all may be as stale as "impossible": look again.
            views = try await executorViews.value(maximumAge: .zero) { try await self.readExecutorViews() }
        }
        if case .impossible(let reason) = Placement.decide(spec.demand, among: views) {
            throw DroverError(.unplaceable, "no executor can ever run this job: \(reason)")
        }
    }

    /// The registered executors as the unplaceable check needs them: whether any could ever run a
    /// job depends on registrations alone (labels, capacity, methods), not on their load.
    private func readExecutorViews() async throws -> [ExecutorView] {
        try await readingAgainOnceConnected { try await registrations() }.map(ExecutorView.init(registration:))
    }
}

/// A value read from ZooKeeper, reused while it is younger than a given age.
final class CachedValue<Value: Sendable>: Sendable {
    private let stored = Mutex<(value: Value, at: ContinuousClock.Instant)?>(nil)

    func value(maximumAge: Duration, read: () async throws -> Value) async throws -> Value {
        if let stored = stored.withLock({ $0 }), ContinuousClock.now - stored.at < maximumAge { return stored.value }
        let fresh = try await read()
        stored.withLock { $0 = (fresh, ContinuousClock.now) }
        return fresh
    }
}
