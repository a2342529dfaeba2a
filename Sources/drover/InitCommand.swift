import ArgumentParser
import DroverProtocol
import DroverStore
import Foundation
import Synchronization
import ZooKeeper
import ZooKeeperTLS

/// `drover init`: secures a deployment with ZooKeeper ACL roles (docs/SECURITY.md).
struct InitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Secure a deployment: ZooKeeper ACL roles, and a credentials file for each role.",
        discussion: """
            The first run on an open deployment (new, or running for a while: no job is lost) makes \
            credentials for the roles admin, manager, client and reader, and for each --executor; writes \
            one file per role (mode 0600) to --credentials-dir; creates the tree and gives every node the \
            ACL of the role table. Stop managers and executors first: started without credentials, they \
            would be locked out half-way. Then start them with --credentials (or $DROVER_CREDENTIALS).

            Run it again as the admin to add executors, or to rotate credentials:
              drover init --credentials drover-credentials/admin.json --executor e3
              drover init --credentials drover-credentials/admin.json --rotate manager --credentials-dir new-credentials
            (or, once --certificate admin=... gave the admin role to a certificate, with that certificate instead:
              drover init --zk-ca ca.pem --zk-cert admin.pem --zk-key admin.key --executor e3)
            Each executor needs its own identity; an executor without one refuses to start and says so.
            After a rotation, restart that role's processes with the new file: the old one no longer works.

            Over TLS (--zk-ca, and servers with ZooKeeper's x509 provider), a role can be held by a client \
            certificate instead of a password: --certificate manager=CN=drover-manager gives the manager's \
            rights to any session showing a certificate with that subject (as ZooKeeper writes it, RFC 2253: \
            CN=a,O=b), so that process needs no --credentials. --certificate ROLE= removes it again.
              drover init --credentials drover-credentials/admin.json --zk-ca ca.pem \\
                --certificate manager=CN=drover-manager --certificate executor:e1=CN=e1.example.com
            """)

    @OptionGroup var zookeeper: ZooKeeperOptions
    @Option(help: "Where to write the credentials files (created with mode 0700; existing files are never overwritten).")
    var credentialsDir: String = "drover-credentials"
    @Option(name: .customLong("executor"), help: ArgumentHelp("An executor id to make credentials for (repeatable).", valueName: "id"))
    var executors: [String] = []
    @Option(
        help: ArgumentHelp(
            "A role whose credentials to replace: admin, manager, client, reader or executor:<id> (repeatable; needs the admin's credentials).",
            valueName: "role"))
    var rotate: [String] = []
    @Option(
        name: .customLong("certificate"),
        help: ArgumentHelp(
            "A TLS client certificate that holds a role: ROLE=SUBJECT (manager=CN=drover-manager) or ROLE=@CERT.pem (its subject; repeatable; ROLE= removes one).",
            valueName: "role=subject"))
    var certificateFlags: [String] = []

    /// The roles `--certificate` names, with their subjects ("" removes); `@FILE` is the subject
    /// of the certificate in FILE, as ZooKeeper will name it.
    func certificates() throws -> [(role: String, subject: String)] {
        try certificateFlags.compactMap { flag in
            guard let equals = flag.firstIndex(of: "=") else { return nil }
            let value = String(flag[flag.index(after: equals)...])
            guard value.hasPrefix("@") else { return (String(flag[..<equals]), value) }
            do {
                return (String(flag[..<equals]), try CertificateSubject.rfc2253(ofPEMFile: String(value.dropFirst())))
            } catch {
                throw ExitMessage("--certificate \(flag): \(error)")
            }
        }
    }

    func validate() throws {
        for flag in certificateFlags {
            guard let equals = flag.firstIndex(of: "="), AccessPolicy.role(named: String(flag[..<equals])) != nil else {
                throw ValidationError("--certificate \(flag): expected ROLE=SUBJECT, ROLE one of admin, manager, client, reader or executor:<id>")
            }
            let subject = flag[flag.index(after: equals)...]
            if !subject.isEmpty && !subject.hasPrefix("@") && !subject.contains("=") {
                throw ValidationError("--certificate \(flag): write the subject as ZooKeeper names it, e.g. CN=drover-manager")
            }
        }
        for id in executors where !Layout.isValidID(id) {
            throw ValidationError("--executor \(id): use letters, digits, '.', '_' or '-'")
        }
        for role in rotate where AccessPolicy.role(named: role) == nil {
            throw ValidationError("--rotate \(role): expected admin, manager, client, reader or executor:<id>")
        }
    }



    func run() async throws {
        let zk = try await connect(zookeeper, sessionTimeout: 10)
        do {
            try await secure(zk)
        } catch {
            await zk.close()
            throw Access.explain(error, layout: Layout(), credentials: try? zookeeper.resolvedCredentials())
        }
        await zk.close()
    }

    private func secure(_ zk: ZooKeeperClient) async throws {
        let layout = Layout()
        let given = try zookeeper.resolvedCredentials()
        let setup = AccessSetup(zookeeper: zk, layout: layout)
        let access: Access
        do {
            access = try await Access.load(zk, layout: layout)
        } catch let error as DroverError {
            throw ExitMessage("\(error.message). drover init on a secured deployment takes the admin's credentials.")
        }

        var policy: AccessPolicy
        var made: [Credentials] = []
        // A rotation goes in two walks: first old and new identities side by side (processes
        // that follow the policy switch meanwhile, and nothing is locked out half-way), then the
        // new alone.
        var phases: [AccessPolicy] = []
        func with(_ policy: AccessPolicy, retiring: [String: String]) -> AccessPolicy {
            var policy = policy
            policy.retiring = retiring
            return policy
        }
        switch access {
        case .open:
            guard rotate.isEmpty else { throw ExitMessage("this deployment is open: there are no credentials to rotate (drover init without --rotate secures it)") }
            let running = try await setup.runningDaemons()
            guard running.isEmpty else {
                throw ExitMessage(
                    "these are running without credentials: \(running.joined(separator: ", ")). Stop them first (their jobs stay "
                        + "queued in ZooKeeper), run drover init again, then start them with --credentials.")
            }
            made = [.generate(.admin), .generate(.manager), .generate(.client), .generate(.reader)]
            made += Set(executors).sorted().map { Credentials.generate(.executor, executor: $0) }
            policy = AccessPolicy(admin: made[0], manager: made[1], client: made[2], reader: made[3], executors: Array(made.dropFirst(4)))
        case .secured(let existing):
            // The admin: by its password, or by a TLS client certificate the policy gives the role.
            let byPassword = given.map { $0.role == .admin && ($0.digestID == existing.admin || existing.retiring?["admin"] == $0.digestID) } ?? false
            let byCertificate = zk.certificateIdentity.map { existing.certificates?["admin"] == $0 } ?? false
            guard byPassword || byCertificate else {
                let shown = zk.certificateIdentity.map { " (the certificate this process shows, x509:\($0), does not hold the admin role)" } ?? ""
                throw ExitMessage(
                    "this deployment is secured already: run drover init as its admin — with the admin's credentials (--credentials admin.json), "
                        + "or over TLS with a certificate that holds the admin role (--zk-cert, --zk-key)\(shown) — "
                        + "to add executors, rotate credentials, or finish a run that stopped half-way")
            }
            policy = existing
            // A run that stopped half-way may have left identities retiring: this one finishes it.
            policy.retiring = nil
            made = Set(executors).subtracting(existing.executors.keys).sorted().map { Credentials.generate(.executor, executor: $0) }
            for credentials in made { policy.executors[credentials.executor!] = credentials.digestID }
            var retiring: [String: String] = [:]
            for name in Set(rotate).sorted() {
                guard let (role, executor) = AccessPolicy.role(named: name) else { continue }
                if let executor, existing.executors[executor] == nil {
                    throw ExitMessage(
                        "--rotate executor:\(executor): this deployment has no executor \(executor) yet (--executor \(executor) adds it, with new credentials)")
                }
                let fresh = Credentials.generate(role, executor: executor)
                made.append(fresh)
                switch role {
                case .admin: retiring[name] = policy.admin; policy.admin = fresh.digestID
                case .manager: retiring[name] = policy.manager; policy.manager = fresh.digestID
                case .client: retiring[name] = policy.client; policy.client = fresh.digestID
                case .reader: retiring[name] = policy.reader; policy.reader = fresh.digestID
                case .executor: retiring[name] = policy.executors[executor!]; policy.executors[executor!] = fresh.digestID
                }
            }
            if !retiring.isEmpty { phases.insert(with(policy, retiring: retiring), at: 0) }
        }
        for (role, subject) in try certificates() {
            var named = policy.certificates ?? [:]
            named[role] = subject.isEmpty ? nil : subject
            policy.certificates = named.isEmpty ? nil : named
        }
        for index in phases.indices { phases[index].certificates = policy.certificates }
        if let named = policy.certificates, !certificateFlags.isEmpty {
            // One certificate, one role: an ACL keeps one entry per identity.
            let shared = Dictionary(grouping: named, by: \.value).filter { $0.value.count > 1 }
            if let (subject, roles) = shared.first {
                throw ExitMessage(
                    "--certificate: \(roles.map(\.key).sorted().joined(separator: " and ")) name the same subject \(subject); give each role its own certificate")
            }
            try await checkServersAccept(Array(named.values), zk, layout: layout)
        }
        phases.append(policy)

        let files = try write(made)
        // From here on this session must be the policy's admin: the ACLs about to be set leave
        // nobody else the right to set them.
        if let admin = made.first(where: { $0.role == .admin }) { try await zk.addAuth(credentials: admin.authentication) }
        let started = ContinuousClock.now
        let lastReport = Mutex(started)
        var count = 0
        do {
            for phase in phases {
                count = try await setup.apply(phase) { done in
                    let now = ContinuousClock.now
                    let report = lastReport.withLock { last in
                        guard now - last >= .seconds(1) else { return false }
                        last = now
                        return true
                    }
                    if report { FileHandle.standardError.write(Data("drover init: ACLs set on \(done) nodes…\n".utf8)) }
                }
            }
        } catch {
            let admin = files.first { $0.0.role == .admin }?.1 ?? given.flatMap { _ in zookeeper.credentialsFile }
            let again = admin.map { "drover init --credentials \($0)" } ?? (zk.certificateIdentity != nil ? "drover init with the admin's certificate (--zk-cert, --zk-key)" : "drover init --credentials admin.json")
            throw ExitMessage(
                "\(Access.explain(error, layout: layout, credentials: given)). Stopped half-way; the credentials written so far are kept"
                    + (files.isEmpty ? "" : " (\(files.map(\.1).joined(separator: ", ")))")
                    + ". Finish with: \(again)")
        }
        print("Secured \(layout.root): \(count) nodes follow the role table (docs/SECURITY.md).")
        for (role, subject) in (policy.certificates ?? [:]).sorted(by: { $0.key < $1.key }) {
            print("  \(role) is also held by TLS client certificates with subject \(subject) (x509:\(subject))")
        }
        if !rotate.isEmpty {
            print("Rotated: \(rotate.joined(separator: ", ")). Restart their processes with the new files; the old ones no longer work.")
        }
        if files.isEmpty {
            print("No new credentials: every executor named already has an identity.")
        } else {
            print("Credentials written (mode 0600) — hand each file to whom it is for, and nothing else:")
            for (credentials, path) in files { print("  \(path)  → \(Self.recipient(credentials))") }
        }
        if case .open = access {
            print(
                """
                Then start the daemons with their file, e.g.:
                  drover manager --credentials \(credentialsDir)/manager.json
                  drover executor --credentials \(credentialsDir)/executor-<id>.json
                  DROVER_CREDENTIALS=\(credentialsDir)/client.json drover submit -- echo hello
                """)
        }
    }

    /// Creates and deletes a node whose ACL names the certificates, before anything is changed: a
    /// server without ZooKeeper's x509 provider, or a subject it cannot read as an X.500 name, would
    /// otherwise refuse every node the policy describes — to the daemons too, once they follow it.
    private func checkServersAccept(_ subjects: [String], _ zk: ZooKeeperClient, layout: Layout) async throws {
        try await zk.createPath(layout.root)
        let acl = ACL.openUnsafe + subjects.map { ACL(permissions: .read, scheme: "x509", id: $0) }
        do {
            let probe = try await zk.create(layout.root + "/certificate-check-", mode: .ephemeralSequential, acl: acl)
            try? await zk.delete(probe)
        } catch let error as ZooKeeperError where error.code == .invalidACL {
            throw ExitMessage(
                "ZooKeeper refused an ACL naming \(subjects.joined(separator: "; ")): the servers need "
                    + "authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider, and each subject must be an "
                    + "X.500 name as ZooKeeper writes it (CN=drover-manager,O=Acme — or give --certificate ROLE=@cert.pem). Nothing was changed.")
        }
    }

    /// Writes one file per credentials into the directory, refusing before writing any when one
    /// already exists. Returns each with its path.
    private func write(_ credentials: [Credentials]) throws -> [(Credentials, String)] {
        let named = credentials.map { ($0, credentialsDir + "/" + ($0.executor.map { "executor-\($0).json" } ?? "\($0.role.rawValue).json")) }
        for (_, path) in named where FileManager.default.fileExists(atPath: path) {
            throw ExitMessage("\(path) exists already: drover init never overwrites credentials (move it away, or use another --credentials-dir)")
        }
        guard !named.isEmpty else { return [] }
        do {
            try FileManager.default.createDirectory(atPath: credentialsDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            for (credentials, path) in named {
                var bytes = try Codec.encode(credentials)
                bytes.append(UInt8(ascii: "\n"))
                try SecretFile.create(path, bytes: bytes)
            }
        } catch {
            throw ExitMessage("cannot write the credentials to \(credentialsDir): \(error)")
        }
        return named
    }

    private static func recipient(_ credentials: Credentials) -> String {
        switch credentials.role {
        case .admin: "you (drover init, and anything); keep it offline"
        case .manager: "every drover manager"
        case .executor: "drover executor \(credentials.executor ?? "") only"
        case .client: "people and programs that submit and follow jobs"
        case .reader: "dashboards and people who only look"
        }
    }
}
