import Engine
import XCTest
@testable import MileModel

/// Central-difference checks of the smoke OFA loss against backward, in eval mode (no dropout, drop path
/// or batch statistics, so the loss is a deterministic function), on tensors from every part of the model.
final class OFAGradientCheckTests: XCTestCase {
    private func check(_ enc: ModuleMode, _ dec: ModuleMode, tensors names: [String],
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try ofaSmokeModel(enc, dec, rank: 2)
        // Non-zero LoRA B (so A has a gradient) and relative-position tables (zero at init).
        randomize(model, where: { $0.contains("lora_B") }, std: 0.1, seed: 11)
        randomize(model, where: { $0.contains("rel_pos_table") }, std: 0.3, seed: 12)
        let batch = try OFASmokeBatch(.smoke, batch: 2, questionLength: 5, answerLength: 4, seed: 3)
        try model.loss(images: batch.images, question: batch.question, answer: batch.answer).backward()
        let tensors = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.tensor) })
        var rng = RNG(seed: 21)
        var measured = 0
        for name in names {
            let tensor = try XCTUnwrap(tensors[name], "no tensor \(name)", file: file, line: line)
            let grad = try XCTUnwrap(tensor.grad, "\(name) has no gradient", file: file, line: line).scalars
            let largest = grad.indices.max { abs(grad[$0]) < abs(grad[$1]) }!
            let strong = grad.indices.filter { abs(grad[$0]) >= 0.25 * abs(grad[largest]) }
            for index in [largest, strong[Int(rng.nextUInt64() % UInt64(strong.count))]] {
                let numeric = try centralDifference(model, batch, tensor, index, 1e-2)
                let tolerance = 3e-4 + 3e-2 * abs(grad[index])
                if ProcessInfo.processInfo.environment["GRADPRINT"] != nil { print("GRAD \(name)[\(index)] \(grad[index]) \(numeric)") }
                XCTAssertEqual(grad[index], numeric, accuracy: tolerance, "\(name)[\(index)]", file: file, line: line)
                if abs(grad[index]) >= 2e-3 { measured += 1 }
            }
        }
        XCTAssertGreaterThanOrEqual(measured, 2 * names.count - 2, "too few measurable gradients", file: file, line: line)
    }

    private func centralDifference(_ model: OFAModel, _ batch: OFASmokeBatch, _ tensor: Tensor, _ index: Int,
                                   _ eps: Float) throws -> Float {
        var values = tensor.scalars
        let original = values[index]
        values[index] = original + eps
        tensor.copy(from: Tensor(shape: tensor.shape, scalars: values))
        let plus = try ofaLossValue(model, batch)
        values[index] = original - eps
        tensor.copy(from: Tensor(shape: tensor.shape, scalars: values))
        let minus = try ofaLossValue(model, batch)
        values[index] = original
        tensor.copy(from: Tensor(shape: tensor.shape, scalars: values))
        return (plus - minus) / (2 * eps)
    }

    func testFullFineTuning() throws {
        try check(.trained, .trained, tensors: [
            "encoder.embed_images.conv1.weight", "encoder.embed_images.layer2.0.conv2.weight",
            "encoder.embed_images.layer3.0.bn3.weight", "encoder.image_proj.weight",
            "encoder.token_rel_pos_table_list.1.weight", "encoder.image_rel_pos_table_list.0.weight",
            "encoder.layers.0.self_attn.c_attn", "encoder.pos_k_linear.weight", "encoder.type_embedding.weight",
            "encoder.embed_tokens.weight", "decoder.layers.1.cross_attn.c_attn", "decoder.token_rel_pos_table_list.0.weight",
            "decoder.cross_pos_q_linear.weight", "decoder.layers.0.ffn_layer_norm.weight",
        ])
    }

    func testLoRA() throws {
        try check(.frozen, .lora, tensors: [
            "decoder.layers.0.self_attn.q_proj.lora_A.weight", "decoder.layers.1.cross_attn.v_proj.lora_B.weight",
        ])
    }

    func testIA3() throws {
        try check(.frozen, .ia3, tensors: ["decoder.layers.0.fc2.ia3_l", "decoder.layers.1.cross_attn.k_proj.ia3_l"])
    }

    func testPrefix() throws {
        try check(.trained, .prefix, tensors: [
            "decoder.prompt_encoder.embedding.weight", "decoder.prompt_encoder.transform.2.weight",
            "encoder.embed_images.layer1.0.conv3.weight",
        ])
    }

    func testPTV2() throws {
        try check(.frozen, .ptv2, tensors: ["decoder.prompt_encoder.embedding.weight"])
    }
}
