import Engine
import XCTest
@testable import MileModel

final class OFALossTests: XCTestCase {
    func testLossIsFiniteAndNearUniform() throws {
        let model = try ofaSmokeModel(.trained, .trained)
        let batch = try OFASmokeBatch(.smoke)
        let loss = try ofaLossValue(model, batch)
        XCTAssertTrue(loss.isFinite)
        XCTAssertEqual(loss, log(Float(100)), accuracy: 1.5, "\(loss)")
    }
}

extension OFALossTests {
    /// Twenty AdamW steps on one fixed batch in training mode (dropout, drop path, BatchNorm on batch
    /// statistics) fit it: the loss falls well below its start, for full fine-tuning and each decoder method.
    func testLossDecreasesOverAdamWSteps() throws {
        for (dec, lr) in [(ModuleMode.trained, Float(1e-3)), (.lora, 1e-2), (.prefix, 1e-2), (.ia3, 1e-1), (.ptv2, 1e-1)] {
            let model = try ofaSmokeModel(dec == .trained ? .trained : .frozen, dec, seed: 2)
            model.train(true)
            let batch = try OFASmokeBatch(.smoke, batch: 4, seed: 5)
            let optimizer = AdamW(parameters: model.trainableParameters(), lr: lr, weightDecay: 0.01)
            var losses: [Float] = []
            for _ in 0..<20 {
                optimizer.zeroGrad()
                let loss = try model.loss(images: batch.images, question: batch.question, answer: batch.answer)
                losses.append(loss.item())
                loss.backward()
                optimizer.step()
            }
            XCTAssertTrue(losses.allSatisfy(\.isFinite), "\(dec): \(losses)")
            XCTAssertLessThan(losses.suffix(3).reduce(0, +) / 3, 0.75 * losses[0], "\(dec): \(losses)")
        }
    }

    /// The loss averages over target tokens: PAD targets (and masked ones) are ignored, and a row's padding
    /// does not change the other rows' terms.
    func testPaddingIsIgnored() throws {
        let model = try ofaSmokeModel(.trained, .trained)
        let c = OFAConfig.smoke
        let batch = try OFASmokeBatch(c, batch: 2, questionLength: 6, answerLength: 4, questionPadding: 2)
        let loss = try ofaLossValue(model, batch)
        // The same answers one column wider (all PAD) and the questions with one more PAD column.
        func widen(_ tokens: TokenBatch, pad: Int32) throws -> TokenBatch {
            var ids: [Int32] = [], mask: [Int32] = []
            for row in 0..<tokens.batch {
                ids += tokens.ids[(row * tokens.length)..<((row + 1) * tokens.length)] + [pad]
                mask += tokens.mask[(row * tokens.length)..<((row + 1) * tokens.length)] + [0]
            }
            return try TokenBatch(ids: ids, mask: mask, batch: tokens.batch, length: tokens.length + 1)
        }
        let wider = try withNoGrad {
            try model.loss(images: batch.images, question: widen(batch.question, pad: c.padTokenId),
                           answer: widen(batch.answer, pad: c.padTokenId)).item()
        }
        XCTAssertEqual(loss, wider, accuracy: 1e-5)
        XCTAssertThrowsError(try model.loss(images: batch.images, question: batch.question,
                                            answer: TokenBatch(ids: [98, 0, 98, 0], mask: [1, 0, 1, 0], batch: 2, length: 2)))
    }
}
