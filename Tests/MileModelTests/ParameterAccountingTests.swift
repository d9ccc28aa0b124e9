import Engine
import XCTest
@testable import MileModel

/// The 23 rows of spec §2.2 (paper Tables 1–4): assignment and the published #Params %.
let paperRows: [(vit: String, jtm: String, dec: String, rank: Int, percent: String)] = [
    ("F", "lora", "lora", 4, "0.163"), ("F", "lora", "lora", 8, "0.325"),
    ("lora", "lora", "lora", 4, "0.327"), ("lora", "lora", "lora", 8, "0.652"),
    ("F", "T", "lora", 4, "38.022"), ("F", "T", "lora", 8, "38.072"),
    ("T", "lora", "lora", 4, "24.009"), ("T", "lora", "lora", 8, "24.133"),
    ("T", "T", "lora", 4, "61.887"), ("T", "T", "lora", 8, "61.919"),
    ("F", "F", "prefix", 8, "3.926"), ("F", "prefix", "prefix", 8, "7.556"),
    ("T", "prefix", "prefix", 8, "29.636"), ("T", "T", "prefix", 8, "63.354"),
    ("F", "ia3", "ia3", 8, "0.051"), ("ia3", "ia3", "ia3", 8, "0.061"),
    ("T", "ia3", "ia3", 8, "23.924"), ("F", "T", "ia3", 8, "37.987"), ("T", "T", "ia3", 8, "61.866"),
    ("F", "ptv2", "ptv2", 8, "0.102"), ("F", "F", "ptv2", 8, "0.051"),
    ("T", "ptv2", "ptv2", 8, "23.963"), ("T", "T", "ptv2", 8, "61.876"),
]

final class ParameterAccountingTests: XCTestCase {
    func assignment(_ v: String, _ j: String, _ d: String, _ r: Int) throws -> PEFTAssignment {
        try PEFTAssignment(vit: ModuleMode(flag: v), jtm: ModuleMode(flag: j), dec: ModuleMode(flag: d), rank: r)
    }

    func testPaperTotalAndModuleSizes() throws {
        let a = try assignment("T", "T", "T", 8)
        let count = try ParameterAccounting.count(config: .paper, assignment: a)
        XCTAssertEqual(count.total, 361_478_972)
        XCTAssertEqual(count.trainable, 361_478_972)
        XCTAssertEqual(count.adapters, 0)
        let slots = try ParameterAccounting.slotTotals(config: .paper, assignment: a)
        XCTAssertEqual(slots["vit"], 86_339_328)
        XCTAssertEqual(slots["jtm"], 137_258_496)
        XCTAssertEqual(slots["dec"], 137_881_148)
        let frozen = try ParameterAccounting.count(config: .paper, assignment: try assignment("F", "F", "F", 8))
        XCTAssertEqual(frozen.trainable, 0)
    }

    func testAll23PaperRowsReproduceToThreeDecimals() throws {
        for row in paperRows {
            let a = try assignment(row.vit, row.jtm, row.dec, row.rank)
            let count = try ParameterAccounting.count(config: .paper, assignment: a)
            XCTAssertEqual(String(format: "%.3f", count.percent), row.percent, "row \(a)")
        }
    }

    func testAdapterSizesMatchSpecArithmetic() throws {
        func adapters(_ v: String, _ j: String, _ d: String, _ r: Int) throws -> Int {
            try ParameterAccounting.count(config: .paper, assignment: try assignment(v, j, d, r)).adapters
        }
        XCTAssertEqual(try adapters("F", "F", "lora", 4), 294_912)
        XCTAssertEqual(try adapters("lora", "F", "F", 4), 595_968)
        XCTAssertEqual(try adapters("lora", "F", "F", 8), 1_191_936)
        XCTAssertEqual(try adapters("F", "F", "ia3", 8), 92_160)
        XCTAssertEqual(try adapters("ia3", "F", "F", 8), 36_864)
        XCTAssertEqual(try adapters("F", "F", "prefix", 8), 14_772_480)
        XCTAssertEqual(try adapters("F", "ptv2", "F", 8), 184_320)
    }

    func testViTIA3TargetChoicesFromSpec() throws {
        let a = try assignment("ia3", "F", "F", 8)
        for (target, expected) in [(ViTIA3Target.fc2, 36_864), (.fc1, 36_864), (.attn, 36_864)] {
            var c = ModelConfig.paper
            c.vitIA3Target = target
            XCTAssertEqual(try ParameterAccounting.count(config: c, assignment: a).adapters, expected, "\(target)")
        }
    }

    func testUpstreamNamesAndTiedHead() throws {
        let listed = try withShapeOnly { try MISSModel(config: .paper, assignment: .full, rng: RNG(seed: 0)).namedParameters().map(\.name) }
        let names = Set(listed)
        XCTAssertTrue(names.contains("text_encoder.encoder.layer.5.crossattention.self.query.weight"))
        XCTAssertTrue(names.contains("visual_encoder.blocks.3.attn.qkv.weight"))
        XCTAssertTrue(names.contains("text_decoder.cls.predictions.transform.LayerNorm.bias"))
        XCTAssertTrue(names.contains("text_decoder.bert.embeddings.word_embeddings.weight"))
        XCTAssertFalse(names.contains("text_decoder.cls.predictions.decoder.weight"), "tied weight counted once")
        XCTAssertFalse(names.contains { $0.contains("token_type") || $0.contains("pooler") })
        XCTAssertEqual(names.count, listed.count, "names are unique")
    }

    func testModeFlagsParseCaseInsensitively() throws {
        XCTAssertEqual(try ModuleMode(flag: "f"), .frozen)
        XCTAssertEqual(try ModuleMode(flag: "T"), .trained)
        XCTAssertEqual(try ModuleMode(flag: "LoRA"), .lora)
        XCTAssertEqual(try ModuleMode(flag: "IA3"), .ia3)
        XCTAssertEqual(try ModuleMode(flag: "Prefix"), .prefix)
        XCTAssertEqual(try ModuleMode(flag: "PTv2"), .ptv2)
        XCTAssertThrowsError(try ModuleMode(flag: "adapter"))
        XCTAssertThrowsError(try PEFTAssignment(vit: .prefix, jtm: .frozen, dec: .frozen))
        XCTAssertThrowsError(try PEFTAssignment(vit: .frozen, jtm: .frozen, dec: .lora, rank: 0))
    }

    func testConfigOverridesAndErrors() throws {
        let c = try ModelConfig.small.applying(["vocab_size": 1200, "text_layers": 2, "dec_token_id": 1198, "sep_token_id": 3])
        XCTAssertEqual(c.vocabSize, 1200)
        XCTAssertEqual(c.textLayers, 2)
        XCTAssertEqual(c.visionWidth, ModelConfig.small.visionWidth)
        XCTAssertThrowsError(try ModelConfig.small.applying(["vocab_sise": 1])) { error in
            XCTAssertTrue("\(error)".contains("vocab_sise"))
        }
        XCTAssertThrowsError(try ModelConfig.small.applying(["text_heads": 5])) { error in
            XCTAssertTrue("\(error)".contains("text_heads"))
        }
        XCTAssertThrowsError(try ModelConfig.small.applying(["vocab_size": "big"])) { error in
            XCTAssertTrue("\(error)".contains("vocab_size"))
        }
        let loaded = try ModelConfig.load(json: Data(#"{"scale": "smoke", "drop_path_rate": 0}"#.utf8))
        XCTAssertEqual(loaded.dropPathRate, 0)
        XCTAssertEqual(loaded.imageSize, ModelConfig.smoke.imageSize)
        XCTAssertEqual(try ModelConfig.load(json: ModelConfig.paper.jsonData()), .paper)
        XCTAssertThrowsError(try ModelConfig.preset("huge"))
        for preset in [ModelConfig.paper, .small, .smoke] { XCTAssertNoThrow(try preset.validate()) }
    }
}
