import Engine
import XCTest
@testable import MileModel

final class PEFTTests: XCTestCase {
    func testFreshLoRAAndIA3LeaveOutputsUnchanged() throws {
        let batch = try SmokeBatch(.smoke)
        let base = try smokeModel(.full)
        let reference = try lossValue(base, batch)
        for cell in [("lora", "lora", "lora"), ("ia3", "ia3", "ia3")] {
            let adapted = try smokeModel(try assignment(cell.0, cell.1, cell.2))
            copyWeights(from: base, to: adapted)
            XCTAssertEqual(try lossValue(adapted, batch), reference, accuracy: 1e-4 * abs(reference), "\(cell)")
            // The adapters are live: perturbing them changes the output.
            randomize(adapted, where: { $0.contains("lora_B") || $0.hasSuffix("ia3_l") }, std: 0.5, seed: 9)
            XCTAssertGreaterThan(abs(try lossValue(adapted, batch) - reference), 1e-3, "\(cell)")
        }
    }

    func testLoRAMergeEqualsUnmerged() throws {
        let batch = try SmokeBatch(.smoke)
        let model = try smokeModel(try assignment("lora", "lora", "lora"))
        randomize(model, where: { $0.contains("lora_B") }, std: 0.2, seed: 3)
        let before = model.namedParameters().map { $0.tensor.scalars }
        let unmerged = try lossValue(model, batch)
        model.mergeLoRA(true)
        let qkv = model.visualEncoder.blocks.items[0].attn.qkv.weight.scalars
        XCTAssertGreaterThan(maxAbsDifference(qkv, before[model.namedParameters().firstIndex { $0.name == "visual_encoder.blocks.0.attn.qkv.weight" }!]), 1e-4)
        let merged = try lossValue(model, batch)
        XCTAssertEqual(merged, unmerged, accuracy: 1e-4 * abs(unmerged))
        model.mergeLoRA(false)
        let after = model.namedParameters().map { $0.tensor.scalars }
        for (x, y) in zip(before, after) { XCTAssertLessThan(maxAbsDifference(x, y), 1e-5) }
        XCTAssertEqual(try lossValue(model, batch), unmerged, accuracy: 1e-4 * abs(unmerged))
    }

    func testOnlyTrainableTensorsGetGradients() throws {
        let batch = try SmokeBatch(.smoke)
        for cell in [("F", "lora", "lora"), ("T", "ia3", "F"), ("F", "prefix", "ptv2"), ("lora", "T", "F"), ("F", "F", "T")] {
            let model = try smokeModel(try assignment(cell.0, cell.1, cell.2))
            model.train(true)
            try model.loss(images: batch.images, question: batch.question, answer: batch.answer).backward()
            var trainableCount = 0
            for (name, tensor) in model.namedParameters() {
                if tensor.isTrainable {
                    trainableCount += 1
                    XCTAssertNotNil(tensor.grad, "\(cell): trainable \(name) has no gradient")
                } else {
                    XCTAssertNil(tensor.grad, "\(cell): frozen \(name) has a gradient")
                }
            }
            XCTAssertGreaterThan(trainableCount, 0)
            XCTAssertEqual(model.trainableParameters().count, trainableCount)
        }
    }

    /// Prompt tuning must reach self-attention only. Cross-attention given a prefix must ignore it,
    /// while self-attention must change with it.
    func testPrefixReachesSelfAttentionOnly() throws {
        var rng = RNG(seed: 4)
        let c = ModelConfig.smoke
        let random = RandomSource(RNG(seed: 5))
        let layer = BertLayer(c.text, crossWidth: c.visionWidth, random: random)
        layer.train(false)
        let x = Tensor.randn([2, 5, c.textHidden], std: 1, rng: &rng)
        let memory = Tensor.randn([2, 7, c.visionWidth], std: 1, rng: &rng)
        let dh = c.textHidden / c.textHeads
        func prefix(_ seed: UInt64) -> LayerPrefix {
            var r = RNG(seed: seed)
            return LayerPrefix(key: Tensor.randn([2, c.textHeads, 10, dh], std: 1, rng: &r),
                               value: Tensor.randn([2, c.textHeads, 10, dh], std: 1, rng: &r))
        }
        let cross = layer.crossAttention.selfAttention
        let crossA = withNoGrad { cross(x, memory: memory, mask: nil, prefix: prefix(1)).scalars }
        let crossB = withNoGrad { cross(x, memory: memory, mask: nil, prefix: prefix(2)).scalars }
        XCTAssertEqual(crossA, crossB, "cross-attention must not see the prefix")
        let selfA = withNoGrad { layer.attention.selfAttention(x, memory: nil, mask: nil, prefix: prefix(1)).scalars }
        let selfB = withNoGrad { layer.attention.selfAttention(x, memory: nil, mask: nil, prefix: prefix(2)).scalars }
        XCTAssertGreaterThan(maxAbsDifference(selfA, selfB), 1e-3, "self-attention must see the prefix")
        // The cross-attention keys are the memory only: its output equals attention over the memory.
        let noPrefix = withNoGrad { cross(x, memory: memory, mask: nil, prefix: nil).scalars }
        XCTAssertEqual(crossA, noPrefix)
    }

    /// Under prompt tuning the position ids start at 10: position rows 0..<10 are unused and
    /// row 10 is the first token's. Without prompt tuning row 0 is.
    func testPromptTuningShiftsPositionsByTen() throws {
        let batch = try SmokeBatch(.smoke)
        for (cell, module) in [(("F", "prefix", "F"), "text_encoder"), (("F", "F", "ptv2"), "text_decoder.bert")] {
            let model = try smokeModel(try assignment(cell.0, cell.1, cell.2))
            let reference = try lossValue(model, batch)
            let table = model.namedParameters().first { $0.name == "\(module).embeddings.position_embeddings.weight" }!.tensor
            let original = table.scalars
            let h = ModelConfig.smoke.textHidden
            var changed = original
            for i in 0..<(10 * h) { changed[i] += i % 2 == 0 ? 3 : -2 }
            table.copy(from: Tensor(shape: table.shape, scalars: changed))
            XCTAssertEqual(try lossValue(model, batch), reference, "\(cell): rows 0..<10 must be unused")
            changed = original
            for i in (10 * h)..<(11 * h) { changed[i] += i % 2 == 0 ? 3 : -2 }
            table.copy(from: Tensor(shape: table.shape, scalars: changed))
            XCTAssertGreaterThan(abs(try lossValue(model, batch) - reference), 1e-5, "\(cell): row 10 is position 0")
        }
        let plain = try smokeModel(.full)
        let reference = try lossValue(plain, batch)
        let table = plain.textEncoder.embeddings.positionEmbeddings.weight
        var changed = table.scalars
        for i in 0..<ModelConfig.smoke.textHidden { changed[i] += i % 2 == 0 ? 3 : -2 }
        table.copy(from: Tensor(shape: table.shape, scalars: changed))
        XCTAssertGreaterThan(abs(try lossValue(plain, batch) - reference), 1e-5, "without a prompt row 0 is position 0")
    }

    /// PAD tokens appended to questions (mask 0) and answers (PAD targets) change nothing, while the
    /// same extra question positions with mask 1 do (so the check is sensitive). Larger init than
    /// BERT's so the question measurably drives the loss.
    func testPaddingIsIgnored() throws {
        var c = ModelConfig.smoke
        c.initializerRange = 0.3
        for cell in [("T", "T", "T"), ("F", "prefix", "prefix")] {
            let model = try smokeModel(try assignment(cell.0, cell.1, cell.2), config: c)
            let batch = try SmokeBatch(c, batch: 1)
            let reference = try lossValue(model, batch)
            func padded(_ t: TokenBatch, _ extra: Int, keep: Int32) throws -> TokenBatch {
                try TokenBatch(ids: t.ids + Array(repeating: c.padTokenId, count: extra),
                               mask: t.mask + Array(repeating: keep, count: extra), batch: 1, length: t.length + extra)
            }
            func loss(_ question: TokenBatch, _ answer: TokenBatch) throws -> Float {
                try withNoGrad { try model.loss(images: batch.images, question: question, answer: answer).item() }
            }
            let masked = try loss(padded(batch.question, 3, keep: 0), padded(batch.answer, 2, keep: 0))
            XCTAssertEqual(masked, reference, accuracy: 1e-5 * abs(reference), "\(cell)")
            let attended = try loss(padded(batch.question, 3, keep: 1), batch.answer)
            XCTAssertGreaterThan(abs(attended - reference), 1e-3 * abs(reference), "\(cell): unmasked pads must matter")
        }
    }
}
