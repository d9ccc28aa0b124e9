import Engine
import XCTest
@testable import MileModel

/// Random smoke-scale inputs: images [B, 3, S, S], questions `[ENC] q [SEP]`, answers `[DEC] a [SEP]`.
struct SmokeBatch {
    let images: Tensor
    let question: TokenBatch
    let answer: TokenBatch

    init(_ c: ModelConfig, batch: Int = 2, questionLength: Int = 6, answerLength: Int = 4, seed: UInt64 = 7) throws {
        var rng = RNG(seed: seed)
        images = Tensor.uniform([batch, 3, c.imageSize, c.imageSize], low: 0, high: 1, rng: &rng)
        func ids(_ length: Int, first: Int32) -> [Int32] {
            var out: [Int32] = []
            for _ in 0..<batch {
                out.append(first)
                for _ in 1..<(length - 1) { out.append(Int32(4 + rng.nextUInt64() % 90)) }
                out.append(c.sepTokenId)
            }
            return out
        }
        question = try TokenBatch(ids: ids(questionLength, first: 97), mask: Array(repeating: 1, count: batch * questionLength),
                                  batch: batch, length: questionLength)
        answer = try TokenBatch(ids: ids(answerLength, first: c.decTokenId), mask: Array(repeating: 1, count: batch * answerLength),
                                batch: batch, length: answerLength)
    }
}

func assignment(_ v: String, _ j: String, _ d: String, rank: Int = 4) throws -> PEFTAssignment {
    try PEFTAssignment(vit: ModuleMode(flag: v), jtm: ModuleMode(flag: j), dec: ModuleMode(flag: d), rank: rank)
}

/// A smoke model in eval mode (no dropout, no stochastic depth), base weights from `seed`.
func smokeModel(_ a: PEFTAssignment, seed: UInt64 = 1, config: ModelConfig = .smoke) throws -> MISSModel {
    let model = try MISSModel(config: config, assignment: a, rng: RNG(seed: seed))
    model.train(false)
    return model
}

/// Copies every same-named tensor from `source` (so two assignments share base weights).
func copyWeights(from source: MISSModel, to target: MISSModel) {
    let values = Dictionary(uniqueKeysWithValues: source.namedParameters().map { ($0.name, $0.tensor) })
    for (name, tensor) in target.namedParameters() { if let v = values[name] { tensor.copy(from: v) } }
}

/// Fills every tensor whose name matches with N(0, std) values.
func randomize(_ model: MISSModel, where match: (String) -> Bool, std: Float, seed: UInt64) {
    var rng = RNG(seed: seed)
    for (name, tensor) in model.namedParameters() where match(name) {
        tensor.copy(from: Tensor.randn(tensor.shape, std: std, rng: &rng))
    }
}

func lossValue(_ model: MISSModel, _ batch: SmokeBatch) throws -> Float {
    try withNoGrad { try model.loss(images: batch.images, question: batch.question, answer: batch.answer).item() }
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

/// Three questions of different lengths padded to 7 tokens (PAD 0, mask 0).
func paddedQuestionBatch() throws -> (images: Tensor, question: TokenBatch) {
    let c = ModelConfig.smoke
    var rng = RNG(seed: 5)
    let images = Tensor.uniform([3, 3, c.imageSize, c.imageSize], low: 0, high: 1, rng: &rng)
    var ids: [Int32] = [], mask: [Int32] = []
    for content in [5, 2, 3] {
        ids.append(97); mask.append(1)
        for _ in 0..<content { ids.append(Int32(4 + rng.nextUInt64() % 90)); mask.append(1) }
        ids.append(c.sepTokenId); mask.append(1)
        for _ in (content + 2)..<7 { ids.append(c.padTokenId); mask.append(0) }
    }
    return (images, try TokenBatch(ids: ids, mask: mask, batch: 3, length: 7))
}
