import ArgumentParser
import DroverStore
import Foundation
import Yams
import ZooKeeperTLS

/// The `drover` command.
@main
struct Drover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drover",
        abstract: "Drover: a distributed job scheduler coordinated through ZooKeeper.",
        discussion: """
            Start a local ZooKeeper ensemble with `Deploy/zk-ensemble start --nodes 3` (or `make run`),
            then point commands at it with --zk or the DROVER_ZK environment variable.
            """,
        subcommands: [
            Submit.self, Jobs.self, Status.self, ResultCommand.self, Logs.self, Cancel.self, Stop.self, Suspend.self, Resume.self, Trigger.self, Inject.self, Executors.self, Drain.self, Undrain.self, Forget.self, SetAside.self,
            SpecCommand.self, UnitsCommand.self,
            ManagerCommand.self, ExecutorCommand.self, InitCommand.self, DevCommand.self, Tour.self, Demo.self,
        ]
    )
}

/// Where ZooKeeper is: shared by every subcommand.
struct ZooKeeperOptions: ParsableArguments {
    @Option(
        name: .customLong("zk"),
        help: ArgumentHelp(
            "ZooKeeper connection string host:port[,host:port...][/chroot] (default: $DROVER_ZK, else `zk:` in the config file ($DROVER_CONFIG or ~/.config/drover/config.yaml), else 127.0.0.1:2181).",
            valueName: "hosts"))
    var connectionString: String?

    @Option(help: "Seconds to wait for ZooKeeper before giving up.")
    var connectTimeout: Double = 10

    @Option(
        help: ArgumentHelp(
            "Credentials file (mode 0600, written by `drover init`) for a secured deployment (default: $DROVER_CREDENTIALS, else `credentials:` in the config file; none for an open deployment).",
            valueName: "file"))
    var credentials: String?

    @Option(
        name: .customLong("zk-ca"),
        help: ArgumentHelp(
            "Reach ZooKeeper over TLS, trusting the certificate authorities in this PEM file; --zk then names the servers' secureClientPorts (default: $DROVER_ZK_CA, else `tls: ca:` in the config file; none: plain TCP). docs/SECURITY.md says how.",
            valueName: "file"))
    var zooKeeperCA: String?

    @Option(
        name: .customLong("zk-cert"),
        help: ArgumentHelp(
            "With --zk-ca: a client certificate (PEM) to show ZooKeeper, for its x509 authentication (default: $DROVER_ZK_CERT, else `tls: certificate:`).",
            valueName: "file"))
    var zooKeeperCertificate: String?

    @Option(
        name: .customLong("zk-key"),
        help: ArgumentHelp(
            "The private key (PEM) of --zk-cert (default: $DROVER_ZK_KEY, else `tls: key:`).", valueName: "file"))
    var zooKeeperKey: String?

    /// Flags, then the environment, then the config file, then the default.
    var resolvedConnectionString: String {
        connectionString ?? Environment.value("DROVER_ZK") ?? ConfigFile.load()?.zk ?? "127.0.0.1:2181"
    }

    /// The credentials file to use, if any: flag, environment, config file.
    var credentialsFile: String? {
        credentials ?? Environment.value("DROVER_CREDENTIALS") ?? ConfigFile.load()?.credentials
    }

    /// TLS to ZooKeeper, when asked for: flags, then the environment, then the config file.
    var tls: TLSBridgeConfiguration? {
        let config = ConfigFile.load()?.tls
        guard let ca = zooKeeperCA ?? Environment.value("DROVER_ZK_CA") ?? config?.ca else { return nil }
        return TLSBridgeConfiguration(
            certificateAuthorityFile: ca,
            certificateFile: zooKeeperCertificate ?? Environment.value("DROVER_ZK_CERT") ?? config?.certificate,
            privateKeyFile: zooKeeperKey ?? Environment.value("DROVER_ZK_KEY") ?? config?.key)
    }

    /// The credentials in force, read from ``credentialsFile``.
    func resolvedCredentials() throws -> Credentials? {
        guard let file = credentialsFile else { return nil }
        do {
            return try Credentials.read(file: file)
        } catch {
            throw ExitMessage("\(error)")
        }
    }

    func validate() throws {
        guard connectTimeout > 0 else { throw ValidationError("--connect-timeout must be positive") }
        if let connectionString, connectionString.isEmpty || connectionString.contains(" ") {
            throw ValidationError("--zk must look like host:port[,host:port...][/chroot]")
        }
        if (zooKeeperCertificate != nil || zooKeeperKey != nil) && zooKeeperCA == nil && Environment.value("DROVER_ZK_CA") == nil
            && ConfigFile.load()?.tls?.ca == nil
        {
            throw ValidationError("--zk-cert and --zk-key are for TLS: add --zk-ca FILE (the authorities that signed the servers' certificates)")
        }
        if (zooKeeperCertificate == nil) != (zooKeeperKey == nil) {
            throw ValidationError("--zk-cert and --zk-key go together: give both, or neither")
        }
    }
}

/// `~/.config/drover/config.yaml` (or `$DROVER_CONFIG`): settings below flags and environment.
///
/// ```yaml
/// zk: 10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181/drover
/// credentials: /etc/drover/client.json
/// tls:                       # TLS to ZooKeeper (zk: then names the secureClientPorts)
///   ca: /etc/drover/zk-ca.pem
///   certificate: /etc/drover/client.pem   # optional, for x509 authentication
///   key: /etc/drover/client.key
/// ```
struct ConfigFile: Decodable {
    var zk: String?
    /// A credentials file (its path; the secret stays in the file).
    var credentials: String?
    /// TLS to ZooKeeper.
    var tls: TLS?

    struct TLS: Decodable {
        var ca: String?
        var certificate: String?
        var key: String?
    }

    static var path: String {
        if let path = Environment.value("DROVER_CONFIG") { return path }
        let base = Environment.value("XDG_CONFIG_HOME") ?? ((Environment.value("HOME") ?? "/root") + "/.config")
        return base + "/drover/config.yaml"
    }

    /// The config file, or nil when there is none. A file that cannot be read is reported
    /// and ignored rather than silently used half-way.
    static func load() -> ConfigFile? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            return try YAMLDecoder().decode(ConfigFile.self, from: String(decoding: data, as: UTF8.self))
        } catch {
            FileHandle.standardError.write(Data("drover: ignoring \(path): \(error)\n".utf8))
            return nil
        }
    }
}
