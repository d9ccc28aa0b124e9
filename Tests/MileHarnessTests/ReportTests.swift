import XCTest
@testable import MileHarness
import MileData

/// Reports rendered from a database filled through the store API with scorer output.
final class ReportTests: XCTestCase {
    struct Fixture {
        let table: ExperimentTable
        let cells: [PlannedCell]
        let store: ResultsStore
        let dir: String
        var stored: [String: RunResults] = [:]
    }

    func makeFixture() throws -> Fixture {
        let dir = try TestSupport.temporaryDirectory(self)
        let table = try ExperimentLoader.load(path: TestSupport.experiment("table1.yaml"))
        let cells = try Planner.expand(table, overrides: [ConfigOverride("recipe.seeds=[1, 2]")])
        var fixture = Fixture(table: table, cells: cells, store: try ResultsStore(path: dir + "/mile.db"), dir: dir)
        let provenance = Provenance(gitCommit: "0123456789abcdef0123456789abcdef01234567", gitDirty: true, blasLibrary: "OpenBLAS",
                                    blasThreads: 2, cpuModel: "Test CPU", datasetHashes: ["test.json": SHA256.hex("test")])
        // F LoRA LoRA r4: both seeds; LoRA LoRA LoRA r4: one seed; F LoRA LoRA r8 seed 1: failed.
        let plan: [(Int, [String])] = [(0, ["yes", "no", "liver", "lung"]), (1, ["no", "no", "liver", "left lung"]),
                                       (4, ["yes", "yes", "kidney", "left lung"])]
        for (index, answers) in plan {
            guard case let .claimed(id) = try fixture.store.claim(ClaimRequest(cell: cells[index], provenance: provenance)) else { throw HarnessError.store("claim") }
            let (results, predictions) = try SampleScores.results(answers, trainable: 10 + index, total: 1000)
            try fixture.store.complete(runID: id, results: results, predictions: predictions)
            fixture.stored[cells[index].id] = results
        }
        guard case let .claimed(failed) = try fixture.store.claim(ClaimRequest(cell: cells[2], provenance: provenance)) else { throw HarnessError.store("claim") }
        try fixture.store.fail(runID: failed, reason: "NaN")
        return fixture
    }

    func testMarkdownShowsOursBesideThePaperAndPendingWithoutNumbers() throws {
        let fixture = try makeFixture()
        let report = try ReportRenderer.render(fixture.table, cells: fixture.cells, store: fixture.store)
        XCTAssertEqual(report.doneCells, 3)
        XCTAssertEqual(report.totalCells, 20)
        let lines = report.markdown.components(separatedBy: "\n")
        let row = { (prefix: String) in lines.first { $0.hasPrefix(prefix) } ?? "" }

        // Two seeds: mean ± std of the stored closed scores, Δ against the published 50.70.
        let closed = MeanStd([0, 1].map { fixture.stored[fixture.cells[$0].id]!.scores.closed })!
        XCTAssertGreaterThan(closed.std, 0)
        let expected = String(format: "%.2f ± %.2f / 50.70 (%+.2f)", closed.mean, closed.std, closed.mean - 50.70)
        XCTAssertTrue(row("| F | LoRA | LoRA | 4 |").contains(expected), row("| F | LoRA | LoRA | 4 |"))
        XCTAssertTrue(row("| F | LoRA | LoRA | 4 |").hasSuffix("| 2/2 |"))

        // One seed of two done: numbers without ±.
        let one = fixture.stored[fixture.cells[4].id]!
        let lora = row("| LoRA | LoRA | LoRA | 4 |")
        XCTAssertTrue(lora.contains(String(format: "%.2f / 48.65 (%+.2f)", one.scores.opened, one.scores.opened - 48.65)), lora)
        XCTAssertTrue(lora.contains(String(format: "%.3f / 0.327", one.paperScale!.percent)), lora)
        XCTAssertTrue(lora.contains("5.19 / 26.63"), "predicted paper-scale memory in GB: \(lora)")
        XCTAssertTrue(lora.contains("5.0 MB / 80.0 MB"), lora)

        // Failed and pending rows: the status word, and the paper's value, never our numbers.
        let failed = row("| F | LoRA | LoRA | 8 |")
        XCTAssertTrue(failed.contains("failed / 50.70"), failed)
        let pending = row("| T | T | LoRA | 8 |")
        let pytorch = try XCTUnwrap(PyTorchMemory.committed?.cell("T T LoRA r8")).peakBytes
        let pytorchCell = ReportRenderer.pair(MeanStd([Double(pytorch) / 1e9]), 28.11, digits: 2, word: "–")
        XCTAssertEqual(pending, "| T | T | LoRA | 8 | pending / 61.919 | \(pytorchCell) | pending / 28.11 | pending | pending / 78.66 | pending | pending / 80.56 | pending / 79.30 | pending | pending | pending | 0/2 |",
                       "the PyTorch-equivalent Memory is measured once per config, not by a run: shown while pending")

        XCTAssertTrue(report.markdown.contains("1. paper inconsistency: Global should be 19.34"), "the paper's inconsistency is a footnote")
        XCTAssertTrue(failed.contains("failed / 20.34 [1]"), "both F LoRA LoRA rows share footnote 1: \(failed)")
        XCTAssertTrue(report.markdown.contains("3 of 20 cells done"))
        XCTAssertTrue(report.markdown.contains("model `small`"))
        XCTAssertTrue(report.markdown.contains("git 0123456789ab (dirty)"))
        XCTAssertTrue(report.markdown.contains("test.json \(SHA256.hex("test").prefix(16))"))
        XCTAssertTrue(report.markdown.contains("Test CPU; BLAS OpenBLAS × 2 threads"))
    }

    /// Issue 18 (9): a Δ that rounds to zero printed as "-0.000".
    func testDifferencesThatRoundToZeroHaveNoSign() {
        XCTAssertEqual(ReportRenderer.signed(-0.0001, digits: 3), "0.000")
        XCTAssertEqual(ReportRenderer.signed(0.0004, digits: 3), "0.000")
        XCTAssertEqual(ReportRenderer.signed(-0.0006, digits: 3), "-0.001")
        XCTAssertEqual(ReportRenderer.signed(1.25, digits: 2), "+1.25")
        XCTAssertEqual(ReportRenderer.pair(MeanStd([0.16289]), 0.163, digits: 3, word: "pending"), "0.163 / 0.163 (0.000)")
        XCTAssertEqual(ReportRenderer.pair(MeanStd([0.16289, 0.16289 + 1e-15]), 0.163, digits: 3, word: "n/a", deterministic: true),
                       "0.163 / 0.163 (0.000)", "no ± 0.000 on a column seeds cannot change")
        XCTAssertEqual(ReportRenderer.pair(MeanStd([50, 50]), 49, digits: 2, word: "n/a"), "50.00 ± 0.00 / 49.00 (+1.00)")
    }

    func testSVGAndFiles() throws {
        let fixture = try makeFixture()
        let report = try ReportRenderer.render(fixture.table, cells: fixture.cells, store: fixture.store)
        XCTAssertTrue(report.svg.hasPrefix("<svg"))
        XCTAssertTrue(report.svg.hasSuffix("</svg>\n"))
        // Four panels (Global, Opened, Closed against #Params; Global against memory), each with every row's
        // paper point and the done rows' points; the key has one marker per row.
        XCTAssertEqual(report.svg.components(separatedBy: "class=\"paper\"").count - 1, 10 * 4, "10 paper points per panel")
        XCTAssertEqual(report.svg.components(separatedBy: "class=\"ours\"").count - 1, 2 * 4, "2 rows with results per panel")
        XCTAssertEqual(report.svg.components(separatedBy: "class=\"key\"").count - 1, 10)
        for title in ["Global vs trainable parameters", "Opened vs trainable parameters", "Closed vs trainable parameters",
                      "Global vs memory (paper scale; ours: PyTorch-equivalent)"] {
            XCTAssertTrue(report.svg.contains(">\(title)</text>"), title)
        }
        XCTAssertTrue(report.svg.contains("scale small · SLAKE-en test, 4 questions · up to 2 seeds per row"), report.svg)
        XCTAssertTrue(report.svg.contains(">10. T T LoRA r8 (pending)</text>"), report.svg)
        XCTAssertTrue(report.svg.contains(">1. F LoRA LoRA r4</text>"))
        XCTAssertTrue(report.svg.contains("<circle"), "LoRA rows are circles")

        let out = fixture.dir + "/results"
        try ReportRenderer.write([report], to: out)
        XCTAssertEqual(try String(contentsOfFile: out + "/table1.md", encoding: .utf8), report.markdown)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/table1.svg"))
        let readme = try String(contentsOfFile: out + "/README.md", encoding: .utf8)
        XCTAssertTrue(readme.contains("| [table1](table1.md) | Results of MILE-LoRA | 3 / 20 | [table1.svg](table1.svg) |"), readme)
    }

    func testWithoutADatabaseEverythingIsPending() throws {
        let table = try ExperimentLoader.load(path: TestSupport.experiment("table3.yaml"))
        let report = try ReportRenderer.render(table, cells: Planner.expand(table), store: nil)
        XCTAssertEqual(report.doneCells, 0)
        let cellTable = report.markdown.components(separatedBy: "\n## ")[0]   // the cell table, not the findings section
        let rows = cellTable.components(separatedBy: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| ViT") }
        XCTAssertEqual(rows.count, 5)
        for row in rows {
            var ours = Array(row.components(separatedBy: " | ").dropFirst(3))
            ours.remove(at: 1)   // the PyTorch-equivalent Memory: not a run's number (PyTorchMemoryTests)
            XCTAssertTrue(ours.dropLast().allSatisfy { $0.hasPrefix("pending") }, row)
        }
        XCTAssertFalse(report.markdown.contains("Rank"), "no rank column without LoRA")
    }
}

extension ReportTests {
    /// Issue 18 (9): one marker shape per PEFT method in the plot.
    func testMarkersFollowTheMethod() {
        XCTAssertEqual(SVGPlot.Method([.trained, .ia3, .ia3]), .ia3)
        XCTAssertEqual(SVGPlot.Method([.frozen, .prefix, .prefix]), .prefix)
        XCTAssertEqual(SVGPlot.Method([.trained, .trained, .lora]), .lora)
        XCTAssertEqual(SVGPlot.Method([.frozen, .ptv2, .ptv2]), .ptv2)
        XCTAssertEqual(SVGPlot.Method([.trained, .trained]), .full)
        let shapes = SVGPlot.Method.allCases.map { SVGPlot.marker($0, at: 10, 10, "").prefix(7) }
        XCTAssertEqual(shapes, ["<circle", "<rect x", "<polygo", "<polygo", "<polygo"])
        XCTAssertEqual(Set(SVGPlot.Method.allCases.map { SVGPlot.marker($0, at: 10, 10, "") }).count, 5, "five distinct markers")
    }
}
