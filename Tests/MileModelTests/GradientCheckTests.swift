import Engine
import XCTest
@testable import MileModel

/// Whole-model central-difference gradient checks at smoke scale, one per fine-tuning method, in
/// eval mode (dropout and stochastic depth off so the loss is a deterministic function).
final class GradientCheckTests: XCTestCase {
    func check(_ cell: (String, String, String), file: StaticString = #filePath, line: UInt = #line) throws {
        // Larger initial weights than BERT's 0.02 so that every sampled parameter moves the loss by
        // far more than the float32 rounding of a central difference (about 1e-4 here).
        var config = ModelConfig.smoke
        config.initializerRange = 0.3
        let model = try smokeModel(try assignment(cell.0, cell.1, cell.2, rank: 2), config: config)
        // Non-zero LoRA B so that the A factors have a gradient to check.
        randomize(model, where: { $0.contains("lora_B") }, std: 0.1, seed: 11)
        let batch = try SmokeBatch(config, batch: 2, questionLength: 5, answerLength: 4, seed: 3)
        try model.loss(images: batch.images, question: batch.question, answer: batch.answer).backward()
        var rng = RNG(seed: 21)
        let trainable = model.trainableParameters()
        XCTAssertFalse(trainable.isEmpty, file: file, line: line)
        // Distinct tensors: up to 4 adapter tensors plus random others, 8 at most (run time).
        let adapterNames = Set(model.namedTensors().filter { $0.role == .adapter }.map(\.name))
        var sample = Array(trainable.filter { adapterNames.contains($0.name) }.prefix(4))
        var attempts = 0
        while sample.count < min(8, trainable.count), attempts < 100 {
            let pick = trainable[Int(rng.nextUInt64() % UInt64(trainable.count))]
            if !sample.contains(where: { $0.name == pick.name }) { sample.append(pick) }
            attempts += 1
        }
        let eps: Float = 1e-2
        var measured = 0
        for (name, tensor) in sample {
            let grad = try XCTUnwrap(tensor.grad, "\(name) has no gradient", file: file, line: line).scalars
            let largest = grad.indices.max { abs(grad[$0]) < abs(grad[$1]) }!
            // The largest-gradient element, and a random one among those of comparable size.
            let strong = grad.indices.filter { abs(grad[$0]) >= 0.25 * abs(grad[largest]) }
            for index in [largest, strong[Int(rng.nextUInt64() % UInt64(strong.count))]] {
                let numeric = try centralDifference(model, batch, tensor, index, eps)
                // float32 rounding of the loss difference is about 1e-4 at this eps; the rest is relative.
                let tolerance = 3e-4 + 3e-2 * abs(grad[index])
                if ProcessInfo.processInfo.environment["GRADPRINT"] != nil {
                    print("GRAD \(cell) \(name)[\(index)] analytic \(grad[index]) numeric \(numeric)")
                }
                XCTAssertEqual(grad[index], numeric, accuracy: tolerance, "\(cell) \(name)[\(index)]", file: file, line: line)
                if abs(grad[index]) >= 2e-3 { measured += 1 }
            }
        }
        // Most checks must be well above the rounding floor, or the test would prove nothing.
        XCTAssertGreaterThanOrEqual(measured, min(6, 2 * sample.count - 2), "\(cell): too few measurable gradients",
                                    file: file, line: line)
    }

    private func centralDifference(_ model: MISSModel, _ batch: SmokeBatch, _ tensor: Tensor, _ index: Int,
                                   _ eps: Float) throws -> Float {
        var values = tensor.scalars
        let original = values[index]
        values[index] = original + eps
        tensor.copy(from: Tensor(shape: tensor.shape, scalars: values))
        let plus = try lossValue(model, batch)
        values[index] = original - eps
        tensor.copy(from: Tensor(shape: tensor.shape, scalars: values))
        let minus = try lossValue(model, batch)
        values[index] = original
        tensor.copy(from: Tensor(shape: tensor.shape, scalars: values))
        return (plus - minus) / (2 * eps)
    }

    func testFullFineTuning() throws { try check(("T", "T", "T")) }
    func testLoRA() throws { try check(("lora", "lora", "lora")) }
    func testIA3() throws { try check(("ia3", "ia3", "ia3")) }
    func testPrefix() throws { try check(("F", "prefix", "prefix")) }
    func testPTV2() throws { try check(("F", "ptv2", "ptv2")) }
}
