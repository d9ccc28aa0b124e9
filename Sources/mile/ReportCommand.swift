import ArgumentParser
import Foundation
import MileHarness

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render results/<table>.md and .svg beside the paper's numbers, and results/README.md.")

    @OptionGroup var experiments: ExperimentOptions

    func validate() throws { try experiments.requireFiles() }

    @Option(name: .long, help: "Output directory.")
    var out: String = "results"

    @Option(name: .long, help: "Cache folder (the image cache the reference rows' thumbnails use).")
    var cache: String = Defaults.cache

    func run() throws {
        try reportingErrors {
            if experiments.selectsCells {
                throw HarnessError.input("mile report renders whole tables (a partial one would replace the full file); --cell and --row select cells for plan, run and export")
            }
            let plans = try TablePlan.make(files: experiments.files, overrides: experiments.parsedOverrides(), store: nil)
            // A mistyped --db would render every cell "pending" over good tables.
            let store = try experiments.requiredStore(readOnly: false)
            let versions = try experiments.currentVersions()
            let slakeDir = experiments.slake ?? ProcessInfo.processInfo.environment["SLAKE_DIR"]
            let references = try ReferenceBaselines.forReport(store: store, cells: plans.flatMap(\.cells), slakeDir: slakeDir,
                                                              cacheDir: cache)
            let reports = try plans.map {
                try ReportRenderer.render($0.table, cells: $0.cells, store: store, versions: versions, references: references,
                                          cacheDir: cache)
            }
            try ReportRenderer.write(reports, to: out)
            if reports.allSatisfy({ $0.doneCells == 0 }) {
                FileHandle.standardError.write(Data("warning: no finished cell in \(experiments.db) for these tables; the tables show statuses only\n".utf8))
            }
            for report in reports {
                print("\(out)/\(report.table.name).md: \(report.doneCells)/\(report.totalCells) cells done")
            }
            print("\(out)/README.md")
        }
    }
}
