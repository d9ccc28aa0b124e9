import XCTest
@testable import MileHarness

/// Issue 18 (8): `--sweep key=v1,v2` expands every row into named variants, one per value (the product
/// over several sweeps), each with its own label and config.
final class SweepTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = try TestSupport.temporaryDirectory(self)
        try TestSupport.copyDefaults(into: dir)
    }

    func table() throws -> ExperimentTable {
        let path = try TestSupport.write("""
            table: t
            extends: defaults.yaml
            rows:
              - {vit: F, jtm: T, dec: lora, rank: 4}
              - {vit: F, jtm: T, dec: ia3, name: adapted}

            """, to: dir, name: "t.yaml")
        return try ExperimentLoader.load(path: path)
    }

    func testEveryRowOncePerValueWithTheValueInItsLabel() throws {
        let cells = try Planner.expand(table(), overrides: [.sweep("recipe.lr=1e-4,3e-4"), .sweep("data.prompts=[mile],[mile, plain]")])
        XCTAssertEqual(cells.map(\.label), [
            "F T LoRA r4 [data.prompts=[mile], recipe.lr=0.0001]", "F T LoRA r4 [data.prompts=[mile, plain], recipe.lr=0.0001]",
            "F T LoRA r4 [data.prompts=[mile], recipe.lr=0.0003]", "F T LoRA r4 [data.prompts=[mile, plain], recipe.lr=0.0003]",
            "adapted [recipe.lr=0.0001, data.prompts=[mile]]", "adapted [recipe.lr=0.0001, data.prompts=[mile, plain]]",
            "adapted [recipe.lr=0.0003, data.prompts=[mile]]", "adapted [recipe.lr=0.0003, data.prompts=[mile, plain]]",
        ])
        XCTAssertEqual(cells[0].config["recipe.lr"], .double(1e-4))
        XCTAssertEqual(cells[1].config["data.prompts"], .list([.string("mile"), .string("plain")]))
        XCTAssertEqual(Set(cells.map(\.id)).count, 8)
    }

    /// A swept value equal to the defaults gives the plain row's cell: a done cell stays done.
    func testTheDefaultValueIsThePlainCell() throws {
        let plain = try Planner.expand(table())
        let swept = try Planner.expand(table(), overrides: [.sweep("recipe.lr=3.0e-4,1e-4")])
        XCTAssertEqual(swept[0].id, plain[0].id)
        XCTAssertNotEqual(swept[1].id, plain[0].id)
    }

    func testBadSweepsNameTheirCulprit() throws {
        XCTAssertThrowsError(try ConfigOverride.sweep("recipe.lr=1e-4")) { XCTAssertTrue("\($0)".contains("two or more")) }
        XCTAssertThrowsError(try ConfigOverride.sweep("recipe.lr=1e-4,abc")) {
            XCTAssertTrue("\($0)".contains("--sweep recipe.lr=1e-4,abc (column 16)"), "\($0)")
        }
        XCTAssertThrowsError(try Planner.expand(table(), overrides: [.sweep("recipe.lr=1e-4,3e-4"), ConfigOverride("recipe.lr=1")])) {
            XCTAssertTrue("\($0)".contains("--set and --sweep both give recipe.lr"), "\($0)")
        }
    }
}
