import Foundation
import XCTest
@testable import MileHarness
import MileModel

/// `model.image_size`, `pretraining.vision_lr_scale`, `recipe.vision_lr_scale`: added after the committed
/// results, so at their neutral values every cell id and stage key stays the committed one.
final class VisionSettingsTests: XCTestCase {
    /// Every committed cell file (results/cells) is planned again from its table file at today's defaults
    /// with the same cell id and stage keys, so those cells stay done.
    func testCommittedCellIdsAreUnchanged() throws {
        let folder = TestSupport.root + "/results/cells"
        var checked = 0
        for table in try FileManager.default.contentsOfDirectory(atPath: folder).sorted() {
            for name in try FileManager.default.contentsOfDirectory(atPath: folder + "/" + table) where name.hasSuffix(".json") {
                let record = try ConfigValue.fromJSON(String(contentsOfFile: "\(folder)/\(table)/\(name)", encoding: .utf8))
                let source = try XCTUnwrap(record["source_file"]?.stringValue), seed = try XCTUnwrap(record["seed"]?.intValue)
                let cells = try Planner.expand(ExperimentLoader.load(path: TestSupport.root + "/" + source),
                                               overrides: [ConfigOverride("recipe.seeds=[\(seed)]")])
                let row = try XCTUnwrap(record["row"]?.stringValue)
                let cell = try XCTUnwrap(cells.first { $0.label == row }, "\(table)/\(name): row \(row)")
                XCTAssertEqual(cell.id, record["cell_id"]?.stringValue, "\(table)/\(name)")
                XCTAssertEqual(cell.stage(.base).key, record["stage_keys.base"]?.stringValue, "\(table)/\(name)")
                XCTAssertEqual(cell.stage(.finetune).key, record["stage_keys.finetune"]?.stringValue, "\(table)/\(name)")
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 23)
    }

    func cell(_ overrides: [String]) throws -> PlannedCell {
        try Planner.expand(ExperimentLoader.load(path: TestSupport.experiment("table1.yaml")), overrides: overrides.map(ConfigOverride.init))
            .first { $0.label == "T T LoRA r4" }!
    }

    /// A base-side setting changes the base key; a fine-tuning lr scale changes only the fine-tune key.
    func testNonNeutralValuesEnterTheKeys() throws {
        let plain = try cell([])
        for key in ["pretraining.vision_lr_scale=3", "model.image_size=64"] {
            let changed = try cell([key])
            XCTAssertNotEqual(changed.stage(.base).key, plain.stage(.base).key, key)
            XCTAssertNotEqual(changed.id, plain.id, key)
        }
        let tuned = try cell(["recipe.vision_lr_scale=0.5"])
        XCTAssertEqual(tuned.stage(.base).key, plain.stage(.base).key)
        XCTAssertNotEqual(tuned.stage(.finetune).key, plain.stage(.finetune).key)
        XCTAssertEqual(try cell(["recipe.vision_lr_scale=1"]).id, plain.id, "an integer 1 is the neutral value too")
    }

    func testBadValuesNameTheKey() throws {
        for (key, text) in [("recipe.vision_lr_scale=0", "vision_lr_scale must be positive"),
                            ("model.image_size=100", "model.image_size 100"),
                            ("model.image_size=-16", "image_size")] {
            XCTAssertThrowsError(try RunSettings(try cell([key]).config, cell: "c"), key) { error in
                XCTAssertTrue("\(error)".contains(text), "\(key): \(error)")
            }
        }
    }

    /// The image size applies at the run's scale only: the paper-scale config keeps 480².
    func testImageSizeAppliesAtTheRunScale() throws {
        let settings = try RunSettings(try cell(["model.image_size=64"]).config, cell: "c")
        XCTAssertEqual(try settings.modelConfig(scale: "small", vocabulary: nil).imageSize, 64)
        XCTAssertEqual(try settings.modelConfig(scale: "paper", vocabulary: nil).imageSize, 480)
    }
}
