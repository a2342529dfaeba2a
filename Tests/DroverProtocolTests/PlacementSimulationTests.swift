import DroverSimulation
import Testing

/// The placement simulator (issue 20): its figures follow from its model, and policies come out
/// in the order the model implies.
@Suite("Placement simulation (no server)")
struct PlacementSimulationTests {
    static func simulation(load: Double, executors: Int = 50, durations: PlacementSimulation.Durations = .exponential, seed: UInt64 = 7)
        -> PlacementSimulation
    {
        PlacementSimulation(.init(executors: executors, slotsPerExecutor: 4, tasksPerJob: 10, load: load, durations: durations, jobs: 3_000, seed: seed))
    }

    @Test func everyJobEndsAndNoneBeforeItsLongestTaskCouldHaveRun() {
        let simulation = Self.simulation(load: 0.8)
        for policy in PlacementSimulation.Policy.allCases {
            let outcome = simulation.run(policy)
            #expect(outcome.responseTimes.count == 3_000 - 300, "\(policy): every job after the warm-up ended")
            #expect(outcome.responseTimes.allSatisfy { $0 > 0 }, "\(policy)")
        }
    }

    @Test func theSameSeedGivesTheSameFigures() {
        let first = Self.simulation(load: 0.7).run(.batchLateBinding)
        let again = Self.simulation(load: 0.7).run(.batchLateBinding)
        #expect(first.responseTimes == again.responseTimes)
        #expect(first.messagesPerTask == again.messagesPerTask)
        #expect(Self.simulation(load: 0.7, seed: 8).run(.batchLateBinding).responseTimes != first.responseTimes)
    }

    @Test func noPolicyBeatsTheIdealSchedulerAndRandomIsWorstUnderLoad() {
        for durations in PlacementSimulation.Durations.allCases {
            let simulation = Self.simulation(load: 0.9, durations: durations)
            let outcomes = Dictionary(uniqueKeysWithValues: PlacementSimulation.Policy.allCases.map { ($0, simulation.run($0)) })
            let ideal = outcomes[.ideal]!
            for (policy, outcome) in outcomes where policy != .ideal {
                #expect(outcome.mean >= ideal.mean, "\(policy) \(durations): mean \(outcome.mean) below the ideal's \(ideal.mean)")
            }
            // At 90% load a random queue is often behind a long task while slots stand free
            // elsewhere: sampling and late binding avoid most of that.
            #expect(outcomes[.random]!.percentile(50) > outcomes[.powerOfTwo]!.percentile(50), "\(durations)")
            #expect(outcomes[.random]!.percentile(50) > outcomes[.batchLateBinding]!.percentile(50), "\(durations)")
            #expect(outcomes[.batch]!.percentile(50) > outcomes[.batchLateBinding]!.percentile(50), "\(durations)")
            #expect(outcomes[.random]!.tasksPlacedBehindOthers > outcomes[.batch]!.tasksPlacedBehindOthers, "\(durations)")
            #expect(outcomes[.batchLateBinding]!.tasksPlacedBehindOthers == 0, "late binding never queues a task: only reservations wait")
        }
    }

    @Test func messagesPerTaskAreWhatEachPolicySends() {
        let simulation = Self.simulation(load: 0.5)
        #expect(simulation.run(.ideal).messagesPerTask == 0)
        #expect(simulation.run(.random).messagesPerTask == 1)
        #expect(simulation.run(.powerOfTwo).messagesPerTask == 5)  // 2 probes, 2 answers, the task
        #expect(simulation.run(.batch).messagesPerTask == 5)  // 2 per probe × d = 2, the task
        #expect(abs(simulation.run(.central).messagesPerTask - 2.1) < 1e-9)  // a tenth of the submit, the placement, the end
        // Late binding: d reservations; per launched task an ask and an answer; each reservation
        // left is either asked and answered "none" or cancelled.
        let late = simulation.run(.batchLateBinding).messagesPerTask
        #expect(late >= 2 + 2 && late <= 2 + 2 + 2)
    }

    @Test func aLightlyLoadedClusterStartsTasksWithinAFewHopsOfTheIdeal() {
        let simulation = Self.simulation(load: 0.1)
        let ideal = simulation.run(.ideal).percentile(50)
        // Late binding: reservation, ask, answer — three hops of 0.5 ms before a task starts.
        #expect(simulation.run(.batchLateBinding).percentile(50) - ideal < 0.0025)
        // Central: to the leader, 10 tasks at 0.7 ms each, to the executor.
        #expect(simulation.run(.central).percentile(50) - ideal < 0.009)
    }

    @Test func configurationsThatCannotSettleAreRefused() {
        #expect(PlacementSimulation.Configuration(executors: 10, load: 1.0).problem?.contains("never settles") == true)
        #expect(PlacementSimulation.Configuration(executors: 0, load: 0.5).problem != nil)
        #expect(PlacementSimulation.Configuration(executors: 10, load: 0.5, probeRatio: 0).problem != nil)
        #expect(PlacementSimulation.Configuration(executors: 10, load: 0.5).problem == nil)
    }
}
