import Engine
import XCTest
@testable import MileModel

/// OFA-tiny's parameter counts (spec TABLE5 §a.2, §b.2, §c) from shape-only builds.
final class OFACountTests: XCTestCase {
    private func count(_ enc: ModuleMode, _ dec: ModuleMode, rank: Int = 8) throws -> ParameterCount {
        try OFAModel.count(config: .paper, assignment: PEFTAssignment(enc: enc, dec: dec, rank: rank))
    }

    func testPaperTotalAndSubtotals() throws {
        try withShapeOnly {
            let model = try OFAModel(config: .paper, assignment: PEFTAssignment(enc: .trained, dec: .trained), rng: RNG(seed: 0))
            let params = model.namedParameters()
            XCTAssertEqual(params.reduce(0) { $0 + $1.tensor.count }, 33_488_336)
            func total(_ match: (String) -> Bool) -> Int { params.filter { match($0.name) }.reduce(0) { $0 + $1.tensor.count } }
            let shared = "encoder.embed_tokens.weight"
            XCTAssertEqual(total { $0 == shared }, 15_220_992)
            XCTAssertEqual(total { $0.hasPrefix("encoder.") && $0 != shared }, 12_942_592)
            XCTAssertEqual(total { $0.hasPrefix("decoder.") }, 5_324_752)
            XCTAssertEqual(total { $0.hasPrefix("encoder.embed_images.") }, 8_543_296)
            XCTAssertEqual(total { $0.hasPrefix("encoder.layers.") }, 3_169_296)
            XCTAssertEqual(total { $0.hasPrefix("decoder.layers.") }, 4_226_080)
            // The tied table is one tensor under one name; no output projection tensor.
            XCTAssertFalse(params.contains { $0.name.hasPrefix("decoder.embed_tokens") || $0.name.contains("output_projection") })
            // BatchNorm running statistics are buffers: 2 x 15,296 channels, never trainable, not counted.
            let buffers = model.namedBuffers()
            XCTAssertEqual(buffers.reduce(0) { $0 + $1.tensor.count }, 30_592)
            XCTAssertTrue(buffers.allSatisfy { $0.name.hasSuffix("running_mean") || $0.name.hasSuffix("running_var") })
            XCTAssertTrue(buffers.allSatisfy { !$0.tensor.isTrainable })
            XCTAssertEqual(model.parameterCount, ParameterCount(trainable: 33_488_336, total: 33_488_336, adapters: 0))
            for name in ["encoder.embed_images.layer1.0.conv1.weight", "encoder.embed_images.layer3.5.bn3.running_var",
                         "encoder.embed_images.layer2.0.downsample.0.weight", "encoder.layers.0.self_attn.q_proj.weight",
                         "encoder.layers.3.self_attn.c_attn", "encoder.token_rel_pos_table_list.3.weight",
                         "encoder.image_rel_pos_table_list.0.weight", "decoder.layers.0.cross_attn.v_proj.weight",
                         "decoder.layers.3.ffn_layer_norm.weight", "decoder.cross_pos_k_linear.bias", shared] {
                XCTAssertTrue(model.namedTensors().contains { $0.name == name }, name)
            }
        }
    }

    func testDecoderAdapterSizes() throws {
        XCTAssertEqual(try count(.trained, .lora).adapters, 65_536)
        XCTAssertEqual(try count(.trained, .lora, rank: 4).adapters, 32_768)
        XCTAssertEqual(try count(.trained, .ia3).adapters, 8_192)
        XCTAssertEqual(try count(.trained, .prefix).adapters, 594_688)
        XCTAssertEqual(try count(.trained, .ptv2).adapters, 20_480)
    }

    /// Spec §b.2 row S1 (encoder trainable, decoder wrapped: its base and the shared table frozen).
    func testTrainablePercentages() throws {
        for (mode, expected) in [(ModuleMode.lora, 38.77), (.prefix, 39.72), (.ia3, 38.66), (.ptv2, 38.69)] {
            let c = try count(.trained, mode)
            XCTAssertEqual((c.percent * 100).rounded() / 100, expected, "\(mode): \(c)")
            XCTAssertEqual(c.total, 33_488_336 + c.adapters)
            XCTAssertEqual(c.trainable, 12_942_592 + c.adapters)
        }
        XCTAssertEqual(try count(.trained, .trained).percent, 100)
        XCTAssertEqual(try count(.frozen, .trained).trainable, 5_324_752)
        XCTAssertEqual(try count(.trained, .frozen).trainable, 12_942_592)
        XCTAssertEqual(try count(.frozen, .lora).trainable, 65_536)
    }

    func testBatchNormStatisticsStayOutOfTraining() throws {
        let model = try OFAModel(config: .smoke, assignment: PEFTAssignment(enc: .trained, dec: .trained), rng: RNG(seed: 1))
        let trainable = Set(model.trainableParameters().map(\.name))
        XCTAssertFalse(trainable.contains { $0.contains("running_") })
        XCTAssertEqual(model.parameterCount.total, model.namedParameters().reduce(0) { $0 + $1.tensor.count })
        XCTAssertEqual(model.parameterCount.trainable, model.parameterCount.total)
    }

    func testConfigAPI() throws {
        XCTAssertEqual(OFAConfig.presetNames, ["paper", "small", "smoke"])
        for name in OFAConfig.presetNames { XCTAssertNoThrow(try OFAConfig.preset(name).validate()) }
        let c = try OFAConfig.preset("small").applying(["vocab_size": 40000, "resnet_layers": [2, 2, 2]])
        XCTAssertEqual(c.vocabSize, 40000)
        XCTAssertEqual(c.resnetLayers, [2, 2, 2])
        XCTAssertThrowsError(try OFAConfig.smoke.applying(["no_such_key": 1])) { XCTAssertTrue("\($0)".contains("no_such_key")) }
        XCTAssertThrowsError(try OFAConfig.smoke.applying(["d_model": "wide"])) { XCTAssertTrue("\($0)".contains("d_model")) }
        XCTAssertThrowsError(try OFAConfig.smoke.applying(["image_bucket_size": 1]))
        let json = try OFAConfig.paper.jsonData()
        XCTAssertEqual(try JSONDecoder().decode(OFAConfig.self, from: json), .paper)
        let keys = try XCTUnwrap(JSONSerialization.jsonObject(with: json) as? [String: Any]).keys
        for key in ["image_size", "vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "max_positions",
                    "lora_alpha", "lora_dropout", "prefix_tokens", "resnet_layers", "token_bucket_size"] {
            XCTAssertTrue(keys.contains(key), key)
        }
        XCTAssertEqual(OFAConfig.paper.imageTokens, 256)
        XCTAssertEqual(OFAConfig.small.imageTokens, 36)
        XCTAssertThrowsError(try OFAModel(config: .smoke, assignment: .full, rng: RNG(seed: 0)))
        XCTAssertThrowsError(try PEFTAssignment(enc: .prefix, dec: .trained))
    }

    /// Upstream's bucket function at a few points (values of `make_token_bucket_position(256)` and
    /// `make_image_bucket_position(42, 6892)`).
    func testBuckets() {
        XCTAssertEqual(OFABuckets.token(0, bucketSize: 256), 255)
        XCTAssertEqual(OFABuckets.token(5, bucketSize: 256), 260)
        XCTAssertEqual(OFABuckets.token(-128, bucketSize: 256), 127)
        XCTAssertEqual(OFABuckets.token(1023, bucketSize: 256), 510)
        XCTAssertEqual(OFABuckets.token(-1023, bucketSize: 256), 0)
        XCTAssertEqual(OFABuckets.image(dy: 0, dx: 0, bucketSize: 42), 41 * 83 + 41)
        XCTAssertEqual(OFABuckets.imageRows(42), 6892)
    }
}
