import Foundation
import XCTest
@testable import MileHarness
import MileModel

/// Issue 15: the committed PyTorch-equivalent Memory (bench/memory_pytorch.json, `make memory-peer`), the
/// report's column and `mile params --json`'s memory_gb.
final class PyTorchMemoryTests: XCTestCase {
    static let paperTables = ["table1.yaml", "table2.yaml", "table3.yaml", "table4.yaml"]

    /// Every planned cell of Tables 1-4, at the experiment files' defaults.
    func paperCells() throws -> [PlannedCell] {
        try Self.paperTables.flatMap { try Planner.expand(ExperimentLoader.load(path: TestSupport.experiment($0))) }
    }

    func committed() throws -> PyTorchMemory {
        XCTAssertEqual(PyTorchMemory.committedPath, TestSupport.root + "/bench/memory_pytorch.json")
        return try PyTorchMemory.load(path: PyTorchMemory.committedPath)
    }

    func testTheCommittedFileHasEveryPaperCellAtThePaperShape() throws {
        let memory = try committed()
        let cells = try paperCells()
        XCTAssertEqual(cells.count, 23)
        XCTAssertEqual(memory.cells.map(\.label), cells.map(\.assignment.label), "the 23 rows in table order")
        XCTAssertEqual([memory.batch, memory.questionTokens], [20, 35])
        XCTAssertGreaterThanOrEqual(memory.answerTokens, 6)
        XCTAssertTrue(memory.measured(ModelConfig.paper), "measured with the engine's paper preset")
        let weights = 361_478_972 * 4
        for cell in cells {
            let bytes = try XCTUnwrap(memory.peakBytes(of: cell), cell.label)
            let measured = try XCTUnwrap(memory.cell(cell.assignment.label))
            XCTAssertGreaterThan(bytes, weights, "weights alone are 1.45 GB: \(cell.label)")
            XCTAssertGreaterThanOrEqual(bytes, measured.typicalAnswerPeakBytes, "longer answers never need less: \(cell.label)")
            XCTAssertTrue(["forward", "backward", "step"].contains(measured.peakPhase), cell.label)
        }
        XCTAssertNotNil(PyTorchMemory.committed, "the report's default source loads")
    }

    func testAnotherModelConfigOrCellHasNoFigure() throws {
        let memory = try committed()
        let label = "IA3 IA3 IA3"
        XCTAssertNotNil(memory.peakBytes(label: label, config: ModelConfig.paper))
        var other = ModelConfig.paper
        other.vitIA3Target = .attn
        XCTAssertNil(memory.peakBytes(label: label, config: other), "another ViT IA3 target set is another model")
        other = ModelConfig.paper
        other.prefixTokens = 20
        XCTAssertNil(memory.peakBytes(label: "F F Prefix", config: other))
        XCTAssertNil(memory.peakBytes(label: "T T T", config: ModelConfig.paper), "not a paper row")
    }

    func testMalformedFilesAreNamed() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let path = try TestSupport.write("{\"torch\": \"2\", \"shape\": {\"batch\": 20}, \"config\": {}, \"cells\": []}", to: dir, name: "m.json")
        XCTAssertThrowsError(try PyTorchMemory.load(path: path)) { error in
            XCTAssertTrue("\(error)".contains("m.json: missing integer 'question_tokens'"), "\(error)")
        }
        XCTAssertThrowsError(try PyTorchMemory.load(path: dir + "/absent.json")) { error in
            XCTAssertTrue("\(error)".contains("make memory-peer"), "\(error)")
        }
    }

    /// The report shows the figure for every paper row, pending or done, beside the paper's number.
    func testTheReportShowsThePyTorchEquivalentBesideThePaper() throws {
        let memory = try committed()
        for name in Self.paperTables {
            let table = try ExperimentLoader.load(path: TestSupport.experiment(name))
            let cells = try Planner.expand(table)
            let report = try ReportRenderer.render(table, cells: cells, store: nil, pytorch: memory)
            XCTAssertTrue(report.markdown.contains("Memory GB (paper scale, PyTorch-equivalent): PyTorch / paper (Δ)"))
            for row in report.rows {
                let bytes = try XCTUnwrap(row.pytorchMemoryBytes, row.label)
                let paper = try XCTUnwrap(row.published?.memoryGB)
                let shown = ReportRenderer.pair(MeanStd([Double(bytes) / 1e9]), paper, digits: 2, word: "–")
                let line = report.markdown.components(separatedBy: "\n").first { $0.contains(" | \(shown) | ") }
                XCTAssertNotNil(line, "\(row.label): \(shown)")
            }
            let none = try ReportRenderer.render(table, cells: cells, store: nil, pytorch: nil)
            XCTAssertTrue(none.rows.allSatisfy { $0.pytorchMemoryBytes == nil })
        }
    }

    // MARK: mile params --json

    func params(_ arguments: [String]) throws -> [String: Any] {
        let dir = try TestSupport.temporaryDirectory(self)   // not the checkout: the defaults must not depend on it
        let process = Process()
        process.executableURL = URL(fileURLWithPath: PipelineFixture.mileBinary)
        process.arguments = ["params"] + arguments + ["--json"]
        process.currentDirectoryURL = URL(fileURLWithPath: dir)
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, String(decoding: data, as: UTF8.self))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func testParamsJSONHasTheThreeMemoryFigures() throws {
        let memory = try committed()
        let row = try params(["--vit", "T", "--jtm", "T", "--dec", "lora", "--rank", "8"])
        let gb = try XCTUnwrap(row["memory_gb"] as? [String: Any])
        let expected = (Double(try XCTUnwrap(memory.cell("T T LoRA r8")).peakBytes) / 1e6).rounded() / 1e3
        XCTAssertEqual(gb["pytorch"] as? Double, expected)
        XCTAssertEqual(gb["published"] as? Double, 28.11)
        XCTAssertGreaterThan(try XCTUnwrap(gb["engine"] as? Double), 20, "a trained ViT holds its activations")
        XCTAssertEqual(row["total"] as? Int, 362_068_796)

        let other = try XCTUnwrap(try params(["--vit", "T", "--jtm", "T", "--dec", "T"])["memory_gb"] as? [String: Any])
        XCTAssertTrue(other["pytorch"] is NSNull && other["published"] is NSNull, "not a paper row: \(other)")
        XCTAssertNotNil(other["engine"] as? Double)
    }
}
