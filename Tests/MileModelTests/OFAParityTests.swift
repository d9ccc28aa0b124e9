import Engine
import Foundation
import XCTest
@testable import MileModel

/// Parity of the OFA family with an independent PyTorch peer (bench/torch_peer.py, written from OFA's
/// fairseq code with upstream's full bucket tables and -inf masks), without torch: Fixtures/ofa_parity.json
/// holds per fine-tuning method the recipe that rebuilds the exact weights and inputs the peer saw
/// (`PeerBench ofa-export`) and the peer's float64 loss, logits [B, T-1, V] and sampled gradients. The
/// engine must match within 1e-4 relative. Regenerate: `PeerBench ofa-export --dir D` then
/// `bench/.venv/bin/python bench/torch_peer.py ofa-golden --dir D`.
final class OFAParityTests: XCTestCase {
    static let tolerance = 1e-4

    struct Recipe: Decodable {
        struct Tokens: Decodable {
            let batch: Int; let ids: [Int32]; let mask: [Int32]
            func tokens() throws -> TokenBatch { try TokenBatch(ids: ids, mask: mask, batch: batch, length: ids.count / batch) }
        }
        let name: String
        let overrides: [String: Int]
        let cell: [String]
        let rank: Int
        let seed: UInt64
        let noise_std: Float
        let noise_seed: UInt64
        let images_seed: UInt64
        let question: Tokens
        let answer: Tokens
        let grad_tensors: [String]

        /// PeerBench's `ofaParityModel`: the model from `seed` in eval mode, N(0, std) added to every
        /// parameter and running mean, running variances scaled by exp(N(0, std)), in registration order;
        /// images U(-1, 1).
        func build() throws -> (OFAModel, Tensor) {
            let config = try OFAConfig.smoke.applying(overrides)
            let model = try OFAModel(config: config, assignment: PEFTAssignment(enc: ModuleMode(flag: cell[0]),
                                                                                dec: ModuleMode(flag: cell[1]), rank: rank),
                                     rng: RNG(seed: seed))
            model.train(false)
            var rng = RNG(seed: noise_seed)
            for entry in model.namedTensors() {
                let t = entry.tensor, n = Tensor.randn(t.shape, std: noise_std, rng: &rng).scalars
                let variance = entry.role == .buffer && entry.name.hasSuffix("running_var")
                t.copy(from: Tensor(shape: t.shape, scalars: zip(t.scalars, n).map { variance ? $0 * exp($1) : $0 + $1 }))
            }
            var imageRng = RNG(seed: images_seed)
            let s = config.imageSize
            return (model, Tensor.uniform([question.batch, 3, s, s], low: -1, high: 1, rng: &imageRng))
        }
    }

    struct Case: Decodable {
        struct Checksum: Decodable { let sum: Double; let abs_sum: Double }
        struct Grad: Decodable { let indices: [Int]; let values: [Double]; let max_abs: Double; let l2: Double }
        let `case`: Recipe
        let images_sum: Double
        let weights: [String: Checksum]
        let trainable: [String]
        let loss: Double
        let logits_shape: [Int]
        let logits: [Double]
        let grads: [String: Grad]
    }

    struct Fixture: Decodable { let cases: [Case] }

    static func fixture() throws -> Fixture {
        let dir = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: dir.appendingPathComponent("ofa_parity.json")))
    }

    func testEveryMethodHasACase() throws {
        XCTAssertEqual(try Self.fixture().cases.map(\.case.name), ["full", "lora", "ia3", "prefix", "ptv2"])
    }

    func testFullFineTuning() throws { try check("full") }
    func testLoRA() throws { try check("lora") }
    func testIA3() throws { try check("ia3") }
    func testPrefix() throws { try check("prefix") }
    func testPTV2() throws { try check("ptv2") }

    private func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let f = try XCTUnwrap(try Self.fixture().cases.first { $0.case.name == name }, "no case \(name)")
        let (model, images) = try f.case.build()
        let question = try f.case.question.tokens(), answer = try f.case.answer.tokens()

        // The rebuilt model is the one the peer loaded: names, values, trainability, images.
        XCTAssertLessThanOrEqual(relative(images.scalars.reduce(0.0) { $0 + Double($1) }, f.images_sum), 1e-6, file: file, line: line)
        let named = model.namedParameters()
        XCTAssertEqual(Set(named.map(\.name)), Set(f.weights.keys), "parameter names differ from the peer's", file: file, line: line)
        for (n, t) in named {
            guard let c = f.weights[n] else { continue }
            let values = t.scalars.map(Double.init)
            XCTAssertLessThanOrEqual(abs(values.reduce(0, +) - c.sum) / max(c.abs_sum, 1e-30), 1e-6, "\(n)", file: file, line: line)
        }
        XCTAssertEqual(Set(model.trainableParameters().map(\.name)), Set(f.trainable), "trainable sets differ", file: file, line: line)

        let loss = try model.loss(images: images, question: question, answer: answer)
        loss.backward()
        let lossError = relative(Double(loss.item()), f.loss)
        XCTAssertLessThanOrEqual(lossError, Self.tolerance, "\(name): loss \(loss.item()) vs \(f.loss)", file: file, line: line)

        let t = answer.length - 1
        let decoderIds = (0..<answer.batch).flatMap { Array(answer.ids[($0 * answer.length)..<($0 * answer.length + t)]) }
        let logits = try withNoGrad {
            try model.teacherForcedLogits(images: images, question: question, decoderIds: decoderIds, length: t)
        }
        XCTAssertEqual(logits.shape, f.logits_shape, file: file, line: line)
        let scale = f.logits.map(abs).max() ?? 1
        let logitError = (zip(logits.scalars.map(Double.init), f.logits).map { abs($0 - $1) }.max() ?? 0) / scale
        XCTAssertLessThanOrEqual(logitError, Self.tolerance, "\(name): logits", file: file, line: line)

        let tensors = Dictionary(uniqueKeysWithValues: named.map { ($0.name, $0.tensor) })
        var worst = 0.0
        for (n, ref) in f.grads.sorted(by: { $0.key < $1.key }) {
            let grad = try XCTUnwrap(tensors[n]?.grad, "\(n) has no gradient", file: file, line: line).scalars.map(Double.init)
            // (A key bias has a zero gradient: it shifts all of a query's scores alike. Such a reference is noise.)
            XCTAssertGreaterThan(ref.max_abs, 1e-8, "\(n): zero reference gradient", file: file, line: line)
            let sampled = zip(ref.indices, ref.values).map { abs(grad[$0] - $1) }.max() ?? 0
            let error = max(sampled / ref.max_abs, relative(grad.map(abs).max() ?? 0, ref.max_abs),
                            relative(grad.reduce(0) { $0 + $1 * $1 }.squareRoot(), ref.l2))
            XCTAssertLessThanOrEqual(error, Self.tolerance, "\(name): \(n) gradient", file: file, line: line)
            if ProcessInfo.processInfo.environment["PARITYPRINT"] != nil { print("GRADERR \(name) \(n) \(error)") }
            worst = max(worst, error)
        }
        print(String(format: "OFA PARITY %@: loss %.2e, logits %.2e, gradients %.2e (%d tensors)", name, lossError,
                     logitError, worst, f.grads.count))
    }

    private func relative(_ a: Double, _ b: Double) -> Double { abs(a - b) / max(abs(b), 1e-30) }
}
