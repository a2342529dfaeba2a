import ArgumentParser
import Foundation
import Logging

/// `--log-level` and `--log-format`, shared by the daemons.
struct LoggingOptions: ParsableArguments {
    @Option(help: "trace, debug, info, notice, warning, error or critical (default: $DROVER_LOG_LEVEL, else info).")
    var logLevel: String?
    @Option(help: "text (one readable line per message) or json (one JSON object per line, for log collectors) (default: $DROVER_LOG_FORMAT, else text).")
    var logFormat: String?

    var level: Logger.Level? { Logger.Level(rawValue: (logLevel ?? Environment.value("DROVER_LOG_LEVEL") ?? "info").lowercased()) }
    var format: String { (logFormat ?? Environment.value("DROVER_LOG_FORMAT") ?? "text").lowercased() }

    func validate() throws {
        guard level != nil else { throw ValidationError("--log-level \(logLevel ?? Environment.value("DROVER_LOG_LEVEL") ?? ""): expected trace, debug, info, notice, warning, error or critical") }
        guard ["text", "json"].contains(format) else { throw ValidationError("--log-format \(format): expected text or json") }
    }

    /// Sends every logger of the process to standard error, in the chosen format and from the chosen level.
    func bootstrap() {
        let level = self.level ?? .info
        let json = format == "json"
        LoggingSystem.bootstrap { label in
            if json { return JSONLogHandler(label: label, logLevel: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// One JSON object per line on standard error: `time` (ISO 8601, UTC, milliseconds), `level`,
/// `label`, `message`, `source` and the metadata as strings under `metadata`.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(label: String, logLevel: Logger.Level) {
        self.label = label
        self.logLevel = logLevel
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = self.metadata
        if let explicit = event.metadata { merged.merge(explicit) { _, new in new } }
        if let error = event.error { merged["error"] = "\(error)" }
        let entry = Entry(
            time: Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted)), level: event.level.rawValue,
            label: label, message: event.message.description, source: event.source, metadata: merged.isEmpty ? nil : merged.mapValues { "\($0)" })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard var data = try? encoder.encode(entry) else { return }
        data.append(UInt8(ascii: "\n"))
        // One write per line, so lines of concurrent loggers do not interleave.
        data.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    private struct Entry: Encodable {
        let time: String
        let level: String
        let label: String
        let message: String
        let source: String
        let metadata: [String: String]?
    }
}
