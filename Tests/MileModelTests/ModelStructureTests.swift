import Engine
import XCTest
@testable import MileModel

/// The shape-only layout (used for every #Params number) must be exactly what the model registers.
final class ModelStructureTests: XCTestCase {
    let cells = [("T", "T", "T"), ("F", "lora", "lora"), ("lora", "lora", "lora"), ("ia3", "ia3", "ia3"),
                 ("T", "prefix", "prefix"), ("F", "ptv2", "ptv2"), ("F", "T", "ia3"), ("T", "F", "lora")]

    func testLayoutEqualsRegisteredParametersAtSmokeScale() throws {
        for (v, j, d) in cells {
            let a = try assignment(v, j, d, rank: 3)
            let model = try smokeModel(a)
            let registered = model.namedParameters()
            let layout = ParameterLayout.model(.smoke, a)
            XCTAssertEqual(registered.map(\.name), layout.map(\.name), "\(a): names/order")
            XCTAssertEqual(registered.map(\.tensor.shape), layout.map(\.shape), "\(a): shapes")
            XCTAssertEqual(registered.map(\.tensor.isTrainable), layout.map(\.trainable), "\(a): trainability")
            XCTAssertEqual(model.parameterCount, ParameterAccounting.count(config: .smoke, assignment: a), "\(a)")
        }
    }

    func testEveryViTIA3TargetSetMatchesItsLayout() throws {
        let a = try assignment("ia3", "F", "F")
        for target in ViTIA3Target.allCases {
            var c = ModelConfig.smoke
            c.vitIA3Target = target
            let model = try smokeModel(a, config: c)
            let registered = model.namedParameters()
            let layout = ParameterLayout.model(c, a)
            XCTAssertEqual(registered.map(\.name), layout.map(\.name), "\(target)")
            XCTAssertEqual(registered.map(\.tensor.shape), layout.map(\.shape), "\(target)")
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
        XCTAssertTrue(loaded.missing.allSatisfy(MISSModel.isAdapterPath))
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
