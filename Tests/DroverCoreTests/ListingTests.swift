import DroverClient
import DroverProtocol
import Testing

@testable import DroverStore

/// `drover jobs` a page at a time: a page reads the records it shows (issue 15).
@Suite("Listing jobs a page at a time", .timeLimit(.minutes(2)))
struct ListingTests {
    @Test func pagesFollowSubmissionOrderAndReadOnlyWhatTheyShow() async throws {
        let cluster = try await Cluster.start("listing")
        try await cluster.with(handlers: SchedulerTests.handlers) { client in
            var ids: [String] = []
            for index in 0..<5 {
                ids.append(try await client.submit(JobSpec(name: index == 3 ? "special" : "plain", method: "echo", arguments: ["i": .number(Double(index))])))
            }
            for id in ids { _ = try await withDiagnosis(client, id) { try await finalRecord(client, id) } }
            let special = ids[3]
            // Jobs submitted within one millisecond are ordered by id: the order a page follows.
            ids.sort(by: JobStore.submissionOrder)
            let first = try await client.page(limit: 2)
            #expect(first.records.map(\.id) == Array(ids[0..<2]))
            #expect(first.read == 2, "a page of 2 reads 2 records")
            #expect(first.next == ids[1])
            let second = try await client.page(after: first.next, limit: 2)
            #expect(second.records.map(\.id) == Array(ids[2..<4]))
            let last = try await client.page(after: second.next, limit: 2)
            #expect(last.records.map(\.id) == [ids[4]])
            #expect(last.next == nil)
            let named = try await client.page(name: "special", limit: 10)
            #expect(named.records.map(\.id) == [special])
            #expect(try await client.page(states: [.running], limit: 10).records.isEmpty)
            #expect(try await client.page(states: [.succeeded], limit: 10).records.count == 5)
        }
        await cluster.close()
    }
}
