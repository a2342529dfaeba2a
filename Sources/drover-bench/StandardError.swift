#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The process's standard error: diagnostics and progress go here, so standard output carries
/// only the results (a table, or one JSON object with `--json`).
enum StandardError {
    /// Writes `text` followed by a newline.
    static func writeLine(_ text: String) {
        write(text + "\n")
    }

    /// Writes `text` as is.
    static func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// True when standard error is a terminal (progress can then redraw one line in place).
    static var isTerminal: Bool { isatty(STDERR_FILENO) == 1 }
}
