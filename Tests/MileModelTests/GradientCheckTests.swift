import Engine
import XCTest
@testable import MileModel

/// Whole-model central-difference gradient checks at smoke scale, one per fine-tuning method, in
/// eval mode (dropout and stochastic depth off so the loss is a deterministic function).
final class GradientCheckTests: XCTestCase {
    func check(_ cell: (String, String, String), file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try smokeModel(try assignment(cell.0, cell.1, cell.2, rank: 2))
        // Non-zero LoRA B so that the A factors have a gradient to check.
        randomize(model, where: { $0.contains("lora_B") }, std: 0.1, seed: 11)
        let batch = try SmokeBatch(.smoke, batch: 2, questionLength: 5, answerLength: 4, seed: 3)
        try model.loss(images: batch.images, question: batch.question, answer: batch.answer).backward()
        var rng = RNG(seed: 21)
        let trainable = model.trainableParameters()
        XCTAssertFalse(trainable.isEmpty, file: file, line: line)
        // A sample of tensors: every adapter-ish kind plus random others, capped for run time.
        var sample = trainable.filter { MISSModel.isAdapterPath($0.name) }.prefix(4).map { $0 }
        while sample.count < 8 { sample.append(trainable[Int(rng.nextUInt64() % UInt64(trainable.count))]) }
        let eps: Float = 1e-2
        var checked = 0
        for (name, tensor) in sample {
            let grad = try XCTUnwrap(tensor.grad, "\(name) has no gradient", file: file, line: line).scalars
            // The element with the largest gradient (a strong signal) and one random element.
            let largest = grad.indices.max { abs(grad[$0]) < abs(grad[$1]) }!
            for index in [largest, Int(rng.nextUInt64() % UInt64(grad.count))] {
                let numeric = try centralDifference(model, batch, tensor, index, eps)
                let tolerance = 1e-2 + 3e-2 * abs(grad[index])
                XCTAssertEqual(grad[index], numeric, accuracy: tolerance, "\(cell) \(name)[\(index)]", file: file, line: line)
                checked += 1
            }
        }
        XCTAssertEqual(checked, 16, file: file, line: line)
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
