import Foundation
import MileModel

/// The table as a hand-written SVG: Global, Opened and Closed against trainable % (log scale) and Global
/// against the paper-scale memory, ours (filled, with 95 % CI bars) beside the paper's (hollow), one marker
/// shape per PEFT method, the reference rows as dashed lines, a numbered key naming the rows.
enum SVGPlot {
    static let width = 1090.0, height = 660.0
    static let panelWidth = 320.0, panelHeight = 220.0
    static let keyLeft = 830.0

    static func render(_ table: ExperimentTable, rows: [ReportRow], references: [ReferenceResult] = []) -> String {
        var parts: [String] = [
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">",
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
            "<text x=\"60\" y=\"22\" font-size=\"14\">\(escape(table.name)): \(escape(table.title))</text>",
            "<text x=\"60\" y=\"40\" font-size=\"11\" fill=\"#444\">\(escape(caption(rows)))</text>",
        ]
        for (index, panel) in Panel.all.enumerated() {
            let frame = Frame(left: 70 + Double(index % 2) * 410, top: 70 + Double(index / 2) * 290, panel: panel, rows: rows)
            parts += frame.draw(rows, references: references)
        }
        parts += key(rows) + legend(rows)
        parts.append("</svg>")
        return parts.joined(separator: "\n") + "\n"
    }

    /// Scale, data, seeds and what the marks mean, from the rows' cells and runs.
    static func caption(_ rows: [ReportRow]) -> String {
        let scales = Set(rows.flatMap(\.cells).compactMap { $0.config["model.scale"]?.stringValue }).sorted()
        let questions = rows.lazy.flatMap(\.runs).first.map { $0.results.scores.openedCount + $0.results.scores.closedCount }
        let seeds = rows.map(\.runs.count).max() ?? 0
        return "scale \(scales.joined(separator: ", ")) · SLAKE-en test" + (questions.map { ", \($0) questions" } ?? "")
            + " · up to \(seeds) seed\(seeds == 1 ? "" : "s") per row · bars: 95 % bootstrap CI · dashed green: reference rows"
    }

    /// A row's method, for its marker: the first adapter among its modes, else full training.
    enum Method: String, CaseIterable {
        case lora = "LoRA", ia3 = "IA3", prefix = "Prefix", ptv2 = "PTV2", full = "trained / frozen only"

        init(_ modes: [ModuleMode]) {
            let adapters: [(ModuleMode, Method)] = [(.lora, .lora), (.ia3, .ia3), (.prefix, .prefix), (.ptv2, .ptv2)]
            self = adapters.first { modes.contains($0.0) }?.1 ?? .full
        }
    }

    /// The marker of `method` centred at (px, py).
    static func marker(_ method: Method, at px: Double, _ py: Double, _ attributes: String) -> String {
        switch method {
        case .lora: return "<circle cx=\"\(f(px))\" cy=\"\(f(py))\" r=\"5\" \(attributes)/>"
        case .ia3: return "<rect x=\"\(f(px - 4.5))\" y=\"\(f(py - 4.5))\" width=\"9\" height=\"9\" \(attributes)/>"
        case .prefix: return "<polygon points=\"\(f(px)),\(f(py - 6)) \(f(px + 5.5)),\(f(py + 4)) \(f(px - 5.5)),\(f(py + 4))\" \(attributes)/>"
        case .ptv2: return "<polygon points=\"\(f(px)),\(f(py - 6)) \(f(px + 6)),\(f(py)) \(f(px)),\(f(py + 6)) \(f(px - 6)),\(f(py))\" \(attributes)/>"
        case .full: return "<polygon points=\"\(cross(px, py))\" \(attributes)/>"
        }
    }

    static func cross(_ px: Double, _ py: Double) -> String {
        let a = 2.0, b = 5.5
        let points = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
        return points.map { "\(f(px + $0.0)),\(f(py + $0.1))" }.joined(separator: " ")
    }

    static let oursStyle = "class=\"ours\" fill=\"#1f77b4\""
    static let paperStyle = "class=\"paper\" fill=\"white\" stroke=\"#d62728\" stroke-width=\"1.5\""

    /// Numbered rows with their markers (labels beside the points would overlap).
    static func key(_ rows: [ReportRow]) -> [String] {
        rows.enumerated().flatMap { index, row -> [String] in
            let y = 150 + Double(index) * 15
            let done = !row.runs.isEmpty
            let style = done ? "class=\"key\" fill=\"#1f77b4\"" : "class=\"key\" fill=\"white\" stroke=\"#999\""
            return [marker(Method(row.assignment.modes), at: keyLeft + 6, y - 4, style),
                    "<text x=\"\(f(keyLeft + 16))\" y=\"\(f(y))\">\(index + 1). \(escape(row.label))\(done ? "" : " (\(row.pendingWord))")</text>"]
        }
    }

    static func legend(_ rows: [ReportRow]) -> [String] {
        var out = [marker(.lora, at: keyLeft + 6, 74, "class=\"legend\" fill=\"#1f77b4\""),
                   "<text x=\"\(f(keyLeft + 16))\" y=\"78\">ours (mean over seeds)</text>",
                   marker(.lora, at: keyLeft + 6, 92, "class=\"legend\" fill=\"white\" stroke=\"#d62728\" stroke-width=\"1.5\""),
                   "<text x=\"\(f(keyLeft + 16))\" y=\"96\">paper</text>"]
        let methods = Method.allCases.filter { method in rows.contains { Method($0.assignment.modes) == method } }
        out.append("<text x=\"\(f(keyLeft))\" y=\"118\" fill=\"#444\">markers: \(methods.map(\.rawValue).joined(separator: ", "))</text>")
        return out
    }

    static func f(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
