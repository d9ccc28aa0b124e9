import XCTest
@testable import MileHarness
import MileData

/// Issue 18 (1): rows that differ only by `set:` (an ablation) are distinct rows everywhere: label,
/// selection, stale check and report; a row's `name:` and `note:` show.
final class RowIdentityTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = try TestSupport.temporaryDirectory(self)
        try TestSupport.copyDefaults(into: dir)
    }

    let yaml = """
        table: t
        extends: defaults.yaml
        rows:
          - {vit: F, jtm: T, dec: lora, rank: 4}
          - {vit: F, jtm: T, dec: lora, rank: 4, set: {recipe: {lr: 1.0e-4}}, note: lower lr}
          - {vit: F, jtm: T, dec: lora, rank: [4, 8], name: long, set: {recipe: {epochs: 3}}}

        """

    func cells() throws -> [PlannedCell] {
        let path = try TestSupport.write(yaml, to: dir, name: "ablation.yaml")
        return try Planner.expand(ExperimentLoader.load(path: path), overrides: [ConfigOverride("recipe.seeds=[1, 2]")])
    }

    func testLabelsCarryTheSetDifferenceOrTheName() throws {
        let labels = try cells().map(\.label)
        XCTAssertEqual(labels.enumerated().filter { $0.offset % 2 == 0 }.map(\.element),
                       ["F T LoRA r4", "F T LoRA r4 [recipe.lr=0.0001]", "long r4", "long r8"])
    }

    func testRowSelectsOnlyItsOwnCells() throws {
        let all = try cells()
        XCTAssertEqual(try Planner.select(all, cell: "F T LoRA r4").map(\.seed), [1, 2])
        XCTAssertEqual(try Planner.select(all, cell: "F T LoRA r4 [recipe.lr=0.0001]").count, 2)
        XCTAssertEqual(try Planner.select(all, cell: "long r8").count, 2)
    }

    func testReportKeepsTheRowsApartAndShowsNameAndNote() throws {
        let all = try cells()
        let store = try ResultsStore(path: dir + "/mile.db")
        let provenance = Provenance(datasetHashes: ["test.json": SHA256.hex("test")])
        // Only the lr row is done: the plain row must stay pending, not become its second "seed".
        for (index, answers) in [(2, ["yes", "no", "liver", "lung"]), (3, ["no", "no", "liver", "left lung"])] {
            guard case let .claimed(id) = try store.claim(ClaimRequest(cell: all[index], provenance: provenance)) else { throw HarnessError.store("claim") }
            let (results, predictions) = try SampleScores.results(answers, trainable: 10, total: 1000)
            try store.complete(runID: id, results: results, predictions: predictions)
        }
        let table = try ExperimentLoader.load(path: dir + "/ablation.yaml")
        let report = try ReportRenderer.render(table, cells: all, store: store)
        XCTAssertEqual(report.rows.map(\.label), ["F T LoRA r4", "F T LoRA r4 [recipe.lr=0.0001]", "long r4", "long r8"])
        XCTAssertEqual(report.rows.map { $0.runs.count }, [0, 2, 0, 0])
        let lines = report.markdown.components(separatedBy: "\n")
        XCTAssertTrue(lines.contains { $0.hasPrefix("| Row | ViT |") }, report.markdown)
        let plain = lines.first { $0.hasPrefix("| F T LoRA r4 | F |") } ?? ""
        XCTAssertTrue(plain.hasSuffix("| 0/2 |"), plain)
        let lowered = lines.first { $0.hasPrefix("| F T LoRA r4 [recipe.lr=0.0001] [1] | F |") } ?? ""
        XCTAssertTrue(lowered.hasSuffix("| 2/2 |"), report.markdown)
        XCTAssertTrue(report.markdown.contains("1. lower lr"), report.markdown)
    }

    func testDuplicateNamesAreRefusedWithBothLines() throws {
        let bad = """
            table: t
            extends: defaults.yaml
            rows:
              - {vit: F, jtm: T, dec: ia3, name: a}
              - {vit: T, jtm: T, dec: ia3, name: a}

            """
        let path = try TestSupport.write(bad, to: dir, name: "bad.yaml")
        XCTAssertThrowsError(try ExperimentLoader.load(path: path)) { error in
            guard case let HarnessError.invalid(position, message) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(position.line, 5)
            XCTAssertTrue(message.contains("label 'a' is already the label of the row at line 4"), message)
        }
        let blank = bad.replacingOccurrences(of: "name: a}\n  - {vit: T", with: "name: ' '}\n  - {vit: T")
        XCTAssertThrowsError(try ExperimentLoader.load(path: try TestSupport.write(blank, to: dir, name: "blank.yaml"))) {
            XCTAssertTrue("\($0)".contains("non-empty row name"), "\($0)")
        }
    }
}
