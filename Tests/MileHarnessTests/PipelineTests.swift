import Foundation
import XCTest
@testable import MileHarness
import MileData

final class PipelineTests: XCTestCase {
    /// plan -> run -> report on synthetic data at smoke scale: every cell done, every prediction and the
    /// measurements stored, the report shows our numbers (not a pending status).
    func testEndToEndSmokeRunAndReport() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try PipelineFixture.table(in: dir, rows: [PipelineFixture.rowFLoRALoRA, PipelineFixture.rowTTLoRA,
                                                             PipelineFixture.rowFPrefixPrefix])
        let table = try ExperimentLoader.load(path: file)
        let cells = try Planner.expand(table)
        XCTAssertEqual(cells.count, 3)
        XCTAssertEqual(Set(cells.map { $0.stage(.base).key }).count, 1, "all cells share one base")
        let store = try ResultsStore(path: dir + "/r.db")
        let options = PipelineOptions(locations: DataLocations(slakeDir: PipelineFixture.synthetic, radDir: nil, cacheDir: dir + "/cache"))
        let outcomes = try PipelineRunner(store: store, options: options, progress: ProgressPrinter(quiet: true)).run(cells)
        XCTAssertEqual(outcomes.map(\.kind), [.done, .done, .done], outcomes.map(\.detail).joined(separator: "; "))

        let testCount = try Slake.load(root: PipelineFixture.synthetic, split: .test).count
        for cell in cells {
            let run = try XCTUnwrap(store.latestDoneRun(cellID: cell.id))
            let results = try XCTUnwrap(store.results(runID: run.id))
            XCTAssertEqual(try store.predictions(runID: run.id).count, testCount)
            XCTAssertEqual(try store.epochs(runID: run.id).map(\.epoch), [0, 1])
            XCTAssertGreaterThan(results.runScale.trainable, 0)
            XCTAssertLessThan(results.runScale.trainable, results.runScale.total + 1)
            XCTAssertGreaterThan(results.peakEngineBytes ?? 0, 0)
            XCTAssertGreaterThan(results.peakRSSBytes ?? 0, 0)
            XCTAssertGreaterThan(results.predictedPaperBytes ?? 0, 1_000_000_000, "paper-scale prediction is GBs")
            // The image-shuffle evaluation ran beside the real one, on the same questions.
            let shuffle = try XCTUnwrap(store.shuffle(runID: run.id, seed: cell.baselines.shuffleSeed))
            XCTAssertEqual(shuffle.predictions.map(\.qid), try store.predictions(runID: run.id).map(\.qid))
        }
        // Paper-scale #Params is the model's accounting (docs/MODEL.md): F LoRA LoRA r4 is 0.163 %.
        let first = try XCTUnwrap(store.results(runID: XCTUnwrap(store.latestDoneRun(cellID: cells[0].id)).id))
        XCTAssertEqual(try XCTUnwrap(first.paperScale).percent, 0.163, accuracy: 0.0005)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/cache/bases/\(cells[0].stage(.base).key).safetensors"))

        // A second run skips every cell; a cell done without a shuffle evaluation (as before it existed) gets
        // one from its fine-tune checkpoint, identical to the one made right after training.
        let firstRun = try XCTUnwrap(store.latestDoneRun(cellID: cells[0].id)).id
        let original = try XCTUnwrap(store.shuffle(runID: firstRun, seed: cells[0].baselines.shuffleSeed))
        try store.write { db in try db.execute(sql: "DELETE FROM shuffle_results WHERE run_id = ?", arguments: [firstRun]) }
        XCTAssertNil(try store.shuffle(runID: firstRun, seed: cells[0].baselines.shuffleSeed))
        let again = try PipelineRunner(store: store, options: options, progress: ProgressPrinter(quiet: true)).run(cells)
        XCTAssertEqual(again.map(\.kind), [.skipped, .skipped, .skipped])
        XCTAssertTrue(again[0].detail.contains("image-shuffle evaluation added from the fine-tune checkpoint"), again[0].detail)
        XCTAssertFalse(again[1].detail.contains("image-shuffle"), again[1].detail)
        XCTAssertEqual(try store.shuffle(runID: firstRun, seed: cells[0].baselines.shuffleSeed)?.predictions, original.predictions)

        let report = try ReportRenderer.render(table, cells: cells, store: store)
        XCTAssertEqual(report.doneCells, 3)
        let firstScores = try XCTUnwrap(outcomes[0].scores)
        XCTAssertTrue(report.markdown.contains(String(format: "%.2f", firstScores.global)), report.markdown)
        XCTAssertFalse(report.markdown.contains("pending"), report.markdown)
    }

    /// `pretraining.source: checkpoint` fine-tunes from a given base file (with its vocab.txt) and
    /// pretrains nothing.
    func testConvertedCheckpointIsUsedAsTheBase() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try PipelineFixture.table(in: dir, epochs: 1, rows: [PipelineFixture.rowFLoRALoRA])
        let cells = try Planner.expand(ExperimentLoader.load(path: file))
        let options = PipelineOptions(locations: DataLocations(slakeDir: PipelineFixture.synthetic, radDir: nil, cacheDir: dir + "/cache"))
        let first = try PipelineRunner(store: ResultsStore(path: dir + "/a.db"), options: options,
                                       progress: ProgressPrinter(quiet: true)).run(cells)
        XCTAssertEqual(first.map(\.kind), [.done])
        let key = cells[0].stage(.base).key
        try FileManager.default.createDirectory(atPath: dir + "/converted", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: dir + "/cache/bases/\(key).safetensors", toPath: dir + "/converted/base.safetensors")
        try FileManager.default.copyItem(atPath: dir + "/cache/bases/\(key).vocab.txt", toPath: dir + "/converted/vocab.txt")

        let converted = try Planner.expand(ExperimentLoader.load(path: file), overrides: [
            ConfigOverride("pretraining.source=checkpoint"), ConfigOverride("pretraining.checkpoint=\(dir)/converted/base.safetensors"),
        ])
        XCTAssertNotEqual(converted[0].stage(.base).key, key)
        let options2 = PipelineOptions(locations: DataLocations(slakeDir: PipelineFixture.synthetic, radDir: nil, cacheDir: dir + "/cache2"))
        let second = try PipelineRunner(store: ResultsStore(path: dir + "/b.db"), options: options2,
                                        progress: ProgressPrinter(quiet: true)).run(converted)
        XCTAssertEqual(second.map(\.kind), [.done], second.map(\.detail).joined())
        XCTAssertEqual(second[0].scores, first[0].scores, "same base, vocabulary, seed and recipe: same results")
        let pretrained = (try? FileManager.default.contentsOfDirectory(atPath: dir + "/cache2/bases")) ?? []
        XCTAssertFalse(pretrained.contains { $0.hasSuffix(".safetensors") }, "no base was pretrained: \(pretrained)")
    }

    /// An absurd learning rate makes the loss infinite or NaN: that cell fails with the step, the next runs.
    func testNonFiniteLossFailsTheCellAndTheRunContinues() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let bad = PipelineFixture.rowTTLoRA + "\n    set: {recipe: {lr: 1.0e+30}}"
        let file = try PipelineFixture.table(in: dir, rows: [bad, PipelineFixture.rowFLoRALoRA])
        let cells = try Planner.expand(ExperimentLoader.load(path: file))
        let store = try ResultsStore(path: dir + "/r.db")
        let options = PipelineOptions(locations: DataLocations(slakeDir: PipelineFixture.synthetic, radDir: nil, cacheDir: dir + "/cache"))
        let outcomes = try PipelineRunner(store: store, options: options, progress: ProgressPrinter(quiet: true)).run(cells)
        XCTAssertEqual(outcomes.map(\.kind), [.failed, .done])
        let failed = try XCTUnwrap(store.latestRun(cellID: cells[0].id))
        XCTAssertEqual(failed.status, .failed)
        let reason = try XCTUnwrap(failed.failureReason)
        XCTAssertTrue(reason.contains("loss") && reason.contains("step"), reason)
        XCTAssertNil(try store.results(runID: failed.id))
    }

    /// SIGKILL mid-run, then the same command again: the stale claim of the dead process is taken over,
    /// training resumes from the last finished epoch, and the predictions equal an uninterrupted run's.
    func testKilledRunResumesWithIdenticalResults() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try PipelineFixture.table(in: dir, epochs: 6, rows: [PipelineFixture.rowTTLoRA])
        let cell = try XCTUnwrap(Planner.expand(ExperimentLoader.load(path: file)).first)

        let reference = try PipelineFixture.startRun(PipelineFixture.runArguments(table: file, dir: dir, db: "a.db", cache: "a"), dir: dir, tag: "a")
        reference.waitUntilExit()
        XCTAssertEqual(reference.terminationStatus, 0, PipelineFixture.log(dir, "a"))

        let arguments = PipelineFixture.runArguments(table: file, dir: dir, db: "b.db", cache: "b")
        let victim = try PipelineFixture.startRun(arguments, dir: dir, tag: "b1")
        let store = try ResultsStore(path: dir + "/b.db")
        try waitForEpochs(store: store, cellID: cell.id, atLeast: 2, process: victim)
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        let killedRun = try XCTUnwrap(store.latestRun(cellID: cell.id))
        XCTAssertEqual(killedRun.status, .running, "killed while training (the run finished before the kill)")

        let resumed = try PipelineFixture.startRun(arguments, dir: dir, tag: "b2")
        resumed.waitUntilExit()
        XCTAssertEqual(resumed.terminationStatus, 0, PipelineFixture.log(dir, "b2"))
        let log = PipelineFixture.log(dir, "b2")
        XCTAssertTrue(log.contains("taking over the claim") && log.contains("resuming fine-tuning after epoch"), log)

        let runs = try store.runs(cellID: cell.id)
        XCTAssertEqual(runs.filter { $0.status == .done }.count, 1)
        XCTAssertEqual(runs.first { $0.id == killedRun.id }?.status, .interrupted)
        let done = try XCTUnwrap(store.latestDoneRun(cellID: cell.id))
        XCTAssertEqual(try store.epochs(runID: done.id).map(\.epoch), Array(0..<6))

        let referenceStore = try ResultsStore(path: dir + "/a.db")
        let expected = try referenceStore.predictions(runID: XCTUnwrap(referenceStore.latestDoneRun(cellID: cell.id)).id)
        XCTAssertEqual(try store.predictions(runID: done.id), expected)
        let lossesA = try referenceStore.epochs(runID: XCTUnwrap(referenceStore.latestDoneRun(cellID: cell.id)).id).map(\.loss)
        XCTAssertEqual(try store.epochs(runID: done.id).map(\.loss), lossesA)
        // Issue 20 (5): the measured peak must not depend on the kill history (a stale model kept alive
        // while the next epoch trained used to add one parameter set).
        let peakA = try referenceStore.results(runID: XCTUnwrap(referenceStore.latestDoneRun(cellID: cell.id)).id)?.peakEngineBytes
        XCTAssertEqual(try store.results(runID: done.id)?.peakEngineBytes, peakA)
    }

    /// Two `mile run` processes on one database never run the same cell; together they finish the table.
    func testConcurrentRunnersNeverRunTheSameCell() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try PipelineFixture.table(in: dir, epochs: 2, rows: [PipelineFixture.rowTTLoRA, PipelineFixture.rowFLoRALoRA,
                                                                        PipelineFixture.rowTIA3IA3, PipelineFixture.rowFPrefixPrefix])
        let cells = try Planner.expand(ExperimentLoader.load(path: file))
        let arguments = PipelineFixture.runArguments(table: file, dir: dir, db: "c.db", cache: "c")
        let first = try PipelineFixture.startRun(arguments, dir: dir, tag: "c1")
        let second = try PipelineFixture.startRun(arguments, dir: dir, tag: "c2")
        first.waitUntilExit(); second.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 0, PipelineFixture.log(dir, "c1"))
        XCTAssertEqual(second.terminationStatus, 0, PipelineFixture.log(dir, "c2"))
        let store = try ResultsStore(path: dir + "/c.db")
        for cell in cells {
            let runs = try store.runs(cellID: cell.id)
            XCTAssertEqual(runs.count, 1, "\(cell.label): \(runs.map { "\($0.runner) \($0.status)" })")
            XCTAssertEqual(runs.first?.status, .done)
        }
    }

    /// `mile run --jobs 2` first pretrains the base in one process with every thread, then runs the cells
    /// in two worker processes: every cell once, none by the parent, no worker pretraining, and the parent
    /// prints the summary from the database.
    func testJobsRunEveryCellOnceInWorkerProcesses() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try PipelineFixture.table(in: dir, epochs: 2, rows: [PipelineFixture.rowTTLoRA, PipelineFixture.rowFLoRALoRA,
                                                                        PipelineFixture.rowTIA3IA3])
        let cells = try Planner.expand(ExperimentLoader.load(path: file))
        let arguments = PipelineFixture.runArguments(table: file, dir: dir, db: "j.db", cache: "j") + ["--jobs", "2"]
        let parent = try PipelineFixture.startRun(arguments, dir: dir, tag: "j")
        parent.waitUntilExit()
        let log = PipelineFixture.log(dir, "j")
        XCTAssertEqual(parent.terminationStatus, 0, log)
        XCTAssertTrue(log.contains("pretraining missing bases first"), log)
        let lines = log.split(separator: "\n")
        XCTAssertTrue(lines.contains { $0.hasPrefix("[base ") && $0.contains("base ready") }, log)
        XCTAssertFalse(lines.contains { !$0.hasPrefix("[base ") && $0.contains("base epoch") }, "a cell worker pretrained\n\(log)")
        XCTAssertLessThan(log.range(of: "base ready")!.lowerBound, log.range(of: "started 2 workers")!.lowerBound, log)
        XCTAssertTrue(log.contains("started 2 workers"), log)
        let store = try ResultsStore(path: dir + "/j.db")
        for cell in cells {
            let runs = try store.runs(cellID: cell.id)
            XCTAssertEqual(runs.map(\.status), [.done], "\(cell.label): \(runs.map { "\($0.runner) \($0.status)" })")
            XCTAssertFalse(runs.first?.runner.contains(":\(parent.processIdentifier):") ?? true, "run by the parent, not a worker")
            XCTAssertTrue(log.contains("\(cell.shortID)  \(cell.label)"), "summary line for \(cell.label)\n\(log)")
        }
        XCTAssertTrue(log.contains("3 done"), log)
    }

    /// SIGKILL of a `--jobs` parent: its workers notice, stop at a safe point and record their cells as
    /// interrupted (no cell left `running`); a plain rerun then finishes every cell.
    func testWorkersStopWhenTheJobsParentIsKilled() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try PipelineFixture.table(in: dir, epochs: 12, rows: [PipelineFixture.rowTTLoRA, PipelineFixture.rowFLoRALoRA])
        let cells = try Planner.expand(ExperimentLoader.load(path: file))
        let arguments = PipelineFixture.runArguments(table: file, dir: dir, db: "k.db", cache: "k")
        let parent = try PipelineFixture.startRun(arguments + ["--jobs", "2"], dir: dir, tag: "k1")
        let store = try ResultsStore(path: dir + "/k.db")
        try waitForEpochs(store: store, cellID: cells[0].id, atLeast: 1, process: parent)
        kill(parent.processIdentifier, SIGKILL)
        parent.waitUntilExit()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, try cells.contains(where: { try store.latestRun(cellID: $0.id)?.status == .running }) {
            Thread.sleep(forTimeInterval: 0.1)
        }
        let first = try XCTUnwrap(store.latestRun(cellID: cells[0].id))
        XCTAssertEqual(first.status, .interrupted, PipelineFixture.log(dir, "k1"))
        XCTAssertTrue(first.failureReason?.contains("parent") == true, first.failureReason ?? "")
        XCTAssertNotEqual(try store.latestRun(cellID: cells[1].id)?.status, .running)

        let rerun = try PipelineFixture.startRun(arguments, dir: dir, tag: "k2")
        rerun.waitUntilExit()
        XCTAssertEqual(rerun.terminationStatus, 0, PipelineFixture.log(dir, "k2"))
        for cell in cells { XCTAssertEqual(try store.latestRun(cellID: cell.id)?.status, .done) }
    }

    /// The report written at the end of a run judges staleness by the data the run used (--slake), not by
    /// an unrelated SLAKE_DIR in the environment (`make demo` exports the real SLAKE_DIR).
    func testRunReportUsesTheRunsDataNotSlakeDir() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let other = dir + "/other-slake"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        for name in ["train.json", "validate.json", "test.json"] { _ = try TestSupport.write("[]", to: other, name: name) }
        let file = try PipelineFixture.table(in: dir, rows: [PipelineFixture.rowFLoRALoRA])
        let arguments = PipelineFixture.runArguments(table: file, dir: dir, db: "s.db", cache: "s")
        let process = try PipelineFixture.startRun(arguments, dir: dir, tag: "s", environment: ["SLAKE_DIR": other])
        process.waitUntilExit()
        let log = PipelineFixture.log(dir, "s")
        XCTAssertEqual(process.terminationStatus, 0, log)
        XCTAssertTrue(log.contains(": 1/1 cells done"), log)
    }

    /// SIGINT stops at the end of a step, records the cell as interrupted, and a rerun finishes it.
    func testInterruptRecordsInterruptedAndRerunFinishes() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try PipelineFixture.table(in: dir, epochs: 6, rows: [PipelineFixture.rowTTLoRA])
        let cell = try XCTUnwrap(Planner.expand(ExperimentLoader.load(path: file)).first)
        let arguments = PipelineFixture.runArguments(table: file, dir: dir, db: "d.db", cache: "d")
        let process = try PipelineFixture.startRun(arguments, dir: dir, tag: "d1")
        let store = try ResultsStore(path: dir + "/d.db")
        try waitForEpochs(store: store, cellID: cell.id, atLeast: 1, process: process)
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 130, PipelineFixture.log(dir, "d1"))
        let interrupted = try XCTUnwrap(store.latestRun(cellID: cell.id))
        XCTAssertEqual(interrupted.status, .interrupted)
        XCTAssertTrue(interrupted.failureReason?.contains("SIGINT") == true, interrupted.failureReason ?? "")

        let rerun = try PipelineFixture.startRun(arguments, dir: dir, tag: "d2")
        rerun.waitUntilExit()
        XCTAssertEqual(rerun.terminationStatus, 0, PipelineFixture.log(dir, "d2"))
        XCTAssertEqual(try store.latestRun(cellID: cell.id)?.status, .done)
        XCTAssertTrue(PipelineFixture.log(dir, "d2").contains("resuming fine-tuning after epoch"), PipelineFixture.log(dir, "d2"))
    }

    /// Issue 19: SIGUSR1 (SLURM's `--signal=B:USR1@N` before a time limit) records the cell interrupted and
    /// requeues the job through scontrol, unless it already restarted MILE_MAX_REQUEUES times.
    func testTimeLimitWarningRequeuesTheJobAtMostTheCap() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try PipelineFixture.table(in: dir, epochs: 6, rows: [PipelineFixture.rowTTLoRA])
        let cell = try XCTUnwrap(Planner.expand(ExperimentLoader.load(path: file)).first)
        // A fake scontrol on PATH that records its arguments.
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        try TestSupport.write("#!/bin/sh\necho \"$@\" >> \(dir)/scontrol.log\n", to: dir + "/bin", name: "scontrol")
        chmod(dir + "/bin/scontrol", 0o755)
        for (restarts, tag) in [(0, "u1"), (3, "u2")] {
            let environment = ["PATH": dir + "/bin:" + (ProcessInfo.processInfo.environment["PATH"] ?? ""), "SLURM_JOB_ID": "77",
                               "SLURM_ARRAY_JOB_ID": "70", "SLURM_ARRAY_TASK_ID": "3", "SLURM_RESTART_COUNT": String(restarts)]
            let arguments = PipelineFixture.runArguments(table: file, dir: dir, db: "\(tag).db", cache: "c-\(tag)")
            let process = try PipelineFixture.startRun(arguments, dir: dir, tag: tag, environment: environment)
            let store = try ResultsStore(path: dir + "/\(tag).db")
            try waitForEpochs(store: store, cellID: cell.id, atLeast: 1, process: process)
            kill(process.processIdentifier, SIGUSR1)
            process.waitUntilExit()
            let log = PipelineFixture.log(dir, tag)
            XCTAssertEqual(process.terminationStatus, 130, log)
            let run = try XCTUnwrap(store.latestRun(cellID: cell.id))
            XCTAssertEqual(run.status, .interrupted)
            XCTAssertTrue(run.failureReason?.contains("SIGUSR1 (the SLURM job's time limit is near)") == true, run.failureReason ?? "")
            let calls = (try? String(contentsOfFile: dir + "/scontrol.log", encoding: .utf8)) ?? ""
            if restarts == 0 {
                XCTAssertEqual(calls, "requeue 70_3\n")
                XCTAssertTrue(log.contains("requeued job 70_3 (restart 1 of at most 3)"), log)
            } else {
                XCTAssertEqual(calls, "requeue 70_3\n", "no second call")
                XCTAssertTrue(log.contains("already restarted 3 times (MILE_MAX_REQUEUES 3): not requeued"), log)
            }
        }
    }

    /// Returns as soon as the epochs are stored; the deadline only stops a hung run (a loaded CI machine
    /// took more than 60 s for the first smoke epoch).
    private func waitForEpochs(store: ResultsStore, cellID: String, atLeast count: Int, process: Process) throws {
        let deadline = Date().addingTimeInterval(600)
        while Date() < deadline && process.isRunning {
            if let run = try store.latestRun(cellID: cellID), try store.epochs(runID: run.id).count >= count { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTFail("the run did not record \(count) epochs in time (running: \(process.isRunning))")
    }
}
