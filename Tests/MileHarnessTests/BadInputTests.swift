import Foundation
import XCTest
import GRDB
@testable import MileHarness

/// The bad-input corpus of issue 20: each case runs the `mile` executable as a user with a mistake would
/// and checks that it ends with an error status (non-zero, below 128: no crash, no signal), that the
/// message names the culprit, and that the results database is byte-identical for read-only commands.
final class BadInputTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = try TestSupport.temporaryDirectory(self)
        try TestSupport.copyDefaults(into: dir)
    }

    struct Result {
        let status: Int32
        let output: String
    }

    /// Runs `mile arguments...` in `dir` and returns its exit status and stdout+stderr.
    @discardableResult
    func mile(_ arguments: [String], environment extra: [String: String] = [:], timeout: Double = 60) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: PipelineFixture.mileBinary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: dir)
        var environment = ProcessInfo.processInfo.environment
        environment["MILE_THREADS"] = "1"
        environment.removeValue(forKey: "SLAKE_DIR")
        environment.removeValue(forKey: "RAD_DIR")
        environment.merge(extra) { $1 }
        process.environment = environment
        let log = dir + "/out-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            XCTFail("mile \(arguments) still running after \(Int(timeout)) s")
        }
        process.waitUntilExit()
        try handle.close()
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return Result(status: status, output: output)
    }

    /// The command must fail cleanly (1...127) and name every fragment.
    func assertRefused(_ arguments: [String], naming fragments: [String], environment: [String: String] = [:],
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try mile(arguments, environment: environment)
        XCTAssertTrue((1..<128).contains(result.status), "status \(result.status) for \(arguments)\n\(result.output)", file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(result.output.contains(fragment), "'\(fragment)' missing for \(arguments):\n\(result.output)", file: file, line: line)
        }
        XCTAssertFalse(result.output.contains("NSCocoaErrorDomain") || result.output.contains("Fatal error"),
                       "raw error for \(arguments):\n\(result.output)", file: file, line: line)
    }

    func table(_ rows: String = "  - {vit: F, jtm: T, dec: ia3}\n", set: String = "", name: String = "t.yaml") throws -> String {
        try TestSupport.write("table: t\nextends: defaults.yaml\n\(set)rows:\n\(rows)", to: dir, name: name)
    }

    func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    // MARK: defect 2: upper bounds on the command line

    func testCommandLineUpperBounds() throws {
        try assertRefused(["params", "--rank", "1000000000", "--jtm", "lora"], naming: ["--rank 1000000000", "768"])
        let file = try table()
        try assertRefused(["run", file, "--slake", dir, "--db", dir + "/r.db", "--jobs", "100000"], naming: ["--jobs 100000", "64"])
        try assertRefused(["run", file, "--slake", dir, "--db", dir + "/r.db", "--seeds", "1000"], naming: ["--seeds 1000", "100"])
        try assertRefused(["plan", file, "--set", "decoding.beams=100000"], naming: ["decoding.beams", "limit of 16"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/r.db"), "a refused run created the database")
    }

    // MARK: defect 7: data errors are found before any training

    func testTestSetErrorsStopTheRunBeforeTraining() throws {
        let data = dir + "/data"
        try FileManager.default.copyItem(atPath: PipelineFixture.synthetic, toPath: data)
        let file = try PipelineFixture.table(in: dir, rows: [PipelineFixture.rowFLoRALoRA])
        let testFile = data + "/test.json"
        let original = try Data(contentsOf: URL(fileURLWithPath: testFile))
        var records = try XCTUnwrap(JSONSerialization.jsonObject(with: original) as? [[String: Any]])
        let qid = try XCTUnwrap(records[0]["qid"] as? Int)
        records.append(records[0])
        try JSONSerialization.data(withJSONObject: records).write(to: URL(fileURLWithPath: testFile))
        let run = ["run", file, "--slake", data, "--db", dir + "/r.db", "--cache", dir + "/cache", "--quiet"]
        try assertRefused(run, naming: [testFile, "qid \(qid) × 2"])

        try original.write(to: URL(fileURLWithPath: testFile))
        let image = data + "/imgs/" + (try XCTUnwrap(records[0]["img_name"] as? String))
        try FileManager.default.removeItem(atPath: image)
        try assertRefused(run, naming: ["1 image the run needs does not exist", image])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/cache/bases"), "no base was pretrained")
    }

    // MARK: defect 9: read-only commands do not change a database; a foreign one is refused

    func testPlanAndExportLeaveTheDatabaseAsItWas() throws {
        let file = try table()
        let foreign = dir + "/other.db"
        let queue = try DatabaseQueue(path: foreign)
        try queue.write { try $0.execute(sql: "CREATE TABLE notes (id INTEGER PRIMARY KEY)") }
        let foreignBytes = bytes(foreign)
        try assertRefused(["plan", file, "--db", foreign], naming: ["\(foreign) is not a mile results database"])
        try assertRefused(["run", file, "--db", foreign, "--slake", dir], naming: ["\(foreign) is not a mile results database"])
        XCTAssertEqual(bytes(foreign), foreignBytes)
        XCTAssertFalse(FileManager.default.fileExists(atPath: foreign + "-wal"), "no switch to WAL")

        let path = dir + "/mile.db"
        _ = try ResultsStore(path: path)
        let before = bytes(path)
        XCTAssertEqual(try mile(["plan", file, "--db", path]).status, 0)
        XCTAssertEqual(try mile(["export", file, "--db", path, "--format", "csv", "--out", dir + "/x"]).status, 0)
        XCTAssertEqual(bytes(path), before)
    }

    // MARK: issue 18 (3): a mistyped --db must not overwrite good tables

    func testReportRefusesAMissingDatabase() throws {
        let file = try table()
        let out = dir + "/results"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try "good table".write(toFile: out + "/t.md", atomically: true, encoding: .utf8)
        try assertRefused(["report", file, "--db", dir + "/typo.db", "--out", out], naming: ["no results database at \(dir)/typo.db"])
        XCTAssertEqual(try String(contentsOfFile: out + "/t.md", encoding: .utf8), "good table")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/typo.db"))

        _ = try ResultsStore(path: dir + "/empty.db")
        let result = try mile(["report", file, "--db", dir + "/empty.db", "--out", out])
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("warning: no finished cell"), result.output)
    }

    // MARK: issue 18 (2): one cell selection for every command

    func testPlanReportAndExportTakeScaleAndSeedsAsRunDoes() throws {
        let file = try table()
        _ = try ResultsStore(path: dir + "/s.db")
        let plan = try mile(["plan", file, "--db", dir + "/s.db", "--scale", "smoke", "--seeds", "2"])
        XCTAssertEqual(plan.status, 0, plan.output)
        XCTAssertTrue(plan.output.contains("2 cells"), plan.output)
        XCTAssertTrue(plan.output.contains(" 43 "), "seeds 42 and 43: \(plan.output)")
        for command in [["report", "--out", dir + "/r"], ["export", "--out", dir + "/e"]] {
            let result = try mile([command[0], file, "--db", dir + "/s.db", "--scale", "smoke", "--seeds", "2"] + command.dropFirst())
            XCTAssertEqual(result.status, 0, "\(command[0]): \(result.output)")
        }
        XCTAssertTrue(try String(contentsOfFile: dir + "/r/t.md", encoding: .utf8).contains("seeds 42, 43"))
        try assertRefused(["plan", file, "--seeds", "1000"], naming: ["--seeds 1000", "100"])

        let two = try table("  - {vit: F, jtm: T, dec: ia3}\n  - {vit: T, jtm: T, dec: ia3}\n", name: "two.yaml")
        let selected = try mile(["plan", two, "--db", dir + "/s.db", "--row", "T T IA3"])
        XCTAssertEqual(selected.status, 0, selected.output)
        XCTAssertTrue(selected.output.contains("1 cells") || selected.output.contains("1 cell"), selected.output)
        XCTAssertFalse(selected.output.contains("F T IA3"), selected.output)
        XCTAssertEqual(try mile(["plan", two, "--db", dir + "/s.db", "--cell", "T T IA3"]).output, selected.output, "--row is --cell LABEL")
        // Repeated selectors add up (the last one used to win silently).
        let both = try mile(["plan", two, "--db", dir + "/s.db", "--row", "T T IA3", "--row", "F T IA3"])
        XCTAssertTrue(both.output.contains("F T IA3") && both.output.contains("T T IA3"), both.output)
        XCTAssertTrue(both.output.contains("2 cells"), both.output)
        try assertRefused(["plan", two, "--row", "T T LoRA r4"], naming: ["T T LoRA r4", "F T IA3, T T IA3"])
        try assertRefused(["report", two, "--db", dir + "/s.db", "--row", "T T IA3"], naming: ["renders whole tables"])
        XCTAssertEqual(try mile(["export", two, "--db", dir + "/s.db", "--row", "T T IA3", "--format", "csv", "--out", dir + "/e"]).status, 0)
    }

    // MARK: defect 10: file errors in plain words

    func testPathsThatAreFilesAreNamedPlainly() throws {
        let file = try table()
        let plainFile = dir + "/afile"
        try "x".write(toFile: plainFile, atomically: true, encoding: .utf8)
        _ = try ResultsStore(path: dir + "/ok.db")
        try assertRefused(["run", file, "--slake", dir, "--db", plainFile + "/x.db"], naming: ["\(plainFile) exists and is not a folder"])
        try assertRefused(["report", file, "--db", dir + "/ok.db", "--out", plainFile], naming: ["\(plainFile) exists and is not a folder"])
    }

    func testExtendsCycleIsNamed() throws {
        let selfish = try TestSupport.write("table: s\nextends: s.yaml\nrows:\n  - {vit: F, jtm: T, dec: ia3}\n", to: dir, name: "s.yaml")
        try assertRefused(["plan", selfish], naming: ["s.yaml:2:10", "'extends': names this file itself"])
        let chained = try TestSupport.write("table: c\nextends: t.yaml\nrows:\n  - {vit: F, jtm: T, dec: ia3}\n", to: dir, name: "c.yaml")
        _ = try table()
        try assertRefused(["plan", chained], naming: ["c.yaml:2:10", "t.yaml is a table file"])
    }

    func testYAMLMistakesPointWhereTheyBegin() throws {
        let quote = try TestSupport.write("table: q\nextends: defaults.yaml\ntitle: \"abc\nrows:\n  - {vit: F, jtm: T, dec: ia3}\n",
                                          to: dir, name: "q.yaml")
        try assertRefused(["plan", quote], naming: ["q.yaml:3:8", "a quoted scalar starts here and is never closed"])
        let bracket = try TestSupport.write("table: b\nextends: defaults.yaml\nrows:\n  - {vit: F, jtm: T, dec: ia3\n",
                                            to: dir, name: "b.yaml")
        try assertRefused(["plan", bracket], naming: ["b.yaml:5:1", "in a flow mapping that starts at line 4, column 5"])
    }

    func testNumbersOutOfRangeAreNamedByTheirLimit() throws {
        let huge = try table(set: "set: {recipe: {epochs: 99999999999999999999}}\n", name: "h.yaml")
        try assertRefused(["plan", huge], naming: ["h.yaml:3:24", "'recipe.epochs'", "too large"])
        let infinite = try table(set: "set: {recipe: {lr: .inf}}\n", name: "i.yaml")
        try assertRefused(["plan", infinite], naming: ["i.yaml:3:20", "'recipe.lr'", "expected a finite number, found .inf"])
    }

    /// The training records reach their images through the cache's symlinked folders: the message names the
    /// dataset's file, once.
    func testAMissingTrainingImageIsNamedOnceByItsDatasetPath() throws {
        let data = dir + "/data"
        try FileManager.default.copyItem(atPath: PipelineFixture.synthetic, toPath: data)
        let file = try PipelineFixture.table(in: dir, rows: [PipelineFixture.rowFLoRALoRA])
        let train = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: data + "/train.json"))) as? [[String: Any]])
        let test = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: data + "/test.json"))) as? [[String: Any]])
        let testImages = Set(test.compactMap { $0["img_name"] as? String })
        let name = try XCTUnwrap(train.compactMap { $0["img_name"] as? String }.first { !testImages.contains($0) })
        try FileManager.default.removeItem(atPath: data + "/imgs/" + name)
        let result = try mile(["run", file, "--slake", "data", "--db", dir + "/r.db", "--cache", dir + "/cache", "--quiet"])
        XCTAssertTrue((1..<128).contains(result.status), result.output)
        let expected = URL(fileURLWithPath: data + "/imgs/" + name).standardizedFileURL.path
        XCTAssertTrue(result.output.contains("1 image the run needs does not exist: \(expected)"), result.output)
        XCTAssertFalse(result.output.contains("instruction-images"), "named by the cache's symlink:\n\(result.output)")
    }

    // MARK: issue 16: the schema's allowed values are the model's own

    func testIA3TargetsAreExactlyWhatTheModelBuilds() throws {
        let file = try table()
        try assertRefused(["plan", file, "--set", "peft.ia3.vit_targets=qkv+proj"],
                          naming: ["peft.ia3.vit_targets", "qkv+proj", "fc2, fc1, attn"])
        for target in ["fc2", "fc1", "attn"] {
            let result = try mile(["plan", file, "--set", "peft.ia3.vit_targets=\(target)", "--db", dir + "/p.db"])
            XCTAssertEqual(result.status, 0, "\(target): \(result.output)")
        }
        try assertRefused(["plan", file, "--set", "model.family=blip"], naming: ["model.family", "blip", "miss"])
    }
}

extension BadInputTests {
    /// Issue 18 (10): a positional `key=value` suggests --set; no file, or FILE arguments with --resubmit, are
    /// usage errors; a module the family does not have is named.
    func testCommandLineConventions() throws {
        let file = try table()
        try assertRefused(["plan", file, "recipe.lr=1e-4"], naming: ["--set recipe.lr=1e-4"])
        try assertRefused(["report"], naming: ["at least one table file"])
        try assertRefused(["submit", file, "--slurm", "--resubmit", dir], naming: ["--resubmit", "no FILE arguments"])
        try assertRefused(["params", "--family", "biomedgpt", "--vit", "T"], naming: ["--vit", "biomedgpt", "--enc"])
    }
}
