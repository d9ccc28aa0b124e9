import Engine
import XCTest
@testable import MileModel

/// A smoke OFA model in eval mode (no dropout, no drop path, BatchNorm on its running statistics).
func ofaSmokeModel(_ enc: ModuleMode, _ dec: ModuleMode, rank: Int = 4, seed: UInt64 = 1,
                   config: OFAConfig = .smoke) throws -> OFAModel {
    let model = try OFAModel(config: config, assignment: PEFTAssignment(enc: enc, dec: dec, rank: rank), rng: RNG(seed: seed))
    model.train(false)
    return model
}

/// Random smoke inputs in the harness's layout: images [B, 3, S, S], questions `[ENC] q [SEP]` (the last
/// row padded by `questionPadding` tokens), answers `[DEC] a [SEP]` (the last row one token shorter, PAD).
struct OFASmokeBatch {
    let images: Tensor
    let question: TokenBatch
    let answer: TokenBatch

    init(_ c: OFAConfig, batch: Int = 2, questionLength: Int = 6, answerLength: Int = 4, questionPadding: Int = 2,
         seed: UInt64 = 7) throws {
        var rng = RNG(seed: seed)
        images = Tensor.uniform([batch, 3, c.imageSize, c.imageSize], low: -1, high: 1, rng: &rng)
        func rows(_ length: Int, first: Int32, short: Int) -> (ids: [Int32], mask: [Int32]) {
            var ids: [Int32] = [], mask: [Int32] = []
            for row in 0..<batch {
                let real = row == batch - 1 ? length - short : length
                ids.append(first); mask.append(1)
                for _ in 1..<(real - 1) { ids.append(Int32(4 + rng.nextUInt64() % 90)); mask.append(1) }
                ids.append(c.eosTokenId); mask.append(1)
                for _ in real..<length { ids.append(c.padTokenId); mask.append(0) }
            }
            return (ids, mask)
        }
        let q = rows(questionLength, first: 97, short: batch > 1 ? questionPadding : 0)
        question = try TokenBatch(ids: q.ids, mask: q.mask, batch: batch, length: questionLength)
        let a = rows(answerLength, first: c.bosTokenId, short: batch > 1 ? 1 : 0)
        answer = try TokenBatch(ids: a.ids, mask: a.mask, batch: batch, length: answerLength)
    }
}

func ofaLossValue(_ model: OFAModel, _ batch: OFASmokeBatch) throws -> Float {
    try withNoGrad { try model.loss(images: batch.images, question: batch.question, answer: batch.answer).item() }
}

/// Fills every tensor whose name matches with N(0, std) values.
func randomize(_ model: OFAModel, where match: (String) -> Bool, std: Float, seed: UInt64) {
    var rng = RNG(seed: seed)
    for (name, tensor) in model.namedParameters() where match(name) {
        tensor.copy(from: Tensor.randn(tensor.shape, std: std, rng: &rng))
    }
}
