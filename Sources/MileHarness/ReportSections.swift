import Foundation

/// Uncertainty and image reliance of one report row (all its done seeds).
public struct RowStatistics: Sendable {
    /// Per-question scores averaged over the done seeds.
    public let pooled: QuestionSample
    /// 95 % bootstrap CIs over questions of the pooled scores.
    public let intervals: MetricIntervals
    /// (real, shuffled) scores of the seeds that have an image-shuffle evaluation.
    public let shuffled: [(real: Scores, shuffled: Scores)]
    public let seeds: Int

    /// Nil when no seed has stored predictions (or the seeds were scored on different questions).
    static func make(_ runs: [ReportedRun], resamples: Int) -> RowStatistics? {
        let withPredictions = runs.filter { !$0.predictions.isEmpty }
        guard !withPredictions.isEmpty, let pooled = QuestionSample.pooled(withPredictions.map(\.predictions)) else { return nil }
        let shuffled = runs.compactMap { run in run.shuffle.map { (real: run.results.scores, shuffled: $0.scores) } }
        return RowStatistics(pooled: pooled, intervals: Bootstrap.intervals(pooled, resamples: resamples), shuffled: shuffled,
                             seeds: runs.count)
    }
}

/// Spearman ρ of our mean scores against the paper's, over the rows that have both.
public struct RankCorrelation: Sendable {
    public let rows: Int
    public let global: Double?
    public let opened: Double?
    public let closed: Double?

    static func of(_ rows: [ReportRow]) -> RankCorrelation {
        let pairs = rows.compactMap { row -> (ours: MetricTriple, paper: MetricTriple)? in
            let scores = row.runs.map(\.results.scores)
            guard let p = row.published, let po = p.opened, let pc = p.closed, let pg = p.global,
                  let o = MeanStd(scores.map(\.opened)), let c = MeanStd(scores.map(\.closed)), let g = MeanStd(scores.map(\.global)) else { return nil }
            return (MetricTriple(opened: o.mean, closed: c.mean, global: g.mean), MetricTriple(opened: po, closed: pc, global: pg))
        }
        func rho(_ metric: Metric) -> Double? { Spearman.rho(pairs.map { $0.ours[metric] }, pairs.map { $0.paper[metric] }) }
        return RankCorrelation(rows: pairs.count, global: rho(.global), opened: rho(.opened), closed: rho(.closed))
    }

    var text: String {
        func f(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "n/a" }
        return "Spearman ρ of ours against the paper over \(rows) row\(rows == 1 ? "" : "s") with a finished run: Global \(f(global)) (Opened \(f(opened)), Closed \(f(closed)))"
    }
}

/// The report parts added for baselines, uncertainty and findings (docs/HARNESS.md, "Reports").
enum ReportSections {
    static let ciHeader = "95 % CI Opened / Closed / Global"
    static let shuffleHeader = "Shuffled images: Opened / Closed / Global (Global drop)"

    static func interval(_ i: Interval) -> String { String(format: "[%.1f, %.1f]", i.low, i.high) }

    static func ciCell(_ row: ReportRow) -> String {
        guard !row.runs.isEmpty else { return row.pendingWord }
        guard let stats = row.statistics else { return "n/a" }
        return Metric.allCases.map { interval(stats.intervals[$0]) }.joined(separator: " / ")
    }

    /// Mean shuffled scores and the mean paired Global drop (shuffled − real) over the seeds that have a
    /// shuffle; "—" for cells evaluated before the shuffle existed.
    static func shuffleCell(_ row: ReportRow) -> String {
        guard !row.runs.isEmpty else { return row.pendingWord }
        guard let shuffled = row.statistics?.shuffled, !shuffled.isEmpty else { return "—" }
        let mean = { (values: [Double]) in values.reduce(0, +) / Double(values.count) }
        let o = mean(shuffled.map(\.shuffled.opened)), c = mean(shuffled.map(\.shuffled.closed)), g = mean(shuffled.map(\.shuffled.global))
        let drop = mean(shuffled.map { $0.shuffled.global - $0.real.global })
        let partial = shuffled.count < row.runs.count ? ", \(shuffled.count) of \(row.runs.count) seeds" : ""
        return String(format: "%.2f / %.2f / %.2f (%+.2f%@)", o, c, g, drop, partial)
    }

    /// The reference rows under a table's cells: same columns, no #Params or memory.
    static func referenceRows(_ references: [ReferenceResult], hasRank: Bool, resamples: Int) -> [String] {
        references.map { reference in
            let s = reference.scores
            let ci = Bootstrap.intervals(QuestionSample(reference.predictions), resamples: resamples)
            var cells = ["*reference: \(reference.kind.display)*", "", ""]
            if hasRank { cells.append("") }
            cells += ["–", "–", "–", "–", String(format: "%.2f", s.opened), String(format: "%.2f", s.openedRecall),
                      String(format: "%.2f", s.closed), String(format: "%.2f", s.global), String(format: "%.2f", s.globalRecall),
                      Metric.allCases.map { interval(ci[$0]) }.joined(separator: " / "), "–", "reference"]
            return "| " + cells.joined(separator: " | ") + " |"
        }
    }

    static func notes(_ references: [ReferenceResult], settings: BaselineSettings) -> [String] {
        var lines: [String]
        if let first = references.first {
            let hash = { (file: String) in first.datasetHashes[file].map { String($0.prefix(16)) } ?? "?" }
            lines = ["- **Reference rows** (no training): *blind train-prior* answers each test question with the most frequent answer of the SLAKE-train English questions with the same normalised text, else the most frequent train answer; *nearest-image* takes, among those train questions, the answer of the one whose \(settings.thumbnail)×\(settings.thumbnail) grayscale thumbnail is nearest by cosine (else the blind answer). Data: train.json \(hash("train.json")), test.json \(hash("test.json"))."]
        } else {
            lines = ["- **Reference rows**: not computed for this data yet (`mile report` or `mile baselines` with `SLAKE_DIR` set computes them)."]
        }
        lines += ["- **95 % CI**: percentile bootstrap over the test questions (\(settings.resamples) seeded resamples, stratified by Opened/Closed), per-question scores averaged over the done seeds; the ± is the sample std over seeds.",
                  "- **Shuffled images**: the cell evaluated again with every test image replaced by another test image (seeded derangement over the distinct images, shuffle seed \(settings.shuffleSeed)); the drop (shuffled − real Global) is the cell's reliance on the image. \"—\": the cell was evaluated before the shuffle evaluation existed."]
        return lines
    }

    /// The same runs on the stored yes/no split, for a table reported on another split (one line per row).
    static func storedSplit(_ rows: [ReportRow], split: ScoreSplit) -> [String] {
        guard split != .yesNo else { return [] }
        var lines = ["", "## The same runs on the yes/no split of Tables 1–4", "",
                     "Closed = the questions whose ground truth is yes/no, scored by polarity (MILE's ACC.py); Opened = the others, exact match.", "",
                     "| Row | Opened | Closed | Global | Seeds |", "|---|---|---|---|---|"]
        for row in rows {
            let stored = row.runs.compactMap(\.storedScores)
            guard !stored.isEmpty else { lines.append("| \(row.label) | \(row.pendingWord) | | | 0/\(row.cells.count) |"); continue }
            let paths: [KeyPath<Scores, Double>] = [\.opened, \.closed, \.global]
            let cells = paths.map { path in ReportRenderer.value(MeanStd(stored.map { $0[keyPath: path] }), digits: 2) }
            lines.append("| \(row.label) | " + cells.joined(separator: " | ") + " | \(stored.count)/\(row.cells.count) |")
        }
        return lines
    }

    /// The closing section of a table: each claim with its verdict, then the rank correlation.
    static func findings(_ verdicts: [FindingVerdict], correlation: RankCorrelation) -> [String] {
        var lines = ["", "## The paper's findings, judged", ""]
        if verdicts.isEmpty {
            lines.append("No findings are listed in this table file.")
        } else {
            lines += ["| Claim | Kind | Metric | Effect (points) | 95 % CI | Test | Verdict |", "|---|---|---|---|---|---|---|"]
            for v in verdicts {
                let effect = v.effect.map { String(format: "%+.2f", $0) } ?? "–"
                let ci = v.interval.map(interval) ?? "–"
                lines.append("| \(v.finding.claim) | \(kindText(v.finding)) | \(v.finding.metric.rawValue) | \(effect) | \(ci) | \(v.test) | **\(v.verdict.rawValue)** |")
            }
            lines += ["", "Reproduced: the whole 95 % CI is on the claim's side; contradicted: the whole CI is on the other side; inconclusive otherwise or without a finished run."]
        }
        lines += ["", correlation.text + "."]
        return lines
    }

    static func kindText(_ f: Finding) -> String {
        switch f.kind {
        case .greater: return "\(f.a) > \(f.b ?? "?")"
        case .equivalent: return String(format: "\(f.a) ≈ \(f.b ?? "?") (±%.2f)", f.margin ?? 0)
        case .nearZero: return String(format: "\(f.a) < %.2f (near zero)", f.margin ?? 0)
        case .below: return String(format: "\(f.a) < %.2f", f.value ?? 0)
        case .above: return String(format: "\(f.a) > %.2f", f.value ?? 0)
        }
    }

    /// The evidence of a table's findings: each row's done seeds and the reference rows.
    static func evidence(_ rows: [ReportRow], references: [ReferenceResult]) -> FindingEvidence {
        var runs: [String: [(seed: Int, scores: [QuestionScore])]] = [:]
        for row in rows {
            runs[row.label] = row.runs.filter { !$0.predictions.isEmpty }.sorted { $0.cell.seed < $1.cell.seed }
                .map { (seed: $0.cell.seed, scores: $0.predictions) }
        }
        for reference in references { runs[reference.kind.rawValue] = [(seed: 0, scores: reference.predictions)] }
        return FindingEvidence(runs: runs)
    }

    /// results/README.md additions: the reference rows, the verdict counts per table and ρ over all rows.
    /// ρ over the rows of all tables of one model family and split: Tables 1-4 (MISS, yes/no) and Table 5
    /// (BiomedGPT, answer_type) rank different models on different splits, so they are never pooled.
    static func rankCorrelationByModel(_ reports: [TableReport]) -> [String] {
        var order: [String] = []
        var groups: [String: [TableReport]] = [:]
        for report in reports {
            let key = "\(report.table.config["model.family"]?.stringValue ?? "?") (\(report.table.split.rawValue) split)"
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(report)
        }
        return order.flatMap { key in
            let tables = groups[key]!
            let names = tables.map(\.table.name).joined(separator: ", ")
            let scope = order.count == 1 ? "All tables" : "All \(key) tables (\(names))"
            return ["", scope + ": " + RankCorrelation.of(tables.flatMap(\.rows)).text + "."]
        }
    }

    static func summary(_ reports: [TableReport]) -> [String] {
        var lines: [String] = []
        if let references = reports.first(where: { !$0.references.isEmpty })?.references {
            lines += ["", "## Reference rows (the runs' test set, no training)", "", "| Reference | Opened | Closed | Global |", "|---|---|---|---|"]
            for r in references {
                lines.append(String(format: "| %@ | %.2f | %.2f | %.2f |", r.kind.display, r.scores.opened, r.scores.closed, r.scores.global))
            }
        }
        lines += ["", "## The paper's findings, judged", "", "| Table | Reproduced | Contradicted | Inconclusive | Spearman ρ Global |", "|---|---|---|---|---|"]
        for report in reports {
            let count = { (verdict: Verdict) in report.verdicts.filter { $0.verdict == verdict }.count }
            let rho = report.correlation.global.map { String(format: "%.2f (%d rows)", $0, report.correlation.rows) } ?? "n/a"
            lines.append("| [\(report.table.name)](\(report.table.name).md) | \(count(.reproduced)) | \(count(.contradicted)) | \(count(.inconclusive)) | \(rho) |")
        }
        lines += rankCorrelationByModel(reports)
        return lines
    }
}
