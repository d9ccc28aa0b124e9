import Foundation
import MileModel

extension SVGPlot {
    /// One panel: an accuracy metric against trainable % (log) or against the paper-scale memory (linear).
    struct Panel {
        enum Axis { case params, memory }
        let metric: Metric
        let axis: Axis

        static let all = [Panel(metric: .global, axis: .params), Panel(metric: .opened, axis: .params),
                          Panel(metric: .closed, axis: .params), Panel(metric: .global, axis: .memory)]

        var metricName: String { metric.rawValue.prefix(1).uppercased() + metric.rawValue.dropFirst() }

        var title: String {
            axis == .params ? "\(metricName) vs trainable parameters" : "\(metricName) vs memory (paper scale; ours: PyTorch-equivalent)"
        }

        func ours(_ row: ReportRow) -> (x: Double, y: Double)? {
            let x: MeanStd?
            switch axis {
            case .params: x = MeanStd(row.runs.map { ($0.results.paperScale ?? $0.results.runScale).percent })
            case .memory:
                // The PyTorch-equivalent figure where it was measured (comparable with the paper's), else the engine's.
                let engine = MeanStd(row.runs.compactMap { $0.results.predictedPaperBytes.map { Double($0) / 1e9 } })
                x = row.pytorchMemoryBytes.flatMap { MeanStd([Double($0) / 1e9]) } ?? engine
            }
            guard let x, let y = MeanStd(row.runs.map { value($0.results.scores) }) else { return nil }
            return (x.mean, y.mean)
        }

        func paper(_ row: ReportRow) -> (x: Double, y: Double)? {
            guard let published = row.published, let x = axis == .params ? published.params : published.memoryGB else { return nil }
            let y: Double? = metric == .opened ? published.opened : metric == .closed ? published.closed : published.global
            return y.map { (x, $0) }
        }

        func value(_ scores: Scores) -> Double {
            metric == .opened ? scores.opened : metric == .closed ? scores.closed : scores.global
        }
    }

    /// A panel placed on the page, with its axis ranges.
    struct Frame {
        let left: Double, top: Double
        let panel: Panel
        let maxMemory: Double
        static let minExponent = -2.0, maxExponent = 2.0   // 0.01 % .. 100 %

        init(left: Double, top: Double, panel: Panel, rows: [ReportRow]) {
            self.left = left
            self.top = top
            self.panel = panel
            let xs = rows.flatMap { [panel.ours($0)?.x, panel.paper($0)?.x].compactMap { $0 } }
            maxMemory = max(5, ((xs.max() ?? 0) * 1.1 / 5).rounded(.up) * 5)
        }

        var right: Double { left + SVGPlot.panelWidth }
        var bottom: Double { top + SVGPlot.panelHeight }

        func x(_ value: Double) -> Double {
            switch panel.axis {
            case .params:
                let clamped = min(max(value, pow(10, Self.minExponent)), pow(10, Self.maxExponent))
                return left + (log10(clamped) - Self.minExponent) / (Self.maxExponent - Self.minExponent) * SVGPlot.panelWidth
            case .memory:
                return left + min(max(value, 0), maxMemory) / maxMemory * SVGPlot.panelWidth
            }
        }

        func y(_ accuracy: Double) -> Double { top + (1 - min(max(accuracy, 0), 100) / 100) * SVGPlot.panelHeight }

        /// Grid first, then the reference lines, the points and their bars, and the axes over the grid.
        func draw(_ rows: [ReportRow], references: [ReferenceResult]) -> [String] {
            var out = grid()
            out += references.flatMap(referenceLine)
            for (index, row) in rows.enumerated() { out += points(row, number: index + 1) }
            return out + axes()
        }

        func points(_ row: ReportRow, number: Int) -> [String] {
            let method = Method(row.assignment.modes)
            var out: [String] = []
            let paper = panel.paper(row), ours = panel.ours(row)
            if let paper, let ours {
                out.append("<line x1=\"\(f(x(paper.x)))\" y1=\"\(f(y(paper.y)))\" x2=\"\(f(x(ours.x)))\" y2=\"\(f(y(ours.y)))\" stroke=\"#999\" stroke-dasharray=\"3,3\"/>")
            }
            if let paper { out += [marker(method, at: x(paper.x), y(paper.y), paperStyle), label(number, paper)] }
            if let ours {
                if let ci = row.statistics?.intervals[panel.metric] { out += errorBar(at: ours.x, ci) }
                out += [marker(method, at: x(ours.x), y(ours.y), oursStyle), label(number, ours)]
            }
            return out
        }

        func label(_ number: Int, _ point: (x: Double, y: Double)) -> String {
            "<text x=\"\(f(x(point.x) + 6))\" y=\"\(f(y(point.y) - 6))\" font-size=\"9\">\(number)</text>"
        }

        /// The 95 % bootstrap CI as a vertical bar with caps.
        func errorBar(at value: Double, _ ci: Interval) -> [String] {
            let px = x(value), low = y(ci.low), high = y(ci.high)
            let style = "class=\"ci\" stroke=\"#1f77b4\" stroke-width=\"1.2\""
            return ["<line x1=\"\(f(px))\" y1=\"\(f(low))\" x2=\"\(f(px))\" y2=\"\(f(high))\" \(style)/>",
                    "<line x1=\"\(f(px - 3))\" y1=\"\(f(low))\" x2=\"\(f(px + 3))\" y2=\"\(f(low))\" \(style)/>",
                    "<line x1=\"\(f(px - 3))\" y1=\"\(f(high))\" x2=\"\(f(px + 3))\" y2=\"\(f(high))\" \(style)/>"]
        }

        /// A reference row's score as a dashed line across the panel, labelled at its right end.
        func referenceLine(_ reference: ReferenceResult) -> [String] {
            let score = panel.value(reference.scores), py = y(score)
            let name = reference.kind == .blind ? "blind train-prior" : "nearest-image"
            return ["<line x1=\"\(f(left))\" y1=\"\(f(py))\" x2=\"\(f(right))\" y2=\"\(f(py))\" stroke=\"#2ca02c\" stroke-dasharray=\"6,3\"/>",
                    "<text x=\"\(f(right - 3))\" y=\"\(f(py - 3))\" text-anchor=\"end\" font-size=\"9\" fill=\"#2ca02c\">\(escape(name)) \(String(format: "%.2f", score))</text>"]
        }

        func grid() -> [String] {
            var out: [String] = []
            for tick in xTicks() {
                out.append("<line x1=\"\(f(x(tick)))\" y1=\"\(f(bottom))\" x2=\"\(f(x(tick)))\" y2=\"\(f(top))\" stroke=\"#eee\"/>")
            }
            for accuracy in stride(from: 0.0, through: 100, by: 20) {
                out.append("<line x1=\"\(f(left))\" y1=\"\(f(y(accuracy)))\" x2=\"\(f(right))\" y2=\"\(f(y(accuracy)))\" stroke=\"#eee\"/>")
            }
            return out
        }

        func xTicks() -> [Double] {
            switch panel.axis {
            case .params: return stride(from: Self.minExponent, through: Self.maxExponent, by: 1).map { pow(10, $0) }
            case .memory: return stride(from: 0.0, through: maxMemory, by: maxMemory / 5).map { $0 }
            }
        }

        func axes() -> [String] {
            var out = ["<text x=\"\(f(left))\" y=\"\(f(top - 8))\" font-size=\"12\">\(escape(panel.title))</text>",
                       "<line x1=\"\(f(left))\" y1=\"\(f(bottom))\" x2=\"\(f(right))\" y2=\"\(f(bottom))\" stroke=\"black\"/>",
                       "<line x1=\"\(f(left))\" y1=\"\(f(bottom))\" x2=\"\(f(left))\" y2=\"\(f(top))\" stroke=\"black\"/>"]
            for tick in xTicks() {
                let text = panel.axis == .memory ? String(format: "%.0f", tick) : tick < 1 ? String(format: "%.2f", tick) : String(format: "%.0f", tick)
                out.append("<text x=\"\(f(x(tick)))\" y=\"\(f(bottom + 14))\" text-anchor=\"middle\" font-size=\"10\">\(text)</text>")
            }
            for accuracy in stride(from: 0.0, through: 100, by: 20) {
                out.append("<text x=\"\(f(left - 6))\" y=\"\(f(y(accuracy) + 4))\" text-anchor=\"end\" font-size=\"10\">\(Int(accuracy))</text>")
            }
            let xTitle = panel.axis == .params ? "trainable parameters, % (log scale)" : "memory, GB"
            out.append("<text x=\"\(f((left + right) / 2))\" y=\"\(f(bottom + 30))\" text-anchor=\"middle\" font-size=\"10\">\(xTitle)</text>")
            let mid = (top + bottom) / 2
            out.append("<text x=\"\(f(left - 34))\" y=\"\(f(mid))\" transform=\"rotate(-90 \(f(left - 34)) \(f(mid)))\" text-anchor=\"middle\" font-size=\"10\">\(panel.metricName) accuracy, %</text>")
            return out
        }
    }
}
