import XCTest
@testable import MileHarness

/// The report's CI and shuffle columns, reference rows and SVG error bars, from a store filled through its API.
final class ReportUncertaintyTests: XCTestCase {
    func testCIShuffleColumnsReferenceRowsAndErrorBars() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let table = try ExperimentLoader.load(path: TestSupport.experiment("table3.yaml"))
        let cells = try Planner.expand(table, overrides: [ConfigOverride("recipe.seeds=[1, 2]")])
        let store = try ResultsStore(path: dir + "/r.db")
        // F IA3 IA3: two seeds, one with a shuffle evaluation; IA3 IA3 IA3: one seed without.
        let plan: [(Int, [String], [String]?)] = [(0, ["yes", "no", "liver", "lung"], ["no", "no", "lung", "lung"]),
                                                  (1, ["no", "no", "liver", "left lung"], nil),
                                                  (2, ["yes", "yes", "kidney", "left lung"], nil)]
        var perQuestion: [[QuestionScore]] = []
        for (index, answers, shuffled) in plan {
            guard case let .claimed(id) = try store.claim(ClaimRequest(cell: cells[index], provenance: Provenance())) else { throw HarnessError.store("claim") }
            let (results, items) = try SampleScores.results(answers)
            if let shuffled {
                let (scores, shuffledItems) = try SampleScores.scored(shuffled)
                try store.storeShuffle(ShuffleResult(runID: id, shuffleSeed: 7, scores: scores, predictions: shuffledItems))
            }
            try store.complete(runID: id, results: results, predictions: items)
            perQuestion.append(items)
        }
        let (refScores, refItems) = try SampleScores.scored(["no", "no", "liver", "liver"])
        let reference = ReferenceResult(kind: .nearestImage, key: "k", settingsJSON: "{\"thumbnail\":16}",
                                        datasetHashes: ["train.json": "aaaa", "test.json": "bbbb"], scores: refScores,
                                        predictions: refItems)
        let report = try ReportRenderer.render(table, cells: cells, store: store, references: [reference])
        let lines = report.markdown.components(separatedBy: "\n")
        let row = { (prefix: String) in lines.first { $0.hasPrefix(prefix) } ?? "" }

        // CI column: the stratified bootstrap of the seed-averaged per-question scores.
        let pooled = try XCTUnwrap(QuestionSample.pooled(Array(perQuestion[0...1])))
        let ci = Bootstrap.intervals(pooled)
        let expectedCI = [ci.opened, ci.closed, ci.global].map { String(format: "[%.1f, %.1f]", $0.low, $0.high) }.joined(separator: " / ")
        let fIA3 = row("| F | IA3 | IA3 |")
        XCTAssertTrue(fIA3.contains(expectedCI), fIA3)
        // Shuffle column: seed 1 only. Shuffled: closed 1 of 2 right, opened 0 of 2 ("lung" ≠ "left lung") →
        // Global 25; real seed 1: closed 2/2, opened 1/2 → Global 75; drop −50.
        XCTAssertTrue(fIA3.contains("| 0.00 / 50.00 / 25.00 (-50.00, 1 of 2 seeds) |"), fIA3)
        XCTAssertTrue(row("| IA3 | IA3 | IA3 |").contains("| — | 1/2 |"), "no shuffle evaluation: a dash")
        XCTAssertTrue(row("| T | IA3 | IA3 |").hasSuffix("| pending | pending | 0/2 |"))

        let referenceRow = row("| *reference: nearest-image (no learning)* |")
        XCTAssertTrue(referenceRow.contains(String(format: "| %.2f | %.2f | %.2f |", refScores.closed, refScores.global, refScores.globalRecall)), referenceRow)
        XCTAssertTrue(referenceRow.hasSuffix("| – | reference |"))
        XCTAssertTrue(report.markdown.contains("train.json aaaa, test.json bbbb"))

        XCTAssertEqual(report.svg.components(separatedBy: "class=\"ci\"").count - 1, 2 * 3 * 4,
                       "an error bar (line and two caps) on each of the two rows with runs, in each of the four panels")
        XCTAssertTrue(report.svg.contains(String(format: "nearest-image %.2f</text>", refScores.opened)), "the Opened panel's reference")
        XCTAssertTrue(report.svg.contains(String(format: "nearest-image %.2f</text>", refScores.global)))
        let readme = ReportRenderer.summary([report])
        XCTAssertTrue(readme.contains(String(format: "| nearest-image (no learning) | %.2f | %.2f | %.2f |", refScores.opened, refScores.closed, refScores.global)), readme)
    }

    func testShuffleRowsAreReplacedAndNeedARun() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try ResultsStore(path: dir + "/r.db")
        let (scores, items) = try SampleScores.scored(["yes", "no", "liver", "lung"])
        XCTAssertThrowsError(try store.storeShuffle(ShuffleResult(runID: 99, shuffleSeed: 7, scores: scores, predictions: items)))
        let table = try ExperimentLoader.load(path: TestSupport.experiment("table3.yaml"))
        let cell = try Planner.expand(table)[0]
        guard case let .claimed(id) = try store.claim(ClaimRequest(cell: cell, provenance: Provenance())) else { throw HarnessError.store("claim") }
        try store.storeShuffle(ShuffleResult(runID: id, shuffleSeed: 7, scores: scores, predictions: items))
        let (other, otherItems) = try SampleScores.scored(["no", "no", "lung", "lung"])
        try store.storeShuffle(ShuffleResult(runID: id, shuffleSeed: 7, scores: other, predictions: otherItems))
        XCTAssertEqual(try store.shuffle(runID: id, seed: 7)?.scores, other)
        XCTAssertEqual(try store.shuffle(runID: id, seed: 7)?.predictions, otherItems)
        XCTAssertNil(try store.shuffle(runID: id, seed: 8))
    }
}
