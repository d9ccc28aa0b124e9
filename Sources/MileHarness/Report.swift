import Foundation
import MileModel

/// One finished run used by a report.
public struct ReportedRun: Sendable {
    public let cell: PlannedCell
    public let run: RunRecord
    public var results: RunResults
    /// The stored (yes/no split) scores, when the table reports another split.
    public var storedScores: Scores? = nil
    /// Per-question scores (bootstrap CIs, paired tests) and the image-shuffle evaluation, when stored.
    public var predictions: [QuestionScore] = []
    public var shuffle: ShuffleResult? = nil
    /// The fine-tuning epochs' losses (the per-cell export).
    public var epochs: [EpochMetric] = []
    /// The pretraining epochs of the cell's base, as its base file records them (when the cache is known).
    public var baseEpochs: [EpochMetric] = []
}

/// One row of a rendered table: every seed of one row label.
public struct ReportRow: Sendable {
    public let label: String
    public let assignment: ModuleAssignment
    public let published: PublishedNumbers?
    public let cells: [PlannedCell]
    public let statuses: [CellStatus]
    public var runs: [ReportedRun]
    /// CIs and shuffle scores (nil without stored predictions).
    public var statistics: RowStatistics? = nil
    /// The PyTorch-equivalent paper-scale peak (`PyTorchMemory`; nil when the row's cell was not measured).
    public var pytorchMemoryBytes: Int? = nil

    /// Shown instead of numbers when no seed of the row is done.
    public var pendingWord: String {
        let states = statuses.map(\.state)
        for state in [CellState.running, .failed, .interrupted, .stale] where states.contains(state) { return state.rawValue }
        return CellState.pending.rawValue
    }
}

/// A rendered table: markdown, SVG and counts for the summary page.
public struct TableReport: Sendable {
    public let table: ExperimentTable
    public let rows: [ReportRow]
    public let markdown: String
    public let svg: String
    public var references: [ReferenceResult] = []
    /// Fine-tuning and base loss curves (`<table>-loss.svg`).
    public var lossSVG: String = ""
    public var verdicts: [FindingVerdict] = []
    public var correlation: RankCorrelation
    public var doneCells: Int { rows.reduce(0) { $0 + $1.runs.count } }
    public var totalCells: Int { rows.reduce(0) { $0 + $1.cells.count } }
}

/// Mean and sample standard deviation (n - 1; 0 for one value).
public struct MeanStd: Sendable, Equatable {
    public let mean: Double
    public let std: Double
    public let count: Int

    public init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        count = values.count
        let average = values.reduce(0, +) / Double(values.count)
        mean = average
        let squares = values.reduce(0) { $0 + ($1 - average) * ($1 - average) }
        std = values.count > 1 ? (squares / Double(values.count - 1)).squareRoot() : 0
    }
}

public enum ReportRenderer {
    /// Builds the report of one table from the store (no store: every cell pending).
    /// `references`: the reference rows shown under the cells (`ReferenceBaselines`); `pytorch`: the
    /// PyTorch-equivalent memory of the paper's cells (the committed measurements by default).
    public static func render(_ table: ExperimentTable, cells: [PlannedCell], store: ResultsStore?,
                              versions: CurrentVersions = CurrentVersions(), references: [ReferenceResult] = [],
                              cacheDir: String? = nil, pytorch: PyTorchMemory? = PyTorchMemory.committed) throws -> TableReport {
        let settings = cells.first?.baselines ?? BaselineSettings(table.config)   // with --set applied
        var rows = try self.rows(cells, store: store, versions: versions)
        if let cacheDir { rows = withBaseEpochs(rows, cacheDir: cacheDir) }
        let references = references.map { $0.regrouped(table.split) }
        for index in rows.indices {
            rows[index].runs = rows[index].runs.map { $0.regrouped(table.split) }
            rows[index].statistics = RowStatistics.make(rows[index].runs, resamples: settings.resamples)
            rows[index].pytorchMemoryBytes = rows[index].cells.first.flatMap { pytorch?.peakBytes(of: $0) }
        }
        let evidence = ReportSections.evidence(rows, references: references)
        let verdicts = table.findings.map { FindingJudge.judge($0, evidence: evidence, resamples: settings.resamples) }
        let correlation = RankCorrelation.of(rows)
        let text = markdown(table, rows: rows, references: references, settings: settings)
            + ReportSections.findings(verdicts, correlation: correlation).joined(separator: "\n") + "\n"
        return TableReport(table: table, rows: rows, markdown: text, svg: SVGPlot.render(table, rows: rows, references: references),
                           references: references, lossSVG: LossCurvePlot.render(table, rows: rows), verdicts: verdicts,
                           correlation: correlation)
    }

    /// Each run with its base's pretraining epochs, read once per base file.
    static func withBaseEpochs(_ rows: [ReportRow], cacheDir: String) -> [ReportRow] {
        var byKey: [String: [EpochMetric]] = [:]
        return rows.map { row in
            var row = row
            row.runs = row.runs.map { run in
                var run = run
                let key = run.cell.stage(.base).key
                if byKey[key] == nil { byKey[key] = BaseStage.history(cacheDir: cacheDir, key: key) }
                run.baseEpochs = byKey[key] ?? []
                return run
            }
            return row
        }
    }

    /// The table's rows in file order: every seed of a row label with its status and, when done, its run
    /// from the store (no statistics; `render` adds them, `mile export` needs none).
    public static func rows(_ cells: [PlannedCell], store: ResultsStore?, versions: CurrentVersions) throws -> [ReportRow] {
        var order: [String] = []
        var groups: [String: [PlannedCell]] = [:]
        for cell in cells {
            if groups[cell.label] == nil { order.append(cell.label) }
            groups[cell.label, default: []].append(cell)
        }
        return try order.map { label in
            let group = groups[label]!
            var statuses: [CellStatus] = []
            var runs: [ReportedRun] = []
            for cell in group {
                let status = try Planner.status(of: cell, store: store, versions: versions)
                statuses.append(status)
                if status.state == .done, let store, let id = status.runID, let run = try store.run(id: id),
                   let results = try store.results(runID: id) {
                    runs.append(ReportedRun(cell: cell, run: run, results: results, predictions: try store.predictions(runID: id),
                                            shuffle: try store.shuffle(runID: id, seed: cell.baselines.shuffleSeed),
                                            epochs: try store.epochs(runID: id)))
                }
            }
            return ReportRow(label: label, assignment: group[0].assignment, published: group[0].published,
                             cells: group, statuses: statuses, runs: runs)
        }
    }

    /// Writes results/<table>.md and .svg for each report and results/README.md linking them.
    public static func write(_ reports: [TableReport], to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for report in reports {
            let base = (directory as NSString).appendingPathComponent(report.table.name)
            try report.markdown.write(toFile: base + ".md", atomically: true, encoding: .utf8)
            try report.svg.write(toFile: base + ".svg", atomically: true, encoding: .utf8)
            if !report.lossSVG.isEmpty { try report.lossSVG.write(toFile: base + "-loss.svg", atomically: true, encoding: .utf8) }
        }
        try ResultExport.writeCellFiles(reports, to: directory)
        let others = try otherTables(in: directory, except: Set(reports.map(\.table.name)))
        try summary(reports, otherTables: others).write(toFile: (directory as NSString).appendingPathComponent("README.md"),
                                                        atomically: true, encoding: .utf8)
    }

    /// A table rendered earlier into the same folder, as its own markdown states it.
    public struct ListedTable: Sendable, Equatable {
        public let name: String
        public let title: String
        /// "10 / 10" from the table's status line ("?" when the file has none).
        public let done: String
    }

    /// The tables of earlier commands in `directory` (`<name>.md` starting `# <name>: <title>`), so that
    /// README.md indexes every table in the folder, not only the ones rendered now.
    static func otherTables(in directory: String, except rendered: Set<String>) throws -> [ListedTable] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.filter { $0.hasSuffix(".md") && $0 != "README.md" }.sorted().compactMap { file in
            let name = String(file.dropLast(3))
            guard !rendered.contains(name),
                  let text = try? String(contentsOfFile: (directory as NSString).appendingPathComponent(file), encoding: .utf8),
                  let first = text.split(separator: "\n", maxSplits: 1).first, first.hasPrefix("# \(name): ") else { return nil }
            let title = String(first.dropFirst("# \(name): ".count))
            let status = text.range(of: #"\*\*Status\*\*: (\d+) of (\d+) cells done"#, options: .regularExpression).map {
                text[$0].components(separatedBy: ": ")[1].replacingOccurrences(of: " cells done", with: "").replacingOccurrences(of: " of ", with: " / ")
            }
            return ListedTable(name: name, title: title, done: status ?? "?")
        }
    }

    public static func summary(_ reports: [TableReport], otherTables: [ListedTable] = []) -> String {
        var lines = ["# Results", "",
                     "Each table shows our numbers beside the paper's published values (Δ = ours − paper). Cells without a finished run show their status (pending, running, failed, stale), never numbers. Rendered by `mile report`.", "",
                     "| Table | Title | Cells done | Plot |", "|---|---|---|---|"]
        for report in reports {
            let name = report.table.name
            lines.append("| [\(name)](\(name).md) | \(report.table.title) | \(report.doneCells) / \(report.totalCells) | [\(name).svg](\(name).svg) |")
        }
        for table in otherTables {
            lines.append("| [\(table.name)](\(table.name).md) | \(table.title) | \(table.done) (rendered by an earlier command) | [\(table.name).svg](\(table.name).svg) |")
        }
        lines += ReportSections.summary(reports)
        if !otherTables.isEmpty {
            lines += ["", "Findings, ρ and reference rows above cover the tables rendered by the last command only (\(reports.map(\.table.name).joined(separator: ", "))); render all tables in one `mile report` for the whole summary."]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: markdown

    static func markdown(_ table: ExperimentTable, rows: [ReportRow], references: [ReferenceResult] = [],
                         settings: BaselineSettings = BaselineSettings()) -> String {
        let hasRank = rows.contains { $0.assignment.rank != nil }
        let slots: [ModuleSlot] = table.rows.first?.slots ?? []
        // Rows named or distinguished by `set:` show their identity; the mode columns alone would repeat.
        let hasIdentity = rows.contains { $0.label != $0.assignment.label }
        var header: [String] = (hasIdentity ? ["Row"] : []) + slots.map(\.header)
        if hasRank { header.append("Rank") }
        header += ["#Params % (paper scale): ours / paper (Δ)", "Memory GB (paper scale, PyTorch-equivalent): PyTorch / paper (Δ)",
                   "Memory GB (paper scale, engine prediction): ours / paper (Δ)",
                   "Memory measured (run scale): engine peak / RSS", "Opened: ours / paper (Δ)", "Opened recall",
                   "Closed: ours / paper (Δ)", "Global: ours / paper (Δ)", "Global recall", ReportSections.ciHeader,
                   ReportSections.shuffleHeader, "Seeds"]
        var lines = ["# \(table.name): \(table.title)", "",
                     "Ours beside the paper's published numbers; Δ = ours − paper. Source: `\(table.file)`.", ""]
            + limitWarning(rows) + [
                     "| " + header.joined(separator: " | ") + " |",
                     "|" + header.map { _ in "---" }.joined(separator: "|") + "|"]
        var footnotes: [String] = []
        for row in rows {
            var cells = (hasIdentity ? [row.label] : []) + row.assignment.modes.map(\.display)
            if let limit = limit(of: row) { cells[0] += " (limited to \(limit), not comparable)" }
            if let note = row.cells.first?.row.note {
                if !footnotes.contains(note) { footnotes.append(note) }
                cells[0] += " [\(footnotes.firstIndex(of: note)! + 1)]"
            }
            if hasRank { cells.append(row.assignment.rank.map(String.init) ?? "–") }
            cells += numberCells(row)
            if let note = row.published?.note {
                // The marker goes after the published Global, the number most notes are about.
                if !footnotes.contains(note) { footnotes.append(note) }
                cells[cells.count - 5] += " [\(footnotes.firstIndex(of: note)! + 1)]"
            }
            lines.append("| " + cells.joined(separator: " | ") + " |")
        }
        lines += ReportSections.referenceRows(references, hasRank: hasRank, resamples: settings.resamples)
        lines += [""]
        if !footnotes.isEmpty {
            lines += ["Notes on the rows and the published numbers:", ""]
            lines += footnotes.enumerated().map { "\($0 + 1). \($1)" }
            lines.append("")
        }
        lines += footer(table, rows: rows)
        lines += ReportSections.notes(references, settings: settings)
        lines += ReportSections.storedSplit(rows, split: table.split)
        return lines.joined(separator: "\n") + "\n"
    }

    static func numberCells(_ row: ReportRow) -> [String] {
        let paper = row.published
        let seeds = "\(row.runs.count)/\(row.cells.count)"
        // Measured once for the config, not by a run: shown for pending rows too, as the paper's numbers.
        let pytorch = pair(row.pytorchMemoryBytes.flatMap { MeanStd([Double($0) / 1e9]) }, paper?.memoryGB, digits: 2, word: "–")
        guard !row.runs.isEmpty else {
            let word = row.pendingWord
            return [pair(nil, paper?.params, digits: 3, word: word), pytorch, pair(nil, paper?.memoryGB, digits: 2, word: word), word,
                    pair(nil, paper?.opened, digits: 2, word: word), word, pair(nil, paper?.closed, digits: 2, word: word),
                    pair(nil, paper?.global, digits: 2, word: word), word, word, word, seeds]
        }
        let results = row.runs.map(\.results)
        let params = MeanStd(results.map { ($0.paperScale ?? $0.runScale).percent })
        let predicted = MeanStd(results.compactMap { $0.predictedPaperBytes.map { Double($0) / 1e9 } })
        let engine = MeanStd(results.compactMap { $0.peakEngineBytes.map(Double.init) })
        let rss = MeanStd(results.compactMap { $0.peakRSSBytes.map(Double.init) })
        let measured = "\(bytes(engine)) / \(bytes(rss))"
        let paperScaleNote = results.contains { $0.paperScale == nil } ? " (run scale)" : ""
        return [pair(params, paper?.params, digits: 3, word: "n/a", deterministic: true) + paperScaleNote, pytorch,
                pair(predicted, paper?.memoryGB, digits: 2, word: "n/a", deterministic: true), measured,
                pair(MeanStd(results.map(\.scores.opened)), paper?.opened, digits: 2, word: "n/a"),
                value(MeanStd(results.map(\.scores.openedRecall)), digits: 2),
                pair(MeanStd(results.map(\.scores.closed)), paper?.closed, digits: 2, word: "n/a"),
                pair(MeanStd(results.map(\.scores.global)), paper?.global, digits: 2, word: "n/a"),
                value(MeanStd(results.map(\.scores.globalRecall)), digits: 2), ReportSections.ciCell(row),
                ReportSections.shuffleCell(row), seeds]
    }

    static func value(_ ours: MeanStd?, digits: Int) -> String {
        guard let ours else { return "n/a" }
        let mean = String(format: "%.\(digits)f", ours.mean)
        return ours.count > 1 ? mean + " ± " + String(format: "%.\(digits)f", ours.std) : mean
    }

    /// "ours / paper (Δ)", or "word / paper" when ours is missing.
    /// `deterministic`: a column that depends on the config only (#Params, the shape-only memory
    /// prediction), so seeds add no ± to it.
    static func pair(_ ours: MeanStd?, _ paper: Double?, digits: Int, word: String, deterministic: Bool = false) -> String {
        let paperText = paper.map { String(format: "%.\(digits)f", $0) } ?? "–"
        guard let ours else { return "\(word) / \(paperText)" }
        let delta = paper.map { " (" + signed(ours.mean - $0, digits: digits) + ")" } ?? ""
        let shown = deterministic && ours.std < 0.5 * pow(10, -Double(digits)) ? String(format: "%.\(digits)f", ours.mean) : value(ours, digits: digits)
        return "\(shown) / \(paperText)\(delta)"
    }

    /// "+1.25", "-0.40", and "0.000" for a difference that rounds to zero (never "-0.000" or "+0.000").
    static func signed(_ value: Double, digits: Int) -> String {
        let text = String(format: "%+.\(digits)f", value)
        return text.dropFirst().allSatisfy { $0 == "0" || $0 == "." } ? String(text.dropFirst()) : text
    }

    static func bytes(_ value: MeanStd?) -> String {
        guard let value else { return "n/a" }
        let mean = value.mean
        if mean >= 1e9 { return String(format: "%.2f GB", mean / 1e9) }
        return String(format: "%.1f MB", mean / 1e6)
    }

    /// `data.limit` of the row's cells when it limits them (`--limit N`).
    static func limit(of row: ReportRow) -> Int? {
        row.cells.compactMap { $0.config["data.limit"]?.intValue }.filter { $0 > 0 }.max()
    }

    static func limitWarning(_ rows: [ReportRow]) -> [String] {
        let limits = Set(rows.compactMap(limit(of:)))
        guard !limits.isEmpty else { return [] }
        return ["**Limited runs, not comparable** (`data.limit` \(limits.sorted().map(String.init).joined(separator: ", "))): the marked rows "
                + "trained and were scored on only the first N training records, base samples and test questions; their numbers "
                + "compare neither with the paper nor with full runs, and the reference rows below use the whole test set.", ""]
    }

    static func footer(_ table: ExperimentTable, rows: [ReportRow]) -> [String] {
        let cells = rows.flatMap(\.cells)
        let runs = rows.flatMap(\.runs)
        let first = cells.first?.config ?? table.config
        func setting(_ path: String) -> String {
            let values = Set(cells.compactMap { $0.config[path]?.display })
            return values.isEmpty ? (first[path]?.display ?? "?") : values.sorted().joined(separator: ", ")
        }
        // The group sizes as the runs counted them (no run: no count).
        let counts = runs.first?.results.scores
        let closedCount = counts.map { " (\($0.closedCount) of the test set)" } ?? ""
        let openedCount = counts.map { " (\($0.openedCount))" } ?? ""
        var lines = ["## How to read this table", "",
                     "- **Status**: \(runs.count) of \(cells.count) cells done. Cells without a finished run show their status instead of numbers.",
                     "- **Scale**: model `\(setting("model.scale"))` (family \(setting("model.family"))). #Params is computed exactly at the paper's scale; Memory (paper scale, PyTorch-equivalent) is PyTorch's peak allocated bytes of one upstream-style training step of the paper's model, measured once per cell at the paper's batch with the longest training answer (`make memory-peer`, bench/memory_pytorch.json, docs/MODEL.md; – for a config not measured); Memory (paper scale, engine prediction) is the engine's shape-only prediction of one training step at the paper's dims and batch with typical 6-token answers; GB = 10⁹ bytes; the measured memory is the engine allocator's peak and the process peak RSS at the run's scale. Accuracy comes from runs at the run scale, so it is comparable with the paper in trend only unless the scale is `paper`.",
                     "- **Recipe**: \(setting("recipe.epochs")) epochs, lr \(setting("recipe.lr")), batch \(setting("recipe.batch")), AdamW weight decay \(setting("recipe.weight_decay")), \(setting("recipe.schedule")) schedule per epoch, warmup \(setting("recipe.warmup_epochs")) epochs, label smoothing \(setting("recipe.label_smoothing")); seeds \(Set(cells.map(\.seed)).sorted().map(String.init).joined(separator: ", ")); base pretraining \(setting("pretraining.source")) (\(setting("pretraining.epochs")) epochs on \(setting("pretraining.corpus")), objectives \(setting("pretraining.objectives")), augment \(setting("pretraining.augment"))); fine-tuning prompts \(setting("data.prompts")); decoding beam \(setting("decoding.beams")), max length \(setting("decoding.max_length")).",
                     ] + table.split.definitions(closedCount: closedCount, openedCount: openedCount) + [
                     "- **Global**: count-weighted mean, (n_opened · Opened + n_closed · Closed) / n; Global recall uses Opened recall.",
                     "- Several seeds: mean ± sample standard deviation; Δ uses the mean."]
        lines += table.notes.map { "- Note: \($0)" }
        lines += provenanceLines(runs)
        return lines
    }

    static func provenanceLines(_ runs: [ReportedRun]) -> [String] {
        guard !runs.isEmpty else { return ["- **Code and data**: no finished runs yet."] }
        let commits = Set(runs.map { run -> String in
            let p = run.run.provenance
            return (p.gitCommit.map { String($0.prefix(12)) } ?? "unknown commit") + (p.gitDirty == true ? " (dirty)" : "")
        }).sorted()
        let codeVersions = Set(runs.map(\.run.provenance.codeVersion)).sorted()
        let machines = Set(runs.map { run -> String in
            let p = run.run.provenance
            return "\(p.cpuModel ?? "unknown CPU"); BLAS \(p.blasLibrary ?? "?") × \(p.blasThreads.map(String.init) ?? "?") threads; Swift \(p.swiftVersion)"
        }).sorted()
        var hashes: [String: Set<String>] = [:]
        for run in runs { for (file, hash) in run.run.provenance.datasetHashes { hashes[file, default: []].insert(String(hash.prefix(16))) } }
        let data = hashes.keys.sorted().map { "\($0) \(hashes[$0]!.sorted().joined(separator: " / "))" }
        let unpinned = runs.filter { $0.run.provenance.gitCommit == nil || $0.run.provenance.gitDirty == true }.count
        let warning = unpinned == 0 ? [] : ["- **Warning**: \(unpinned) of \(runs.count) runs were made by a build from a working tree with uncommitted changes (dirty) or of an unknown commit: their exact code cannot be checked out again."]
        return ["- **Code**: \(codeVersions.joined(separator: ", ")); git \(commits.joined(separator: ", ")).",
                "- **Machine**: \(machines.joined(separator: " | ")).",
                "- **Data (SHA-256 prefixes)**: \(data.isEmpty ? "not recorded" : data.joined(separator: "; "))."] + warning
    }
}
