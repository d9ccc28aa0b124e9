import Foundation

/// `<table>-loss.svg`: the fine-tuning loss of each row's first done seed and the pretraining loss of each
/// base, per window of `Trainer.lossWindow` steps (the epoch means where a run has no step losses).
enum LossCurvePlot {
    static let width = 1090.0, height = 380.0
    static let panelWidth = 320.0, panelHeight = 240.0, keyLeft = 830.0
    static let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    /// A curve: its points (x = steps from the start, y = loss) and its colour.
    struct Curve {
        let number: Int
        let points: [(x: Double, y: Double)]
        /// The validation loss after each epoch (true images), at the epoch's last step.
        var validation: [(x: Double, y: Double)] = []
    }

    static func render(_ table: ExperimentTable, rows: [ReportRow]) -> String {
        let tuning = rows.enumerated().compactMap { index, row in
            row.runs.first.map { Curve(number: index + 1, points: points($0.epochs), validation: validation($0.epochs)) }
        }.filter { !$0.points.isEmpty }
        var seen = Set<String>()
        let bases = rows.flatMap(\.runs).filter { !$0.baseEpochs.isEmpty && seen.insert($0.cell.stage(.base).key).inserted }
        let baseCurves = bases.enumerated().map { Curve(number: $0.offset + 1, points: points($0.element.baseEpochs)) }
        guard !tuning.isEmpty || !baseCurves.isEmpty else { return "" }
        var parts = [
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">",
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
            "<text x=\"60\" y=\"22\" font-size=\"14\">\(SVGPlot.escape(table.name)): training loss</text>",
            "<text x=\"60\" y=\"40\" fill=\"#444\">mean loss per \(Trainer.lossWindow) steps (an epoch's last window may be shorter; label-smoothed VQA loss; the base: the sum of its objectives) · first done seed of each row · circles: loss on SLAKE validate after each epoch</text>",
        ]
        parts += panel("Fine-tuning", tuning, left: 70, top: 80)
        parts += panel("Base pretraining", baseCurves, left: 480, top: 80)
        parts += key(rows, bases: bases)
        parts.append("</svg>")
        return parts.joined(separator: "\n") + "\n"
    }

    /// Step losses laid end to end over the epochs; an epoch without them is one point at its end.
    static func points(_ epochs: [EpochMetric]) -> [(x: Double, y: Double)] {
        var out: [(x: Double, y: Double)] = []
        var step = 0.0
        for epoch in epochs {
            if epoch.stepLosses.isEmpty {
                step += Double(Trainer.lossWindow)
                out.append((step, epoch.loss))
            } else {
                for loss in epoch.stepLosses { step += Double(Trainer.lossWindow); out.append((step, loss)) }
            }
        }
        return out
    }

    static func validation(_ epochs: [EpochMetric]) -> [(x: Double, y: Double)] {
        var out: [(x: Double, y: Double)] = []
        var step = 0.0
        for epoch in epochs {
            step += Double(Trainer.lossWindow) * Double(max(epoch.stepLosses.count, 1))
            if let loss = epoch.validationLoss { out.append((step, loss)) }
        }
        return out
    }

    static func panel(_ title: String, _ curves: [Curve], left: Double, top: Double) -> [String] {
        var out = ["<text x=\"\(f(left))\" y=\"\(f(top - 8))\" font-size=\"12\">\(title)</text>"]
        let all = curves.flatMap { $0.points + $0.validation }
        guard let maxX = all.map(\.x).max(), let maxY = all.map(\.y).max(), maxX > 0 else {
            return out + ["<text x=\"\(f(left + 10))\" y=\"\(f(top + 30))\" fill=\"#777\">no recorded epochs</text>"]
        }
        let topY = max((maxY * 1.05).rounded(.up), 1)
        func x(_ v: Double) -> Double { left + v / maxX * panelWidth }
        func y(_ v: Double) -> Double { top + (1 - min(max(v, 0), topY) / topY) * panelHeight }
        for i in 0...4 {
            let value = topY * Double(i) / 4
            out.append("<line x1=\"\(f(left))\" y1=\"\(f(y(value)))\" x2=\"\(f(left + panelWidth))\" y2=\"\(f(y(value)))\" stroke=\"#eee\"/>")
            out.append("<text x=\"\(f(left - 6))\" y=\"\(f(y(value) + 4))\" text-anchor=\"end\" font-size=\"10\">\(String(format: "%.1f", value))</text>")
        }
        for curve in curves {
            let color = colors[(curve.number - 1) % colors.count]
            let path = curve.points.map { "\(f(x($0.x))),\(f(y($0.y)))" }.joined(separator: " ")
            out.append("<polyline class=\"curve\" points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.3\"/>")
            for point in curve.validation {
                out.append("<circle class=\"validation\" cx=\"\(f(x(point.x)))\" cy=\"\(f(y(point.y)))\" r=\"3.5\" fill=\"white\" stroke=\"\(color)\" stroke-width=\"1.5\"/>")
            }
            if let last = curve.points.last {
                out.append("<text x=\"\(f(x(last.x) + 3))\" y=\"\(f(y(last.y)))\" font-size=\"9\" fill=\"\(color)\">\(curve.number)</text>")
            }
        }
        out += ["<line x1=\"\(f(left))\" y1=\"\(f(top + panelHeight))\" x2=\"\(f(left + panelWidth))\" y2=\"\(f(top + panelHeight))\" stroke=\"black\"/>",
                "<line x1=\"\(f(left))\" y1=\"\(f(top + panelHeight))\" x2=\"\(f(left))\" y2=\"\(f(top))\" stroke=\"black\"/>",
                "<text x=\"\(f(left + panelWidth))\" y=\"\(f(top + panelHeight + 14))\" text-anchor=\"end\" font-size=\"10\">\(Int(maxX)) steps</text>",
                "<text x=\"\(f(left + panelWidth / 2))\" y=\"\(f(top + panelHeight + 30))\" text-anchor=\"middle\" font-size=\"10\">optimizer steps</text>"]
        return out
    }

    static func key(_ rows: [ReportRow], bases: [ReportedRun]) -> [String] {
        var out = ["<text x=\"\(f(keyLeft))\" y=\"74\" fill=\"#444\">fine-tuning</text>"]
        for (index, row) in rows.enumerated() {
            let y = 90 + Double(index) * 14
            let color = colors[index % colors.count]
            out.append("<text x=\"\(f(keyLeft))\" y=\"\(f(y))\" fill=\"\(color)\">\(index + 1). \(SVGPlot.escape(row.label))\(row.runs.isEmpty ? " (\(row.pendingWord))" : "")</text>")
        }
        let baseTop = 100 + Double(rows.count) * 14
        out.append("<text x=\"\(f(keyLeft))\" y=\"\(f(baseTop))\" fill=\"#444\">bases</text>")
        for (index, run) in bases.enumerated() {
            out.append("<text x=\"\(f(keyLeft))\" y=\"\(f(baseTop + 16 + Double(index) * 14))\" fill=\"\(colors[index % colors.count])\">\(index + 1). \(run.cell.stage(.base).key.prefix(12))</text>")
        }
        return out
    }

    static func f(_ value: Double) -> String { String(format: "%.1f", value) }
}
