import Engine
import XCTest
@testable import MileModel

/// The modules are the one description of the parameters: every count comes from a shape-only build.
final class ModelStructureTests: XCTestCase {
    let cells = [("T", "T", "T"), ("F", "lora", "lora"), ("lora", "lora", "lora"), ("ia3", "ia3", "ia3"),
                 ("T", "prefix", "prefix"), ("F", "ptv2", "ptv2"), ("F", "T", "ia3"), ("T", "F", "lora")]

    /// Names, shapes, trainability and adapter roles of 27 assignments × 3 ViT IA3 target sets at paper and
    /// smoke scale, as digests of the listing the model registered before the PEFT code moved into `PEFT/`
    /// (Fixtures/parameter-layout.txt, written by the removed `ParameterLayout`-era model).
    func testRegisteredParametersMatchTheRecordedLayout() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "parameter-layout", withExtension: "txt", subdirectory: "Fixtures"))
        let recorded = try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(recorded.count, 2 * ViTIA3Target.allCases.count * layoutCells.count)
        var index = 0
        for scale in ["paper", "smoke"] {
            for target in ViTIA3Target.allCases {
                var c = try ModelConfig.preset(scale)
                c.vitIA3Target = target
                for (v, j, d, r) in layoutCells {
                    let a = try assignment(v, j, d, rank: r)
                    let lines: [String] = try withShapeOnly {
                        try MISSModel(config: c, assignment: a, rng: RNG(seed: 0)).namedTensors().map {
                            "\($0.name) \($0.tensor.shape) \($0.tensor.isTrainable ? "T" : "F") \($0.role == .adapter ? "A" : "-")"
                        }
                    }
                    XCTAssertEqual("\(scale) \(target.rawValue) \(v) \(j) \(d) r\(r) \(lines.count) \(layoutDigest(lines))",
                                   recorded[index], "\(scale) \(target) \(a)")
                    index += 1
                }
            }
        }
    }

    /// A shape-only build (what counting and memory prediction use) registers what a real build does.
    func testShapeOnlyBuildEqualsRealBuild() throws {
        for (v, j, d) in cells {
            let a = try assignment(v, j, d, rank: 3)
            let real = try smokeModel(a).namedTensors()
            let meta = try withShapeOnly { try MISSModel(config: .smoke, assignment: a, rng: RNG(seed: 0)).namedTensors() }
            XCTAssertEqual(real.map(\.name), meta.map(\.name), "\(a): names/order")
            XCTAssertEqual(real.map(\.tensor.shape), meta.map(\.tensor.shape), "\(a): shapes")
            XCTAssertEqual(real.map(\.tensor.isTrainable), meta.map(\.tensor.isTrainable), "\(a): trainability")
            XCTAssertEqual(try smokeModel(a).parameterCount, try ParameterAccounting.count(config: .smoke, assignment: a), "\(a)")
        }
    }

    func testEveryViTIA3TargetSetChangesTheViT() throws {
        let a = try assignment("ia3", "F", "F")
        for target in ViTIA3Target.allCases {
            var c = ModelConfig.smoke
            c.vitIA3Target = target
            let model = try smokeModel(a, config: c)
            // The ViT output (the loss barely reacts to the ViT at BERT's 0.02 init).
            let images = try SmokeBatch(c).images
            let reference = withNoGrad { model.visualEncoder(images).scalars }
            randomize(model, where: { $0.hasSuffix("ia3_l") && $0.hasPrefix("visual_encoder") }, std: 1, seed: 2)
            let changed = withNoGrad { model.visualEncoder(images).scalars }
            XCTAssertGreaterThan(maxAbsDifference(reference, changed), 0.1, "\(target): the ViT IA3 vectors are used")
        }
    }

    func testDecoderHeadIsTiedToWordEmbeddings() throws {
        let model = try smokeModel(.full)
        XCTAssertTrue(model.textDecoder.bert.embeddings.wordEmbeddings.weight === model.namedParameters()
            .first { $0.name == "text_decoder.bert.embeddings.word_embeddings.weight" }?.tensor)
        XCTAssertFalse(model.namedParameters().contains { $0.name.contains("predictions.decoder") })
    }

    func testSaveAndLoadByName() throws {
        let a = try assignment("F", "lora", "ia3")
        let source = try smokeModel(a, seed: 1)
        randomize(source, where: { $0.contains("lora_B") || $0.hasSuffix("ia3_l") }, std: 0.3, seed: 5)
        let target = try smokeModel(a, seed: 2)
        let batch = try SmokeBatch(.smoke)
        XCTAssertNotEqual(try lossValue(source, batch), try lossValue(target, batch))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("mile-model-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try source.save(to: url)
        let result = try target.load(from: url)
        XCTAssertEqual(result.missing, [])
        XCTAssertEqual(result.unexpected, [])
        XCTAssertEqual(try lossValue(source, batch), try lossValue(target, batch))
        // A base checkpoint loads into an adapted model: only the adapters are reported missing.
        let base = try smokeModel(.full)
        try base.save(to: url)
        let adapted = try smokeModel(try assignment("lora", "prefix", "ptv2"), seed: 3)
        let loaded = try adapted.load(from: url)
        XCTAssertFalse(loaded.missing.isEmpty)
        let roles = Dictionary(uniqueKeysWithValues: adapted.namedTensors().map { ($0.name, $0.role) })
        XCTAssertTrue(loaded.missing.allSatisfy { roles[$0] == .adapter })
        // A checkpoint of another shape is an error naming the tensor.
        var other = ModelConfig.smoke
        other.textIntermediate = 48
        try MISSModel(config: other, assignment: .full, rng: RNG(seed: 1)).save(to: url)
        XCTAssertThrowsError(try adapted.load(from: url)) { XCTAssertTrue("\($0)".contains("intermediate.dense")) }
    }

    func testBadInputsAreErrors() throws {
        let model = try smokeModel(.full)
        let batch = try SmokeBatch(.smoke)
        XCTAssertThrowsError(try model.loss(images: Tensor.zeros([2, 3, 16, 16]), question: batch.question, answer: batch.answer))
        XCTAssertThrowsError(try TokenBatch(ids: [1, 2, 3], mask: [1, 1, 1], batch: 2, length: 2))
        XCTAssertThrowsError(try model.loss(images: batch.images, questionIds: [1, 2, 3], questionMask: [1, 1, 1],
                                            answerIds: batch.answer.ids, answerMask: batch.answer.mask))
        let flat = try model.loss(images: batch.images, questionIds: batch.question.ids, questionMask: batch.question.mask,
                                  answerIds: batch.answer.ids, answerMask: batch.answer.mask).item()
        XCTAssertEqual(flat, try lossValue(model, batch))
        let long = try SmokeBatch(.smoke, questionLength: 70)
        XCTAssertThrowsError(try model.loss(images: long.images, question: long.question, answer: long.answer)) {
            XCTAssertTrue("\($0)".contains("max_positions"))
        }
    }
}

/// `vision_lr_scale` finds the image encoder by its checkpoint prefix: the prefix must name a proper,
/// non-empty part of each family's parameters, or the setting would silently do nothing (or everything).
final class ImageEncoderPrefixTests: XCTestCase {
    func testPrefixNamesAProperPartOfEveryFamily() throws {
        for family in ModelFamilies.all {
            let config = try family.config(scale: "smoke", overrides: [:])
            let names = try withShapeOnly {
                try family.build(config: config, assignment: try family.fullyTrained(), rng: RNG(seed: 0)).trainableParameters().map(\.name)
            }
            let image = names.filter { $0.hasPrefix(family.imageEncoderPrefix) }
            XCTAssertFalse(image.isEmpty, family.name)
            XCTAssertLessThan(image.count, names.count, family.name)
        }
    }
}
