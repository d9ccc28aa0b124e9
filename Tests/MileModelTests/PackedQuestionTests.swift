import Engine
import XCTest
@testable import MileModel

/// The JTM on packed question rows (padding skipped) against the padded computation.
final class PackedQuestionTests: XCTestCase {
    /// Eval mode: the same encoder states at every real position, loss and gradients, to float rounding
    /// (products over fewer rows may take another kernel path; weight gradients sum rows in another grouping).
    func testSameEncodingLossAndGradientsAsPadded() throws {
        for cell in [("T", "T", "T"), ("F", "lora", "lora"), ("ia3", "ia3", "ia3"), ("F", "T", "prefix")] {
            compare(try run(cell, packed: true, training: false), try run(cell, packed: false, training: false), "\(cell)")
        }
    }

    /// Training mode: dropout drops the same elements in both layouts (attention probabilities, hidden
    /// states), so the results agree as closely as without dropout. (A LoRA dropout in the JTM draws its
    /// mask over packed rows, so those cells differ in which inputs the adapter sees.)
    func testTrainingWithDropoutMatchesPadded() throws {
        compare(try run(("T", "T", "T"), packed: true, training: true), try run(("T", "T", "T"), packed: false, training: true), "train")
    }

    /// States, loss and every gradient within 1e-5 of the largest value of its kind (gradients that are 0
    /// in exact arithmetic, such as key biases under softmax, are rounding noise below that).
    private func compare(_ packed: Outcome, _ padded: Outcome, _ what: String) {
        XCTAssertLessThan(maxAbsDifference(packed.realStates, padded.realStates), 1e-5 * largest(padded.realStates), what)
        XCTAssertLessThan(abs(packed.loss - padded.loss), 1e-6 * abs(padded.loss), what)
        XCTAssertEqual(packed.grads.keys.sorted(), padded.grads.keys.sorted(), what)
        let scale = padded.grads.values.map(largest).max() ?? 0
        for (name, g) in padded.grads {
            XCTAssertLessThan(maxAbsDifference(packed.grads[name]!, g), 1e-5 * max(largest(g), 1e-2 * scale), "\(what) \(name)")
        }
    }

    private func largest(_ x: [Float]) -> Float { x.map(abs).max() ?? 0 }

    /// Generation's decoder attends to every question position, padding included (as upstream), so its
    /// encoding never packs: the same [B, T, h] states with packing on or off.
    func testEncodingForGenerationKeepsPaddingStates() throws {
        let (images, question, _) = try paddedBatch()
        let m = try model(("T", "T", "T"), packed: true, training: false)
        let states = try withNoGrad { try m.encode(images: images, question: question) }
        XCTAssertEqual(states.shape, [question.batch, question.length, ModelConfig.smoke.textHidden])
        XCTAssertNotNil(try withNoGrad { try m.encodeForLoss(images: images, question: question).packed })
        m.packQuestions = false
        XCTAssertEqual(states.scalars, try withNoGrad { try m.encode(images: images, question: question).scalars })
    }

    /// Packing applies to padded batches with ones-then-zeros masks only.
    func testPackingAppliesOnlyToTrailingPadding() {
        XCTAssertNil(PackedTokens(ids: [1, 2, 3, 4], mask: [1, 1, 1, 1], batch: 2, length: 2))   // no padding
        XCTAssertNil(PackedTokens(ids: [1, 2, 3, 4], mask: [1, 0, 1, 1], batch: 1, length: 4))   // a hole
        XCTAssertNil(PackedTokens(ids: [1, 2, 3, 4], mask: [0, 0, 1, 1], batch: 2, length: 2))   // empty item
        let p = PackedTokens(ids: [5, 6, 0, 7, 0, 0], mask: [1, 1, 0, 1, 0, 0], batch: 2, length: 3)
        XCTAssertEqual(p?.paddedRows, [0, 1, 3])
        XCTAssertEqual(p?.ids, [5, 6, 7])
        XCTAssertEqual(p?.positions, [0, 1, 0])
        XCTAssertEqual(p?.segments.lengths, [2, 1])
    }

    private struct Outcome {
        let realStates: [Float]
        let loss: Float
        let grads: [String: [Float]]
    }

    /// Encoder states at the real positions from one model, loss and gradients from a second one built the
    /// same way (so both layouts see the same dropout draws in each).
    private func run(_ cell: (String, String, String), packed: Bool, training: Bool) throws -> Outcome {
        let (images, question, answer) = try paddedBatch()
        let (states, layout) = try model(cell, packed: packed, training: training).encodeForLoss(images: images, question: question)
        XCTAssertEqual(layout != nil, packed && cell.1 != "prefix" && cell.1 != "ptv2", "\(cell): packed or not")
        // packed rows are the real positions in order; padded states hold every position
        let h = states.shape.last!, all = states.scalars
        let real = layout != nil ? all
            : question.mask.enumerated().filter { $0.element == 1 }.flatMap { all[($0.offset * h)..<($0.offset * h + h)] }
        let second = try model(cell, packed: packed, training: training)
        let loss = try second.loss(images: images, question: question, answer: answer)
        loss.backward()
        let grads = Dictionary(uniqueKeysWithValues: second.namedParameters().compactMap { name, t in t.grad.map { (name, $0.scalars) } })
        return Outcome(realStates: real, loss: loss.item(), grads: grads)
    }

    /// A smoke model with N(0, 0.1) added to every parameter (adapters and prompts act).
    private func model(_ cell: (String, String, String), packed: Bool, training: Bool) throws -> MISSModel {
        let model = try MISSModel(config: .smoke, assignment: try assignment(cell.0, cell.1, cell.2), rng: RNG(seed: 3))
        var noise = RNG(seed: 4)
        for (_, t) in model.namedParameters() {
            let n = Tensor.randn(t.shape, std: 0.1, rng: &noise).scalars
            t.copy(from: Tensor(shape: t.shape, scalars: zip(t.scalars, n).map(+)))
        }
        model.train(training)
        model.packQuestions = packed
        return model
    }

    /// `paddedQuestionBatch` (questions of 7, 4 and 5 tokens padded to 7) with answers of 4 tokens.
    private func paddedBatch() throws -> (Tensor, TokenBatch, TokenBatch) {
        let c = ModelConfig.smoke
        let (images, question) = try paddedQuestionBatch()
        var answers: [Int32] = []
        for row in 0..<3 { answers += [c.decTokenId, Int32(10 + row), Int32(20 + row), c.sepTokenId] }
        return (images, question, try TokenBatch(ids: answers, mask: Array(repeating: 1, count: 12), batch: 3, length: 4))
    }
}
