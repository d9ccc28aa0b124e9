import Foundation
import XCTest
import GRDB
@testable import MileHarness

/// `mile submit --slurm` scripts against golden files, and `ResultsStore.merge` of shard databases.
final class SlurmTests: XCTestCase {
    static let golden = TestSupport.root + "/Tests/Golden/slurm/"

    /// The smoke grid's cells, two seeds.
    func cells() throws -> [PlannedCell] {
        let table = try ExperimentLoader.load(path: TestSupport.experiment("slurm-smoke.yaml"))
        return try Planner.expand(table, overrides: [ConfigOverride("recipe.seeds=[42, 43]")])
    }

    func scripts(_ options: SlurmOptions) -> SlurmScripts {
        SlurmScripts(folder: SlurmRunFolder(path: "/shared/mile/runs/RUN"), options: options, workingDirectory: "/shared/mile",
                     selection: ["/shared/mile/runs/RUN/experiments/1/slurm-smoke.yaml", "--seeds", "2"],
                     slake: "/shared/data/Slake1.0", rad: nil, cache: "/shared/mile/.mile")
    }

    /// Cell ids and base keys replaced by placeholders, so a change of defaults.yaml does not touch the goldens.
    func normalised(_ text: String, _ cells: [PlannedCell]) -> String {
        var out = text
        for cell in cells { out = out.replacingOccurrences(of: cell.id, with: "<cell \(cell.label) seed \(cell.seed)>") }
        for key in Set(cells.map { $0.stage(.base).key }) { out = out.replacingOccurrences(of: String(key.prefix(12)), with: "<base>") }
        return out
    }

    func assertGolden(_ text: String, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let path = Self.golden + name
        if ProcessInfo.processInfo.environment["MILE_UPDATE_GOLDEN"] == "1" { try text.write(toFile: path, atomically: true, encoding: .utf8) }
        XCTAssertEqual(text, try String(contentsOfFile: path, encoding: .utf8), "\(name) differs from its golden file (MILE_UPDATE_GOLDEN=1 rewrites it)", file: file, line: line)
    }

    func testDryRunScriptsMatchTheGoldenFiles() throws {
        let cells = try cells()
        let groups = SlurmGroup.make(cells) { _ in false }
        XCTAssertEqual(groups.count, 1)
        XCTAssertEqual(groups[0].cells.map(\.seed), [42, 42, 43, 43], "seed-major order")
        let plain = scripts(SlurmOptions())
        try assertGolden(normalised(plain.base(groups[0]), cells), "base-1.sbatch")
        try assertGolden(normalised(plain.cells(groups[0]), cells), "cells-1.sbatch")
        try assertGolden(normalised(plain.merge(groups), cells), "merge.sbatch")
        let full = scripts(SlurmOptions(partition: "cpu", account: "lab", qos: "normal", time: "4:00:00", cpus: 4, memory: "8G",
                                        maxParallel: 10, extra: ["--constraint=avx2"]))
        try assertGolden(normalised(full.cells(groups[0]), cells), "cells-1-options.sbatch")
        // A cached base needs no base job.
        XCTAssertFalse(SlurmGroup.make(cells) { _ in true }[0].needsBase)
    }

    func testShellQuoting() {
        XCTAssertEqual(Shell.quote("/a/b.yaml"), "/a/b.yaml")
        XCTAssertEqual(Shell.quote("F T LoRA r4"), "'F T LoRA r4'")
        XCTAssertEqual(Shell.quote("it's"), "'it'\\''s'")
    }

    // MARK: merge

    func request(_ cell: String) -> ClaimRequest {
        ClaimRequest(cellID: cell, table: "table1", label: "F LoRA LoRA r4", seed: 42, configJSON: "{}",
                     provenance: Provenance(host: "node1", datasetHashes: ["test.json": "abc"],
                                            slurm: SlurmTask(jobID: "12", arrayJobID: "10", arrayTaskID: 2, restartCount: 1)))
    }

    /// A shard with one done run of `cell` (two epochs, predictions) and optionally a dangling claim.
    func shard(_ path: String, cell: String, answers: [String], dangling: String? = nil) throws -> ResultsStore {
        let store = try ResultsStore(path: path, journal: .rollback)
        guard case let .claimed(id) = try store.claim(request(cell)) else { throw HarnessError.store("claim") }
        try store.recordEpoch(runID: id, EpochMetric(epoch: 0, loss: 2.5, lr: 1e-3, seconds: 1, samples: 4))
        try store.recordEpoch(runID: id, EpochMetric(epoch: 1, loss: 2.25, lr: 5e-4, seconds: 1, samples: 4))
        let (results, items) = try SampleScores.results(answers)
        try store.complete(runID: id, results: results, predictions: items)
        if let dangling { _ = try store.claim(request(dangling)) }
        return store
    }

    func testShardsUseTheRollbackJournalAndRecordSlurmIDs() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try shard(dir + "/a.db", cell: "cell-a", answers: ["yes", "no", "liver", "lung"])
        XCTAssertEqual(try store.pool.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") }, "delete")
        XCTAssertEqual(store.journal, .rollback)
        let run = try XCTUnwrap(store.latestRun(cellID: "cell-a"))
        XCTAssertEqual(run.provenance.slurm, SlurmTask(jobID: "12", arrayJobID: "10", arrayTaskID: 2, restartCount: 1))
        XCTAssertEqual(run.uuid.count, 36)
        XCTAssertEqual(try store.appliedMigrations().last, "v4-provenance-curves")
    }

    func testMergeOverlappingIdsIdempotentDanglingAndPreserved() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        // Both shards number their runs from 1.
        let a = try shard(dir + "/a.db", cell: "cell-a", answers: ["yes", "no", "liver", "lung"])
        let b = try shard(dir + "/b.db", cell: "cell-b", answers: ["no", "no", "liver", "left lung"], dangling: "cell-c")
        let out = try ResultsStore(path: dir + "/out.db")
        let first = try [out.merge(shard: dir + "/a.db"), out.merge(shard: dir + "/b.db")]
        XCTAssertEqual(first.map(\.added), [1, 2])
        XCTAssertEqual(first[1].dangling, 1)
        for (source, cell) in [(a, "cell-a"), (b, "cell-b")] {
            let original = try XCTUnwrap(source.latestRun(cellID: cell))
            let merged = try XCTUnwrap(out.latestRun(cellID: cell))
            XCTAssertEqual(merged.uuid, original.uuid)
            XCTAssertEqual(merged.status, .done)
            XCTAssertEqual(try out.epochs(runID: merged.id), try source.epochs(runID: original.id))
            XCTAssertEqual(try out.predictions(runID: merged.id), try source.predictions(runID: original.id))
            XCTAssertEqual(try out.results(runID: merged.id), try source.results(runID: original.id))
            XCTAssertEqual(merged.provenance.slurm?.arrayTaskID, 2)
        }
        let dangling = try XCTUnwrap(out.latestRun(cellID: "cell-c"))
        XCTAssertEqual(dangling.status, .interrupted)
        XCTAssertTrue(dangling.failureReason?.contains("dangling claim") ?? false, dangling.failureReason ?? "")
        // Merging again adds nothing.
        let again = try [out.merge(shard: dir + "/a.db"), out.merge(shard: dir + "/b.db")]
        XCTAssertEqual(again.map(\.added), [0, 0])
        XCTAssertEqual(again.map(\.unchanged), [1, 2])
        XCTAssertEqual(try out.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM runs") }, 3)
        XCTAssertEqual(try out.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM predictions") }, 8)
        // The dangling claim's task was resumed and finished: the next merge updates it in place.
        let resumed = try ResultsStore(path: dir + "/b.db", journal: .rollback)
        let claim = try XCTUnwrap(resumed.latestRun(cellID: "cell-c"))
        try resumed.releaseDeadClaim(runID: claim.id, reason: "taken over")
        let update = try out.merge(shard: dir + "/b.db")
        XCTAssertEqual(update.updated, 1)
        XCTAssertEqual(try out.latestRun(cellID: "cell-c")?.failureReason, "taken over")
    }

    func testMergeRefusesAnotherSchema() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        _ = try shard(dir + "/a.db", cell: "cell-a", answers: ["yes", "no", "liver", "lung"])
        let queue = try DatabaseQueue(path: dir + "/a.db")
        try queue.write { try $0.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v9-from-the-future')") }
        let out = try ResultsStore(path: dir + "/out.db")
        XCTAssertThrowsError(try out.merge(shard: dir + "/a.db")) { error in
            XCTAssertTrue("\(error)".contains("cannot merge") && "\(error)".contains("newer mile"), "\(error)")
        }
    }
}
