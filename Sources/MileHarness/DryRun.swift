import Foundation

/// `mile run --dry-run`: what a run would do, from the plan, the store and the cache, without training.
public enum DryRun {
    /// The cells that would run, the bases that would be pretrained first, and the fine-tuning time recorded for
    /// another seed of the same cell config (bases are not recorded as runs, so their time is unknown).
    public static func describe(_ cells: [PlannedCell], store: ResultsStore?, versions: CurrentVersions, cacheDir: String,
                                force: Bool, jobs: Int) throws -> [String] {
        var pending: [PlannedCell] = []
        for cell in cells where try force || Planner.status(of: cell, store: store, versions: versions).state != .done {
            pending.append(cell)
        }
        var lines = ["\(pending.count) of \(cells.count) selected cells would run" + (force ? " (--force)" : "")]
        let bases = Set(pending.map { $0.stage(.base).key }).sorted()
        let missing = bases.filter { !FileManager.default.fileExists(atPath: BaseStage.file(cacheDir: cacheDir, key: $0).path) }
        lines.append("bases: \(bases.count) needed, \(missing.count) to pretrain first" + (missing.isEmpty ? "" : " (\(missing.map { String($0.prefix(12)) }.joined(separator: ", ")))"))
        var known = 0.0, unknown = 0
        for cell in pending {
            let estimate = try recordedSeconds(cell, store: store)
            if let estimate { known += estimate } else { unknown += 1 }
            lines.append("  \(cell.shortID)  \(cell.table)  \(cell.label)  seed \(cell.seed)  " + (estimate.map { "~" + RunInspection.duration($0) + " of fine-tuning" } ?? "no recorded seed of this config"))
        }
        let workers = max(1, min(jobs, pending.count))
        lines.append("estimate: " + (known > 0 ? "~\(RunInspection.duration(known / Double(workers))) of fine-tuning for the \(pending.count - unknown) cells with a recorded seed on \(workers) worker(s), plus evaluation" : "none recorded")
                     + (unknown > 0 ? "; \(unknown) cells without one" : "") + (missing.isEmpty ? "" : "; plus the base pretraining"))
        return lines
    }

    /// Mean recorded fine-tuning seconds (the sum of the epochs) of the done runs whose config is the cell's but
    /// for the seed and the decoding (a re-evaluation copies its epochs, so it counts as the training it reused).
    static func recordedSeconds(_ cell: PlannedCell, store: ResultsStore?) throws -> Double? {
        guard let store else { return nil }
        let target = trainingConfig(cell.config)
        var totals: [Double] = []
        for run in try store.doneRuns(table: cell.table, label: cell.label)
        where trainingConfig(try ConfigValue.fromJSON(run.configJSON)) == target {
            let epochs = try store.epochs(runID: run.id)
            if !epochs.isEmpty { totals.append(epochs.reduce(0) { $0 + $1.seconds }) }
        }
        return totals.isEmpty ? nil : totals.reduce(0, +) / Double(totals.count)
    }

    static func trainingConfig(_ config: ConfigValue) -> ConfigValue {
        config.removing(["recipe", "seed"]).removing(["decoding"])
    }
}
