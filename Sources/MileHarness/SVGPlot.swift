import Foundation

/// Global accuracy against trainable % (log scale), ours and the paper's, as a hand-written SVG.
enum SVGPlot {
    static let width = 720.0, height = 440.0
    static let left = 60.0, right = 200.0, top = 40.0, bottom = 50.0
    static let minExponent = -2.0, maxExponent = 2.0  // 0.01 % .. 100 %

    static func render(_ table: ExperimentTable, rows: [ReportRow], references: [ReferenceResult] = []) -> String {
        var parts: [String] = [
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">",
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
            "<text x=\"\(left)\" y=\"22\" font-size=\"14\">\(escape(table.name)): Global accuracy vs trainable parameters</text>",
        ]
        parts += axes()
        parts += references.flatMap(referenceLine)
        // Points carry the row's number; the key on the right names the rows (labels beside points overlap).
        for (index, row) in rows.enumerated() {
            let number = String(index + 1)
            let paper = row.published.flatMap { published in published.params.flatMap { p in published.global.map { (p, $0) } } }
            let ours = oursPoint(row)
            if let paper, let ours {
                parts.append(line(from: paper, to: ours, attributes: "stroke=\"#999\" stroke-dasharray=\"3,3\""))
            }
            if let paper {
                parts.append(circle(paper, attributes: "fill=\"white\" stroke=\"#d62728\" stroke-width=\"1.5\""))
                parts.append(label(number, at: paper))
            }
            if let ours {
                if let ci = row.statistics?.intervals.global { parts += errorBar(at: ours.0, ci) }
                parts.append(circle(ours, attributes: "fill=\"#1f77b4\""))
                parts.append(label(number, at: ours))
            }
            let keyY = top + 60 + Double(index) * 15
            parts.append("<text x=\"\(f(width - right + 14))\" y=\"\(f(keyY))\">\(number). \(escape(row.label))\(ours == nil ? " (\(row.pendingWord))" : "")</text>")
        }
        parts += legend()
        parts.append("</svg>")
        return parts.joined(separator: "\n") + "\n"
    }

    static func oursPoint(_ row: ReportRow) -> (Double, Double)? {
        guard let percent = MeanStd(row.runs.map { ($0.results.paperScale ?? $0.results.runScale).percent }),
              let global = MeanStd(row.runs.map(\.results.scores.global)) else { return nil }
        return (percent.mean, global.mean)
    }

    /// The 95 % bootstrap CI of our Global as a vertical bar with caps.
    static func errorBar(at percent: Double, _ ci: Interval) -> [String] {
        let px = x(percent), low = y(ci.low), high = y(ci.high)
        let style = "stroke=\"#1f77b4\" stroke-width=\"1.2\""
        return ["<line x1=\"\(f(px))\" y1=\"\(f(low))\" x2=\"\(f(px))\" y2=\"\(f(high))\" \(style)/>",
                "<line x1=\"\(f(px - 4))\" y1=\"\(f(low))\" x2=\"\(f(px + 4))\" y2=\"\(f(low))\" \(style)/>",
                "<line x1=\"\(f(px - 4))\" y1=\"\(f(high))\" x2=\"\(f(px + 4))\" y2=\"\(f(high))\" \(style)/>"]
    }

    /// A reference row's Global as a horizontal dashed line across the plot, labelled at its right end.
    static func referenceLine(_ reference: ReferenceResult) -> [String] {
        let py = y(reference.scores.global), x0 = left, x1 = width - right
        let name = reference.kind == .blind ? "blind train-prior" : "nearest-image"
        return ["<line x1=\"\(f(x0))\" y1=\"\(f(py))\" x2=\"\(f(x1))\" y2=\"\(f(py))\" stroke=\"#2ca02c\" stroke-dasharray=\"6,3\"/>",
                "<text x=\"\(f(x1 - 4))\" y=\"\(f(py - 4))\" text-anchor=\"end\" font-size=\"10\" fill=\"#2ca02c\">\(escape(name)) \(String(format: "%.2f", reference.scores.global))</text>"]
    }

    static func x(_ percent: Double) -> Double {
        let clamped = min(max(percent, pow(10, minExponent)), pow(10, maxExponent))
        return left + (log10(clamped) - minExponent) / (maxExponent - minExponent) * (width - left - right)
    }

    static func y(_ accuracy: Double) -> Double {
        top + (1 - min(max(accuracy, 0), 100) / 100) * (height - top - bottom)
    }

    static func axes() -> [String] {
        var out: [String] = []
        let x0 = left, x1 = width - right, y0 = height - bottom, y1 = top
        out.append("<line x1=\"\(f(x0))\" y1=\"\(f(y0))\" x2=\"\(f(x1))\" y2=\"\(f(y0))\" stroke=\"black\"/>")
        out.append("<line x1=\"\(f(x0))\" y1=\"\(f(y0))\" x2=\"\(f(x0))\" y2=\"\(f(y1))\" stroke=\"black\"/>")
        for exponent in stride(from: minExponent, through: maxExponent, by: 1) {
            let value = pow(10, exponent)
            let px = x(value)
            out.append("<line x1=\"\(f(px))\" y1=\"\(f(y0))\" x2=\"\(f(px))\" y2=\"\(f(y1))\" stroke=\"#eee\"/>")
            let text = exponent < 0 ? String(format: "%.2f", value) : String(format: "%.0f", value)
            out.append("<text x=\"\(f(px))\" y=\"\(f(y0 + 16))\" text-anchor=\"middle\">\(text)</text>")
        }
        for accuracy in stride(from: 0.0, through: 100, by: 20) {
            let py = y(accuracy)
            out.append("<line x1=\"\(f(x0))\" y1=\"\(f(py))\" x2=\"\(f(x1))\" y2=\"\(f(py))\" stroke=\"#eee\"/>")
            out.append("<text x=\"\(f(x0 - 8))\" y=\"\(f(py + 4))\" text-anchor=\"end\">\(Int(accuracy))</text>")
        }
        out.append("<text x=\"\(f((x0 + x1) / 2))\" y=\"\(f(height - 12))\" text-anchor=\"middle\">trainable parameters, % (log scale)</text>")
        out.append("<text x=\"16\" y=\"\(f((y0 + y1) / 2))\" transform=\"rotate(-90 16 \(f((y0 + y1) / 2)))\" text-anchor=\"middle\">Global accuracy, %</text>")
        return out
    }

    static func legend() -> [String] {
        let lx = width - right + 20
        return [
            "<circle cx=\"\(f(lx))\" cy=\"\(f(top + 10))\" r=\"5\" fill=\"#1f77b4\"/>",
            "<text x=\"\(f(lx + 10))\" y=\"\(f(top + 14))\">ours</text>",
            "<circle cx=\"\(f(lx))\" cy=\"\(f(top + 30))\" r=\"5\" fill=\"white\" stroke=\"#d62728\" stroke-width=\"1.5\"/>",
            "<text x=\"\(f(lx + 10))\" y=\"\(f(top + 34))\">paper</text>",
        ]
    }

    static func circle(_ point: (Double, Double), attributes: String) -> String {
        "<circle cx=\"\(f(x(point.0)))\" cy=\"\(f(y(point.1)))\" r=\"5\" \(attributes)/>"
    }

    static func line(from a: (Double, Double), to b: (Double, Double), attributes: String) -> String {
        "<line x1=\"\(f(x(a.0)))\" y1=\"\(f(y(a.1)))\" x2=\"\(f(x(b.0)))\" y2=\"\(f(y(b.1)))\" \(attributes)/>"
    }

    static func label(_ text: String, at point: (Double, Double)) -> String {
        "<text x=\"\(f(x(point.0) + 6))\" y=\"\(f(y(point.1) - 6))\" font-size=\"10\">\(escape(text))</text>"
    }

    static func f(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
