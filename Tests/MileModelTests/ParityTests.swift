import Engine
import Foundation
import XCTest
@testable import MileModel

/// Parity with the PyTorch peer (bench/torch_peer.py) without torch: the fixtures under Fixtures/ hold,
/// per fine-tuning method at smoke scale, a recipe that rebuilds the exact weights and inputs the peer
/// saw, and the peer's float64 loss, logits and sampled gradients. The engine must match them within
/// 1e-4 relative (regenerate with `make parity-golden`).
final class ParityTests: XCTestCase {
    /// Relative tolerance of the issue (#7): loss, logits and gradients.
    static let tolerance = 1e-4

    struct Fixture: Decodable {
        struct Checksum: Decodable { let sum: Double; let abs_sum: Double }
        struct Grad: Decodable { let indices: [Int]; let values: [Double]; let max_abs: Double; let l2: Double }
        struct Generate: Decodable { let beams: Int; let max_length: Int }
        let `case`: ParityRecipe
        let images_sum: Double
        let weights: [String: Checksum]
        let loss: Double
        let logits_shape: [Int]
        let logits: [Double]
        let grads: [String: Grad]
        let generated: [[Int32]]?
    }

    static func fixtureURLs() throws -> [URL] {
        let dir = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures missing from the bundle")
        return try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
            .filter { $0.lastPathComponent.hasPrefix("parity_") && $0.pathExtension == "json" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    func fixture(_ name: String) throws -> Fixture {
        let url = try XCTUnwrap(Self.fixtureURLs().first { $0.lastPathComponent == "parity_\(name).json" },
                                "no fixture parity_\(name).json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    /// Every committed fixture has a test below (a new fixture without a test would go unchecked).
    func testEveryFixtureIsChecked() throws {
        let names = try Self.fixtureURLs().map { $0.deletingPathExtension().lastPathComponent }
        XCTAssertEqual(Set(names), Set(["full", "lora", "ia3", "ia3_vit_attn", "prefix", "ptv2", "mixed"].map { "parity_" + $0 }))
    }

    func testFullFineTuning() throws { try check("full") }
    func testLoRA() throws { try check("lora") }
    func testIA3() throws { try check("ia3") }
    func testIA3OnViTAttention() throws { try check("ia3_vit_attn") }
    func testPrefix() throws { try check("prefix") }
    func testPTV2() throws { try check("ptv2") }
    func testMixedCell() throws { try check("mixed") }

    func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let f = try fixture(name)
        let (model, images) = try f.case.build()
        let question = try f.case.question.tokens(), answer = try f.case.answer.tokens()
        try checkInputsAndWeights(f, model, images, file: file, line: line)

        let loss = try model.loss(images: images, question: question, answer: answer)
        loss.backward()
        let lossError = relative(Double(loss.item()), f.loss)
        XCTAssertLessThanOrEqual(lossError, Self.tolerance, "\(name): loss \(loss.item()) vs \(f.loss)", file: file, line: line)

        let logits = try withNoGrad { try engineLogits(model, images, question, answer) }
        XCTAssertEqual(logits.shape, f.logits_shape, file: file, line: line)
        let logitError = maxRelative(logits.scalars.map(Double.init), f.logits)
        XCTAssertLessThanOrEqual(logitError, Self.tolerance, "\(name): logits", file: file, line: line)

        let gradError = try checkGradients(f, model, file: file, line: line)
        var generated = "-"
        if let expected = f.generated, let g = f.case.generate {
            let tokens = try model.generate(images: images, question: question, beams: g.beams, maxLength: g.max_length)
            XCTAssertEqual(tokens, expected, "\(name): beam search output", file: file, line: line)
            generated = tokens == expected ? "same" : "differs"
        }
        print(String(format: "PARITY %@: loss %.2e, logits %.2e, gradients %.2e (%d tensors), generation %@",
                     name, lossError, logitError, gradError, f.grads.count, generated))
    }

    /// The rebuilt model is the one the peer loaded: same parameter names and values, same images.
    private func checkInputsAndWeights(_ f: Fixture, _ model: MISSModel, _ images: Tensor,
                                       file: StaticString, line: UInt) throws {
        let imageSum = images.scalars.reduce(0.0) { $0 + Double($1) }
        XCTAssertLessThanOrEqual(relative(imageSum, f.images_sum), 1e-6, "images differ from the peer's", file: file, line: line)
        let named = model.namedParameters()
        XCTAssertEqual(Set(named.map(\.name)), Set(f.weights.keys), "parameter names differ from the peer's", file: file, line: line)
        for (name, t) in named {
            guard let c = f.weights[name] else { continue }
            let values = t.scalars.map(Double.init)
            let sum = values.reduce(0, +), absSum = values.reduce(0) { $0 + abs($1) }
            XCTAssertLessThanOrEqual(abs(sum - c.sum) / max(c.abs_sum, 1e-30), 1e-6, "\(name): weights differ", file: file, line: line)
            XCTAssertLessThanOrEqual(relative(absSum, c.abs_sum), 1e-6, "\(name): weights differ", file: file, line: line)
        }
    }

    /// Sampled elements relative to the tensor's largest gradient, plus the tensor's max and L2 norm.
    /// Returns the worst error over all tensors.
    private func checkGradients(_ f: Fixture, _ model: MISSModel, file: StaticString, line: UInt) throws -> Double {
        let trainable = Dictionary(uniqueKeysWithValues: model.trainableParameters().map { ($0.name, $0.tensor) })
        if f.case.grad_tensors == nil {
            XCTAssertEqual(Set(trainable.keys), Set(f.grads.keys), "trainable tensors differ from the peer's", file: file, line: line)
        }
        var worst = 0.0
        for (name, ref) in f.grads.sorted(by: { $0.key < $1.key }) {
            let tensor = try XCTUnwrap(trainable[name], "\(name) is not trainable in the engine", file: file, line: line)
            let grad = try XCTUnwrap(tensor.grad, "\(name) has no gradient", file: file, line: line).scalars.map(Double.init)
            XCTAssertGreaterThan(ref.max_abs, 0, "\(name): zero reference gradient proves nothing", file: file, line: line)
            let sampled = zip(ref.indices, ref.values).map { abs(grad[$0] - $1) }.max() ?? 0
            let error = max(sampled / ref.max_abs, relative(grad.map(abs).max() ?? 0, ref.max_abs),
                            relative(grad.reduce(0) { $0 + $1 * $1 }.squareRoot(), ref.l2))
            XCTAssertLessThanOrEqual(error, Self.tolerance, "\(name): gradient", file: file, line: line)
            worst = max(worst, error)
        }
        return worst
    }

    /// The loss path's logits [B, T-1, V] (MISSModel.loss computes them the same way).
    private func engineLogits(_ model: MISSModel, _ images: Tensor, _ question: TokenBatch,
                              _ answer: TokenBatch) throws -> Tensor {
        let memory = try model.encode(images: images, question: question)
        let mask = paddingMask(question.mask, batch: question.batch, length: question.length)
        let hidden = try model.decode(answer, memory: memory, memoryMask: mask)
        return model.textDecoder.logits(slice(hidden, axis: 1, range: 0..<(answer.length - 1)))
    }

    private func relative(_ a: Double, _ b: Double) -> Double { abs(a - b) / max(abs(b), 1e-30) }

    private func maxRelative(_ a: [Double], _ b: [Double]) -> Double {
        guard a.count == b.count else { return .infinity }
        let scale = b.map(abs).max() ?? 0
        return (zip(a, b).map { abs($0 - $1) }.max() ?? 0) / max(scale, 1e-30)
    }
}

/// One case of bench/parity_cases.json (copied into each fixture). Sources/PeerBench applies the same
/// recipe to export the weights the peer loads; the weight checksums in the fixture catch any drift.
struct ParityRecipe: Decodable {
    struct Tokens: Decodable {
        let batch: Int; let ids: [Int32]; let mask: [Int32]
        func tokens() throws -> TokenBatch { try TokenBatch(ids: ids, mask: mask, batch: batch, length: ids.count / batch) }
    }
    struct Noise: Decodable { let std: Float; let seed: UInt64 }
    let name: String
    let scale: String
    let config_strings: [String: String]?
    let cell: [String]
    let rank: Int
    let seed: UInt64
    let noise: Noise
    let images_seed: UInt64
    let question: Tokens
    let answer: Tokens
    let grad_tensors: [String]?
    let generate: ParityTests.Fixture.Generate?

    /// The model from `seed`, then N(0, noise.std) added to every parameter in registration order;
    /// images U(0, 1) from `images_seed`. Eval mode (no dropout) so the loss is deterministic.
    func build() throws -> (MISSModel, Tensor) {
        let config = try ModelConfig.preset(scale).applying(config_strings ?? [:])
        let a = try PEFTAssignment(vit: ModuleMode(flag: cell[0]), jtm: ModuleMode(flag: cell[1]),
                                   dec: ModuleMode(flag: cell[2]), rank: rank)
        let model = try MISSModel(config: config, assignment: a, rng: RNG(seed: seed))
        model.train(false)
        var rng = RNG(seed: noise.seed)
        for (_, t) in model.namedParameters() {
            let n = Tensor.randn(t.shape, std: noise.std, rng: &rng).scalars
            t.copy(from: Tensor(shape: t.shape, scalars: zip(t.scalars, n).map(+)))
        }
        var imageRng = RNG(seed: images_seed)
        let s = config.imageSize
        return (model, Tensor.uniform([question.batch, 3, s, s], low: 0, high: 1, rng: &imageRng))
    }
}
