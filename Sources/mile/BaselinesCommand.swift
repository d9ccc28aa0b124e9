import ArgumentParser
import Foundation
import MileHarness

struct Baselines: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute (or show the stored) reference rows on SLAKE-en test: blind train-prior and nearest-image.",
        discussion: "Settings come from the `baselines:` section of the experiment files (and --set). With --db the results are stored there (as `mile run` and `mile report` do); --no-store only prints them.")

    @OptionGroup var experiments: ExperimentOptions

    func validate() throws { try experiments.requireFiles() }

    @Option(name: .long, help: "Cache folder (image cache for the thumbnails).")
    var cache: String = Defaults.cache

    @Flag(name: .long, help: "Compute and print without opening or writing a database.")
    var noStore = false

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            if experiments.selectsCells {
                throw HarnessError.input("mile baselines computes the reference rows of the test set; --cell and --row select cells for plan, run and export")
            }
            let plans = try TablePlan.make(files: experiments.files, overrides: experiments.parsedOverrides(), store: nil)
            guard let slakeDir = experiments.slake ?? ProcessInfo.processInfo.environment["SLAKE_DIR"] else {
                throw HarnessError.input("no SLAKE folder: pass --slake DIR or set SLAKE_DIR")
            }
            let settings = plans.first?.cells.first?.baselines ?? BaselineSettings()
            let references = noStore
                ? try ReferenceBaselines.compute(slakeDir: slakeDir, cacheDir: cache, settings: settings)
                : try ReferenceBaselines.ensure(store: ResultsStore(path: experiments.db), slakeDir: slakeDir, cacheDir: cache,
                                                settings: settings)
            print(json ? Self.json(references) : Self.text(references, settings: settings))
        }
    }

    static func text(_ references: [ReferenceResult], settings: BaselineSettings) -> String {
        var lines = ["reference rows (thumbnail \(settings.thumbnail)×\(settings.thumbnail)), SLAKE-en test:"]
        for r in references {
            let s = r.scores
            let name = r.kind.display.padding(toLength: 30, withPad: " ", startingAt: 0)
            lines.append(name + String(format: " Opened %6.2f (%d/%d)  Closed %6.2f (%d/%d)  Global %6.2f  OPEN-type %@  CLOSED-type %@",
                                s.opened, s.openedCorrect, s.openedCount, s.closed, s.closedCorrect,
                                s.closedCount, s.global, s.openTypeAccuracy.map { String(format: "%.2f", $0) } ?? "n/a",
                                s.closedTypeAccuracy.map { String(format: "%.2f", $0) } ?? "n/a"))
        }
        return lines.joined(separator: "\n")
    }

    static func json(_ references: [ReferenceResult]) -> String {
        ConfigValue.list(references.map { r in
            .map(["kind": .string(r.kind.rawValue), "key": .string(r.key), "opened": .double(r.scores.opened),
                  "closed": .double(r.scores.closed), "global": .double(r.scores.global),
                  "predictions": .list(r.predictions.map { .map(["qid": .int($0.qid), "answer": .string($0.prediction)]) })])
        }).prettyJSON()
    }
}
