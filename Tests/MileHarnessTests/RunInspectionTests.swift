import Foundation
import XCTest
@testable import MileHarness

/// `mile runs`, `show`, `diff` (issue 18, item 7) on a constructed store.
final class RunInspectionTests: XCTestCase {
    func store() throws -> (ResultsStore, Int64, Int64) {
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try ResultsStore(path: dir + "/mile.db")
        let provenance = Provenance(gitCommit: String(repeating: "a", count: 40), gitDirty: true, blasLibrary: "openblas",
                                    blasThreads: 1, cpuModel: "cpu", host: "h", datasetHashes: ["test.json": "abc"])
        func claim(_ seed: Int, _ config: String) throws -> Int64 {
            let request = ClaimRequest(cellID: "cell-\(seed)", table: "table1", label: "T T LoRA r4", seed: seed,
                                       configJSON: config, provenance: provenance)
            guard case let .claimed(id) = try store.claim(request) else { throw HarnessError.input("no claim") }
            return id
        }
        let a = try claim(42, #"{"recipe":{"lr":0.0003,"seed":42}}"#)
        let b = try claim(43, #"{"recipe":{"lr":0.0003,"seed":43}}"#)
        let (ra, pa) = try SampleScores.results(["yes", "no", "liver", "lung"])    // 3 of 4 right
        let (rb, pb) = try SampleScores.results(["no", "no", "liver", "left lung"])  // qid 1 and 4 flip
        try store.complete(runID: a, results: ra, predictions: pa, wallSeconds: 61)
        try store.recordEpoch(runID: b, EpochMetric(epoch: 0, loss: 4.5, lr: 3e-4, seconds: 30))
        try store.complete(runID: b, results: rb, predictions: pb, wallSeconds: 3725)
        return (store, a, b)
    }

    func testAttemptsShowAndDiff() throws {
        let (store, a, b) = try store()
        let lines = RunInspection.attempts(try store.runs(cellID: "cell-42") + store.runs(cellID: "cell-43"))
        XCTAssertEqual(lines.count, 3)
        XCTAssertTrue(lines[1].contains("T T LoRA r4") && lines[1].contains("1m01s") && lines[1].contains("aaaaaaaaaaaa+dirty"), lines[1])
        XCTAssertTrue(lines[2].contains("1h02m"), lines[2])

        let shown = try RunInspection.show(try XCTUnwrap(store.run(id: b)), results: try store.results(runID: b),
                                           epochs: try store.epochs(runID: b), predictions: try store.predictions(runID: b), shuffle: nil)
        XCTAssertTrue(shown.contains("recipe.lr=0.0003") && shown.contains("1: loss 4.5000"), shown)
        XCTAssertTrue(shown.contains("95 % CI"), shown)

        let diff = try RunInspection.diff(try XCTUnwrap(store.run(id: a)), try XCTUnwrap(store.run(id: b)),
                                          scoresA: try store.predictions(runID: a), scoresB: try store.predictions(runID: b), flips: 1)
        XCTAssertTrue(diff.contains("recipe.seed: 42 -> 43"), diff)
        XCTAssertFalse(diff.contains("recipe.lr"), "only the keys that differ")
        XCTAssertTrue(diff.contains("2 questions flipped (first 1 by qid)"), diff)
        XCTAssertTrue(diff.contains("qid 1 [closed] answer 'Yes': a 'yes' right, b 'no' wrong"), diff)
        XCTAssertTrue(diff.contains("1 / 1, p = 1"), "McNemar on Global: one discordant pair each way\n\(diff)")
    }
}

/// `mile run --dry-run` (issue 18, item 8): pending cells, missing bases, and the fine-tuning time another seed of
/// the same config recorded.
final class DryRunTests: XCTestCase {
    func testPendingCellsBasesAndRecordedTime() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let table = try ExperimentLoader.load(path: TestSupport.experiment("table1.yaml"))
        let cells = try Planner.expand(table, overrides: [ConfigOverride("recipe.seeds=[42, 43]")]).filter { $0.label == "T T LoRA r4" }
        let store = try ResultsStore(path: dir + "/mile.db")
        let done = cells[0]
        let request = ClaimRequest(cellID: done.id, table: done.table, label: done.label, seed: done.seed,
                                   configJSON: done.canonicalJSON, provenance: Provenance())
        guard case let .claimed(id) = try store.claim(request) else { return XCTFail("no claim") }
        try store.recordEpoch(runID: id, EpochMetric(epoch: 0, loss: 5, lr: 3e-4, seconds: 100))
        try store.recordEpoch(runID: id, EpochMetric(epoch: 1, loss: 4, lr: 1.5e-4, seconds: 80))
        let (results, predictions) = try SampleScores.results(["yes", "no", "liver", "lung"])
        try store.complete(runID: id, results: results, predictions: predictions)

        let lines = try DryRun.describe(cells, store: store, versions: CurrentVersions(), cacheDir: dir, force: false, jobs: 2)
        XCTAssertEqual(lines[0], "1 of 2 selected cells would run")
        XCTAssertTrue(lines[1].contains("1 needed, 1 to pretrain first"), lines[1])
        XCTAssertTrue(lines[2].contains("seed 43") && lines[2].contains("~3m00s of fine-tuning"), lines[2])
        XCTAssertTrue(lines[3].contains("plus the base pretraining"), lines[3])
        let forced = try DryRun.describe(cells, store: store, versions: CurrentVersions(), cacheDir: dir, force: true, jobs: 1)
        XCTAssertEqual(forced[0], "2 of 2 selected cells would run (--force)")
    }
}
