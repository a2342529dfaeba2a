/// A plain-text table with aligned columns: the first column left-aligned (labels), the others
/// right-aligned (numbers), columns separated by two spaces.
struct TextTable {
    var header: [String]
    var rows: [[String]] = []

    init(_ header: [String]) {
        self.header = header
    }

    mutating func append(_ row: [String]) {
        rows.append(row)
    }

    /// The table as lines, each prefixed with `indent`, without trailing spaces.
    func render(indent: String = "  ") -> String {
        let all = [header] + rows
        let columns = all.map(\.count).max() ?? 0
        let widths = (0..<columns).map { column in
            all.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0
        }
        return all.map { row in
            let cells = (0..<columns).map { column -> String in
                let cell = column < row.count ? row[column] : ""
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                return column == 0 ? cell + padding : padding + cell
            }
            let line = indent + cells.joined(separator: "  ")
            return String(line.reversed().drop(while: { $0 == " " }).reversed())
        }.joined(separator: "\n")
    }
}

/// Number formatting for people, independent of the locale.
enum Format {
    /// `20000` → `20,000`.
    static func count(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var grouped = ""
        for (offset, digit) in digits.enumerated() {
            if offset > 0 && (digits.count - offset) % 3 == 0 { grouped.append(",") }
            grouped.append(digit)
        }
        return value < 0 ? "-" + grouped : grouped
    }

    /// `fixed(1.23456, decimals: 2)` → `1.23`.
    static func fixed(_ value: Double, decimals: Int) -> String {
        guard value.isFinite else { return "\(value)" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = Int((value * scale).rounded())
        let whole = scaled.magnitude / UInt(scale)
        let fraction = String(scaled.magnitude % UInt(scale))
        let sign = scaled < 0 ? "-" : ""
        guard decimals > 0 else { return sign + count(Int(whole)) }
        return sign + count(Int(whole)) + "." + String(repeating: "0", count: decimals - fraction.count) + fraction
    }
}
