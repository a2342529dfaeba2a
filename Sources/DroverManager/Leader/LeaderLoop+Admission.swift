import DroverProtocol
import ZooKeeper

extension LeaderLoop {
    /// Tells clients whether they may submit (``Admission`` at `<root>/admission`), when it
    /// changed or `force` asks: full from `--max-waiting` waiting jobs until nine tenths of it.
    /// One fenced write per change, not per job. Without a bound, the document is emptied (not
    /// deleted: in a secured deployment the node is the admin's).
    func publishAdmission(force: Bool = false) async throws {
        guard admissionWritable else { return }
        guard let maxWaiting else {
            if force { try await writeAdmission([]) }
            return
        }
        let waiting = state.waitingCount
        if admissionFull == nil {
            // A new leader goes on from what the last one said, so a fail-over does not open a full
            // line early (between nine tenths and the bound).
            admissionFull = (try? await client.getData(layout.admission).data).flatMap { try? Codec.decode(Admission.self, $0) }?.full ?? false
        }
        let full = Admission.isFull(waiting: waiting, maxWaiting: maxWaiting, wasFull: admissionFull ?? false)
        // `waiting` is refreshed too when it moved by a tenth of the bound (at most once a second),
        // so a client can refuse a bulk submit that would pass it.
        let moved = abs(waiting - admissionWaiting) >= max(1, maxWaiting / 10) && clock.now - admissionWrittenAt >= .seconds(1)
        guard force || full != admissionFull || moved else { return }
        try await writeAdmission(try Codec.encode(Admission(maxWaiting: maxWaiting, waiting: waiting, full: full)))
        guard admissionWritable else { return }
        admissionWaiting = waiting
        admissionWrittenAt = clock.now
        if full != (admissionFull ?? false) {
            if full {
                logger.warning("the waiting line is full: clients refuse new submits", metadata: ["waiting": "\(waiting)", "limit": "\(maxWaiting)"])
            } else {
                logger.info("the waiting line has room again: clients submit", metadata: ["waiting": "\(waiting)", "limit": "\(maxWaiting)"])
            }
        }
        admissionFull = full
    }

    private func writeAdmission(_ data: [UInt8]) async throws {
        do {
            try await client.multi([leadership.fence, .setData(path: layout.admission, data: data)])
        } catch let error as ZooKeeperError where error.code == .noNode && error.failedOperationIndex == 1 {
            guard !data.isEmpty else { return }
            do {
                try await client.multi([leadership.fence, .create(path: layout.admission, data: data, acl: access.acl(for: .admission))])
            } catch let error as ZooKeeperError where error.code == .noAuth {
                // A deployment secured before this document existed: only the admin may create
                // it. Leading matters more than the bound.
                admissionWritable = false
                logger.error(
                    "--max-waiting is not in force: this manager may not create \(layout.admission); run `drover init --credentials <admin file>` once to add it")
            }
        }
    }
}
