import XCTest
@testable import MileHarness

/// Issue 18 (6): losses every `Trainer.lossWindow` steps for every epoch of a cell and of its base (which
/// records them in its own file), in the store, the per-cell export and `<table>-loss.svg`.
final class LossCurveTests: XCTestCase {
    func testWindowsAreSampleWeightedMeansOfTheirSteps() {
        var window = LossWindow()
        for step in 0..<(Trainer.lossWindow + 2) { window.add(Double(step), samples: step == 0 ? 3 : 1) }
        let means = window.means()
        let first = (0.0 * 3 + Double((1..<Trainer.lossWindow).reduce(0, +))) / Double(Trainer.lossWindow + 2)
        XCTAssertEqual(means.count, 2)
        XCTAssertEqual(means[0], first, accuracy: 1e-12)
        XCTAssertEqual(means[1], Double(2 * Trainer.lossWindow + 1) / 2, accuracy: 1e-12, "the short last window")
        let history = [EpochMetric(epoch: 0, loss: 2, lr: 1e-3, seconds: 1, samples: 4)]
        XCTAssertEqual(Trainer.decodeHistory("0 2.0 0.001 1.0 4"), history, "a checkpoint from before the step losses")
        var withSteps = history[0]
        withSteps.stepLosses = [2.5, 1.5]
        XCTAssertEqual(Trainer.decodeHistory(Trainer.encodeHistory([withSteps])), [withSteps])
        withSteps.validationLoss = 3.25
        withSteps.validationShuffledLoss = 4.5
        XCTAssertEqual(Trainer.decodeHistory(Trainer.encodeHistory([withSteps])), [withSteps])
    }

    func testACellAndItsBaseRecordTheirCurves() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let table = try ExperimentLoader.load(path: PipelineFixture.table(in: dir, epochs: 2, rows: [PipelineFixture.rowFLoRALoRA]))
        let cells = try Planner.expand(table, overrides: [ConfigOverride("data.limit=120")])   // 8 steps an epoch
        let store = try ResultsStore(path: dir + "/r.db")
        let cache = dir + "/cache"
        let options = PipelineOptions(locations: DataLocations(slakeDir: PipelineFixture.synthetic, radDir: nil, cacheDir: cache))
        _ = try PipelineRunner(store: store, options: options, progress: ProgressPrinter(quiet: true)).run(cells)
        let run = try XCTUnwrap(store.latestDoneRun(cellID: cells[0].id))
        let epochs = try store.epochs(runID: run.id)
        let steps = (try XCTUnwrap(epochs.first?.samples) + 15) / 16   // batch 16 in the fixture
        let windows = (steps + Trainer.lossWindow - 1) / Trainer.lossWindow
        XCTAssertEqual(epochs.map(\.stepLosses.count), [windows, windows])
        // After each epoch, the loss on SLAKE validate with true and shuffled images.
        for epoch in epochs {
            let loss = try XCTUnwrap(epoch.validationLoss), shuffled = try XCTUnwrap(epoch.validationShuffledLoss)
            XCTAssertTrue(loss.isFinite && shuffled.isFinite && loss > 0)
        }
        XCTAssertNotEqual(epochs[0].validationLoss, epochs[1].validationLoss)
        let base = BaseStage.history(cacheDir: cache, key: cells[0].stage(.base).key)
        XCTAssertEqual(base.count, 1)
        XCTAssertFalse(base[0].stepLosses.isEmpty)

        let report = try ReportRenderer.render(table, cells: cells, store: store, cacheDir: cache)
        XCTAssertEqual(report.lossSVG.components(separatedBy: "class=\"curve\"").count - 1, 2, "the cell's curve and its base's")
        XCTAssertEqual(report.lossSVG.components(separatedBy: "class=\"validation\"").count - 1, 2, "one per fine-tuning epoch")
        let json = ResultExport.record(try XCTUnwrap(report.rows.first?.runs.first)).prettyJSON()
        XCTAssertTrue(json.contains("\"step_losses\""), json)
        XCTAssertTrue(json.contains("\"validation_loss\""), json)
        XCTAssertTrue(json.contains("\"base_epochs\": [\n"), json)
        try ReportRenderer.write([report], to: dir + "/out")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/out/\(table.name)-loss.svg"))
    }
}

