import Engine
import Foundation

extension OFAConfig: FamilyConfig {}

/// BiomedGPT-Tiny (Table 5): OFA-tiny, a ResNet trunk and a 4 + 4 layer encoder-decoder; two module slots,
/// the encoder (ResNet, image projection, positions, layers) and the decoder.
public struct BiomedGPTFamily: ModelFamily {
    public init() {}
    public var name: String { "biomedgpt" }
    public var slots: [ModuleSlot] { OFAModel.moduleSlots }
    public var scales: [String] { OFAConfig.presetNames }
    /// OFA's seq2seq loss on image-conditioned text (captions, train questions): BLIP's contrastive and
    /// matching heads belong to MISS.
    public var objectives: [PretrainObjective] { [.lm] }
    public var takesAnswerCandidates: Bool { true }
    /// The ResNet trunk (OFA's image encoder sits inside the encoder slot).
    public var imageEncoderPrefix: String { "encoder.embed_images." }

    public func config(scale: String, overrides: [String: Any]) throws -> any FamilyConfig {
        try OFAConfig.preset(scale).applying(overrides)
    }

    /// `peft.ia3.vit_targets` names MISS's ViT layers; OFA has no ViT, so it has no key here.
    public func overrides(peft: PEFTSettings) -> [String: Any] {
        var out: [String: Any] = [:]
        if let alpha = peft.loraAlpha { out["lora_alpha"] = alpha }
        if let dropout = peft.loraDropout { out["lora_dropout"] = dropout }
        if let tokens = peft.virtualTokens { out["prefix_tokens"] = tokens }
        return out
    }

    /// The run vocabulary's `[DEC]` plays OFA's `<s>`, `[SEP]` its `</s>`.
    public func overrides(vocabulary: VocabularyIds) -> [String: Any] {
        ["vocab_size": vocabulary.size, "pad_token_id": Int(vocabulary.pad), "bos_token_id": Int(vocabulary.begin),
         "eos_token_id": Int(vocabulary.end)]
    }

    public func build(config: any FamilyConfig, assignment: PEFTAssignment, rng: RNG) throws -> any VQAModel {
        try OFAModel(config: cast(config, to: OFAConfig.self), assignment: assignment, rng: rng)
    }
}
