import Engine
import XCTest
@testable import MileModel

/// Guards that the image reaches the answer: ViT -> JTM cross-attention -> decoder. A model that
/// answered from the question alone would pass the other loss/generation tests (their questions differ
/// per sample) but fails these.
final class ImageGroundingTests: XCTestCase {
    /// The batch's images swapped between rows: [B, 3, S, S] with row i taking row (i + 1) % B.
    private func rotated(_ images: Tensor) -> Tensor {
        let b = images.shape[0], plane = images.count / b, values = images.scalars
        var out = [Float]()
        out.reserveCapacity(values.count)
        for row in 0..<b { out += values[(((row + 1) % b) * plane)..<(((row + 1) % b + 1) * plane)] }
        return Tensor(shape: images.shape, scalars: out)
    }

    private func gradientSum(_ model: MISSModel, _ match: (String) -> Bool) -> Float {
        model.namedParameters().filter { match($0.name) }
            .map { $0.tensor.grad?.scalars.reduce(0) { $0 + abs($1) } ?? 0 }.reduce(0, +)
    }

    /// The recipe's cell (T T LoRA): the loss has a gradient at the first ViT layer and at the JTM
    /// cross-attention, and it changes when the images of the batch are swapped between rows.
    func testLossDependsOnTheImages() throws {
        let model = try smokeModel(try assignment("T", "T", "lora"))
        let batch = try SmokeBatch(.smoke, batch: 3)
        try model.loss(images: batch.images, question: batch.question, answer: batch.answer).backward()
        XCTAssertGreaterThan(gradientSum(model) { $0 == "visual_encoder.patch_embed.proj.weight" }, 0)
        XCTAssertGreaterThan(gradientSum(model) { $0.hasPrefix("visual_encoder.blocks.") }, 0)
        XCTAssertGreaterThan(gradientSum(model) { $0.hasPrefix("text_encoder.") && $0.contains(".crossattention.") }, 0)
        let original = try lossValue(model, batch)
        let permuted = try withNoGrad {
            try model.loss(images: rotated(batch.images), question: batch.question, answer: batch.answer).item()
        }
        XCTAssertNotEqual(original, permuted, "the loss must change when the images move to other rows")
    }

    /// Eight samples with the same question; the answer depends only on the image (white -> token 10,
    /// black -> token 11). Full fine-tuning and the recipe's cell (T T LoRA, whose frozen random decoder
    /// learns slowly) must fit them: greedy decoding gives the right answer per image, and the loss with
    /// the images swapped between the answers is clearly higher than with the true images.
    func testAnswerLearnedFromTheImageAlone() throws {
        try checkLearnsFromImage(.full, steps: 60, minimumGap: 1)
        try checkLearnsFromImage(try assignment("T", "T", "lora"), steps: 300, minimumGap: 0.5)
    }

    private func checkLearnsFromImage(_ cell: PEFTAssignment, steps: Int, minimumGap: Float,
                                      file: StaticString = #filePath, line: UInt = #line) throws {
        let c = ModelConfig.smoke
        let model = try smokeModel(cell, seed: 5)
        let count = 8, plane = 3 * c.imageSize * c.imageSize
        let white = (0..<count).map { $0 % 2 == 0 }
        let pixels = white.flatMap { Array(repeating: Float($0 ? 1 : 0), count: plane) }
        let images = Tensor(shape: [count, 3, c.imageSize, c.imageSize], scalars: pixels)
        let questionRow: [Int32] = [97, 20, 21, 22, c.sepTokenId]
        let question = try TokenBatch(ids: Array(repeatElement(questionRow, count: count).joined()),
                                      mask: Array(repeating: 1, count: count * 5), batch: count, length: 5)
        let answerIds = white.flatMap { isWhite -> [Int32] in [c.decTokenId, isWhite ? 10 : 11, c.sepTokenId] }
        let answer = try TokenBatch(ids: answerIds, mask: Array(repeating: 1, count: count * 3), batch: count, length: 3)
        let optimizer = AdamW(parameters: model.trainableParameters(), lr: 3e-3, weightDecay: 0)
        for _ in 0..<steps {
            optimizer.zeroGrad()
            try model.loss(images: images, question: question, answer: answer).backward()
            optimizer.step()
        }
        let generated = try model.generate(images: images, question: question, beams: 1, maxLength: 4)
        XCTAssertEqual(generated, white.map { isWhite -> [Int32] in [isWhite ? 10 : 11] }, "\(cell)", file: file, line: line)
        let trueLoss = try withNoGrad { try model.loss(images: images, question: question, answer: answer).item() }
        let swappedLoss = try withNoGrad {
            try model.loss(images: rotated(images), question: question, answer: answer).item()
        }
        XCTAssertGreaterThan(swappedLoss - trueLoss, minimumGap, "\(cell): true \(trueLoss), images swapped \(swappedLoss)",
                             file: file, line: line)
    }
}
