import ArgumentParser
import Foundation
import MileHarness

/// Machine-readable results of the finished cells, for scripts and notebooks.
struct Export: ParsableCommand {
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case json, csv, jsonl
    }

    static let configuration = CommandConfiguration(
        abstract: "Export finished cells: one JSON file per cell, one CSV per table, or per-question JSONL predictions.",
        discussion: """
            json: <out>/cells/<table>/<row>_s<seed>.json (config, provenance, params, memory, scores with 95 % CIs, \
            image-shuffle scores, epoch losses; `mile report` writes the same files). csv: <out>/<table>.csv, one \
            line per finished run. jsonl: <out>/predictions/<table>/<row>_s<seed>.jsonl, one line per test question \
            (prediction, ground truth, group, score).
            """)

    @OptionGroup var experiments: ExperimentOptions

    func validate() throws { try experiments.requireFiles() }

    @Option(name: .long, help: "json, csv or jsonl.")
    var format: Format = .json

    @Option(name: .long, help: "Output directory.")
    var out: String = "results"

    func run() throws {
        try reportingErrors {
            let plans = try experiments.select(TablePlan.make(files: experiments.files, overrides: experiments.parsedOverrides(), store: nil))
            let store = try experiments.requiredStore(readOnly: true)
            let versions = try experiments.currentVersions()
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            for plan in plans {
                let runs = try ReportRenderer.rows(plan.cells, store: store, versions: versions).flatMap(\.runs)
                print("\(plan.table.name): \(runs.count) finished runs -> \(try write(plan.table.name, runs: runs))")
            }
        }
    }

    func write(_ table: String, runs: [ReportedRun]) throws -> String {
        let root = URL(fileURLWithPath: out)
        switch format {
        case .json:
            try ResultExport.writeCellFiles(table: table, runs: runs, to: out, replace: false)
            return root.appendingPathComponent("cells/\(table)").path
        case .csv:
            let file = root.appendingPathComponent("\(table).csv")
            try ResultExport.csv(runs).write(to: file, atomically: true, encoding: .utf8)
            return file.path
        case .jsonl:
            let folder = root.appendingPathComponent("predictions/\(table)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for run in runs {
                let text = ResultExport.predictionLines(run).joined(separator: "\n") + "\n"
                try text.write(to: folder.appendingPathComponent(ResultExport.slug(run) + ".jsonl"), atomically: true, encoding: .utf8)
            }
            return folder.path
        }
    }
}
