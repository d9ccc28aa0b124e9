import XCTest
@testable import MileHarness

/// A corpus of bad experiment files: each must fail with the right position and say what was expected.
final class ExperimentParsingTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = try TestSupport.temporaryDirectory(self)
        try TestSupport.copyDefaults(into: dir)
    }

    /// Loads `yaml` as a table file and checks the error's line:column and message.
    func assertInvalid(_ yaml: String, at expected: String, contains fragments: [String],
                       name: String = "bad.yaml", file: StaticString = #filePath, line: UInt = #line) {
        let path = try! TestSupport.write(yaml, to: dir, name: name)
        do {
            let table = try ExperimentLoader.load(path: path)
            _ = try Planner.expand(table)
            XCTFail("expected an error for:\n\(yaml)", file: file, line: line)
        } catch let HarnessError.invalid(position, message) {
            XCTAssertEqual("\(position.line):\(position.column)", expected, "message: \(message)", file: file, line: line)
            XCTAssertTrue(position.file.hasSuffix(name) || position.file.hasSuffix("defaults.yaml"), file: file, line: line)
            for fragment in fragments {
                XCTAssertTrue(message.contains(fragment), "'\(message)' lacks '\(fragment)'", file: file, line: line)
            }
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    let header = "table: t\nextends: defaults.yaml\nrows:\n"

    func testValidMinimalFileLoads() throws {
        let path = try TestSupport.write(header + "  - {vit: F, jtm: lora, dec: lora, rank: 4}\n", to: dir, name: "ok.yaml")
        let cells = try Planner.expand(ExperimentLoader.load(path: path))
        XCTAssertEqual(cells.map(\.label), ["F LoRA LoRA r4"])
        XCTAssertNil(cells[0].published)
    }

    func testUnknownKeys() {
        assertInvalid("table: t\nextends: defaults.yaml\ncolour: red\nrows:\n  - {vit: F, jtm: T, dec: ia3}\n",
                      at: "3:1", contains: ["unknown key 'colour'", "expected one of table, title, extends, set, notes, rows"])
        assertInvalid(header + "  - vit: F\n    jtm: lora\n    dec: lora\n    rnak: 4\n",
                      at: "7:5", contains: ["row 1", "unknown key 'rnak'", "vit, jtm, dec, name, rank"])
        // An unknown module column is an unknown key too.
        assertInvalid(header + "  - {vit: F, mlp: T, dec: ia3}\n", at: "4:14", contains: ["unknown key 'mlp'"])
        assertInvalid(header + "  - {vit: F, jtm: T, dec: ia3, set: {recipe: {lr: 1.0e-5, epoch: 3}}}\n",
                      at: "4:59", contains: ["unknown key 'epoch'", "'recipe'", "epochs"])
        assertInvalid(header + "  - vit: F\n    jtm: T\n    dec: ia3\n    published: {params: 1, colsed: 2}\n",
                      at: "7:28", contains: ["unknown key 'colsed'", "closed"])
    }

    func testDuplicateKeysPointAtTheSecondOccurrence() {
        assertInvalid(header + "  - vit: F\n    jtm: lora\n    dec: lora\n    jtm: T\n    rank: 4\n",
                      at: "7:5", contains: ["duplicate key 'jtm'", "first defined at line 5, column 5"])
        assertInvalid("table: a\ntable: b\nextends: defaults.yaml\nrows: []\n",
                      at: "2:1", contains: ["duplicate key 'table'"])
        assertInvalid(header + "  - {vit: F, jtm: T, dec: ia3, dec: lora}\n", at: "4:32", contains: ["duplicate key 'dec'"])
    }

    func testWrongTypes() {
        assertInvalid(header + "  - vit: F\n    jtm: lora\n    dec: lora\n    rank: four\n",
                      at: "7:11", contains: ["'rank'", "expected an integer", "string ('four')"])
        assertInvalid(header + "  - {vit: F, jtm: T, dec: ia3, set: {recipe: {epochs: 2.5}}}\n",
                      at: "4:55", contains: ["'recipe.epochs'", "expected an integer", "2.5"])
        assertInvalid(header + "  - {vit: F, jtm: T, dec: ia3, published: {params: \"0.1%\"}}\n",
                      at: "4:52", contains: ["'params'", "expected a number"])
        // YAML 1.1 reads `no` as a boolean; the error says so.
        assertInvalid(header + "  - {vit: no, jtm: T, dec: ia3}\n",
                      at: "4:11", contains: ["expected one of F, T, lora, ia3, prefix, ptv2", "boolean (no)"])
        assertInvalid("table: t\nextends: defaults.yaml\nrows: {vit: F}\n", at: "3:7", contains: ["'rows'", "expected a list"])
        assertInvalid("- table: t\n", at: "1:1", contains: ["expected a mapping"])
        assertInvalid(header + "  - {vit: F, jtm: T, dec: ia3, set: {recipe: {seeds: 42}}}\n",
                      at: "4:54", contains: ["'recipe.seeds'", "a list of an integer >= 0"])
    }

    func testUnknownModuleModes() {
        assertInvalid(header + "  - vit: F\n    jtm: lora\n    dec: lorra\n    rank: 4\n",
                      at: "6:10", contains: ["unknown value 'lorra'", "expected one of F, T, lora, ia3, prefix, ptv2"])
        assertInvalid(header + "  - {vit: LoRA, jtm: T, dec: ia3}\n", at: "4:11", contains: ["unknown value 'LoRA'"])
        assertInvalid(header + "  - {vit: prefix, jtm: T, dec: prefix}\n", at: "4:11", contains: ["prompt method", "ViT takes F, T, lora or ia3"])
        assertInvalid(header + "  - {vit: F, jtm: F, dec: F}\n", at: "4:5", contains: ["nothing would be trained"])
    }

    func testRankRules() {
        assertInvalid(header + "  - vit: F\n    jtm: ia3\n    dec: ia3\n    rank: 4\n",
                      at: "7:5", contains: ["'rank' applies only to lora", "no module of this row uses lora"])
        assertInvalid(header + "  - vit: F\n    jtm: lora\n    dec: lora\n", at: "4:5", contains: ["missing key 'rank'", "uses lora"])
        assertInvalid(header + "  - {vit: F, jtm: lora, dec: lora, rank: [4, 4]}\n", at: "4:46", contains: ["4 is listed twice"])
        assertInvalid(header + "  - {vit: F, jtm: lora, dec: lora, rank: 0}\n", at: "4:42", contains: ["expected an integer >= 1"])
        assertInvalid(header + "  - {vit: F, jtm: lora, dec: lora, rank: []}\n", at: "4:42", contains: ["at least one rank"])
    }

    /// Sizes that drive allocations have upper bounds, refused with the reason when the file is read
    /// (they used to abort the run after training, leaving a `running` claim).
    func testUpperBoundsAreRefusedWithTheReason() {
        assertInvalid(header + "  - {vit: F, jtm: lora, dec: lora, rank: 1000000000}\n", at: "4:42",
                      contains: ["'rank'", "1000000000 is above the limit of 768", "LoRA rank"])
        assertInvalid(header + "  - {vit: F, jtm: lora, dec: lora, rank: [4, 100000]}\n", at: "4:46", contains: ["limit of 768"])
        let cases: [(String, String, String)] = [
            ("decoding: {beams: 1000}", "'decoding.beams'", "limit of 16"),
            ("decoding: {max_length: 100000}", "'decoding.max_length'", "limit of 64"),
            ("peft: {prefix: {virtual_tokens: 100000}}", "'peft.prefix.virtual_tokens'", "limit of 128"),
            ("recipe: {epochs: 1000000}", "'recipe.epochs'", "limit of 1000"),
            ("recipe: {batch: 100000}", "'recipe.batch'", "limit of 512"),
            ("pretraining: {epochs: 5000}", "'pretraining.epochs'", "limit of 1000"),
        ]
        for (set, key, limit) in cases {
            let row = "  - {vit: F, jtm: T, dec: ia3, set: {\(set)}}"
            let column = row.distance(from: row.startIndex, to: row.range(of: ": ", options: .backwards)!.upperBound) + 1
            assertInvalid(header + row + "\n", at: "4:\(column)", contains: [key, limit, "("])
        }
        XCTAssertThrowsError(try ConfigOverride("decoding.beams=1000")) { XCTAssertTrue("\($0)".contains("limit of 16"), "\($0)") }
    }

    /// What `mile run` would refuse, `mile plan` refuses (with the row's position): plan-time validation
    /// is the run-time validation.
    func testPlanRefusesWhatTheRunWouldRefuse() {
        assertInvalid(header + "  - {vit: F, jtm: T, dec: ia3, set: {decoding: {min_length: 5, max_length: 3}}}\n", at: "4:5",
                      contains: ["row 'F T IA3 [decoding.max_length=3, decoding.min_length=5]'", "decoding.min_length (5) is above decoding.max_length (3)"])
        assertInvalid(header + "  - {vit: F, jtm: T, dec: ia3, set: {recipe: {lr: 0}}}\n", at: "4:5",
                      contains: ["recipe.lr and pretraining.lr must be positive"])
        assertInvalid(header + "  - {vit: F, jtm: prefix, dec: ptv2, set: {peft: {prefix: {virtual_tokens: 5}}}}\n", at: "4:5",
                      contains: ["peft.prefix.virtual_tokens (5) and peft.ptv2.virtual_tokens (10) differ"])
        assertInvalid(header + "  - {vit: F, jtm: T, dec: ia3, set: {recipe: {seeds: [\((0..<101).map(String.init).joined(separator: ", "))]}}}\n",
                      at: "4:5", contains: ["101 seeds", "at most 100"])
    }

    func testPublishedNumbersMustCoverEveryRank() {
        assertInvalid(header + "  - {vit: F, jtm: lora, dec: lora, rank: [4, 8], published: {params: 1}}\n",
                      at: "4:61", contains: ["2 ranks", "one entry per rank"])
        assertInvalid(header + "  - {vit: F, jtm: lora, dec: lora, rank: [4, 8], published: [{rank: 4, params: 1}]}\n",
                      at: "4:61", contains: ["no entry for rank 8"])
        assertInvalid(header + "  - {vit: F, jtm: lora, dec: lora, rank: [4, 8], published: [{rank: 16, params: 1}]}\n",
                      at: "4:69", contains: ["16 is not one of this row's ranks (4, 8)"])
        assertInvalid(header + "  - {vit: F, jtm: lora, dec: lora, rank: [4, 8], published: [{params: 1}, {rank: 8}]}\n",
                      at: "4:62", contains: ["missing key 'rank'"])
    }

    func testStructuralErrors() {
        assertInvalid("table: t\nrows:\n  - {vit: F, jtm: T, dec: ia3}\n", at: "1:1", contains: ["missing key 'extends'"])
        assertInvalid("table: t\nextends: nowhere.yaml\nrows:\n  - {vit: F, jtm: T, dec: ia3}\n",
                      at: "2:10", contains: ["no such file", "nowhere.yaml"])
        assertInvalid(header, at: "3:6", contains: ["'rows'", "expected a list"])
        assertInvalid("table: t\nextends: defaults.yaml\nrows: []\n", at: "3:7", contains: ["at least one row"])
        assertInvalid("table: t t\nextends: defaults.yaml\nrows: []\n", at: "1:8", contains: ["'table'", "letters, digits"])
        assertInvalid("table: t\nextends: defaults.yaml\nrows: [\n", at: "4:1", contains: ["YAML syntax"])
        assertInvalid("", at: "1:1", contains: ["empty"])
        assertInvalid(header + "  - {vit: F, jtm: T, dec: ia3, set: {recipe: {seeds: []}}}\n", at: "4:5", contains: ["recipe.seeds is empty"])
        assertInvalid(header + "  - {vit: F, jtm: T, dec: ia3}\n  - {vit: F, jtm: T, dec: ia3}\n", at: "5:5",
                      contains: ["same config as the row at line 4"])
    }

    func testDefaultsFileIsStrictAndComplete() throws {
        let defaults = try String(contentsOfFile: dir + "/defaults.yaml", encoding: .utf8)
        let withoutDecoding = defaults.components(separatedBy: "decoding:")[0]
        try TestSupport.write(withoutDecoding, to: dir, name: "defaults.yaml")
        assertInvalid(header + "  - {vit: F, jtm: T, dec: ia3}\n", at: "6:1", contains: ["missing key 'decoding'"])

        try TestSupport.write(defaults.replacingOccurrences(of: "  batch: 20\n  weight_decay", with: "  batch: 20\n  momentum: 0.9\n  weight_decay"),
                              to: dir, name: "defaults.yaml")
        let line = defaults.components(separatedBy: "\n").firstIndex { $0.hasPrefix("  weight_decay") }! + 1
        assertInvalid(header + "  - {vit: F, jtm: T, dec: ia3}\n", at: "\(line):3", contains: ["unknown key 'momentum'", "'recipe'"])
    }

    func testCommandLineOverrides() throws {
        XCTAssertEqual(try ConfigOverride("recipe.lr=1e-5").value, .double(1e-5))
        XCTAssertEqual(try ConfigOverride("recipe.seeds=[1, 2]").value, .list([.int(1), .int(2)]))
        XCTAssertEqual(try ConfigOverride("model.scale=smoke").path, ["model", "scale"])
        func assertOverrideError(_ text: String, column: Int, _ fragment: String, line: UInt = #line) {
            XCTAssertThrowsError(try ConfigOverride(text), line: line) { error in
                guard case let HarnessError.invalid(position, message) = error else { return XCTFail("\(error)", line: line) }
                XCTAssertEqual(position.column, column, message, line: line)
                XCTAssertTrue(message.contains(fragment), message, line: line)
                XCTAssertTrue("\(position)".hasPrefix("--set "), line: line)
            }
        }
        assertOverrideError("recipe.epochz=3", column: 8, "unknown key 'epochz' in 'recipe'")
        assertOverrideError("recipee.lr=3", column: 1, "unknown key 'recipee'")
        assertOverrideError("recipe.epochs=x", column: 15, "expected an integer")
        assertOverrideError("model.scale=huge", column: 13, "expected one of paper, small, smoke")
        assertOverrideError("recipe", column: 1, "expected key.path=value")
    }
}
