@testable import Engine
import XCTest
@testable import MileModel

/// BLIP's pretraining objectives around MISS (ITC, ITM with hard negatives, LM).
final class PretrainingTests: XCTestCase {
    private let cls: Int32 = 2, enc: Int32 = 97

    /// B pair texts `[CLS] t_i t_i+1 [SEP]` with distinct content tokens per row.
    private func pairTexts(_ b: Int, first: Int32 = 20) throws -> TokenBatch {
        let c = ModelConfig.smoke
        let ids = (0..<b).flatMap { i -> [Int32] in [cls, first + Int32(2 * i), first + Int32(2 * i + 1), c.sepTokenId] }
        return try TokenBatch(ids: ids, mask: Array(repeating: 1, count: 4 * b), batch: b, length: 4)
    }

    private func pretrainer(_ objectives: Set<PretrainObjective>, seed: UInt64 = 3) throws -> MISSPretrainer {
        let model = try MISSModel(config: .smoke, assignment: .full, rng: RNG(seed: seed))
        let p = try MISSPretrainer(model: model, objectives: objectives, rng: RNG(seed: seed))
        p.train(false)
        return p
    }

    func testPositivesAreSameImageOrSameTextAndTargetsSpreadOverThem() {
        let positive = PretrainPairs.positives(imageKeys: ["a", "b", "a", "c"], texts: ["x", "y", "z", "y"])
        let expected: [Bool] = [true, false, true, false,  false, true, false, true,
                                true, false, true, false,  false, true, false, true]
        XCTAssertEqual(positive, expected)
        let targets = MISSPretrainer.targetRows(positive, batch: 4)
        XCTAssertEqual(targets[0], 0.5); XCTAssertEqual(targets[2], 0.5); XCTAssertEqual(targets[1], 0)
        for r in 0..<4 { XCTAssertEqual(targets[(r * 4)..<((r + 1) * 4)].reduce(0, +), 1, accuracy: 1e-6) }
    }

    func testHardNegativeMiningNeverPicksAPositive() {
        var rng = RNG(seed: 11), draws = RNG(seed: 12)
        let b = 6
        for _ in 0..<200 {
            let positive = (0..<(b * b)).map { i in i / b == i % b || rng.nextFloat() < 0.4 }
            let similarity = (0..<(b * b)).map { _ in rng.nextFloat() * 20 - 10 }
            let (texts, images) = MISSPretrainer.hardNegatives(similarity: similarity, positive: positive, batch: b, rng: &draws)
            for i in 0..<b {
                let hasTextNegative = (0..<b).contains { !positive[i * b + $0] }
                let hasImageNegative = (0..<b).contains { !positive[$0 * b + i] }
                XCTAssertEqual(texts[i] != nil, hasTextNegative)
                XCTAssertEqual(images[i] != nil, hasImageNegative)
                if let j = texts[i] { XCTAssertFalse(positive[i * b + j], "text \(j) drawn for image \(i) is a positive") }
                if let k = images[i] { XCTAssertFalse(positive[k * b + i], "image \(k) drawn for text \(i) is a positive") }
            }
        }
    }

    /// The draw follows softmax(similarity): a candidate 5 nats above the others is drawn almost always.
    func testHardNegativesFavourTheMostSimilar() {
        var draws = RNG(seed: 13)
        let b = 3
        let positive = (0..<9).map { $0 / 3 == $0 % 3 }
        var similarity = [Float](repeating: 0, count: 9)
        similarity[0 * 3 + 2] = 5   // image 0: text 2 is the hard negative
        var picked = 0
        for _ in 0..<400 where MISSPretrainer.hardNegatives(similarity: similarity, positive: positive, batch: b,
                                                             rng: &draws).textForImage[0] == 2 { picked += 1 }
        XCTAssertGreaterThan(picked, 380)   // expected 400 · e^5 / (e^5 + 1) ≈ 397
        XCTAssertLessThan(picked, 400)
    }

    /// Finite differences of each objective's loss against backward, at a few elements of the heads, the ViT,
    /// the JTM's self- and cross-attention and the decoder. Two distinct images and texts: each row then has
    /// exactly one negative, so the ITM draw is deterministic.
    func testObjectiveGradientsMatchFiniteDifferences() throws {
        let batch = try SmokeBatch(.smoke, batch: 2)
        let text = try pairTexts(2)
        let pairs = try PretrainPairs(text: text, positive: PretrainPairs.positives(imageKeys: ["a", "b"], texts: ["x", "y"]),
                                      encTokenId: enc)
        let names = ["vision_proj.weight", "text_proj.weight", "itm_head.weight", "visual_encoder.patch_embed.proj.weight",
                     "visual_encoder.blocks.0.attn.qkv.weight", "text_encoder.encoder.layer.0.attention.self.query.weight",
                     "text_encoder.encoder.layer.1.crossattention.self.value.weight",
                     "text_decoder.bert.encoder.layer.0.crossattention.self.key.weight"]
        for objective in PretrainObjective.allCases {
            let p = try pretrainer([objective])
            let loss = { try p.losses(images: batch.images, question: batch.question, answer: batch.answer, pairs: pairs).total }
            let params = Dictionary(uniqueKeysWithValues: p.namedParameters().map { ($0.name, $0.tensor) })
            try loss().backward()
            var checked = 0
            for name in names {
                let tensor = try XCTUnwrap(params[name], name)
                guard let grad = tensor.grad?.scalars else { continue }   // e.g. the decoder under ITC
                checked += 1
                for i in stride(from: 0, to: tensor.count, by: max(1, tensor.count / 5)) {
                    let saved = tensor.ptr[i], eps: Float = 1e-2
                    tensor.ptr[i] = saved + eps
                    let plus = try withNoGrad { Double(try loss().item()) }
                    tensor.ptr[i] = saved - eps
                    let minus = try withNoGrad { Double(try loss().item()) }
                    tensor.ptr[i] = saved
                    let numeric = (plus - minus) / Double(2 * eps)
                    XCTAssertEqual(Double(grad[i]), numeric, accuracy: 2e-3 + 3e-2 * abs(numeric), "\(objective) \(name)[\(i)]")
                }
            }
            XCTAssertGreaterThanOrEqual(checked, objective == .lm ? 4 : 5, "\(objective): too few parameters had a gradient")
        }
    }

    /// ITC reaches neither the decoder nor the JTM's cross-attention (text mode skips it); ITM reaches both
    /// the ViT and the cross-attention.
    func testObjectivesReachTheirModules() throws {
        let batch = try SmokeBatch(.smoke, batch: 3)
        let pairs = try PretrainPairs(text: try pairTexts(3),
                                      positive: PretrainPairs.positives(imageKeys: ["a", "b", "c"], texts: ["x", "y", "z"]),
                                      encTokenId: enc)
        func touched(_ objective: PretrainObjective) throws -> Set<String> {
            let p = try pretrainer([objective])
            try p.losses(images: batch.images, question: batch.question, answer: batch.answer, pairs: pairs).total.backward()
            return Set(p.namedParameters().filter { ($0.tensor.grad?.scalars.contains { $0 != 0 }) ?? false }
                .map { String($0.name.split(separator: ".").prefix(2).joined(separator: ".")) })
        }
        let itc = try touched(.itc), itm = try touched(.itm)
        XCTAssertTrue(itc.contains("visual_encoder.blocks") && itc.contains("text_encoder.encoder"))
        XCTAssertFalse(itc.contains { $0.hasPrefix("text_decoder") || $0.hasPrefix("itm_head") })
        XCTAssertTrue(itm.contains("visual_encoder.blocks") && itm.contains("itm_head.weight"))
        XCTAssertFalse(itm.contains { $0.hasPrefix("text_decoder") || $0.hasPrefix("vision_proj") })
    }

    /// A smoke model pretrained with ITC + ITM on four images, each with its own pair text, must tell its
    /// images apart: the matching loss of the true pairs rises by at least 1 nat when the images are shuffled.
    func testITMPretrainingMakesTheModelDependOnTheImage() throws {
        let c = ModelConfig.smoke, b = 4, s = c.imageSize
        var pixels = [Float]()
        for k in 0..<b {   // white, black, left half white, top half white
            for _ in 0..<3 {
                for y in 0..<s { for x in 0..<s { pixels.append(k == 0 || (k == 2 && x < s / 2) || (k == 3 && y < s / 2) ? 1 : 0) } }
            }
        }
        let images = Tensor(shape: [b, 3, s, s], scalars: pixels)
        let text = try pairTexts(b)
        let question = try TokenBatch(ids: Array(repeatElement([enc, 30, c.sepTokenId], count: b).joined()),
                                      mask: Array(repeating: 1, count: 3 * b), batch: b, length: 3)
        let answer = try TokenBatch(ids: Array(repeatElement([c.decTokenId, 40, c.sepTokenId], count: b).joined()),
                                    mask: Array(repeating: 1, count: 3 * b), batch: b, length: 3)
        let pairs = try PretrainPairs(text: text, positive: PretrainPairs.positives(imageKeys: ["0", "1", "2", "3"],
                                                                                    texts: ["0", "1", "2", "3"]), encTokenId: enc)
        let p = try pretrainer([.itc, .itm], seed: 5)
        let optimizer = AdamW(parameters: p.namedParameters(), lr: 1e-3, weightDecay: 0)
        for _ in 0..<120 {
            optimizer.backwardAndStep(try p.losses(images: images, question: question, answer: answer, pairs: pairs).total)
        }
        func matchedLoss(imageRows: [Int]) -> Float {
            withNoGrad {
                let logits = p.matchLogits(imageTokens: p.imageTokens(images), imageRows: imageRows, text: text,
                                           textRows: Array(0..<b), encTokenId: enc)
                return mean(crossEntropy(logits: logits, targets: [Int32](repeating: 1, count: b))).item()
            }
        }
        let trueLoss = matchedLoss(imageRows: [0, 1, 2, 3]), shuffled = matchedLoss(imageRows: [1, 2, 3, 0])
        XCTAssertGreaterThan(shuffled - trueLoss, 1, "true pairs \(trueLoss) nats, images shuffled \(shuffled)")
    }
}
