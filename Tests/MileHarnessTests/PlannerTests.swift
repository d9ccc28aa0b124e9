import XCTest
@testable import MileHarness
import MileData

final class PlannerTests: XCTestCase {
    func load(_ name: String) throws -> ExperimentTable { try ExperimentLoader.load(path: TestSupport.experiment(name)) }

    func testPaperTablesExpandToTheirCellCounts() throws {
        let expected = ["table1.yaml": 10, "table2.yaml": 4, "table3.yaml": 5, "table4.yaml": 4]
        for (file, count) in expected {
            let cells = try Planner.expand(load(file))
            XCTAssertEqual(cells.count, count, file)
            XCTAssertTrue(cells.allSatisfy { $0.published?.params != nil && $0.published?.global != nil }, "\(file): every cell carries published numbers")
        }
        let labels = try Planner.expand(load("table1.yaml")).map(\.label)
        XCTAssertEqual(labels, ["F LoRA LoRA r4", "F LoRA LoRA r8", "LoRA LoRA LoRA r4", "LoRA LoRA LoRA r8", "F T LoRA r4",
                                "F T LoRA r8", "T LoRA LoRA r4", "T LoRA LoRA r8", "T T LoRA r4", "T T LoRA r8"])
        XCTAssertEqual(try Planner.expand(load("table2.yaml")).map(\.label), ["F F Prefix", "F Prefix Prefix", "T Prefix Prefix", "T T Prefix"])
    }

    func testSeedsMultiplyCells() throws {
        let cells = try Planner.expand(load("table1.yaml"), overrides: [ConfigOverride("recipe.seeds=[1, 2, 3]")])
        XCTAssertEqual(cells.count, 30)
        XCTAssertEqual(cells.prefix(3).map(\.seed), [1, 2, 3])
        XCTAssertEqual(Set(cells.map(\.id)).count, 30)
        XCTAssertEqual(cells[0].config["recipe.seed"], .int(1))
        XCTAssertNil(cells[0].config["recipe.seeds"])
    }

    /// The paper's Global should be (706 Opened + 355 Closed) / 1061; every row where it is not (by more
    /// than 0.02) must carry a note in the file, and no consistent row may.
    func testFileNotesMarkExactlyThePapersInconsistentGlobals() throws {
        for file in ["table1.yaml", "table2.yaml", "table3.yaml", "table4.yaml"] {
            for cell in try Planner.expand(load(file)) {
                let p = cell.published!
                let recomputed = (706 * p.opened! + 355 * p.closed!) / 1061
                let inconsistent = abs(recomputed - p.global!) > 0.02
                XCTAssertEqual(p.note != nil, inconsistent, "\(file) \(cell.label): recomputed \(recomputed), published \(p.global!)")
            }
        }
        let first = try Planner.expand(load("table1.yaml"))[0].published!
        XCTAssertEqual(first.global! - (706 * first.opened! + 355 * first.closed!) / 1061, 1.00, accuracy: 0.005)
    }

    func testCanonicalSerialisationIsStable() {
        let value = ConfigValue.map(["b": .list([.int(1), .double(2e-5), .double(0.5), .double(3)]), "a": .map(["z": .bool(true), "y": .string("q\"\n")])])
        XCTAssertEqual(value.canonicalJSON, #"{"a":{"y":"q\"\n","z":true},"b":[1,2e-05,0.5,3.0]}"#)
        XCTAssertEqual(try ConfigValue.fromJSON(value.canonicalJSON), value)
        XCTAssertEqual(SHA256.hex(value.canonicalJSON), SHA256.hex(#"{"a":{"y":"q\"\n","z":true},"b":[1,2e-05,0.5,3.0]}"#))
    }

    func testCellIDsAreStableAcrossLoadsAndKeyOrder() throws {
        let first = try Planner.expand(load("table1.yaml")).map(\.id)
        let second = try Planner.expand(load("table1.yaml")).map(\.id)
        XCTAssertEqual(first, second)
        XCTAssertTrue(first.allSatisfy { $0.count == 64 && $0.allSatisfy(\.isHexDigit) })

        // The same row written with other key order, flow style and another spelling of the same number.
        let dir = try TestSupport.temporaryDirectory(self)
        try TestSupport.copyDefaults(into: dir)
        let a = try TestSupport.write("table: x\nextends: defaults.yaml\nrows:\n  - {vit: F, jtm: lora, dec: lora, rank: 4, set: {recipe: {lr: 3.0e-4}}}\n", to: dir, name: "a.yaml")
        let b = try TestSupport.write("rows:\n  - rank: 4\n    set:\n      recipe:\n        lr: 0.0003\n    dec: lora\n    jtm: lora\n    vit: F\nextends: defaults.yaml\ntable: y\n", to: dir, name: "b.yaml")
        let cellA = try Planner.expand(ExperimentLoader.load(path: a))[0]
        let cellB = try Planner.expand(ExperimentLoader.load(path: b))[0]
        XCTAssertEqual(cellA.id, cellB.id)
        XCTAssertEqual(cellA.id, first[0], "the explicit lr equals the default, so the id equals table1's F LoRA LoRA r4")
    }

    func testChangesChangeTheRightKeys() throws {
        let table = try load("table1.yaml")
        let base = try Planner.expand(table)[0]
        let lr = try Planner.expand(table, overrides: [ConfigOverride("recipe.lr=1e-5")])[0]
        XCTAssertNotEqual(lr.id, base.id)
        XCTAssertEqual(lr.stage(.base).key, base.stage(.base).key, "fine-tune settings do not touch the shared base")
        XCTAssertEqual(lr.stage(.data).key, base.stage(.data).key)
        XCTAssertNotEqual(lr.stage(.finetune).key, base.stage(.finetune).key)

        let decoding = try Planner.expand(table, overrides: [ConfigOverride("decoding.beams=1")])[0]
        XCTAssertNotEqual(decoding.id, base.id)
        XCTAssertEqual(decoding.stage(.finetune).key, base.stage(.finetune).key, "decoding only re-evaluates")

        let scale = try Planner.expand(table, overrides: [ConfigOverride("model.scale=smoke")])[0]
        XCTAssertNotEqual(scale.stage(.base).key, base.stage(.base).key)
        let data = try Planner.expand(table, overrides: [ConfigOverride("data.double_divide_255=true")])[0]
        XCTAssertNotEqual(data.stage(.data).key, base.stage(.data).key)
        XCTAssertNotEqual(data.stage(.base).key, base.stage(.base).key, "the base depends on the data stage")

        // A PEFT setting of a method the cell does not use is not part of its id.
        let prefixTokens = try Planner.expand(table, overrides: [ConfigOverride("peft.prefix.virtual_tokens=20")])[0]
        XCTAssertEqual(prefixTokens.id, base.id)
        let alpha = try Planner.expand(table, overrides: [ConfigOverride("peft.lora.alpha=16")])[0]
        XCTAssertNotEqual(alpha.id, base.id)
    }

    func testEveryCellOfATableSharesOneBase() throws {
        for file in ["table1.yaml", "table2.yaml", "table3.yaml", "table4.yaml"] {
            let cells = try Planner.expand(load(file))
            XCTAssertEqual(Set(cells.map { $0.stage(.base).key }).count, 1, file)
            XCTAssertEqual(cells[0].stages.map(\.kind), [.data, .base, .finetune, .evaluate])
            XCTAssertEqual(cells[0].stage(.evaluate).key, cells[0].id)
        }
    }

    func testResolvedConfigCarriesTheAssignment() throws {
        let cell = try Planner.expand(load("table3.yaml"))[1]
        XCTAssertEqual(cell.label, "IA3 IA3 IA3")
        XCTAssertEqual(cell.config["cell"], .map(["vit": .string("ia3"), "jtm": .string("ia3"), "dec": .string("ia3")]))
        XCTAssertNotNil(cell.config["peft.ia3"])
        XCTAssertNil(cell.config["peft.lora"])
        XCTAssertEqual(cell.config["recipe.epochs"], .int(2))   // the small-scale default (docs/PIPELINE.md)
    }
}

final class CellSelectionTests: XCTestCase {
    func testSelectByLabelOrIDPrefix() throws {
        let cells = try Planner.expand(ExperimentLoader.load(path: TestSupport.experiment("table1.yaml")),
                                       overrides: [ConfigOverride("recipe.seeds=[1, 2]")])
        XCTAssertEqual(try Planner.select(cells, cell: "F T LoRA r8").map(\.seed), [1, 2])
        XCTAssertEqual(try Planner.select(cells, cell: cells[3].shortID).map(\.id), [cells[3].id])
        XCTAssertEqual(try Planner.select(cells, cell: String(cells[3].id.prefix(8)).uppercased()).count, 1)
        XCTAssertThrowsError(try Planner.select(cells, cell: "F T LoRA r16")) { XCTAssertTrue("\($0)".contains("rows: F LoRA LoRA r4")) }
        XCTAssertThrowsError(try Planner.select(cells, cell: "abc"))
        // Two cells whose ids share a 4-digit prefix: the prefix is ambiguous.
        let twins = ["abcd0001", "abcd0002"].map { id in
            PlannedCell(table: "t", file: "f", row: cells[0].row, assignment: cells[0].assignment, seed: 1, config: cells[0].config,
                        canonicalJSON: "", id: id, published: nil, stages: [])
        }
        XCTAssertThrowsError(try Planner.select(twins, cell: "abcd")) { XCTAssertTrue("\($0)".contains("ambiguous")) }
        XCTAssertEqual(try Planner.select(twins, cell: "abcd0002").map(\.id), ["abcd0002"])
    }
}
