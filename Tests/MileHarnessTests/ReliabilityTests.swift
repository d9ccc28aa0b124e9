import Foundation
import XCTest
@testable import MileHarness
import MileData

/// Issue 20: interrupted and dying runs never end as a silent success.
final class ReliabilityTests: XCTestCase {
    func waitFor(_ what: String, timeout: Double = 90, process: Process, _ condition: () throws -> Bool) rethrows {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline && process.isRunning {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTFail("\(what) did not happen in time (running: \(process.isRunning))")
    }

    /// Ctrl-C while `--jobs` pretrains the bases used to end with status 0 and drop every cell; now the run
    /// exits 130 and names the cells that did not run.
    func testInterruptWhileJobsPretrainBasesExits130NamingTheCells() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try PipelineFixture.table(in: dir, rows: [PipelineFixture.rowTTLoRA, PipelineFixture.rowFLoRALoRA])
        let cells = try Planner.expand(ExperimentLoader.load(path: file), overrides: [ConfigOverride("pretraining.epochs=200")])
        let arguments = PipelineFixture.runArguments(table: file, dir: dir, db: "i.db", cache: "i")
            + ["--jobs", "2", "--set", "pretraining.epochs=200"]
        let parent = try PipelineFixture.startRun(arguments, dir: dir, tag: "i")
        waitFor("base pretraining", process: parent) { PipelineFixture.log(dir, "i").contains("base pretraining") || PipelineFixture.log(dir, "i").contains("[base ") }
        Thread.sleep(forTimeInterval: 0.5)
        kill(parent.processIdentifier, SIGINT)
        parent.waitUntilExit()
        let log = PipelineFixture.log(dir, "i")
        XCTAssertEqual(parent.terminationStatus, 130, log)
        XCTAssertTrue(log.contains("stopped (SIGINT)") && log.contains("2 cells"), log)
        for cell in cells { XCTAssertTrue(log.contains(cell.shortID), "\(cell.label) not named\n\(log)") }
    }

    /// A stop request that lands between cells (after one was scored and stored) reports the cells left
    /// as not run instead of dropping them.
    func testStopBetweenCellsReportsTheRestAsNotRun() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try PipelineFixture.table(in: dir, epochs: 1, rows: [PipelineFixture.rowFLoRALoRA, PipelineFixture.rowTTLoRA])
        let cells = try Planner.expand(ExperimentLoader.load(path: file))
        let store = try ResultsStore(path: dir + "/r.db")
        let options = PipelineOptions(locations: DataLocations(slakeDir: PipelineFixture.synthetic, radDir: nil, cacheDir: dir + "/cache"))
        let runner = PipelineRunner(store: store, options: options, progress: ProgressPrinter(quiet: true))
        let first = try runner.run([cells[0]])
        XCTAssertEqual(first.map(\.kind), [.done])
        StopRequest.requested = SIGTERM
        defer { StopRequest.requested = 0 }
        let outcomes = try runner.run(cells)
        XCTAssertEqual(outcomes.map(\.kind), [.skipped, .skipped])
        XCTAssertEqual(outcomes.map(\.detail), ["not run (SIGTERM)", "not run (SIGTERM)"])
    }

    /// A `--jobs` worker killed with SIGKILL: the parent notices, records its cell interrupted, starts a
    /// replacement that resumes the cell, and the table finishes (no cell left `running`).
    func testDeadJobsWorkerIsNoticedAndItsCellRerun() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try PipelineFixture.table(in: dir, epochs: 6, rows: [PipelineFixture.rowTTLoRA, PipelineFixture.rowFLoRALoRA])
        let cells = try Planner.expand(ExperimentLoader.load(path: file))
        let arguments = PipelineFixture.runArguments(table: file, dir: dir, db: "w.db", cache: "w") + ["--jobs", "2"]
        let parent = try PipelineFixture.startRun(arguments, dir: dir, tag: "w")
        let store = try ResultsStore(path: dir + "/w.db")
        try waitFor("an epoch of the first cell", process: parent) {
            guard let run = try store.latestRun(cellID: cells[0].id) else { return false }
            return try run.status == .running && !store.epochs(runID: run.id).isEmpty
        }
        let victim = try XCTUnwrap(store.latestRun(cellID: cells[0].id))
        let pid = try XCTUnwrap(Int32(runnerPID(victim.runner)))
        XCTAssertNotEqual(pid, parent.processIdentifier)
        kill(pid, SIGKILL)
        parent.waitUntilExit()
        let log = PipelineFixture.log(dir, "w")
        XCTAssertEqual(parent.terminationStatus, 0, log)
        XCTAssertTrue(log.contains("worker \(pid) was killed by signal 9") && log.contains("recorded interrupted: \(cells[0].label)"), log)
        XCTAssertTrue(log.contains("started replacement worker"), log)
        XCTAssertEqual(try store.run(id: victim.id)?.status, .interrupted)
        XCTAssertTrue(try store.run(id: victim.id)?.failureReason?.contains("worker process \(pid)") == true)
        for cell in cells { XCTAssertEqual(try store.latestRun(cellID: cell.id)?.status, .done, "\(cell.label)\n\(log)") }
    }
}
