import Engine
import XCTest
@testable import MileModel

final class GenerationTests: XCTestCase {
    func testOneBeamSearchEqualsGreedy() throws {
        let batch = try SmokeBatch(.smoke, batch: 3)
        for (seed, cell) in [(UInt64(1), ("T", "T", "T")), (2, ("F", "prefix", "ptv2")), (3, ("F", "lora", "ia3"))] {
            let model = try smokeModel(try assignment(cell.0, cell.1, cell.2), seed: seed)
            let greedy = try model.generate(images: batch.images, question: batch.question, beams: 1, maxLength: 10)
            let beam = try model.generate(images: batch.images, question: batch.question, beams: 1, maxLength: 10,
                                          minLength: 1, greedyForOneBeam: false)
            XCTAssertEqual(greedy, beam, "\(cell)")
            XCTAssertEqual(greedy.count, 3)
            XCTAssertTrue(greedy.allSatisfy { $0.count <= 9 && !$0.contains(ModelConfig.smoke.sepTokenId) })
        }
    }

    /// A model trained for a few steps on one answer regenerates it, by greedy and by 3-beam search.
    func testGeneratesALearnedAnswer() throws {
        let c = ModelConfig.smoke
        let model = try smokeModel(.full)
        let batch = try SmokeBatch(c, batch: 2, answerLength: 4)
        let optimizer = AdamW(parameters: model.trainableParameters(), lr: 3e-3, weightDecay: 0)
        for _ in 0..<40 {
            optimizer.zeroGrad()
            try model.loss(images: batch.images, question: batch.question, answer: batch.answer).backward()
            optimizer.step()
        }
        let expected = (0..<2).map { b in Array(batch.answer.ids[(b * 4 + 1)..<(b * 4 + 3)]) }
        XCTAssertEqual(try model.generate(images: batch.images, question: batch.question, beams: 1), expected)
        XCTAssertEqual(try model.generate(images: batch.images, question: batch.question, beams: 3), expected)
    }

    /// The cross-attention K/V cache used by generation gives the same decoder states as recomputing.
    func testCrossAttentionCacheMatchesRecomputation() throws {
        let model = try smokeModel(try assignment("F", "lora", "prefix"))
        randomize(model, where: { $0.contains("lora_B") }, std: 0.2, seed: 4)
        let batch = try SmokeBatch(.smoke, batch: 2)
        try withNoGrad {
            let memory = try model.encode(images: batch.images, question: batch.question)
            let plain = try model.decode(batch.answer, memory: memory, memoryMask: nil).scalars
            let cached = try model.decode(batch.answer, memory: memory, memoryMask: nil,
                                          cachedMemory: model.crossAttentionCache(memory, times: 1)).scalars
            XCTAssertLessThan(maxAbsDifference(plain, cached), 1e-5)
            let other = try SmokeBatch(.smoke, batch: 2, seed: 99)
            let otherMemory = try model.encode(images: other.images, question: other.question)
            let wrong = try model.decode(batch.answer, memory: memory, memoryMask: nil,
                                         cachedMemory: model.crossAttentionCache(otherMemory, times: 1)).scalars
            XCTAssertGreaterThan(maxAbsDifference(plain, wrong), 1e-4, "the cache must be what cross-attention reads")
        }
    }

    func testBeamHypothesesKeepTheBestNormalisedScores() {
        var h = BeamHypotheses(beams: 2)
        h.add([1, 2], score: -4)        // -2
        h.add([1, 2, 3], score: -3)     // -1
        XCTAssertFalse(h.isDone(bestSum: -0.5, curLen: 2))   // -0.25 beats the worst (-2)
        h.add([1], score: -0.5)         // -0.5 evicts -2
        XCTAssertEqual(h.entries.count, 2)
        XCTAssertEqual(h.best, [1])
        XCTAssertTrue(h.isDone(bestSum: -3, curLen: 2))      // -1.5 cannot beat the worst (-1)
    }
}
