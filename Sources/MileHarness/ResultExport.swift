import Foundation

/// Machine-readable results, one record per finished run (huggingface/peft `method_comparison` style):
/// the resolved config, provenance, parameter counts, memory, scores with their bootstrap CIs, the
/// image-shuffle scores and the per-epoch losses. Everything comes from the database through `ReportedRun`.
public enum ResultExport {
    /// Bumped when a field changes meaning or is removed.
    public static let format = "mile-cell-result-1"

    /// `t-t-lora-r4_s42`: the row label and seed, safe as a file name.
    public static func slug(_ run: ReportedRun) -> String {
        let label = run.cell.label.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" }
        return String(label) + "_s\(run.cell.seed)"
    }

    /// The record of one run (no per-question predictions: those are `predictionLines`).
    public static func record(_ run: ReportedRun) -> ConfigValue {
        let resamples = run.cell.baselines.resamples
        var fields: [String: ConfigValue] = [
            "format": .string(format),
            "table": .string(run.cell.table),
            "source_file": .string(run.cell.file),
            "row": .string(run.cell.label),
            "seed": .int(run.cell.seed),
            "cell_id": .string(run.cell.id),
            "modules": .map(Dictionary(uniqueKeysWithValues: zip(run.cell.assignment.slots.map(\.key),
                                                                 run.cell.assignment.modes.map { .string($0.rawValue) }))),
            "config": (try? ConfigValue.fromJSON(run.cell.canonicalJSON)) ?? .string(run.cell.canonicalJSON),
            "run": runFields(run.run),
            "provenance": provenanceFields(run.run.provenance),
            "params": paramFields(run.results),
            "memory_bytes": memoryFields(run.results, pytorch: PyTorchMemory.committed?.peakBytes(of: run.cell)),
            "scores": scoreFields(run.results.scores, predictions: run.predictions, resamples: resamples),
            "epochs": .list(run.epochs.map(epochFields)),
            "base_epochs": .list(run.baseEpochs.map(epochFields)),
            "stage_keys": .map(stageKeys(run).mapValues(ConfigValue.string)),
        ]
        if let rank = run.cell.assignment.rank { fields["rank"] = .int(rank) }
        if let shuffle = run.shuffle {
            fields["shuffled_images"] = .map([
                "shuffle_seed": .int(shuffle.shuffleSeed),
                "scores": scoreFields(shuffle.scores, predictions: [], resamples: resamples),
                "global_drop": .double(rounded(shuffle.scores.global - run.results.scores.global)),
            ])
        }
        if let published = run.cell.published { fields["published"] = publishedFields(published) }
        return .map(fields)
    }

    /// The keys the run recorded when it was claimed; a run from before they were stored gets them derived
    /// from its config by this build.
    static func stageKeys(_ run: ReportedRun) -> [String: String] {
        if !run.run.stageKeys.isEmpty { return run.run.stageKeys }
        return Dictionary(uniqueKeysWithValues: run.cell.stages.map { ($0.kind.rawValue, $0.key) })
    }

    static func runFields(_ run: RunRecord) -> ConfigValue {
        var fields: [String: ConfigValue] = [
            "id": .int(Int(run.id)), "runner": .string(run.runner), "status": .string(run.status.rawValue),
            "started_at": .string(timestamp(run.startedAt)),
        ]
        if let ended = run.endedAt { fields["ended_at"] = .string(timestamp(ended)) }
        if let wall = run.wallSeconds { fields["wall_seconds"] = .double(rounded(wall)) }
        if !run.artifacts.isEmpty { fields["artifacts"] = .map(run.artifacts.mapValues(ConfigValue.string)) }
        return .map(fields)
    }

    static func provenanceFields(_ p: Provenance) -> ConfigValue {
        var fields: [String: ConfigValue] = [
            "code_version": .string(p.codeVersion), "swift": .string(p.swiftVersion),
            "dataset_sha256": .map(p.datasetHashes.mapValues { .string($0) }),
        ]
        if let commit = p.gitCommit { fields["git_commit"] = .string(commit) }
        if let dirty = p.gitDirty { fields["git_dirty"] = .bool(dirty) }
        if let blas = p.blasLibrary { fields["blas"] = .string(blas) }
        if let threads = p.blasThreads { fields["blas_threads"] = .int(threads) }
        if let cpu = p.cpuModel { fields["cpu"] = .string(cpu) }
        if let host = p.host { fields["host"] = .string(host) }
        return .map(fields)
    }

    static func paramFields(_ results: RunResults) -> ConfigValue {
        func counts(_ c: ParamCounts) -> ConfigValue {
            .map(["trainable": .int(c.trainable), "total": .int(c.total), "percent": .double(rounded(c.percent, places: 4))])
        }
        var fields = ["run_scale": counts(results.runScale)]
        if let paper = results.paperScale { fields["paper_scale"] = counts(paper) }
        return .map(fields)
    }

    static func memoryFields(_ results: RunResults, pytorch: Int? = nil) -> ConfigValue {
        var fields: [String: ConfigValue] = [:]
        if let pytorch { fields["pytorch_equivalent_paper_scale"] = .int(pytorch) }   // bench/memory_pytorch.json
        if let v = results.peakEngineBytes { fields["engine_peak_run_scale"] = .int(v) }
        if let v = results.peakRSSBytes { fields["peak_rss_run_scale"] = .int(v) }
        if let v = results.predictedPaperBytes { fields["engine_predicted_paper_scale"] = .int(v) }
        return .map(fields)
    }

    static func scoreFields(_ s: Scores, predictions: [QuestionScore], resamples: Int) -> ConfigValue {
        var fields: [String: ConfigValue] = [
            "opened": .double(rounded(s.opened)), "opened_recall": .double(rounded(s.openedRecall)),
            "closed": .double(rounded(s.closed)), "global": .double(rounded(s.global)),
            "global_recall": .double(rounded(s.globalRecall)),
            "opened_count": .int(s.openedCount), "closed_count": .int(s.closedCount),
            "opened_correct": .int(s.openedCorrect), "closed_correct": .int(s.closedCorrect),
        ]
        if !predictions.isEmpty {
            let ci = Bootstrap.intervals(QuestionSample(predictions), resamples: resamples)
            fields["ci95"] = .map(Dictionary(uniqueKeysWithValues: Metric.allCases.map {
                ($0.rawValue, ConfigValue.list([.double(rounded(ci[$0].low)), .double(rounded(ci[$0].high))]))
            }))
            fields["ci_method"] = .string("percentile bootstrap over questions, \(resamples) resamples, stratified by Opened/Closed")
        }
        return .map(fields)
    }

    static func epochFields(_ e: EpochMetric) -> ConfigValue {
        var fields: [String: ConfigValue] = ["epoch": .int(e.epoch), "loss": .double(rounded(e.loss, places: 6)),
                                             "lr": .double(rounded(e.lr, places: 10)), "seconds": .double(rounded(e.seconds))]
        if let samples = e.samples { fields["samples"] = .int(samples) }
        if let v = e.validationLoss { fields["validation_loss"] = .double(rounded(v, places: 6)) }
        if let v = e.validationShuffledLoss { fields["validation_loss_shuffled_images"] = .double(rounded(v, places: 6)) }
        if !e.stepLosses.isEmpty {
            fields["step_losses"] = .list(e.stepLosses.map { .double(rounded($0, places: 6)) })
            fields["steps_per_loss"] = .int(Trainer.lossWindow)
        }
        return .map(fields)
    }

    static func publishedFields(_ p: PublishedNumbers) -> ConfigValue {
        let pairs: [(String, Double?)] = [("params", p.params), ("memory_gb", p.memoryGB), ("opened", p.opened),
                                          ("closed", p.closed), ("global", p.global)]
        var fields = Dictionary(uniqueKeysWithValues: pairs.compactMap { key, value in value.map { (key, ConfigValue.double($0)) } })
        if let note = p.note { fields["note"] = .string(note) }
        return .map(fields)
    }

    // MARK: CSV and JSONL

    public static let csvColumns = [
        "table", "row", "seed", "cell_id", "run_id", "git_commit", "code_version",
        "params_percent_paper", "params_percent_run", "trainable_run", "total_run",
        "engine_peak_bytes", "peak_rss_bytes", "predicted_paper_bytes",
        "opened", "closed", "global", "opened_recall", "global_recall",
        "global_ci_low", "global_ci_high", "shuffled_global", "global_drop",
        "published_params", "published_memory_gb", "published_opened", "published_closed", "published_global",
        "wall_seconds",
    ]

    /// One CSV line per run, columns as `csvColumns`; empty where a value is absent.
    public static func csvLine(_ run: ReportedRun) -> String {
        let resamples = run.cell.baselines.resamples
        let r = run.results, s = r.scores, published = run.cell.published
        let ci = run.predictions.isEmpty ? nil : Bootstrap.intervals(QuestionSample(run.predictions), resamples: resamples).global
        let values: [String] = [
            run.cell.table, run.cell.label, String(run.cell.seed), run.cell.id, String(run.run.id),
            run.run.provenance.gitCommit ?? "", run.run.provenance.codeVersion,
            number(r.paperScale?.percent, places: 4), number(r.runScale.percent, places: 4),
            String(r.runScale.trainable), String(r.runScale.total),
            r.peakEngineBytes.map(String.init) ?? "", r.peakRSSBytes.map(String.init) ?? "", r.predictedPaperBytes.map(String.init) ?? "",
            number(s.opened), number(s.closed), number(s.global), number(s.openedRecall), number(s.globalRecall),
            number(ci?.low), number(ci?.high),
            number(run.shuffle?.scores.global), number(run.shuffle.map { $0.scores.global - s.global }),
            number(published?.params, places: 3), number(published?.memoryGB), number(published?.opened),
            number(published?.closed), number(published?.global),
            number(run.run.wallSeconds, places: 1),
        ]
        return values.map(csvField).joined(separator: ",")
    }

    public static func csv(_ runs: [ReportedRun]) -> String {
        ([csvColumns.joined(separator: ",")] + runs.map(csvLine)).joined(separator: "\n") + "\n"
    }

    /// One JSON object per test question: the stored prediction, its ground truth and scores.
    public static func predictionLines(_ run: ReportedRun) -> [String] {
        run.predictions.map { p in
            var fields: [String: ConfigValue] = [
                "qid": .int(p.qid), "prediction": .string(p.prediction), "answer": .string(p.answer),
                "group": .string(p.group.rawValue), "score": .double(p.score), "recall": .double(rounded(p.recall, places: 6)),
            ]
            if let type = p.answerType { fields["answer_type"] = .string(type) }
            return ConfigValue.map(fields).canonicalJSON
        }
    }

    // MARK: files

    /// Writes `<directory>/cells/<table>/<slug>.json` for every finished run of the reports. `replace`
    /// (`mile report`, whole tables) first removes the table's folder, so a cell that is no longer done
    /// leaves no file behind; `mile export`, which may select a few cells, only adds and overwrites.
    public static func writeCellFiles(_ reports: [TableReport], to directory: String, replace: Bool = true) throws {
        for report in reports {
            try writeCellFiles(table: report.table.name, runs: report.rows.flatMap(\.runs), to: directory, replace: replace)
        }
    }

    public static func writeCellFiles(table: String, runs: [ReportedRun], to directory: String, replace: Bool) throws {
        let folder = URL(fileURLWithPath: directory).appendingPathComponent("cells").appendingPathComponent(table)
        if replace { try? FileManager.default.removeItem(at: folder) }
        guard !runs.isEmpty else { return }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for run in runs {
            let text = record(run).prettyJSON() + "\n"
            try text.write(to: folder.appendingPathComponent(slug(run) + ".json"), atomically: true, encoding: .utf8)
        }
    }

    // MARK: formatting

    static func rounded(_ value: Double, places: Int = 4) -> Double {
        let scale = pow(10, Double(places))
        return (value * scale).rounded() / scale
    }

    static func number(_ value: Double?, places: Int = 2) -> String {
        value.map { String(format: "%.\(places)f", $0) } ?? ""
    }

    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }
}
