import XCTest
@testable import MileHarness

/// The per-cell JSON files, the CSV and the JSONL predictions, from a store filled through its API.
final class ResultExportTests: XCTestCase {
    func makeReport(_ dir: String) throws -> (TableReport, [QuestionScore]) {
        let table = try ExperimentLoader.load(path: TestSupport.experiment("table1.yaml"))
        let cells = try Planner.expand(table)
        let store = try ResultsStore(path: dir + "/r.db")
        let provenance = Provenance(gitCommit: String(repeating: "c", count: 40), gitDirty: false, blasLibrary: "openblas",
                                    blasThreads: 1, cpuModel: "cpu, with a comma", host: "h", datasetHashes: ["test.json": "abc"])
        guard case let .claimed(id) = try store.claim(ClaimRequest(cell: cells[0], provenance: provenance)) else { throw HarnessError.store("claim") }
        try store.recordEpoch(runID: id, EpochMetric(epoch: 0, loss: 5.25, lr: 3e-4, seconds: 12, samples: 40))
        try store.recordEpoch(runID: id, EpochMetric(epoch: 1, loss: 4.5, lr: 1.5e-4, seconds: 11, samples: 40))
        let (results, items) = try SampleScores.results(["yes", "yes", "liver", "lung"])
        let (shuffled, shuffledItems) = try SampleScores.scored(["no", "yes", "lung", "lung"])
        try store.storeShuffle(ShuffleResult(runID: id, shuffleSeed: 7, scores: shuffled, predictions: shuffledItems))
        try store.complete(runID: id, results: results, predictions: items)
        return (try ReportRenderer.render(table, cells: cells, store: store), items)
    }

    func testCellFileCarriesConfigProvenanceAndScores() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let (report, items) = try makeReport(dir)
        try ReportRenderer.write([report], to: dir + "/out")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/out/cells/table1")
        XCTAssertEqual(files, ["f-lora-lora-r4_s42.json"], "one file per finished run only")
        let record = try ConfigValue.fromJSON(String(contentsOfFile: dir + "/out/cells/table1/f-lora-lora-r4_s42.json", encoding: .utf8))
        let run = try XCTUnwrap(report.rows.first?.runs.first)
        XCTAssertEqual(record["format"], .string(ResultExport.format))
        XCTAssertEqual(record["cell_id"], .string(run.cell.id))
        XCTAssertEqual(record["config"], try ConfigValue.fromJSON(run.cell.canonicalJSON), "the resolved config, as hashed")
        XCTAssertEqual(record["stage_keys.base"], .string(run.cell.stage(.base).key))
        XCTAssertEqual(record["provenance.git_commit"], .string(String(repeating: "c", count: 40)))
        XCTAssertEqual(record["provenance.dataset_sha256"], .map(["test.json": .string("abc")]))
        XCTAssertEqual(record["modules"], .map(["vit": .string("F"), "jtm": .string("lora"), "dec": .string("lora")]))
        XCTAssertEqual(record["rank"], .int(4))
        XCTAssertEqual(record["scores.global"]?.doubleValue ?? -1, run.results.scores.global, accuracy: 1e-4)
        XCTAssertEqual(record["scores.opened_correct"], .int(run.results.scores.openedCorrect))
        let ci = Bootstrap.intervals(QuestionSample(items)).global
        XCTAssertEqual(record["scores.ci95.global"], .list([.double(ResultExport.rounded(ci.low)), .double(ResultExport.rounded(ci.high))]))
        let shuffledGlobal = try XCTUnwrap(run.shuffle?.scores.global)
        XCTAssertEqual(record["shuffled_images.global_drop"]?.doubleValue ?? 0, shuffledGlobal - run.results.scores.global, accuracy: 1e-4)
        XCTAssertEqual(record["epochs"]?.listValue?.count, 2)
        XCTAssertEqual(record["epochs"]?.listValue?.last?["loss"], .double(4.5))
        XCTAssertEqual(record["published.global"], .double(20.34))
        XCTAssertNil(record["predictions"], "per-question answers are in the JSONL export, not the cell file")
    }

    func testStaleFilesAreRemovedWhenNoRunIsDone() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let (report, _) = try makeReport(dir)
        try ResultExport.writeCellFiles([report], to: dir + "/out")
        let table = try ExperimentLoader.load(path: TestSupport.experiment("table1.yaml"))
        let empty = try ReportRenderer.render(table, cells: try Planner.expand(table), store: nil)
        try ResultExport.writeCellFiles([empty], to: dir + "/out")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out/cells/table1"))
    }

    func testCSVAndJSONL() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let (report, items) = try makeReport(dir)
        let runs = report.rows.flatMap(\.runs)
        let lines = ResultExport.csv(runs).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(lines[0].split(separator: ",").count, ResultExport.csvColumns.count)
        let fields = lines[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(fields.count, ResultExport.csvColumns.count)
        let column = { (name: String) in fields[ResultExport.csvColumns.firstIndex(of: name)!] }
        XCTAssertEqual(column("row"), "F LoRA LoRA r4")
        XCTAssertEqual(column("global"), String(format: "%.2f", runs[0].results.scores.global))
        XCTAssertEqual(column("published_global"), "20.34")
        XCTAssertEqual(ResultExport.csvField("a,b \"c\""), "\"a,b \"\"c\"\"\"")

        let predictions = try ResultExport.predictionLines(runs[0]).map(ConfigValue.fromJSON)
        XCTAssertEqual(predictions.count, items.count)
        XCTAssertEqual(predictions.map { $0["qid"]?.intValue }, items.map(\.qid))
        XCTAssertEqual(predictions[1]["prediction"], .string(items[1].prediction))
        XCTAssertEqual(predictions[1]["score"], .double(items[1].score))
    }
}

/// Issue 18 (3): README.md kept only the tables of the last command.
final class ResultsIndexTests: XCTestCase {
    func testReadmeIndexesEveryTableInTheFolder() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let render = { (name: String) -> TableReport in
            let table = try ExperimentLoader.load(path: TestSupport.experiment(name))
            return try ReportRenderer.render(table, cells: try Planner.expand(table), store: nil)
        }
        try ReportRenderer.write([try render("table1.yaml")], to: dir)
        try ReportRenderer.write([try render("table3.yaml")], to: dir)
        let readme = try String(contentsOfFile: dir + "/README.md", encoding: .utf8)
        XCTAssertTrue(readme.contains("| [table3](table3.md) | Results of MILE-IA3 | 0 / "), readme)
        XCTAssertTrue(readme.contains("| [table1](table1.md) | Results of MILE-LoRA | 0 / 10 (rendered by an earlier command) |"), readme)
        XCTAssertTrue(readme.contains("cover the tables rendered by the last command only (table3)"), readme)
        try "not a table".write(toFile: dir + "/notes.md", atomically: true, encoding: .utf8)
        XCTAssertEqual(try ReportRenderer.otherTables(in: dir, except: ["table3"]).map(\.name), ["table1"])
    }
}
