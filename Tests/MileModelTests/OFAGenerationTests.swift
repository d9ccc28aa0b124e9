import Engine
import XCTest
@testable import MileModel

/// Generation and the incremental (KV-cached) decoder against the teacher-forced full pass.
final class OFAGenerationTests: XCTestCase {
    private func trainedSmoke(_ enc: ModuleMode = .trained, _ dec: ModuleMode = .trained) throws -> (OFAModel, OFASmokeBatch) {
        let model = try ofaSmokeModel(enc, dec)
        // Sharper distributions than the init gives, so argmax and beam choices are not near-ties.
        randomize(model, where: { $0.contains("rel_pos_table") || $0.contains("lora_B") }, std: 0.3, seed: 4)
        return (model, try OFASmokeBatch(.smoke, batch: 3, questionLength: 6, answerLength: 4, seed: 9))
    }

    /// Greedy decoding is the argmax chain of the teacher-forced logits: feeding the generated prefix back
    /// through the full decoder must give each generated token as the argmax of its position.
    func testGreedyIsArgmaxOfTeacherForcedLogits() throws {
        for dec in [ModuleMode.trained, .prefix, .lora] {
            let (model, batch) = try trainedSmoke(.trained, dec)
            let maxLength = 6
            let generated = try model.generate(images: batch.images, question: batch.question, beams: 1, maxLength: maxLength)
            let c = model.config, v = c.vocabSize
            if ProcessInfo.processInfo.environment["GENPRINT"] != nil { print("GEN \(dec) \(generated)") }
            for (row, answer) in generated.enumerated() {
                XCTAssertLessThanOrEqual(answer.count, maxLength - 1)
                XCTAssertFalse(answer.contains(c.eosTokenId) || answer.contains(c.padTokenId))
                let prefix = [c.bosTokenId] + answer
                let images = try rowImages(batch.images, row)
                let question = try rowTokens(batch.question, row)
                let logits = try withNoGrad {
                    try model.teacherForcedLogits(images: images, question: question, decoderIds: prefix, length: prefix.count)
                }.scalars
                for position in 0..<prefix.count {
                    let slice = Array(logits[(position * v)..<((position + 1) * v)])
                    let best = Int32(slice.indices.max { slice[$0] < slice[$1] }!)
                    let expected = position < answer.count ? answer[position] : c.eosTokenId
                    if position == answer.count && answer.count == maxLength - 1 { continue }   // cut at maxLength
                    XCTAssertEqual(best, expected, "\(dec) row \(row) position \(position)")
                }
            }
            // Beam search with one beam takes the same path as greedy.
            let beamOne = try model.generate(images: batch.images, question: batch.question, beams: 1, maxLength: maxLength,
                                             minLength: 1, greedyForOneBeam: false)
            XCTAssertEqual(beamOne, generated, "\(dec)")
        }
    }

    /// The cached step decoder and the recomputing one agree, for greedy and beam search, with a prompt.
    func testCachedAndRecomputedGenerationAgree() throws {
        for dec in [ModuleMode.trained, .ptv2] {
            let (model, batch) = try trainedSmoke(.trained, dec)
            for beams in [1, 3] {
                let cached = try model.generate(images: batch.images, question: batch.question, beams: beams, maxLength: 6,
                                                minLength: 1, greedyForOneBeam: true, useCache: true)
                let recomputed = try model.generate(images: batch.images, question: batch.question, beams: beams, maxLength: 6,
                                                    minLength: 1, greedyForOneBeam: true, useCache: false)
                XCTAssertEqual(cached, recomputed, "\(dec) beams \(beams)")
                XCTAssertEqual(cached.count, 3)
            }
        }
    }

    /// Step-by-step logits from the KV cache equal the full causal pass's logits at every position.
    func testKVCacheMatchesFullDecoder() throws {
        for dec in [ModuleMode.trained, .prefix] {
            let (model, batch) = try trainedSmoke(.trained, dec)
            let c = model.config, t = 5, b = batch.question.batch
            var rng = RNG(seed: 3)
            let ids = (0..<(b * t)).map { i -> Int32 in i % t == 0 ? c.bosTokenId : Int32(4 + rng.nextUInt64() % 90) }
            try withNoGrad {
                let memory = try model.encode(images: batch.images, question: batch.question)
                let full = model.decoder.logits(try model.decode(ids: ids, batch: b, length: t, encoder: memory)).scalars
                var stepper = OFAStepDecoder(model: model, memory: memory, times: 1, maxLength: t, cached: true)
                for step in 1...t {
                    let sequences = (0..<b).map { Array(ids[($0 * t)..<($0 * t + step)]) }
                    let logits = try stepper.logits(sequences).scalars
                    let v = c.vocabSize
                    for row in 0..<b {
                        let expected = Array(full[((row * t + step - 1) * v)..<((row * t + step) * v)])
                        let got = Array(logits[(row * v)..<((row + 1) * v)])
                        XCTAssertLessThan(maxAbsDifference(expected, got), 1e-4, "\(dec) step \(step) row \(row)")
                    }
                }
            }
        }
    }

    func testBeamSearchReturnsWellFormedAnswers() throws {
        let (model, batch) = try trainedSmoke()
        let answers = try model.generate(images: batch.images, question: batch.question, beams: 3, maxLength: 5, minLength: 2)
        XCTAssertEqual(answers.count, 3)
        for answer in answers {
            XCTAssertGreaterThanOrEqual(answer.count, 1)
            XCTAssertLessThanOrEqual(answer.count, 4)
            XCTAssertTrue(answer.allSatisfy { $0 >= 0 && Int($0) < model.config.vocabSize && $0 != model.config.eosTokenId })
        }
        XCTAssertThrowsError(try model.generate(images: batch.images, question: batch.question, beams: 0, maxLength: 5, minLength: 1))
        XCTAssertTrue(model.training == false)
    }

    /// OFA's answer trie: generation only produces candidate answers.
    func testAllowedAnswersConstrainGeneration() throws {
        let (model, batch) = try trainedSmoke()
        let candidates: [[Int32]] = [[10], [11, 12], [11, 13, 14]]
        model.allowedAnswers = candidates
        for beams in [1, 3] {
            let answers = try model.generate(images: batch.images, question: batch.question, beams: beams, maxLength: 6)
            for answer in answers { XCTAssertTrue(candidates.contains(answer), "beams \(beams): \(answer)") }
        }
        model.allowedAnswers = nil
        XCTAssertNil(model.answerTrie)
    }

    private func rowImages(_ images: Tensor, _ row: Int) throws -> Tensor {
        let plane = images.count / images.shape[0]
        return Tensor(shape: [1] + Array(images.shape.dropFirst()), scalars: Array(images.scalars[(row * plane)..<((row + 1) * plane)]))
    }

    private func rowTokens(_ tokens: TokenBatch, _ row: Int) throws -> TokenBatch {
        let range = (row * tokens.length)..<((row + 1) * tokens.length)
        return try TokenBatch(ids: Array(tokens.ids[range]), mask: Array(tokens.mask[range]), batch: 1, length: tokens.length)
    }
}
