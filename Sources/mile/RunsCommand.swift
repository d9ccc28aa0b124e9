import ArgumentParser
import Foundation
import MileHarness

/// `mile runs FILE...`: every attempt of the selected cells (a failed try, a resume, a rerun with --force).
struct Runs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every recorded attempt of the selected cells: run id, status, start, wall time, commit, failure.")

    @OptionGroup var experiments: ExperimentOptions

    func validate() throws { try experiments.requireFiles() }

    func run() throws {
        try reportingErrors {
            let store = try experiments.requiredStore(readOnly: true)
            let plans = try experiments.select(TablePlan.make(files: experiments.files, overrides: experiments.parsedOverrides(), store: nil))
            let records = try plans.flatMap(\.cells).flatMap { try store.runs(cellID: $0.id) }
            if records.isEmpty { print("no recorded runs of the \(plans.flatMap(\.cells).count) selected cells in \(experiments.db)"); return }
            RunInspection.attempts(records).forEach { print($0) }
        }
    }
}

/// `mile show RUN`: one run with its config, provenance, epochs and scores.
struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show one run: resolved config, provenance, fine-tuning epochs, scores with CIs, image-shuffle scores.")

    @Argument(help: "The run id (`mile runs` lists them).") var id: Int64
    @Option(name: .long, help: "Results database.") var db: String = Defaults.database
    @Option(name: .long, help: "The image-shuffle evaluation's seed (baselines.shuffle_seed).") var shuffleSeed = 7

    func run() throws {
        try reportingErrors {
            let store = try InspectedStore.open(db)
            let record = try InspectedStore.record(id, in: store, db: db)
            let results = try store.results(runID: id)
            print(try RunInspection.show(record, results: results, epochs: try store.epochs(runID: id),
                                         predictions: try store.predictions(runID: id), shuffle: try store.shuffle(runID: id, seed: shuffleSeed)))
        }
    }
}

/// `mile diff A B`: two runs compared on their config and their per-question scores.
struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two runs: config differences, score differences with a paired bootstrap CI and McNemar's test, flipped questions.")

    @Argument(help: "Run id a.") var a: Int64
    @Argument(help: "Run id b.") var b: Int64
    @Option(name: .long, help: "Results database.") var db: String = Defaults.database
    @Option(name: .long, help: "List at most this many flipped questions.") var flips: Int = 20

    func run() throws {
        try reportingErrors {
            let store = try InspectedStore.open(db)
            let ra = try InspectedStore.record(a, in: store, db: db), rb = try InspectedStore.record(b, in: store, db: db)
            print(try RunInspection.diff(ra, rb, scoresA: try store.predictions(runID: a), scoresB: try store.predictions(runID: b),
                                         flips: max(flips, 0)))
        }
    }
}

enum InspectedStore {
    static func open(_ db: String) throws -> ResultsStore {
        guard FileManager.default.fileExists(atPath: db) else { throw HarnessError.input("no results database at \(db) (`mile run` creates it)") }
        return try ResultsStore(path: db, readOnly: true)
    }

    static func record(_ id: Int64, in store: ResultsStore, db: String) throws -> RunRecord {
        guard let record = try store.run(id: id) else { throw HarnessError.input("no run \(id) in \(db) (`mile runs FILE...` lists the runs)") }
        return record
    }
}
