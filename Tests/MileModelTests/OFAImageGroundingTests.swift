import Engine
import XCTest
@testable import MileModel

/// Guards that the image reaches the answer: ResNet -> image tokens -> encoder -> decoder cross-attention.
final class OFAImageGroundingTests: XCTestCase {
    private func rotated(_ images: Tensor) -> Tensor {
        let b = images.shape[0], plane = images.count / b, values = images.scalars
        var out = [Float]()
        for row in 0..<b { out += values[(((row + 1) % b) * plane)..<(((row + 1) % b + 1) * plane)] }
        return Tensor(shape: images.shape, scalars: out)
    }

    func testLossDependsOnTheImages() throws {
        let model = try ofaSmokeModel(.trained, .lora)
        let batch = try OFASmokeBatch(.smoke, batch: 3)
        try model.loss(images: batch.images, question: batch.question, answer: batch.answer).backward()
        let grads = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.tensor.grad) })
        for name in ["encoder.embed_images.conv1.weight", "encoder.image_proj.weight", "encoder.patch_layernorm_embedding.weight"] {
            XCTAssertGreaterThan(try XCTUnwrap(grads[name] ?? nil, name).scalars.map(abs).reduce(0, +), 0, name)
        }
        let original = try ofaLossValue(model, batch)
        let swapped = try withNoGrad {
            try model.loss(images: rotated(batch.images), question: batch.question, answer: batch.answer).item()
        }
        XCTAssertNotEqual(original, swapped)
    }

    /// Eight samples with the same question; the answer depends only on the image (white -> token 10, black ->
    /// token 11). Full fine-tuning and enc T + decoder LoRA must fit them: greedy decoding answers per image,
    /// and swapping the images between the answers costs more than a nat.
    func testAnswerLearnedFromTheImageAlone() throws {
        try checkLearnsFromImage(.trained, .trained, steps: 40, minimumGap: 1)
        try checkLearnsFromImage(.trained, .lora, steps: 60, minimumGap: 1)
    }

    private func checkLearnsFromImage(_ enc: ModuleMode, _ dec: ModuleMode, steps: Int, minimumGap: Float,
                                      file: StaticString = #filePath, line: UInt = #line) throws {
        let c = OFAConfig.smoke
        let model = try ofaSmokeModel(enc, dec, seed: 5)
        let count = 8, plane = 3 * c.imageSize * c.imageSize
        let white = (0..<count).map { $0 % 2 == 0 }
        let images = Tensor(shape: [count, 3, c.imageSize, c.imageSize],
                            scalars: white.flatMap { Array(repeating: Float($0 ? 1 : -1), count: plane) })
        let questionRow: [Int32] = [97, 20, 21, 22, c.eosTokenId]
        let question = try TokenBatch(ids: Array(repeatElement(questionRow, count: count).joined()),
                                      mask: Array(repeating: 1, count: count * 5), batch: count, length: 5)
        let answer = try TokenBatch(ids: white.flatMap { [c.bosTokenId, $0 ? 10 : 11, c.eosTokenId] },
                                    mask: Array(repeating: 1, count: count * 3), batch: count, length: 3)
        let optimizer = AdamW(parameters: model.trainableParameters(), lr: 3e-3, weightDecay: 0)
        for _ in 0..<steps {
            optimizer.zeroGrad()
            try model.loss(images: images, question: question, answer: answer).backward()
            optimizer.step()
        }
        let generated = try model.generate(images: images, question: question, beams: 1, maxLength: 4)
        XCTAssertEqual(generated, white.map { [$0 ? 10 : 11] }, "\(enc) \(dec)", file: file, line: line)
        let trueLoss = try withNoGrad { try model.loss(images: images, question: question, answer: answer).item() }
        let swappedLoss = try withNoGrad { try model.loss(images: rotated(images), question: question, answer: answer).item() }
        XCTAssertGreaterThan(swappedLoss - trueLoss, minimumGap, "\(enc) \(dec): true \(trueLoss), swapped \(swappedLoss)",
                             file: file, line: line)
    }
}
