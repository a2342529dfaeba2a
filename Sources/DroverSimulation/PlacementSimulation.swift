import DroverProtocol
import Foundation
import HeapModule

/// A discrete-event simulation of placing jobs of many tasks on a cluster, one policy at a time,
/// with no ZooKeeper and no processes: which policy keeps job response times near an ideal
/// scheduler's, and at what cost in messages (issue 20, docs/PLACEMENT.md).
///
/// The model follows the Sparrow paper's: executors with a few slots each run tasks from a FIFO
/// queue; a job is `tasksPerJob` tasks that arrive together (Poisson arrivals set by the load); a
/// job's response time is from its arrival to its last task's end. Every message between a
/// scheduler and an executor takes `hop` seconds. Policies:
/// - `ideal`: every task starts the moment any slot in the cluster is free (no messages, no delay);
///   the bound the others are measured against.
/// - `central`: Drover's path today: the submit reaches the leader (one hop), which places each task
///   (`leaderServiceTime` each, one at a time) on an executor it knows has a free slot (one hop);
///   a freed slot is known to the leader one hop after the task ends.
/// - `random`: each task to a random executor's queue.
/// - `powerOfTwo`: each task probes two random executors (a round trip) and goes to the shorter queue.
/// - `batch`: a job probes `probeRatio × tasksPerJob` executors and places its tasks on the least
///   loaded of them.
/// - `batchLateBinding`: a job puts a reservation on each of `probeRatio × tasksPerJob` executors;
///   an executor whose reservation reaches a free slot asks for a task (a round trip) and gets one
///   while the job has tasks left; once all are launched the job's other reservations are
///   cancelled (proactive cancellation, one message each).
public struct PlacementSimulation: Sendable {
    public enum Policy: String, CaseIterable, Sendable {
        case ideal, central, random, powerOfTwo, batch, batchLateBinding
    }

    public enum Durations: String, CaseIterable, Sendable {
        /// Exponential with the mean.
        case exponential
        /// Pareto with shape 1.5 and the same mean: most tasks short, a few very long.
        case heavyTailed
    }

    public struct Configuration: Sendable {
        public var executors: Int
        public var slotsPerExecutor: Int
        public var tasksPerJob: Int
        /// Busy slots ÷ all slots, on average: 0.8 is 80% load.
        public var load: Double
        public var meanTaskSeconds: Double
        public var durations: Durations
        public var jobs: Int
        /// One message between a scheduler and an executor.
        public var hop: Double
        /// The central leader's time to place one task.
        public var leaderServiceTime: Double
        /// Executors probed (or reserved) per task: `d` of batch sampling.
        public var probeRatio: Int
        public var seed: UInt64

        public init(
            executors: Int, slotsPerExecutor: Int = 4, tasksPerJob: Int = 10, load: Double, meanTaskSeconds: Double = 0.1,
            durations: Durations = .exponential, jobs: Int = 2_000, hop: Double = 0.0005, leaderServiceTime: Double = 0.0007,
            probeRatio: Int = 2, seed: UInt64 = 1
        ) {
            self.executors = executors
            self.slotsPerExecutor = slotsPerExecutor
            self.tasksPerJob = tasksPerJob
            self.load = load
            self.meanTaskSeconds = meanTaskSeconds
            self.durations = durations
            self.jobs = jobs
            self.hop = hop
            self.leaderServiceTime = leaderServiceTime
            self.probeRatio = probeRatio
            self.seed = seed
        }

        /// What is wrong with this configuration, or nil.
        public var problem: String? {
            if executors < 1 || executors > 100_000 { return "executors must be 1 to 100000" }
            if slotsPerExecutor < 1 || slotsPerExecutor > 1_000 { return "slots per executor must be 1 to 1000" }
            if tasksPerJob < 1 || tasksPerJob > 10_000 { return "tasks per job must be 1 to 10000" }
            if !(load > 0 && load < 1) { return "load must be more than 0 and less than 1 (a load of 1 or more never settles)" }
            if !(meanTaskSeconds > 0 && meanTaskSeconds <= 3_600) { return "the mean task duration must be more than 0 and at most an hour" }
            if jobs < 10 || jobs > 10_000_000 { return "jobs must be 10 to 10000000" }
            if !(hop >= 0 && hop <= 10) { return "a hop must be 0 to 10 seconds" }
            if !(leaderServiceTime >= 0 && leaderServiceTime <= 10) { return "the leader's time per task must be 0 to 10 seconds" }
            if probeRatio < 1 || probeRatio > 100 { return "the probe ratio must be 1 to 100" }
            return nil
        }
    }

    /// What one policy did with the trace.
    public struct Outcome: Sendable {
        public var policy: Policy
        /// Job response times in seconds (arrival to last task's end), after the warm-up, sorted.
        public var responseTimes: [Double]
        /// Messages between schedulers and executors per task.
        public var messagesPerTask: Double
        /// Tasks that waited for a slot while another slot in the cluster was free, per task.
        public var tasksPlacedBehindOthers: Double

        public func percentile(_ p: Double) -> Double {
            guard !responseTimes.isEmpty else { return 0 }
            let index = min(responseTimes.count - 1, max(0, Int((p / 100 * Double(responseTimes.count)).rounded(.up)) - 1))
            return responseTimes[index]
        }
        public var mean: Double { responseTimes.isEmpty ? 0 : responseTimes.reduce(0, +) / Double(responseTimes.count) }
    }

    public let configuration: Configuration

    /// Tasks a second the load asks for.
    public var offeredTasksPerSecond: Double {
        configuration.load * Double(configuration.executors * configuration.slotsPerExecutor) / configuration.meanTaskSeconds
    }

    /// Whether the central leader cannot place tasks as fast as they come: its line then grows for
    /// as long as the run lasts, and its figures measure the run's length, not a steady state.
    public var overloadsTheCentralLeader: Bool {
        configuration.leaderServiceTime > 0 && offeredTasksPerSecond >= 1 / configuration.leaderServiceTime
    }

    public init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    /// The jobs: arrival times and task durations (seconds), the same for every policy (one seed).
    public struct Trace: Sendable {
        public var arrivals: [Double]
        public var durations: [[Double]]
    }

    /// The trace every policy runs: a live run of the same jobs compares with the simulation.
    public func makeTrace() -> Trace {
        var random = SeededRandom(seed: configuration.seed)
        let c = configuration
        let jobsPerSecond = c.load * Double(c.executors * c.slotsPerExecutor) / (Double(c.tasksPerJob) * c.meanTaskSeconds)
        var time = 0.0
        var trace = Trace(arrivals: [], durations: [])
        for _ in 0..<c.jobs {
            time += exponential(mean: 1 / jobsPerSecond, &random)
            trace.arrivals.append(time)
            trace.durations.append((0..<c.tasksPerJob).map { _ in duration(&random) })
        }
        return trace
    }

    private func exponential(mean: Double, _ random: inout SeededRandom) -> Double {
        -mean * log1p(-Double.random(in: 0..<1, using: &random))
    }

    private func duration(_ random: inout SeededRandom) -> Double {
        switch configuration.durations {
        case .exponential:
            return exponential(mean: configuration.meanTaskSeconds, &random)
        case .heavyTailed:
            let shape = 1.5
            let scale = configuration.meanTaskSeconds * (shape - 1) / shape
            return scale / pow(1 - Double.random(in: 0..<1, using: &random), 1 / shape)
        }
    }

    /// Runs `policy` over the trace every policy shares.
    public func run(_ policy: Policy) -> Outcome {
        var world = World(configuration: configuration, policy: policy, trace: makeTrace())
        world.run()
        let warmUp = configuration.jobs / 10
        let times = world.jobs.dropFirst(warmUp).map { $0.end - $0.arrival }.sorted()
        let tasks = Double(configuration.jobs * configuration.tasksPerJob)
        return Outcome(
            policy: policy, responseTimes: times, messagesPerTask: Double(world.messages) / tasks,
            tasksPlacedBehindOthers: Double(world.queuedWhileSlotsFree) / tasks)
    }
}

/// The simulated cluster and its clock.
struct World {
    enum Entry {
        case task(job: Int, duration: Double)
        case reservation(job: Int)
    }

    struct Executor {
        var busy = 0
        var queue: [Entry] = []
        var head = 0
        var queued: Int { queue.count - head }
        mutating func popFront() -> Entry? {
            guard head < queue.count else { return nil }
            defer {
                head += 1
                if head > 64 && head * 2 > queue.count {
                    queue.removeFirst(head)
                    head = 0
                }
            }
            return queue[head]
        }
    }

    struct Job {
        var arrival: Double
        var end = 0.0
        var launched = 0
        var finished = 0
        /// Executors holding a reservation of this job (late binding).
        var reservedOn: [Int] = []
    }

    enum Kind {
        case arrive(job: Int)
        case taskReaches(executor: Int, job: Int, duration: Double)
        case reservationReaches(executor: Int, job: Int)
        case taskEnds(executor: Int, job: Int)
        case askReachesScheduler(executor: Int, job: Int)
        case answerReaches(executor: Int, job: Int, duration: Double?)
        case cancelReaches(executor: Int, job: Int)
        case probesAnswered(job: Int, task: Int?, executors: [Int])
        case leaderLearnsFreeSlot(executor: Int)
        case leaderReceives(job: Int)
        case leaderReady
    }

    struct Event: Comparable {
        var time: Double
        var sequence: Int
        var kind: Kind
        static func < (a: Event, b: Event) -> Bool { (a.time, a.sequence) < (b.time, b.sequence) }
        static func == (a: Event, b: Event) -> Bool { a.time == b.time && a.sequence == b.sequence }
    }

    let configuration: PlacementSimulation.Configuration
    let policy: PlacementSimulation.Policy
    let trace: PlacementSimulation.Trace
    var random: SeededRandom
    var now = 0.0
    var events = Heap<Event>()
    var sequence = 0
    var executors: [Executor]
    var jobs: [Job]
    var messages = 0
    var queuedWhileSlotsFree = 0
    var freeSlots: Int
    /// Ideal and central: tasks waiting for any slot, first come first (job, task).
    var waitingTasks: [(job: Int, task: Int)] = []
    var waitingHead = 0
    /// Central: slots the leader knows are free, by executor; its queue of jobs to place.
    var leaderFree: [Int]
    var leaderFreeTotal = 0
    var leaderBusyUntil = 0.0
    var leaderInbox: [(job: Int, task: Int)] = []
    var leaderInboxHead = 0
    var leaderScheduled = false

    init(configuration: PlacementSimulation.Configuration, policy: PlacementSimulation.Policy, trace: PlacementSimulation.Trace) {
        self.configuration = configuration
        self.policy = policy
        self.trace = trace
        random = SeededRandom(seed: configuration.seed ^ 0x5EED)
        executors = Array(repeating: Executor(), count: configuration.executors)
        jobs = trace.arrivals.map { Job(arrival: $0) }
        freeSlots = configuration.executors * configuration.slotsPerExecutor
        leaderFree = Array(repeating: configuration.slotsPerExecutor, count: configuration.executors)
        leaderFreeTotal = freeSlots
    }

    mutating func schedule(_ kind: Kind, after delay: Double) {
        sequence += 1
        events.insert(Event(time: now + delay, sequence: sequence, kind: kind))
    }

    mutating func run() {
        for job in jobs.indices {
            sequence += 1
            events.insert(Event(time: jobs[job].arrival, sequence: sequence, kind: .arrive(job: job)))
        }
        while let event = events.popMin() {
            now = event.time
            handle(event.kind)
        }
    }

    var hop: Double { configuration.hop }
    var slots: Int { configuration.slotsPerExecutor }

    mutating func handle(_ kind: Kind) {
        switch kind {
        case .arrive(let job):
            arrive(job)
        case .taskReaches(let executor, let job, let duration):
            enqueue(.task(job: job, duration: duration), on: executor)
        case .reservationReaches(let executor, let job):
            enqueue(.reservation(job: job), on: executor)
        case .taskEnds(let executor, let job):
            jobs[job].finished += 1
            if jobs[job].finished == configuration.tasksPerJob { jobs[job].end = now }
            executors[executor].busy -= 1
            freeSlots += 1
            switch policy {
            case .ideal:
                startWaitingTask(on: executor)
            case .central:
                messages += 1  // the executor reports the end
                schedule(.leaderLearnsFreeSlot(executor: executor), after: hop)
            default:
                startNext(on: executor)
            }
        case .askReachesScheduler(let executor, let job):
            var answer: Double?
            if jobs[job].launched < configuration.tasksPerJob {
                answer = trace.durations[job][jobs[job].launched]
                jobs[job].launched += 1
                if jobs[job].launched == configuration.tasksPerJob {
                    // Proactive cancellation: the job's other reservations go.
                    for other in jobs[job].reservedOn where other != executor {
                        messages += 1
                        schedule(.cancelReaches(executor: other, job: job), after: hop)
                    }
                }
            }
            messages += 1
            schedule(.answerReaches(executor: executor, job: job, duration: answer), after: hop)
        case .answerReaches(let executor, let job, let duration):
            if let duration {
                schedule(.taskEnds(executor: executor, job: job), after: duration)
            } else {
                executors[executor].busy -= 1
                freeSlots += 1
                startNext(on: executor)
            }
        case .cancelReaches(let executor, let job):
            let remaining = executors[executor].queue[executors[executor].head...].filter {
                if case .reservation(job: job) = $0 { return false }
                return true
            }
            executors[executor].queue = Array(remaining)
            executors[executor].head = 0
        case .probesAnswered(let job, let task, let probed):
            let ranked = probed.sorted { load(of: $0) < load(of: $1) }
            if let task {  // power of two: one task, the shorter queue
                messages += 1
                schedule(.taskReaches(executor: ranked[0], job: job, duration: trace.durations[job][task]), after: hop)
            } else {  // batch: the job's tasks on the least loaded probed
                for task in 0..<configuration.tasksPerJob {
                    messages += 1
                    schedule(.taskReaches(executor: ranked[task % ranked.count], job: job, duration: trace.durations[job][task]), after: hop)
                }
            }
        case .leaderLearnsFreeSlot(let executor):
            leaderFree[executor] += 1
            leaderFreeTotal += 1
            wakeLeader()
        case .leaderReceives(let job):
            for task in 0..<configuration.tasksPerJob { leaderInbox.append((job, task)) }
            wakeLeader()
        case .leaderReady:
            leaderScheduled = false
            placeOneCentrally()
        }
    }

    mutating func arrive(_ job: Int) {
        let m = configuration.tasksPerJob
        switch policy {
        case .ideal:
            for task in 0..<m { waitingTasks.append((job, task)) }
            for executor in executors.indices where executors[executor].busy < slots {
                while executors[executor].busy < slots && startWaitingTask(on: executor) {}
                if waitingHead == waitingTasks.count { break }
            }
        case .central:
            messages += 1  // the submit
            schedule(.leaderReceives(job: job), after: hop)
        case .random:
            for task in 0..<m {
                messages += 1
                schedule(.taskReaches(executor: randomExecutor(), job: job, duration: trace.durations[job][task]), after: hop)
            }
        case .powerOfTwo:
            for task in 0..<m {
                messages += 4  // two probes, two answers
                schedule(.probesAnswered(job: job, task: task, executors: [randomExecutor(), randomExecutor()]), after: 2 * hop)
            }
        case .batch:
            let probed = distinctExecutors(configuration.probeRatio * m)
            messages += 2 * probed.count
            schedule(.probesAnswered(job: job, task: nil, executors: probed), after: 2 * hop)
        case .batchLateBinding:
            let probed = distinctExecutors(configuration.probeRatio * m)
            jobs[job].reservedOn = probed
            for executor in probed {
                messages += 1
                schedule(.reservationReaches(executor: executor, job: job), after: hop)
            }
        }
    }

    func load(of executor: Int) -> Int { executors[executor].busy + executors[executor].queued }

    mutating func randomExecutor() -> Int { Int.random(in: 0..<configuration.executors, using: &random) }

    /// `count` executors without repeats (all of them, and repeats after, when there are fewer).
    mutating func distinctExecutors(_ count: Int) -> [Int] {
        let n = configuration.executors
        if count >= n { return (0..<count).map { $0 % n } }
        var chosen = Set<Int>()
        var order: [Int] = []
        while order.count < count {
            let executor = randomExecutor()
            if chosen.insert(executor).inserted { order.append(executor) }
        }
        return order
    }

    mutating func enqueue(_ entry: Entry, on executor: Int) {
        if executors[executor].busy >= slots, freeSlots > 0, case .task = entry { queuedWhileSlotsFree += 1 }
        executors[executor].queue.append(entry)
        startNext(on: executor)
    }

    /// Starts what the executor's queue holds while it has free slots.
    mutating func startNext(on executor: Int) {
        while executors[executor].busy < slots, let entry = executors[executor].popFront() {
            executors[executor].busy += 1
            freeSlots -= 1
            switch entry {
            case .task(let job, let duration):
                schedule(.taskEnds(executor: executor, job: job), after: duration)
            case .reservation(let job):
                jobs[job].reservedOn.removeAll { $0 == executor }
                messages += 1  // asks for a task; the slot waits for the answer
                schedule(.askReachesScheduler(executor: executor, job: job), after: hop)
            }
        }
    }

    /// Ideal: starts the oldest waiting task on the executor. False when none waits.
    @discardableResult
    mutating func startWaitingTask(on executor: Int) -> Bool {
        guard waitingHead < waitingTasks.count else { return false }
        let (job, task) = waitingTasks[waitingHead]
        waitingHead += 1
        executors[executor].busy += 1
        freeSlots -= 1
        jobs[job].launched += 1
        schedule(.taskEnds(executor: executor, job: job), after: trace.durations[job][task])
        return true
    }

    /// Central: the leader places one task at a time, each taking `leaderServiceTime`.
    mutating func wakeLeader() {
        guard !leaderScheduled, leaderInboxHead < leaderInbox.count, leaderFreeTotal > 0 else { return }
        leaderScheduled = true
        let start = max(now, leaderBusyUntil)
        leaderBusyUntil = start + configuration.leaderServiceTime
        schedule(.leaderReady, after: leaderBusyUntil - now)
    }

    mutating func placeOneCentrally() {
        guard leaderInboxHead < leaderInbox.count, leaderFreeTotal > 0 else { return }
        let executor = leastLoadedKnownFree()
        let (job, task) = leaderInbox[leaderInboxHead]
        leaderInboxHead += 1
        leaderFree[executor] -= 1
        leaderFreeTotal -= 1
        messages += 1
        schedule(.taskReaches(executor: executor, job: job, duration: trace.durations[job][task]), after: hop)
        wakeLeader()
    }

    /// The executor with the most free slots as the leader knows them (Drover's least utilised).
    func leastLoadedKnownFree() -> Int {
        var best = 0
        for executor in leaderFree.indices where leaderFree[executor] > leaderFree[best] { best = executor }
        return best
    }
}
