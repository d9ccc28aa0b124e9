import Foundation

/// Every dimension of OFA / BiomedGPT-Tiny (Table 5's model): the ResNet image stem, the unified
/// encoder-decoder Transformer, and the PEFT settings. JSON keys are flat snake_case, as `ModelConfig`'s,
/// so an experiment file can override any of them (`OFAConfig.preset("small").applying(["vocab_size": 1200])`).
///
/// Names follow the HF port's `OFAConfig` where one exists (`d_model`, `encoder_layers`, `token_bucket_size`,
/// `attn_scale_factor`, ...). The NormFormer extras (`self_attn_mid_layer_norm`, `ffn_layer_norm`,
/// `c_attn`), the type embedding, `layernorm_embedding` / `patch_layernorm_embedding` /
/// `code_layernorm_embedding`, disentangled positions and the tied embedding are always on, as in every
/// published OFA checkpoint and BiomedGPT's VQA flags.
public struct OFAConfig: PresetConfig, Equatable, Sendable {
    /// Side of the square input image.
    public var imageSize: Int
    /// Bottleneck blocks of the three ResNet stages (`[3, 4, 6]`: ResNet-50 stages 1-3, as OFA's `resnet50`).
    public var resnetLayers: [Int]
    /// Stem width (torchvision's 64); stage k has `resnet_width · 2^(k-1)` bottleneck planes, the output has
    /// `16 · resnet_width` channels (1024 for ResNet-50), the input of `image_proj`.
    public var resnetWidth: Int

    /// Transformer width (`d_model`), depths, heads (encoder and decoder alike) and FFN width.
    public var dModel: Int
    public var encoderLayers: Int
    public var decoderLayers: Int
    public var attentionHeads: Int
    public var ffnDim: Int
    public var layerNormEps: Float
    /// `attn_scale_factor`: attention scores (and the position biases) are scaled by (head dim · factor)^-1/2.
    public var attnScaleFactor: Float
    /// Text relative-position buckets (`token_bucket_size`: 2·size − 1 table rows per layer).
    public var tokenBucketSize: Int
    /// Image relative-position grid (`image_bucket_size`: (2·size − 1)² + 3 table rows per layer); the
    /// ResNet's output grid must fit in it.
    public var imageBucketSize: Int
    /// Text positions of the encoder and decoder (`max_position_embeddings`; the tables have 2 more rows).
    public var maxPositions: Int

    /// Comes from the tokenizer at run time (59,457 for OFA's BPE vocabulary).
    public var vocabSize: Int
    /// Special ids. OFA's dictionary has bos 0, pad 1, eos 2; with the project's tokenizer the harness sets
    /// bos = `[DEC]`, eos = `[SEP]`, pad = `[PAD]` (the ids `MISSModel` uses), so both families read the
    /// same token batches.
    public var padTokenId: Int32
    public var bosTokenId: Int32
    public var eosTokenId: Int32

    /// BiomedGPT's VQA recipe: dropout 0.1, attention dropout 0, activation dropout 0, stochastic depth 0.1
    /// in the encoder and decoder layers (rising linearly from 0 over the layers), none in the ResNet.
    public var dropout: Float
    public var attentionDropout: Float
    public var activationDropout: Float
    public var dropPathRate: Float

    /// PEFT settings (MILE's peft 0.7.1 values, as `ModelConfig`).
    public var loraAlpha: Float
    public var loraDropout: Float
    public var prefixTokens: Int

    enum CodingKeys: String, CodingKey, CaseIterable {
        case imageSize = "image_size"
        case resnetLayers = "resnet_layers"
        case resnetWidth = "resnet_width"
        case dModel = "d_model"
        case encoderLayers = "encoder_layers"
        case decoderLayers = "decoder_layers"
        case attentionHeads = "attention_heads"
        case ffnDim = "ffn_dim"
        case layerNormEps = "layer_norm_eps"
        case attnScaleFactor = "attn_scale_factor"
        case tokenBucketSize = "token_bucket_size"
        case imageBucketSize = "image_bucket_size"
        case maxPositions = "max_positions"
        case vocabSize = "vocab_size"
        case padTokenId = "pad_token_id"
        case bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id"
        case dropout = "dropout"
        case attentionDropout = "attention_dropout"
        case activationDropout = "activation_dropout"
        case dropPathRate = "drop_path_rate"
        case loraAlpha = "lora_alpha"
        case loraDropout = "lora_dropout"
        case prefixTokens = "prefix_tokens"
    }

    /// Channels of the ResNet's output (the input width of `image_proj`).
    public var resnetChannels: Int { resnetWidth * 16 }
    /// Side of the ResNet's output grid: four stride-2 steps (stem conv, max pool, stages 2 and 3).
    public var imageGrid: Int {
        var side = imageSize
        for _ in 0..<4 { side = (side - 1) / 2 + 1 }
        return side
    }
    /// Image tokens of the encoder: one per cell of the ResNet's output grid.
    public var imageTokens: Int { imageGrid * imageGrid }
    public var headDim: Int { dModel / attentionHeads }
}

extension OFAConfig {
    /// Names accepted by `preset(_:)`.
    public static let presetNames = ["paper", "small", "smoke"]

    /// `paper`: OFA-tiny / BiomedGPT-Tiny exactly (HF hub `OFA-Sys/ofa-tiny`, fairseq `ofa_tiny`): ResNet-50
    /// stages 1-3, d 256, 4+4 layers, 4 heads, FFN 1024, 256² images (16² = 256 image tokens), vocab
    /// 59,457: 33,488,336 parameters (the tied embedding once).
    public static let paper = OFAConfig(
        imageSize: 256, resnetLayers: [3, 4, 6], resnetWidth: 64,
        dModel: 256, encoderLayers: 4, decoderLayers: 4, attentionHeads: 4, ffnDim: 1024, layerNormEps: 1e-5,
        attnScaleFactor: 2, tokenBucketSize: 256, imageBucketSize: 42, maxPositions: 1024,
        vocabSize: 59457, padTokenId: 1, bosTokenId: 0, eosTokenId: 2,
        dropout: 0.1, attentionDropout: 0, activationDropout: 0, dropPathRate: 0.1,
        loraAlpha: 32, loraDropout: 0.1, prefixTokens: 10)

    /// `small`: the CPU default for real runs (Table 5 at CPU scale). Images 96² as MISS-small (a 6×6 grid:
    /// 36 image tokens, like MISS-small's 36 patches); a ResNet of one bottleneck per stage at base width 8
    /// (planes 8 / 16 / 32, 128 output channels; all three stages, their BatchNorms and the stem kept, so the
    /// image path is OFA's at 1/8 of its width); d 128 with 2 heads (head dim 64 as OFA-tiny), 4+4 layers as
    /// OFA-tiny, FFN 512; 128 text positions (the 35-token questions); token buckets 64 (exact relative
    /// positions up to ±32, log-spaced beyond) and the grid's own 6 image buckets. The vocab (30,524) and
    /// special ids are the project tokenizer's, set at run time. 5,967,824 parameters. Sized for ~12 ms per
    /// sample (forward, backward and AdamW, batch 20, one thread: measured 12.9-15.6 ms on a loaded host,
    /// where d 192 took ~24 ms and MISS-small 24-30 ms), so that Table 5 (a pretraining plus five
    /// fine-tuning cells) fits 30 minutes on two cores.
    public static let small: OFAConfig = {
        var c = paper
        c.imageSize = 96; c.resnetLayers = [1, 1, 1]; c.resnetWidth = 8
        c.dModel = 128; c.attentionHeads = 2; c.ffnDim = 512
        c.tokenBucketSize = 64; c.imageBucketSize = 6; c.maxPositions = 128
        c.vocabSize = 30524; c.padTokenId = 0; c.bosTokenId = 30522; c.eosTokenId = 102
        return c
    }()

    /// `smoke`: tiny, for tests (seconds). 32² images (a 2×2 grid), vocab 100 with the special ids of
    /// `ModelConfig.smoke` (pad 0, bos = `[DEC]` 98, eos = `[SEP]` 3).
    public static let smoke: OFAConfig = {
        var c = paper
        c.imageSize = 32; c.resnetLayers = [1, 1, 1]; c.resnetWidth = 4
        c.dModel = 32; c.encoderLayers = 2; c.decoderLayers = 2; c.attentionHeads = 2; c.ffnDim = 64
        c.tokenBucketSize = 16; c.imageBucketSize = 4; c.maxPositions = 64
        c.vocabSize = 100; c.padTokenId = 0; c.bosTokenId = 98; c.eosTokenId = 3
        return c
    }()

    public static func preset(_ name: String) throws -> OFAConfig {
        switch name.lowercased() {
        case "paper": return paper
        case "small": return small
        case "smoke": return smoke
        default:
            throw ConfigError("unknown OFA model scale '\(name)' (expected one of: \(presetNames.joined(separator: ", ")))")
        }
    }

    /// Returns a copy with the given keys replaced. Unknown keys and wrongly typed values are errors
    /// that name the key; the result is validated.
    public func applying(_ overrides: [String: Any]) throws -> OFAConfig {
        let decoded = try ConfigKeys.applying(overrides, to: self, known: CodingKeys.allCases.map(\.rawValue), label: "OFA model config")
        try decoded.validate()
        return decoded
    }

    public func validate() throws {
        func positive(_ value: Int, _ key: CodingKeys) throws {
            if value <= 0 { throw ConfigError("OFA model config '\(key.rawValue)' must be > 0, got \(value)") }
        }
        try positive(imageSize, .imageSize); try positive(resnetWidth, .resnetWidth)
        try positive(dModel, .dModel); try positive(encoderLayers, .encoderLayers)
        try positive(decoderLayers, .decoderLayers); try positive(attentionHeads, .attentionHeads)
        try positive(ffnDim, .ffnDim); try positive(tokenBucketSize, .tokenBucketSize)
        try positive(imageBucketSize, .imageBucketSize); try positive(maxPositions, .maxPositions)
        try positive(vocabSize, .vocabSize); try positive(prefixTokens, .prefixTokens)
        if resnetLayers.count != 3 || resnetLayers.contains(where: { $0 <= 0 }) {
            throw ConfigError("OFA model config 'resnet_layers' must be three positive block counts (stages 1-3), got \(resnetLayers)")
        }
        if dModel % attentionHeads != 0 {
            throw ConfigError("OFA model config 'd_model' \(dModel) is not divisible by 'attention_heads' \(attentionHeads)")
        }
        if tokenBucketSize < 2 {
            throw ConfigError("OFA model config 'token_bucket_size' must be >= 2, got \(tokenBucketSize)")
        }
        if imageGrid > imageBucketSize {
            throw ConfigError("OFA model config 'image_bucket_size' \(imageBucketSize) is smaller than the \(imageGrid)×\(imageGrid) image grid of image_size \(imageSize)")
        }
        if !(attnScaleFactor > 0) {
            throw ConfigError("OFA model config 'attn_scale_factor' must be > 0, got \(attnScaleFactor)")
        }
        for (id, key) in [(padTokenId, CodingKeys.padTokenId), (bosTokenId, .bosTokenId), (eosTokenId, .eosTokenId)]
        where id < 0 || Int(id) >= vocabSize {
            throw ConfigError("OFA model config '\(key.rawValue)' = \(id) is outside the vocabulary (vocab_size \(vocabSize))")
        }
        for (p, key) in [(dropout, CodingKeys.dropout), (attentionDropout, .attentionDropout),
                         (activationDropout, .activationDropout), (dropPathRate, .dropPathRate),
                         (loraDropout, .loraDropout)] where !(p >= 0 && p < 1) {
            throw ConfigError("OFA model config '\(key.rawValue)' must be in [0, 1), got \(p)")
        }
    }
}
