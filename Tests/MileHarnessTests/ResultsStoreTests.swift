import Foundation
import XCTest
import GRDB
@testable import MileHarness

/// A clock tests can move.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var time = Date(timeIntervalSince1970: 1_800_000_000)
    func now() -> Date { lock.lock(); defer { lock.unlock() }; return time }
    func advance(_ seconds: Double) { lock.lock(); time += seconds; lock.unlock() }
}

/// Scored predictions for a tiny test set, produced by the scorer (no hand-typed numbers).
enum SampleScores {
    static let questions = [
        TestQuestion(qid: 1, question: "Is this a CT?", answer: "Yes", answerType: "CLOSED"),
        TestQuestion(qid: 2, question: "Is there a tumor?", answer: "No", answerType: "CLOSED"),
        TestQuestion(qid: 3, question: "Which organ?", answer: "Liver", answerType: "OPEN"),
        TestQuestion(qid: 4, question: "Where?", answer: "Left Lung", answerType: "OPEN"),
    ]

    static func scored(_ answers: [String]) throws -> (Scores, [QuestionScore]) {
        try Scorer.score(questions: questions, predictions: zip(questions, answers).map { Prediction(qid: $0.qid, answer: $1) })
    }

    static func results(_ answers: [String], trainable: Int = 10, total: Int = 1000) throws -> (RunResults, [QuestionScore]) {
        let (scores, items) = try scored(answers)
        return (RunResults(runScale: ParamCounts(trainable: trainable, total: total),
                           paperScale: ParamCounts(trainable: trainable * 1000, total: total * 1000),
                           peakEngineBytes: 5_000_000, peakRSSBytes: 80_000_000, predictedPaperBytes: 5_190_000_000, scores: scores), items)
    }
}

final class ResultsStoreTests: XCTestCase {
    func request(_ cell: String = "cell-a", label: String = "F LoRA LoRA r4", config: String = "{}") -> ClaimRequest {
        ClaimRequest(cellID: cell, table: "table1", label: label, seed: 42, configJSON: config,
                     provenance: Provenance(gitCommit: String(repeating: "a", count: 40), gitDirty: false, blasLibrary: "openblas",
                                            blasThreads: 2, cpuModel: "test cpu", host: "h", datasetHashes: ["test.json": "abc"]))
    }

    func testMigrationsAndWALOnAFreshFile() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try ResultsStore(path: dir + "/sub/mile.db")
        XCTAssertEqual(try store.appliedMigrations(), ["v1-runs-metrics-results-predictions", "v2-reference-shuffle", "v3-run-uuid-slurm",
                                                       "v4-provenance-curves"])
        let mode = try store.pool.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") }
        XCTAssertEqual(mode, "wal")
        // Reopening applies nothing twice and keeps data.
        guard case let .claimed(id) = try store.claim(request()) else { return XCTFail() }
        let reopened = try ResultsStore(path: dir + "/sub/mile.db")
        XCTAssertEqual(try reopened.appliedMigrations().count, 4)
        XCTAssertEqual(try reopened.run(id: id)?.status, .running)
    }

    /// Issue 20 (9): opening changed a database (mile's tables added, WAL switched on) and a newer one was
    /// used without warning.
    func testReadOnlyOpenChangesNothingAndForeignOrNewerDatabasesAreRefused() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let path = dir + "/mile.db"
        let store = try ResultsStore(path: path)
        guard case let .claimed(id) = try store.claim(request()) else { return XCTFail() }
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let reader = try ResultsStore(path: path, readOnly: true)
        XCTAssertEqual(try reader.run(id: id)?.status, .running)
        XCTAssertThrowsError(try reader.claim(request("cell-b")), "a read-only store cannot write")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
        XCTAssertThrowsError(try ResultsStore(path: dir + "/absent.db", readOnly: true)) {
            XCTAssertTrue("\($0)".contains("no results database at \(dir)/absent.db"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/absent.db"))

        let foreign = dir + "/other.db"
        let queue = try DatabaseQueue(path: foreign)
        try queue.write { try $0.execute(sql: "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)") }
        let foreignBytes = try Data(contentsOf: URL(fileURLWithPath: foreign))
        for readOnly in [true, false] {
            XCTAssertThrowsError(try ResultsStore(path: foreign, readOnly: readOnly)) {
                XCTAssertTrue("\($0)".contains("\(foreign) is not a mile results database (tables notes)"), "\($0)")
            }
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: foreign)), foreignBytes, "refused, and left as it was")
        XCTAssertEqual(try queue.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") }, "delete")

        try store.pool.write { try $0.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v9-from-the-future')") }
        for readOnly in [true, false] {
            XCTAssertThrowsError(try ResultsStore(path: path, readOnly: readOnly)) {
                XCTAssertTrue("\($0)".contains("written by a newer mile (schema migrations v9-from-the-future"), "\($0)")
            }
        }
    }

    /// Several openers racing on a new file: each must find the schema created exactly once.
    func testConcurrentOpenersOfANewDatabaseAllSucceed() throws {
        for round in 0..<5 {
            let dir = try TestSupport.temporaryDirectory(self)
            let path = dir + "/race-\(round).db"
            let errors = ErrorBox()
            DispatchQueue.concurrentPerform(iterations: 4) { _ in
                do { _ = try ResultsStore(path: path) } catch { errors.append("\(error)") }
            }
            XCTAssertEqual(errors.all, [], "round \(round)")
            XCTAssertEqual(try ResultsStore(path: path).appliedMigrations().count, 4)
        }
    }

    func testClaimRecordCompleteRoundTrip() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try ResultsStore(path: dir + "/mile.db")
        guard case let .claimed(id) = try store.claim(request()) else { return XCTFail("first claim must succeed") }
        try store.recordEpoch(runID: id, EpochMetric(epoch: 0, loss: 2.5, lr: 2e-5, seconds: 1.5, samples: 100))
        try store.recordEpoch(runID: id, EpochMetric(epoch: 1, loss: 2.0, lr: 1e-5, seconds: 1.4))
        try store.recordEpoch(runID: id, EpochMetric(epoch: 1, loss: 1.9, lr: 1e-5, seconds: 1.3))  // resumed epoch replaces
        let (results, predictions) = try SampleScores.results(["yes", "yes", "liver", "lung"])
        try store.complete(runID: id, results: results, predictions: predictions)

        let run = try XCTUnwrap(store.run(id: id))
        XCTAssertEqual(run.status, .done)
        XCTAssertNotNil(run.wallSeconds)
        XCTAssertEqual(run.provenance.blasThreads, 2)
        XCTAssertEqual(run.provenance.datasetHashes, ["test.json": "abc"])
        XCTAssertEqual(try store.epochs(runID: id).map(\.loss), [2.5, 1.9])
        XCTAssertEqual(try store.results(runID: id), results)
        XCTAssertEqual(try store.predictions(runID: id), predictions)
        XCTAssertEqual(try store.claim(request()), .alreadyDone(runID: id))
        guard case .claimed = try store.claim(request(), force: true) else { return XCTFail("force reruns a done cell") }
    }

    /// A run is never done without its results: if storing predictions fails, nothing of it remains.
    func testCompletionIsOneTransaction() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try ResultsStore(path: dir + "/mile.db")
        guard case let .claimed(id) = try store.claim(request()) else { return XCTFail() }
        let (results, predictions) = try SampleScores.results(["yes", "no", "liver", "left lung"])
        XCTAssertThrowsError(try store.complete(runID: id, results: results, predictions: predictions + [predictions[0]]))
        XCTAssertEqual(try store.run(id: id)?.status, .running)
        XCTAssertNil(try store.results(runID: id))
        XCTAssertEqual(try store.predictions(runID: id).count, 0)
        try store.complete(runID: id, results: results, predictions: predictions)
        XCTAssertEqual(try store.run(id: id)?.status, .done)
        XCTAssertThrowsError(try store.complete(runID: id, results: results, predictions: predictions), "done runs cannot complete twice")
    }

    func testFailAndInterrupt() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try ResultsStore(path: dir + "/mile.db")
        guard case let .claimed(a) = try store.claim(request("a")), case let .claimed(b) = try store.claim(request("b")) else { return XCTFail() }
        try store.fail(runID: a, reason: "loss became NaN at epoch 3 step 12")
        try store.interrupt(runID: b, reason: "SIGINT")
        XCTAssertEqual(try store.run(id: a)?.failureReason, "loss became NaN at epoch 3 step 12")
        XCTAssertEqual(try store.run(id: b)?.status, .interrupted)
        XCTAssertThrowsError(try store.recordEpoch(runID: a, EpochMetric(epoch: 0, loss: 1, lr: 1, seconds: 1)))
        guard case .claimed = try store.claim(request("a")) else { return XCTFail("a failed cell can be claimed again") }
    }

    /// Two stores (two connection pools, as two processes would have) race for the same cells from many
    /// threads: each cell is claimed exactly once.
    func testConcurrentClaimsAreExclusive() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let stores = [try ResultsStore(path: dir + "/mile.db", runner: "one"), try ResultsStore(path: dir + "/mile.db", runner: "two")]
        let cells = (0..<8).map { "cell-\($0)" }
        let lock = NSLock()
        var outcomes: [String: [ClaimOutcome]] = [:]
        var errors: [Error] = []
        DispatchQueue.concurrentPerform(iterations: 32) { index in
            let cell = cells[index % cells.count]
            do {
                let outcome = try stores[index % 2].claim(request(cell))
                lock.lock(); outcomes[cell, default: []].append(outcome); lock.unlock()
            } catch {
                lock.lock(); errors.append(error); lock.unlock()
            }
        }
        XCTAssertTrue(errors.isEmpty, "\(errors)")
        for cell in cells {
            let claimed = outcomes[cell, default: []].filter { if case .claimed = $0 { return true }; return false }
            XCTAssertEqual(claimed.count, 1, cell)
            XCTAssertEqual(outcomes[cell]?.count, 4)
        }
        let running = try stores[0].pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM runs WHERE status = 'running'") }
        XCTAssertEqual(running, cells.count)
    }

    /// The SQLite shell (another process) sees the schema while a store holds the file open.
    func testReadableFromTheSQLiteShell() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/sqlite3") else { throw XCTSkip("no sqlite3 shell") }
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try ResultsStore(path: dir + "/mile.db")
        guard case let .claimed(id) = try store.claim(request()) else { return XCTFail() }
        let (results, predictions) = try SampleScores.results(["yes", "no", "liver", "left lung"])
        try store.complete(runID: id, results: results, predictions: predictions)
        let output = ProvenanceCollector.run(["sqlite3", dir + "/mile.db", "SELECT row_label, status, closed FROM runs JOIN results ON results.run_id = runs.id"])
        XCTAssertEqual(output?.trimmingCharacters(in: .whitespacesAndNewlines), "F LoRA LoRA r4|done|100.0")
    }

    /// Another process (the sqlite3 shell) holds the write lock while it records its own claim: our claim
    /// waits for the lock (busy timeout) and then sees the other claim instead of running the cell twice.
    func testClaimWaitsForAnotherProcessAndRespectsItsClaim() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/sqlite3") else { throw XCTSkip("no sqlite3 shell") }
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try ResultsStore(path: dir + "/mile.db", runner: "us")
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        shell.arguments = [dir + "/mile.db"]
        let input = Pipe()
        shell.standardInput = input
        shell.standardOutput = FileHandle.nullDevice
        try shell.run()
        let now = Date().timeIntervalSince1970
        input.fileHandleForWriting.write(Data("""
            BEGIN IMMEDIATE;
            INSERT INTO runs (cell_id, table_name, row_label, seed, config_json, status, runner, started_at, heartbeat_at, code_version)
            VALUES ('cell-x', 'table1', 'F LoRA LoRA r4', 42, '{}', 'running', 'other-process', \(now), \(now), 'x');
            SELECT 'locked';

            """.utf8))
        Thread.sleep(forTimeInterval: 0.5)  // let the shell take the lock
        let done = DispatchSemaphore(value: 0)
        final class Box: @unchecked Sendable { var outcome: ClaimOutcome?; var failure: Error? }  // written before signal()
        let box = Box()
        let claim = request("cell-x")
        DispatchQueue.global().async {
            do { box.outcome = try store.claim(claim) } catch { box.failure = error }
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 1), .timedOut, "the claim must wait while the other process writes")
        input.fileHandleForWriting.write(Data("COMMIT;\n".utf8))
        try input.fileHandleForWriting.close()
        XCTAssertEqual(done.wait(timeout: .now() + 20), .success)
        shell.waitUntilExit()
        XCTAssertNil(box.failure)
        guard case let .busy(_, runner)? = box.outcome else { return XCTFail("expected busy, got \(String(describing: box.outcome))") }
        XCTAssertEqual(runner, "other-process")
    }

    func testStaleClaimIsTakenOver() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let clock = TestClock()
        let first = try ResultsStore(path: dir + "/mile.db", runner: "first", staleClaimTimeout: 60, now: { clock.now() })
        let second = try ResultsStore(path: dir + "/mile.db", runner: "second", staleClaimTimeout: 60, now: { clock.now() })
        guard case let .claimed(old) = try first.claim(request()) else { return XCTFail() }
        clock.advance(30)
        try first.heartbeat(runID: old)
        clock.advance(50)
        XCTAssertEqual(try second.claim(request()), .busy(runID: old, runner: "first"), "heartbeat 50 s ago is fresh")
        clock.advance(20)
        guard case let .claimed(new) = try second.claim(request()) else { return XCTFail("a 70 s old claim is stale") }
        XCTAssertEqual(try second.run(id: old)?.status, .interrupted)
        XCTAssertTrue(try second.run(id: old)?.failureReason?.contains("stale claim") == true)
        // The first runner wakes up: it may no longer write into the cell.
        let (results, predictions) = try SampleScores.results(["yes", "no", "liver", "left lung"])
        XCTAssertThrowsError(try first.complete(runID: old, results: results, predictions: predictions))
        XCTAssertThrowsError(try first.complete(runID: new, results: results, predictions: predictions), "not the owner")
        try second.complete(runID: new, results: results, predictions: predictions)
    }
}

/// Collects errors from concurrent closures.
private final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ item: String) { lock.lock(); items.append(item); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}

extension ResultsStoreTests {
    /// A database from before schema v4 is read as it is by read-only commands (no recorded stage keys or
    /// artifacts) and migrated by the next writing one.
    func testAVersion3DatabaseIsReadWithoutChangeAndUpgradedByAWriter() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let path = dir + "/old.db"
        let queue = try DatabaseQueue(path: path)
        try ResultsStore.migrator.migrate(queue, upTo: "v3-run-uuid-slurm")
        try queue.write { db in
            try db.execute(sql: """
                INSERT INTO runs (cell_id, table_name, row_label, seed, config_json, status, runner, started_at, heartbeat_at,
                                  code_version, swift_version, dataset_hashes_json, run_uuid)
                VALUES ('cell-a', 'table1', 'F LoRA LoRA r4', 42, '{}', 'failed', 'h:1:x', 0, 0, 'v', 's', '{}', 'u1')
                """)
        }
        try queue.close()
        let before = FileManager.default.contents(atPath: path)
        let reader = try ResultsStore(path: path, readOnly: true)
        let run = try XCTUnwrap(reader.latestRun(cellID: "cell-a"))
        XCTAssertEqual(run.stageKeys, [:])
        XCTAssertEqual(run.artifacts, [:])
        XCTAssertEqual(FileManager.default.contents(atPath: path), before)
        XCTAssertEqual(try ResultsStore(path: path).appliedMigrations().last, "v4-provenance-curves")
    }
}
