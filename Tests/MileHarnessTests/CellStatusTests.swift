import XCTest
@testable import MileHarness

final class CellStatusTests: XCTestCase {
    func cells(_ overrides: [String] = []) throws -> [PlannedCell] {
        try Planner.expand(ExperimentLoader.load(path: TestSupport.experiment("table1.yaml")), overrides: overrides.map(ConfigOverride.init))
    }

    func finish(_ cell: PlannedCell, in store: ResultsStore, provenance: Provenance = Provenance(datasetHashes: ["test.json": "aaaa"])) throws -> Int64 {
        guard case let .claimed(id) = try store.claim(ClaimRequest(cell: cell, provenance: provenance)) else { throw HarnessError.store("claim") }
        let (results, predictions) = try SampleScores.results(["yes", "no", "liver", "lung"])
        try store.complete(runID: id, results: results, predictions: predictions)
        return id
    }

    func testStatusesFromTheStore() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let clock = TestClock()
        let store = try ResultsStore(path: dir + "/mile.db", staleClaimTimeout: 100, now: { clock.now() })
        let table = try cells()
        XCTAssertEqual(try Planner.status(of: table[0], store: nil).state, .pending)
        XCTAssertEqual(try Planner.status(of: table[0], store: store).state, .pending)

        let done = try finish(table[0], in: store)
        XCTAssertEqual(try Planner.status(of: table[0], store: store), CellStatus(state: .done, runID: done))

        guard case let .claimed(running) = try store.claim(ClaimRequest(cell: table[1], provenance: Provenance())) else { return XCTFail() }
        XCTAssertEqual(try Planner.status(of: table[1], store: store).state, .running)
        clock.advance(200)
        XCTAssertEqual(try Planner.status(of: table[1], store: store).state, .interrupted, "a claim without heartbeat went stale")
        try store.fail(runID: running, reason: "loss is NaN")
        XCTAssertEqual(try Planner.status(of: table[1], store: store), CellStatus(state: .failed, reason: "loss is NaN", runID: running))

        // A later failed rerun of a done cell keeps the cell done (its results still stand).
        guard case let .claimed(rerun) = try store.claim(ClaimRequest(cell: table[0], provenance: Provenance()), force: true) else { return XCTFail() }
        try store.interrupt(runID: rerun, reason: "SIGINT")
        XCTAssertEqual(try Planner.status(of: table[0], store: store).state, .done)
    }

    /// Issue 20 (6): `mile run` used to skip a stale done run as "already done"; run and plan now agree.
    func testStaleDoneRunIsClaimedAgainFreshOneIsNot() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try ResultsStore(path: dir + "/mile.db")
        let cell = try cells()[0]
        let done = try finish(cell, in: store)
        let same = Provenance(datasetHashes: ["test.json": "aaaa"])
        XCTAssertEqual(try store.claim(ClaimRequest(cell: cell, provenance: same)), .alreadyDone(runID: done))
        XCTAssertEqual(try store.claim(ClaimRequest(cell: cell, provenance: Provenance(datasetHashes: ["other.json": "x"]))),
                       .alreadyDone(runID: done), "a file the run did not read changes nothing")

        let changedData = Provenance(datasetHashes: ["test.json": "bbbb"])
        XCTAssertEqual(try Planner.status(of: cell, store: store, versions: CurrentVersions(datasetHashes: ["test.json": "bbbb"])).state, .stale)
        guard case let .claimed(rerun) = try store.claim(ClaimRequest(cell: cell, provenance: changedData)) else {
            return XCTFail("a done run on other data is stale and must be run again")
        }
        try store.interrupt(runID: rerun, reason: "SIGINT")
        let newCode = Provenance(datasetHashes: ["test.json": "aaaa"], codeVersion: "mile-results-next")
        guard case .claimed = try store.claim(ClaimRequest(cell: cell, provenance: newCode)) else {
            return XCTFail("a done run of another code version is stale and must be run again")
        }
    }

    /// Issue 20 (10): a claim of a killed process was shown as running until its heartbeat timed out.
    func testAClaimOfADeadLocalProcessIsInterrupted() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let finished = Process()
        finished.executableURL = URL(fileURLWithPath: "/bin/true")
        try finished.run()
        finished.waitUntilExit()
        let deadRunner = "\(ProcessInfo.processInfo.hostName):\(finished.processIdentifier):DEADBEEF"
        let store = try ResultsStore(path: dir + "/mile.db", runner: deadRunner)
        let cell = try cells()[0]
        guard case .claimed = try store.claim(ClaimRequest(cell: cell, provenance: Provenance())) else { return XCTFail() }
        let status = try Planner.status(of: cell, store: store)
        XCTAssertEqual(status.state, .interrupted)
        XCTAssertTrue(status.reason?.contains("process \(finished.processIdentifier) of claim \(deadRunner) no longer exists") == true, status.reason ?? "")
        let live = try ResultsStore(path: dir + "/mile.db")
        guard case .claimed = try live.claim(ClaimRequest(cell: try cells()[1], provenance: Provenance())) else { return XCTFail() }
        XCTAssertEqual(try Planner.status(of: try cells()[1], store: live).state, .running, "this test process is alive")
    }

    func testStaleReasonsNameWhatChanged() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try ResultsStore(path: dir + "/mile.db")
        let original = try cells()[0]
        _ = try finish(original, in: store)

        let changed = try cells(["recipe.lr=1e-5", "decoding.beams=1"])[0]
        let status = try Planner.status(of: changed, store: store)
        XCTAssertEqual(status.state, .stale)
        XCTAssertTrue(status.reason?.contains("decoding.beams: 3 -> 1") == true, status.reason ?? "")
        XCTAssertTrue(status.reason?.contains("recipe.lr: 0.0003 -> 1e-05") == true, status.reason ?? "")
        XCTAssertFalse(status.reason?.contains("recipe.epochs") == true, "unchanged keys are not listed")

        let newCode = CurrentVersions(codeVersion: "mile-results-999")
        XCTAssertEqual(try Planner.status(of: original, store: store, versions: newCode).reason,
                       "code version \(HarnessVersion.code) -> mile-results-999")
        let newData = CurrentVersions(datasetHashes: ["test.json": "bbbb"])
        XCTAssertEqual(try Planner.status(of: original, store: store, versions: newData).state, .stale)
        XCTAssertTrue(try Planner.status(of: original, store: store, versions: newData).reason?.contains("test.json aaaa -> bbbb") == true)
        XCTAssertEqual(try Planner.status(of: original, store: store, versions: CurrentVersions(datasetHashes: ["test.json": "aaaa"])).state, .done)
    }

    func testPlanTextAndJSON() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try ResultsStore(path: dir + "/mile.db")
        _ = try finish(try cells()[0], in: store)
        let plans = try TablePlan.make(files: [TestSupport.experiment("table1.yaml")], overrides: [], store: store)
        let text = plans[0].text
        XCTAssertTrue(text.contains("10 cells, 1 base — done 1, pending 9"), text)
        XCTAssertTrue(text.contains(plans[0].cells[0].shortID + "  F LoRA LoRA r4     42    done"), text)
        let json = try ConfigValue.fromJSON(plans[0].json.prettyJSON())
        XCTAssertEqual(json["cells"]?.listValue?.count, 10)
        XCTAssertEqual(json["cells"]?.listValue?.first?["status"], .string("done"))
        XCTAssertEqual(json["cells"]?.listValue?.first?["published.global"], .double(20.34))
    }
}
