import DroverProtocol
import ZooKeeper

extension LeaderLoop {
    /// Tells clients whether they may submit (``Admission`` at `<root>/admission`), when it
    /// changed or `force` asks: full from `--max-waiting` waiting jobs until nine tenths of it.
    /// One fenced write per change, not per job. Without a bound, the document is emptied (not
    /// deleted: in a secured deployment the node is the admin's).
    func publishAdmission(force: Bool = false) async throws {
        guard let maxWaiting else {
            if force { try await writeAdmission([]) }
            return
        }
        let waiting = state.waitingCount
        let full = Admission.isFull(waiting: waiting, maxWaiting: maxWaiting, wasFull: admissionFull ?? false)
        guard force || full != admissionFull else { return }
        try await writeAdmission(try Codec.encode(Admission(maxWaiting: maxWaiting, waiting: waiting, full: full)))
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
            try await client.multi([leadership.fence, .create(path: layout.admission, data: data, acl: access.acl(for: .admission))])
        }
    }
}
