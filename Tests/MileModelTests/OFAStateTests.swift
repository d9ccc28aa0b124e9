import Engine
import XCTest
@testable import MileModel

/// Checkpoints, LoRA merging and the shared table's trainability.
final class OFAStateTests: XCTestCase {
    func testSaveLoadRoundTripWithBuffers() throws {
        let source = try ofaSmokeModel(.trained, .trained, seed: 3)
        // One training-mode pass moves the BatchNorm running statistics (buffers, saved too).
        source.train(true)
        let batch = try OFASmokeBatch(.smoke)
        _ = try withNoGrad { try source.loss(images: batch.images, question: batch.question, answer: batch.answer) }
        source.train(false)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ofa-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try source.save(to: url, onlyTrainable: false, metadata: ["family": "ofa"])
        let target = try ofaSmokeModel(.trained, .lora, seed: 9)
        let (missing, unexpected) = try target.load(from: url, strict: true)
        XCTAssertTrue(unexpected.isEmpty, "\(unexpected)")
        XCTAssertFalse(missing.isEmpty)
        XCTAssertTrue(missing.allSatisfy { $0.contains("lora_") }, "\(missing)")
        XCTAssertEqual(try ofaLossValue(source, batch), try ofaLossValue(target, batch), accuracy: 1e-5)
        let mean = try XCTUnwrap(target.namedBuffers().first { $0.name == "encoder.embed_images.bn1.running_mean" })
        XCTAssertNotEqual(mean.tensor.scalars, Array(repeating: 0, count: mean.tensor.count))
        // A base checkpoint missing a tensor is an error when strict.
        let partial = try ofaSmokeModel(.trained, .trained)
        try partial.saveState(to: url, onlyTrainable: false)
        XCTAssertNoThrow(try target.load(from: url, strict: true))
        let frozen = try ofaSmokeModel(.trained, .lora)
        try frozen.save(to: url, onlyTrainable: true, metadata: [:])
        XCTAssertThrowsError(try target.load(from: url, strict: true))
    }

    func testMergeLoRAKeepsTheLoss() throws {
        let model = try ofaSmokeModel(.frozen, .lora)
        randomize(model, where: { $0.contains("lora_B") }, std: 0.2, seed: 2)
        let batch = try OFASmokeBatch(.smoke)
        let before = try ofaLossValue(model, batch)
        model.mergeLoRA(true)
        XCTAssertEqual(try ofaLossValue(model, batch), before, accuracy: 1e-4)
        model.mergeLoRA(false)
        XCTAssertEqual(try ofaLossValue(model, batch), before, accuracy: 1e-4)
    }

    /// The shared table trains only when both slots do; adapters are the only trainable decoder tensors
    /// under a method; encoder F freezes the ResNet too.
    func testTrainability() throws {
        let shared = "encoder.embed_tokens.weight"
        for (enc, dec, expected) in [(ModuleMode.trained, ModuleMode.trained, true), (.trained, .lora, false),
                                     (.frozen, .trained, false), (.trained, .frozen, false), (.trained, .prefix, false)] {
            let model = try ofaSmokeModel(enc, dec)
            let trainable = Set(model.trainableParameters().map(\.name))
            XCTAssertEqual(trainable.contains(shared), expected, "\(enc) \(dec)")
            XCTAssertEqual(trainable.contains("encoder.embed_images.conv1.weight"), enc == .trained)
            if dec.isMethod {
                let roles = Dictionary(uniqueKeysWithValues: model.namedTensors().map { ($0.name, $0.role) })
                XCTAssertTrue(trainable.filter { $0.hasPrefix("decoder.") }.allSatisfy { roles[$0] == .adapter })
            }
        }
    }

    /// A paper-scale training step runs in shape-only mode (no weights allocated): what a memory prediction
    /// for the family would build on.
    func testPaperStepRunsShapeOnly() throws {
        try withShapeOnly {
            let model = try OFAModel(config: .paper, assignment: PEFTAssignment(enc: .trained, dec: .prefix), rng: RNG(seed: 0))
            model.train(true)
            let batch = try OFASmokeBatch(.paper, batch: 2, questionLength: 8, answerLength: 4)
            let loss = try model.loss(images: batch.images, question: batch.question, answer: batch.answer)
            XCTAssertTrue(loss.isMeta)
            loss.backward()
            XCTAssertNotNil(model.trainableParameters().first?.tensor.grad)
        }
    }
}
