import ArgumentParser
import Foundation
import MileHarness

/// `mile merge OUT SHARD_OR_DIR...`: shard databases (a SLURM run's `runs/<id>/shards/`) merged into one.
struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge results databases (SLURM shards) into one; merging again adds nothing.",
        discussion: """
            Runs are matched by their UUID: a shard merged before adds nothing, a shard that changed since (a run that \
            finished) updates its runs in place. A run still `running` in a shard is recorded interrupted (its task \
            ended without recording it). Epochs, results, predictions, image-shuffle evaluations and reference rows \
            are copied. A shard written by another schema version is refused. Folders are searched for *.db files.
            """)

    @Argument(help: "The database to merge into (created when missing).")
    var out: String

    @Argument(help: "Shard databases or folders holding them.")
    var shards: [String]

    func run() throws {
        try reportingErrors {
            let files = try MergeInputs.shardFiles(shards, excluding: out)
            if files.isEmpty { throw HarnessError.input("no shard database (*.db) in \(shards.joined(separator: ", "))") }
            let store = try ResultsStore(path: out)
            var total = MergeSummary(shard: "total")
            for file in files {
                let summary = try store.merge(shard: file)
                print("merged \(summary.text)")
                total.added += summary.added
                total.updated += summary.updated
                total.unchanged += summary.unchanged
                total.dangling += summary.dangling
                total.references += summary.references
            }
            print("\(out): \(files.count) shard\(files.count == 1 ? "" : "s"); \(total.text.dropFirst("total: ".count))")
        }
    }
}

/// `mile status RUN_DIR`: the run's jobs in squeue and its cells as the merged shards show them.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a `mile submit --slurm` run: its jobs still in squeue and each cell's status from its shards.")

    @Argument(help: "The run folder (runs/<id>).")
    var runDir: String

    func run() throws {
        try reportingErrors {
            let folder = SlurmRunFolder(path: SubmitSupport.absolute(runDir))
            let frozen = try SlurmManifest.read(folder.manifest)
            print("run \(frozen.runID): \(frozen.cellIDs.count) cells")
            print(queueText(folder))
            // A live view: shards merged into a scratch copy, claims of running tasks kept as running.
            let scratch = NSTemporaryDirectory() + "mile-status-\(UUID().uuidString).db"
            defer { for suffix in ["", ".lock", "-wal", "-shm", "-journal"] { try? FileManager.default.removeItem(atPath: scratch + suffix) } }
            let store = try ResultsStore(path: scratch, journal: .rollback)
            if FileManager.default.fileExists(atPath: folder.merged) { _ = try store.merge(shard: folder.merged, dangling: .keep) }
            for file in try MergeInputs.shardFiles([folder.shards], excluding: folder.merged) { _ = try store.merge(shard: file, dangling: .keep) }
            let selection = try ExperimentOptions.parse(frozen.selection + ["--db", scratch])
            let plans = try TablePlan.make(files: selection.files, overrides: selection.parsedOverrides(), store: store)
            let wanted = Set(frozen.cellIDs)
            var seen = Set<String>()
            var counts: [String: Int] = [:]
            for (cell, status) in zip(plans.flatMap(\.cells), plans.flatMap(\.statuses)) where wanted.contains(cell.id) && seen.insert(cell.id).inserted {
                counts[status.state.rawValue, default: 0] += 1
                print("  \(cell.shortID)  \(cell.label.padding(toLength: 18, withPad: " ", startingAt: 0)) seed \(cell.seed)  \(status.state.rawValue)\(status.reason.map { ": \($0)" } ?? "")")
            }
            print("  " + counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        }
    }

    private func queueText(_ folder: SlurmRunFolder) -> String {
        let ids = ((try? String(contentsOfFile: folder.jobs, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        guard !ids.isEmpty else { return "jobs: none recorded" }
        guard let text = try? Sbatch.output(["squeue", "-h", "-j", ids.joined(separator: ","), "-o", "%i %j %T %r"]) else {
            return "jobs \(ids.joined(separator: ", ")): squeue unavailable"
        }
        let lines = text.split(separator: "\n")
        return lines.isEmpty ? "jobs \(ids.joined(separator: ", ")): none left in squeue" : "squeue:\n" + lines.map { "  " + $0 }.joined(separator: "\n")
    }
}
