import Engine
import XCTest
@testable import MileModel

final class LossTests: XCTestCase {
    /// The loss equals upstream's formula computed by hand from the decoder logits: shifted targets,
    /// PAD ignored, label smoothing 0.1 (PyTorch: (1-ε)·NLL + ε·mean over classes of -log p), summed
    /// per sequence and over the batch, divided by the batch size.
    func testLossMatchesHandComputation() throws {
        let c = ModelConfig.smoke
        let model = try smokeModel(try assignment("T", "T", "T"))
        let base = try SmokeBatch(c, batch: 2, answerLength: 5)
        var ids = base.answer.ids, mask = base.answer.mask
        ids[9] = c.padTokenId; mask[9] = 0          // second answer is one token shorter
        ids[8] = c.sepTokenId
        let answer = try TokenBatch(ids: ids, mask: mask, batch: 2, length: 5)
        let loss = try withNoGrad {
            try model.loss(images: base.images, question: base.question, answer: answer).item()
        }
        let logits = try withNoGrad { () -> [Float] in
            let memory = try model.encode(images: base.images, question: base.question)
            let questionMask = paddingMask(base.question.mask, batch: 2, length: base.question.length)
            return model.textDecoder.logits(try model.decode(answer, memory: memory, memoryMask: questionMask)).scalars
        }
        let v = c.vocabSize, eps = 0.1
        var expected = 0.0
        for b in 0..<2 {
            for i in 1..<5 where ids[b * 5 + i] != c.padTokenId {
                let row = logits[((b * 5 + i - 1) * v)..<((b * 5 + i) * v)].map(Double.init)
                let m = row.max()!
                let lse = m + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) })
                let nll = lse - row[Int(ids[b * 5 + i])]
                let smooth = row.reduce(0) { $0 + (lse - $1) } / Double(v)
                expected += (1 - eps) * nll + eps * smooth
            }
        }
        expected /= 2
        XCTAssertEqual(Double(loss), expected, accuracy: 1e-4 * expected)
    }
}
