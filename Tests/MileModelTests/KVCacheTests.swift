import Engine
import XCTest
@testable import MileModel

/// Incremental decoding (self-attention key/value cache) against recomputing the whole prefix each step.
final class KVCacheTests: XCTestCase {
    /// Decoder cells whose adapters or prompts change the decoder's self-attention path.
    private let cells = [("T", "T", "T"), ("F", "F", "lora"), ("F", "F", "ia3"), ("F", "lora", "prefix"),
                         ("F", "ia3", "ptv2")]

    /// Same tokens from the cached and the recomputing path: greedy and 3-beam search, with a minimum
    /// length, on a question batch with padding.
    func testCachedGenerationEqualsRecomputation() throws {
        let batch = try paddedQuestionBatch()
        for (i, cell) in cells.enumerated() {
            let model = try noisyModel(try assignment(cell.0, cell.1, cell.2), seed: UInt64(10 + i))
            for (beams, minLength) in [(1, 1), (1, 4), (3, 1), (3, 5)] {
                let generate = { (useCache: Bool, greedy: Bool) in
                    try model.generate(images: batch.images, question: batch.question, beams: beams, maxLength: 10,
                                       minLength: minLength, greedyForOneBeam: greedy, useCache: useCache)
                }
                let reference = try generate(false, true)
                XCTAssertEqual(try generate(true, true), reference, "\(cell) beams \(beams) min \(minLength)")
                if beams == 1 {   // the beam-search code path with one beam
                    XCTAssertEqual(try generate(true, false), try generate(false, false), "\(cell) one-beam search")
                }
                XCTAssertTrue(reference.allSatisfy { $0.count >= minLength - 1 }, "\(cell): min length ignored")
            }
        }
    }

    /// Step by step, the cached logits equal the recomputed ones within float rounding, also after a
    /// beam-style reordering of the rows; a cache left in the old order gives different logits.
    func testCachedLogitsMatchRecomputationAcrossReordering() throws {
        let batch = try paddedQuestionBatch()
        for (i, cell) in cells.enumerated() {
            let model = try noisyModel(try assignment(cell.0, cell.1, cell.2), seed: UInt64(20 + i))
            try withNoGrad {
                let memory = try model.encode(images: batch.images, question: batch.question)
                var full = StepDecoder(model: model, memory: memory, times: 2, cached: false)
                var cached = StepDecoder(model: model, memory: memory, times: 2, cached: true)
                var stale = cached
                let rows = batch.question.batch * 2
                var sequences = Array(repeating: [ModelConfig.smoke.decTokenId], count: rows)
                var rng = RNG(seed: UInt64(30 + i))
                for step in 0..<6 {
                    let expected = try full.logits(sequences).scalars
                    XCTAssertLessThan(maxAbsDifference(try cached.logits(sequences).scalars, expected), 1e-4,
                                      "\(cell) step \(step)")
                    if step >= 2 {
                        XCTAssertGreaterThan(maxAbsDifference(try stale.logits(sequences).scalars, expected), 1e-3,
                                             "\(cell) step \(step): the row order of the cache must matter")
                    }
                    // Each row continues a random row of its own question (as beams do), then gets a new token.
                    let sources = (0..<rows).map { $0 / 2 * 2 + Int(rng.nextUInt64() % 2) }
                    sequences = sources.map { sequences[$0] + [Int32(4 + rng.nextUInt64() % 90)] }
                    cached.reorder(sources)
                    stale = cached
                    stale.reorder(Array((0..<rows).reversed()))   // rows of other questions
                }
            }
        }
    }

    /// A smoke model with N(0, 0.1) added to every parameter, so that adapters (zero LoRA B, unit IA3)
    /// act and no two next-token scores are close enough for float rounding to swap them.
    private func noisyModel(_ a: PEFTAssignment, seed: UInt64) throws -> MISSModel {
        let model = try smokeModel(a, seed: seed)
        var rng = RNG(seed: seed + 100)
        for (_, t) in model.namedParameters() {
            let noise = Tensor.randn(t.shape, std: 0.1, rng: &rng).scalars
            t.copy(from: Tensor(shape: t.shape, scalars: zip(t.scalars, noise).map(+)))
        }
        return model
    }
}
