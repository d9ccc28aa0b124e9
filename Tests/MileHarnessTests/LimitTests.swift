import XCTest
import GRDB
@testable import MileHarness
import MileData

/// Issue 18 (8): `--limit N` (`data.limit`) trains and scores on the first N records only, as a cell of
/// its own that every report marks not comparable.
final class LimitTests: XCTestCase {
    func testALimitedCellIsAnotherCellOfTheSameRow() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let table = try ExperimentLoader.load(path: PipelineFixture.table(in: dir, rows: [PipelineFixture.rowFLoRALoRA]))
        let full = try XCTUnwrap(Planner.expand(table).first)
        let limited = try XCTUnwrap(Planner.expand(table, overrides: [ConfigOverride("data.limit=10")]).first)
        XCTAssertNil(full.config["data.limit"], "0 stays out of every id")
        XCTAssertNotEqual(limited.id, full.id)
        XCTAssertEqual(limited.label, "F LoRA LoRA r4 [data.limit=10]")
        XCTAssertEqual(try Planner.select([limited], cell: "F LoRA LoRA r4").map(\.id), [limited.id])
        XCTAssertEqual(RunData.limited(Array(1...5), 3), [1, 2, 3])
        XCTAssertEqual(RunData.limited(Array(1...5), 0), Array(1...5))
    }

    func testALimitedRunScoresNQuestionsAndTheReportSaysSo() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let table = try ExperimentLoader.load(path: PipelineFixture.table(in: dir, epochs: 1, rows: [PipelineFixture.rowFLoRALoRA]))
        let cells = try Planner.expand(table, overrides: [ConfigOverride("data.limit=10")])
        let store = try ResultsStore(path: dir + "/r.db")
        let options = PipelineOptions(locations: DataLocations(slakeDir: PipelineFixture.synthetic, radDir: nil, cacheDir: dir + "/cache"))
        let outcomes = try PipelineRunner(store: store, options: options, progress: ProgressPrinter(quiet: true)).run(cells)
        XCTAssertEqual(outcomes.map(\.kind), [.done], outcomes.map(\.detail).joined(separator: "; "))
        let run = try XCTUnwrap(store.latestDoneRun(cellID: cells[0].id))
        XCTAssertEqual(try store.predictions(runID: run.id).count, 10)
        XCTAssertEqual(try store.epochs(runID: run.id).first?.samples, 10)
        // Issue 18 (4): the run keeps the stage keys it was planned with and the files it used and made.
        XCTAssertEqual(run.stageKeys, Dictionary(uniqueKeysWithValues: cells[0].stages.map { ($0.kind.rawValue, $0.key) }))
        XCTAssertEqual(run.artifacts["base"], BaseStage.file(cacheDir: dir + "/cache", key: cells[0].stage(.base).key).path)
        XCTAssertEqual(Set(run.artifacts.keys), ["base", "checkpoint"])
        for path in run.artifacts.values { XCTAssertTrue(FileManager.default.fileExists(atPath: path), path) }
        let report = try ReportRenderer.render(table, cells: cells, store: store).markdown
        XCTAssertTrue(report.contains("**Limited runs, not comparable** (`data.limit` 10)"), report)
        XCTAssertTrue(report.contains("(limited to 10, not comparable)"), report)

        // Issue 18 (4): runs of a dirty tree or an unknown commit are flagged.
        func render() throws -> String { try ReportRenderer.render(table, cells: cells, store: store).markdown }
        try store.write { db in try db.execute(sql: "UPDATE runs SET git_commit = 'abc123', git_dirty = 0") }
        XCTAssertFalse(try render().contains("**Warning**"))
        try store.write { db in try db.execute(sql: "UPDATE runs SET git_dirty = 1") }
        XCTAssertTrue(try render().contains("**Warning**: 1 of 1 runs were made by a build from a working tree with uncommitted changes"))
        try store.write { db in try db.execute(sql: "UPDATE runs SET git_commit = NULL, git_dirty = NULL") }
        XCTAssertTrue(try render().contains("**Warning**: 1 of 1 runs"))
    }
}
