import Foundation

/// Every dimension of the MISS model (ViT + JTM + answer decoder) and of its PEFT adapters.
///
/// Nothing in the model code hard-codes a width or a depth: everything is read from here.
/// The JSON form uses the flat snake_case keys of `CodingKeys`, so an experiment file can
/// override any of them (`ModelConfig.preset("small").applying(["vocab_size": 1200])`).
public struct ModelConfig: Codable, Equatable, Sendable {
    // Vision encoder (`visual_encoder`, BLIP's ViT).
    public var imageSize: Int
    public var patchSize: Int
    public var visionWidth: Int
    public var visionDepth: Int
    public var visionHeads: Int
    public var visionMLP: Int
    public var visionLayerNormEps: Float
    /// Stochastic depth: rises linearly from 0 (first block) to this value (last block), as timm.
    public var dropPathRate: Float

    // Text encoder (`text_encoder`, JTM) and answer decoder (`text_decoder`): BERT as in med_config.json.
    public var textHidden: Int
    public var textLayers: Int
    public var decoderLayers: Int
    public var textHeads: Int
    public var textIntermediate: Int
    public var hiddenDropout: Float
    public var attentionDropout: Float
    public var textLayerNormEps: Float
    public var maxPositions: Int
    /// Comes from the tokenizer at run time (30524 upstream: bert-base-uncased + [DEC] + [ENC]).
    public var vocabSize: Int
    /// Std of the N(0, std) initialisation of BERT linears/embeddings (`initializer_range`).
    public var initializerRange: Float

    // Special token ids (from the tokenizer at run time; upstream values by default).
    public var padTokenId: Int32
    public var decTokenId: Int32
    public var sepTokenId: Int32

    // PEFT settings shared by every module (spec §3, peft 0.7.1 defaults used by MILE).
    public var loraAlpha: Float
    public var loraDropout: Float
    public var prefixTokens: Int
    /// Which ViT linears get IA3 vectors; see `ViTIA3Target`. Upstream code for this is unpublished.
    public var vitIA3Target: ViTIA3Target

    enum CodingKeys: String, CodingKey, CaseIterable {
        case imageSize = "image_size"
        case patchSize = "patch_size"
        case visionWidth = "vision_width"
        case visionDepth = "vision_depth"
        case visionHeads = "vision_heads"
        case visionMLP = "vision_mlp"
        case visionLayerNormEps = "vision_ln_eps"
        case dropPathRate = "drop_path_rate"
        case textHidden = "text_hidden"
        case textLayers = "text_layers"
        case decoderLayers = "decoder_layers"
        case textHeads = "text_heads"
        case textIntermediate = "text_intermediate"
        case hiddenDropout = "hidden_dropout"
        case attentionDropout = "attention_dropout"
        case textLayerNormEps = "text_ln_eps"
        case maxPositions = "max_positions"
        case vocabSize = "vocab_size"
        case initializerRange = "initializer_range"
        case padTokenId = "pad_token_id"
        case decTokenId = "dec_token_id"
        case sepTokenId = "sep_token_id"
        case loraAlpha = "lora_alpha"
        case loraDropout = "lora_dropout"
        case prefixTokens = "prefix_tokens"
        case vitIA3Target = "vit_ia3_target"
    }

    /// Number of image tokens the JTM cross-attends to: patches plus CLS.
    public var imageTokens: Int { (imageSize / patchSize) * (imageSize / patchSize) + 1 }

    /// What the JTM's and the decoder's BERT modules read.
    var text: BertConfig {
        BertConfig(hidden: textHidden, heads: textHeads, intermediate: textIntermediate, hiddenDropout: hiddenDropout,
                   attentionDropout: attentionDropout, layerNormEps: textLayerNormEps, initializerRange: initializerRange,
                   vocabSize: vocabSize, maxPositions: maxPositions)
    }

    /// What the ViT's modules read.
    var vision: ViTConfig {
        ViTConfig(width: visionWidth, heads: visionHeads, mlp: visionMLP, depth: visionDepth, patchSize: patchSize,
                  imageTokens: imageTokens, layerNormEps: visionLayerNormEps, initializerRange: initializerRange,
                  dropPathRate: dropPathRate)
    }
}

/// The IA3 target set on the ViT. The paper's 0.061 % (IA3 IA3 IA3) needs 36,864 extra parameters at
/// paper scale; spec §2.2 lists three target sets that give exactly that. Default: `fc2`, treated as a
/// feed-forward module (scales its 3072 input features), the ViT analogue of BERT's FFN `output.dense`.
public enum ViTIA3Target: String, Codable, CaseIterable, Sendable {
    /// `mlp.fc2` as feed-forward: vector [1, mlp] scales the input.
    case fc2
    /// `mlp.fc1` (not feed-forward): vector [mlp, 1] scales the output.
    case fc1
    /// `attn.qkv` and `attn.proj` (not feed-forward): vectors [3w, 1] and [w, 1] scale the outputs.
    case attn
}

/// A family's config type: named presets, overrides by key, JSON in and out.
public protocol PresetConfig: Codable {
    static func preset(_ name: String) throws -> Self
    func applying(_ overrides: [String: Any]) throws -> Self
}

extension PresetConfig {
    /// Loads a config from JSON: either a complete config, or `{"scale": "small", ...overrides}`.
    public static func load(json data: Data) throws -> Self {
        guard var object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ConfigError("model config JSON must be an object")
        }
        let scale = object.removeValue(forKey: "scale") as? String ?? "paper"
        return try preset(scale).applying(object)
    }

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try encoder.encode(self)
    }
}

extension ModelConfig: PresetConfig {}

/// Overrides by JSON key, shared by every family's config type.
enum ConfigKeys {
    /// `base` with `overrides` (flat snake_case keys) replaced; unknown keys and wrongly typed values are
    /// errors that name the key.
    static func applying<C: Codable>(_ overrides: [String: Any], to base: C, known keys: [String], label: String) throws -> C {
        let known = Set(keys)
        if let bad = overrides.keys.sorted().first(where: { !known.contains($0) }) {
            throw ConfigError("unknown \(label) key '\(bad)' (known keys: \(known.sorted().joined(separator: ", ")))")
        }
        var merged = try JSONSerialization.jsonObject(with: JSONEncoder().encode(base)) as? [String: Any] ?? [:]
        for (key, value) in overrides { merged[key] = value }
        let data = try JSONSerialization.data(withJSONObject: merged)
        do {
            return try JSONDecoder().decode(C.self, from: data)
        } catch let DecodingError.typeMismatch(_, context) {
            throw ConfigError("\(label) key '\(context.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type: \(context.debugDescription)")
        } catch let DecodingError.dataCorrupted(context) {
            throw ConfigError("\(label) key '\(context.codingPath.map(\.stringValue).joined(separator: "."))' is invalid: \(context.debugDescription)")
        }
    }
}

public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension ModelConfig {
    /// Names accepted by `preset(_:)`.
    public static let presetNames = ["paper", "small", "smoke"]

    /// `paper`: exactly upstream (ViT-B/16 at 480², two BERT-base, vocab 30524): 361,478,972 parameters.
    public static let paper = ModelConfig(
        imageSize: 480, patchSize: 16, visionWidth: 768, visionDepth: 12, visionHeads: 12, visionMLP: 3072,
        visionLayerNormEps: 1e-6, dropPathRate: 0.1,
        textHidden: 768, textLayers: 12, decoderLayers: 12, textHeads: 12, textIntermediate: 3072,
        hiddenDropout: 0.1, attentionDropout: 0.1, textLayerNormEps: 1e-12, maxPositions: 512,
        vocabSize: 30524, initializerRange: 0.02,
        padTokenId: 0, decTokenId: 30522, sepTokenId: 102,
        loraAlpha: 32, loraDropout: 0.1, prefixTokens: 10, vitIA3Target: .fc2)

    /// `small`: the CPU default. Image 96 (36 patches + CLS), width 192 everywhere, 4+4+4 layers,
    /// 3 heads so the head dim stays 64 as in the paper model, MLP ratio 4. 128 positions cover the
    /// 35-token questions plus the 10-token prefix shift. The vocab is set from the tokenizer at run time.
    public static let small: ModelConfig = {
        var c = paper
        c.imageSize = 96; c.visionWidth = 192; c.visionDepth = 4; c.visionHeads = 3; c.visionMLP = 768
        c.textHidden = 192; c.textLayers = 4; c.decoderLayers = 4; c.textHeads = 3; c.textIntermediate = 768
        c.maxPositions = 128
        return c
    }()

    /// `smoke`: tiny, for tests (seconds). Vocab 100 with special ids inside it.
    public static let smoke: ModelConfig = {
        var c = paper
        c.imageSize = 32; c.visionWidth = 32; c.visionDepth = 2; c.visionHeads = 2; c.visionMLP = 64
        c.textHidden = 32; c.textLayers = 2; c.decoderLayers = 2; c.textHeads = 2; c.textIntermediate = 64
        c.maxPositions = 64; c.vocabSize = 100
        c.padTokenId = 0; c.decTokenId = 98; c.sepTokenId = 3
        return c
    }()

    public static func preset(_ name: String) throws -> ModelConfig {
        switch name.lowercased() {
        case "paper": return paper
        case "small": return small
        case "smoke": return smoke
        default:
            throw ConfigError("unknown model scale '\(name)' (expected one of: \(presetNames.joined(separator: ", ")))")
        }
    }

    /// Returns a copy with the given keys replaced. Unknown keys and wrongly typed values are errors
    /// that name the key; the result is validated.
    public func applying(_ overrides: [String: Any]) throws -> ModelConfig {
        let decoded = try ConfigKeys.applying(overrides, to: self, known: CodingKeys.allCases.map(\.rawValue), label: "model config")
        try decoded.validate()
        return decoded
    }

    public func validate() throws {
        func positive(_ value: Int, _ key: CodingKeys) throws {
            if value <= 0 { throw ConfigError("model config '\(key.rawValue)' must be > 0, got \(value)") }
        }
        try positive(imageSize, .imageSize); try positive(patchSize, .patchSize)
        try positive(visionWidth, .visionWidth); try positive(visionDepth, .visionDepth)
        try positive(visionHeads, .visionHeads); try positive(visionMLP, .visionMLP)
        try positive(textHidden, .textHidden); try positive(textLayers, .textLayers)
        try positive(decoderLayers, .decoderLayers); try positive(textHeads, .textHeads)
        try positive(textIntermediate, .textIntermediate); try positive(maxPositions, .maxPositions)
        try positive(vocabSize, .vocabSize); try positive(prefixTokens, .prefixTokens)
        if imageSize % patchSize != 0 {
            throw ConfigError("image_size \(imageSize) is not a multiple of patch_size \(patchSize)")
        }
        if visionWidth % visionHeads != 0 {
            throw ConfigError("vision_width \(visionWidth) is not divisible by vision_heads \(visionHeads)")
        }
        if textHidden % textHeads != 0 {
            throw ConfigError("text_hidden \(textHidden) is not divisible by text_heads \(textHeads)")
        }
        for (id, key) in [(padTokenId, CodingKeys.padTokenId), (decTokenId, .decTokenId), (sepTokenId, .sepTokenId)]
        where id < 0 || Int(id) >= vocabSize {
            throw ConfigError("model config '\(key.rawValue)' = \(id) is outside the vocabulary (vocab_size \(vocabSize))")
        }
        for (p, key) in [(hiddenDropout, CodingKeys.hiddenDropout), (attentionDropout, .attentionDropout),
                         (loraDropout, .loraDropout), (dropPathRate, .dropPathRate)] where !(p >= 0 && p < 1) {
            throw ConfigError("model config '\(key.rawValue)' must be in [0, 1), got \(p)")
        }
    }
}
