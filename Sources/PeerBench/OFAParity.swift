import Engine
import Foundation
import MileModel

/// The OFA parity cases (smoke scale at 64² images: a 4×4 image grid; a 12-token question so that the
/// token buckets beyond ±8 are log-spaced), one per fine-tuning method. `PeerBench ofa-export --dir DIR`
/// writes each case's recipe (`ofa_cases.json`), weights and images; `bench/torch_peer.py ofa-golden`
/// computes the float64 reference into Tests/MileModelTests/Fixtures/ofa_parity.json, whose copy of each
/// recipe `OFAParityTests` rebuilds the model from (with the same code as `ofaParityModel` below).
struct OFAParityCase: Codable {
    struct Tokens: Codable { let batch: Int; let ids: [Int32]; let mask: [Int32] }
    let name: String
    let overrides: [String: Int]
    let cell: [String]
    let rank: Int
    let seed: UInt64
    let noiseStd: Float
    let noiseSeed: UInt64
    let imagesSeed: UInt64
    let question: Tokens
    let answer: Tokens
    let gradTensors: [String]

    enum CodingKeys: String, CodingKey {
        case name, overrides, cell, rank, seed, question, answer
        case noiseStd = "noise_std", noiseSeed = "noise_seed", imagesSeed = "images_seed", gradTensors = "grad_tensors"
    }
}

func ofaParityCases() -> [OFAParityCase] {
    let q = OFAParityCase.Tokens(batch: 2, ids: [97, 10, 20, 30, 40, 50, 60, 70, 80, 90, 15, 3,
                                                 97, 11, 22, 33, 44, 55, 3, 0, 0, 0, 0, 0],
                                 mask: Array(repeating: 1, count: 12) + Array(repeating: 1, count: 7) + Array(repeating: 0, count: 5))
    let a = OFAParityCase.Tokens(batch: 2, ids: [98, 12, 13, 14, 3, 98, 16, 3, 0, 0], mask: [1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
    let base = ["encoder.embed_images.conv1.weight", "encoder.embed_images.bn1.weight",
                "encoder.embed_images.layer2.0.conv2.weight", "encoder.embed_images.layer3.0.downsample.0.weight",
                "encoder.image_proj.weight", "encoder.type_embedding.weight", "encoder.embed_positions.weight",
                "encoder.embed_image_positions.weight", "encoder.pos_q_linear.weight", "encoder.image_pos_ln.weight",
                "encoder.token_rel_pos_table_list.0.weight", "encoder.image_rel_pos_table_list.1.weight",
                "encoder.layers.1.self_attn.c_attn", "encoder.layers.0.self_attn.k_proj.weight",
                "encoder.layers.0.ffn_layer_norm.weight", "encoder.layer_norm.bias"]
    let decoder = ["encoder.embed_tokens.weight", "decoder.embed_positions.weight", "decoder.self_pos_k_linear.weight",
                   "decoder.cross_pos_q_linear.weight", "decoder.cross_pos_k_linear.weight",
                   "decoder.token_rel_pos_table_list.1.weight", "decoder.layers.0.self_attn.q_proj.weight",
                   "decoder.layers.1.cross_attn.c_attn", "decoder.layers.1.cross_attn.v_proj.weight",
                   "decoder.layers.0.fc2.weight", "decoder.layernorm_embedding.weight", "decoder.layer_norm.weight"]
    func make(_ name: String, _ cell: [String], _ grads: [String]) -> OFAParityCase {
        OFAParityCase(name: name, overrides: ["image_size": 64], cell: cell, rank: 4, seed: 1, noiseStd: 0.1, noiseSeed: 5,
                      imagesSeed: 9, question: q, answer: a, gradTensors: grads)
    }
    return [
        make("full", ["T", "T"], base + decoder),
        make("lora", ["T", "lora"], ["decoder.layers.0.self_attn.q_proj.lora_A.weight", "decoder.layers.0.self_attn.q_proj.lora_B.weight",
                                     "decoder.layers.1.cross_attn.v_proj.lora_A.weight", "decoder.layers.1.cross_attn.v_proj.lora_B.weight",
                                     "encoder.embed_images.conv1.weight", "encoder.layers.1.fc1.weight"]),
        make("ia3", ["T", "ia3"], ["decoder.layers.0.self_attn.k_proj.ia3_l", "decoder.layers.1.cross_attn.v_proj.ia3_l",
                                   "decoder.layers.0.fc2.ia3_l", "decoder.layers.1.fc2.ia3_l", "encoder.image_proj.weight"]),
        make("prefix", ["T", "prefix"], ["decoder.prompt_encoder.embedding.weight", "decoder.prompt_encoder.transform.0.weight",
                                         "decoder.prompt_encoder.transform.2.weight", "decoder.prompt_encoder.transform.2.bias",
                                         "encoder.layers.0.self_attn.q_proj.weight"]),
        make("ptv2", ["F", "ptv2"], ["decoder.prompt_encoder.embedding.weight"]),
    ]
}

/// The recipe: the model from `seed` in eval mode, then N(0, std) added to every parameter in registration
/// order, running means shifted by N(0, std) and running variances scaled by exp(N(0, std)); images
/// U(-1, 1) from `images_seed` (OFA's normalisation range).
func ofaParityModel(_ c: OFAParityCase) throws -> (OFAModel, Tensor) {
    let config = try OFAConfig.smoke.applying(c.overrides)
    let model = try OFAModel(config: config, assignment: PEFTAssignment(enc: ModuleMode(flag: c.cell[0]),
                                                                        dec: ModuleMode(flag: c.cell[1]), rank: c.rank),
                             rng: RNG(seed: c.seed))
    model.train(false)
    var rng = RNG(seed: c.noiseSeed)
    for entry in model.namedTensors() {
        let t = entry.tensor, n = Tensor.randn(t.shape, std: c.noiseStd, rng: &rng).scalars
        let values: [Float]
        if entry.role == .buffer && entry.name.hasSuffix("running_var") {
            values = zip(t.scalars, n).map { $0 * Foundation.exp($1) }
        } else {
            values = zip(t.scalars, n).map(+)
        }
        t.copy(from: Tensor(shape: t.shape, scalars: values))
    }
    var imageRng = RNG(seed: c.imagesSeed)
    let s = config.imageSize
    return (model, Tensor.uniform([c.question.batch, 3, s, s], low: -1, high: 1, rng: &imageRng))
}

func ofaExport(_ o: [String: String]) throws {
    let dir = URL(fileURLWithPath: try required(o, "dir"))
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let cases = ofaParityCases()
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    try encoder.encode(cases).write(to: dir.appendingPathComponent("ofa_cases.json"))
    for c in cases {
        let (model, images) = try ofaParityModel(c)
        try model.save(to: dir.appendingPathComponent("ofa_\(c.name).weights.safetensors"))
        try Safetensors.write([("images", images)], to: dir.appendingPathComponent("ofa_\(c.name).inputs.safetensors"))
        print("exported ofa \(c.name): \(model.parameterCount.total) parameters")
    }
}
