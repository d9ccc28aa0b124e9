/// One named parameter of the (wrapped) model, described by shape only.
public struct ParameterSpec: Equatable, Sendable, CustomStringConvertible {
    public let name: String
    public let shape: [Int]
    /// True for PEFT adapter tensors (LoRA A/B, IA3 vectors, prompt encoders).
    public let isAdapter: Bool
    /// Whether the tensor receives gradients under the assignment.
    public let trainable: Bool

    public var count: Int { shape.reduce(1, *) }
    public var description: String { "\(name) \(shape)\(trainable ? " trainable" : "")" }
}

/// The declarative list of every parameter the MISS model registers, in registration order and with
/// the upstream module paths (`visual_encoder.blocks.3.attn.qkv.weight`, ...). The real modules
/// (`VisionTransformer`, `BertModel`, `BertLMHeadModel`, the PEFT wrappers) register exactly this list;
/// `MileModelTests` checks that at `smoke` scale, so counts from shapes and the model cannot disagree.
/// Tied tensors appear once (the decoder's output projection is its word embedding).
public enum ParameterLayout {
    public static func model(_ c: ModelConfig, _ a: PEFTAssignment) -> [ParameterSpec] {
        vit(c, mode: a.vit, rank: a.rank).prefixed("visual_encoder.")
            + bert(c, layers: c.textLayers, crossWidth: c.visionWidth, mode: a.jtm, rank: a.rank)
                .prefixed("text_encoder.")
            + decoder(c, mode: a.dec, rank: a.rank).prefixed("text_decoder.")
    }

    // MARK: ViT

    public static func vit(_ c: ModelConfig, mode: ModuleMode, rank: Int) -> [ParameterSpec] {
        var list = LayoutBuilder(mode: mode, rank: rank)
        let w = c.visionWidth, p = c.patchSize
        list.base("cls_token", [1, 1, w])
        list.base("pos_embed", [1, c.imageTokens, w])
        // LoRA on the patch-embedding conv (peft's suffix match of `proj` also catches `patch_embed.proj`):
        // A = Conv(3 -> r, p x p), B = Conv(r -> w, 1 x 1), no biases.
        list.base("patch_embed.proj.weight", [w, 3, p, p])
        list.base("patch_embed.proj.bias", [w])
        if mode == .lora {
            list.adapter("patch_embed.proj.lora_A.weight", [rank, 3, p, p])
            list.adapter("patch_embed.proj.lora_B.weight", [w, rank, 1, 1])
        }
        for i in 0..<c.visionDepth {
            let b = "blocks.\(i)."
            list.layerNorm(b + "norm1", w)
            list.linear(b + "attn.qkv", w, 3 * w, lora: true, ia3: vitIA3(c, "attn.qkv"))
            list.linear(b + "attn.proj", w, w, lora: true, ia3: vitIA3(c, "attn.proj"))
            list.layerNorm(b + "norm2", w)
            list.linear(b + "mlp.fc1", w, c.visionMLP, lora: true, ia3: vitIA3(c, "mlp.fc1"))
            list.linear(b + "mlp.fc2", c.visionMLP, w, lora: true, ia3: vitIA3(c, "mlp.fc2"))
        }
        list.layerNorm("norm", w)
        return list.specs
    }

    /// The IA3 role of a ViT linear under the configured target set (nil = not targeted).
    static func vitIA3(_ c: ModelConfig, _ path: String) -> IA3Role? {
        switch (c.vitIA3Target, path) {
        case (.fc2, "mlp.fc2"): return .scaleInput
        case (.fc1, "mlp.fc1"): return .scaleOutput
        case (.attn, "attn.qkv"), (.attn, "attn.proj"): return .scaleOutput
        default: return nil
        }
    }

    // MARK: BERT (JTM and the decoder's `bert.`)

    /// BLIP's `BertModel` without token types or pooler; every layer has cross-attention whose K/V
    /// read `crossWidth` features. PEFT targets follow peft 0.7.1's BERT defaults (spec §3).
    public static func bert(_ c: ModelConfig, layers: Int, crossWidth: Int, mode: ModuleMode, rank: Int,
                            withPrompt: Bool = true) -> [ParameterSpec] {
        var list = LayoutBuilder(mode: mode, rank: rank)
        let h = c.textHidden
        list.base("embeddings.word_embeddings.weight", [c.vocabSize, h])
        list.base("embeddings.position_embeddings.weight", [c.maxPositions, h])
        list.layerNorm("embeddings.LayerNorm", h)
        for i in 0..<layers {
            let l = "encoder.layer.\(i)."
            for (block, kvIn) in [("attention", h), ("crossattention", crossWidth)] {
                list.linear(l + block + ".self.query", h, h, lora: true, ia3: nil)
                list.linear(l + block + ".self.key", kvIn, h, lora: false, ia3: .scaleOutput)
                list.linear(l + block + ".self.value", kvIn, h, lora: true, ia3: .scaleOutput)
                // `output.dense` matches IA3's feed-forward list by suffix, so it scales its input.
                list.linear(l + block + ".output.dense", h, h, lora: false, ia3: .scaleInput)
                list.layerNorm(l + block + ".output.LayerNorm", h)
            }
            list.linear(l + "intermediate.dense", h, c.textIntermediate, lora: false, ia3: nil)
            list.linear(l + "output.dense", c.textIntermediate, h, lora: false, ia3: .scaleInput)
            list.layerNorm(l + "output.LayerNorm", h)
        }
        if withPrompt { list.promptEncoder(c, layers: layers) }
        return list.specs
    }

    /// BLIP's `BertLMHeadModel`: `bert.` plus the MLM head; the output projection is tied to
    /// `bert.embeddings.word_embeddings.weight`, so only the head's bias is new.
    public static func decoder(_ c: ModelConfig, mode: ModuleMode, rank: Int) -> [ParameterSpec] {
        var list = LayoutBuilder(mode: mode, rank: rank)
        list.specs = bert(c, layers: c.decoderLayers, crossWidth: c.textHidden, mode: mode, rank: rank,
                          withPrompt: false).prefixed("bert.")
        let h = c.textHidden
        list.base("cls.predictions.bias", [c.vocabSize])
        list.linear("cls.predictions.transform.dense", h, h, lora: false, ia3: nil)
        list.layerNorm("cls.predictions.transform.LayerNorm", h)
        list.promptEncoder(c, layers: c.decoderLayers)
        return list.specs
    }
}

/// How an IA3 vector acts on a linear (peft 0.7.1): feed-forward targets scale the input features
/// (vector [1, in]); the others scale the output features (vector [out, 1]).
public enum IA3Role: Sendable { case scaleInput, scaleOutput }

/// Accumulates specs and decides trainability from the module mode.
struct LayoutBuilder {
    let mode: ModuleMode
    let rank: Int
    var specs: [ParameterSpec] = []

    mutating func base(_ name: String, _ shape: [Int]) {
        specs.append(ParameterSpec(name: name, shape: shape, isAdapter: false, trainable: mode.trainsBase))
    }

    mutating func adapter(_ name: String, _ shape: [Int]) {
        specs.append(ParameterSpec(name: name, shape: shape, isAdapter: true, trainable: true))
    }

    mutating func layerNorm(_ path: String, _ d: Int) {
        base(path + ".weight", [d]); base(path + ".bias", [d])
    }

    /// A Linear(in, out) with bias, plus its adapters when the module mode targets it.
    mutating func linear(_ path: String, _ inF: Int, _ outF: Int, lora: Bool, ia3: IA3Role?) {
        base(path + ".weight", [outF, inF]); base(path + ".bias", [outF])
        if mode == .lora && lora {
            adapter(path + ".lora_A.weight", [rank, inF])
            adapter(path + ".lora_B.weight", [outF, rank])
        }
        if mode == .ia3, let role = ia3 {
            adapter(path + ".ia3_l", role == .scaleInput ? [1, inF] : [outF, 1])
        }
    }

    /// peft's PrefixEncoder: Embedding(n, d) -> Linear(d, d) -> Tanh -> Linear(d, layers*2*d) for
    /// prefix tuning; a single Embedding(n, layers*2*d) for P-tuning v2.
    mutating func promptEncoder(_ c: ModelConfig, layers: Int) {
        let d = c.textHidden, n = c.prefixTokens, out = layers * 2 * d
        switch mode {
        case .prefix:
            adapter("prompt_encoder.embedding.weight", [n, d])
            adapter("prompt_encoder.transform.0.weight", [d, d])
            adapter("prompt_encoder.transform.0.bias", [d])
            adapter("prompt_encoder.transform.2.weight", [out, d])
            adapter("prompt_encoder.transform.2.bias", [out])
        case .ptv2:
            adapter("prompt_encoder.embedding.weight", [n, out])
        default:
            break
        }
    }
}

extension Array where Element == ParameterSpec {
    func prefixed(_ prefix: String) -> [ParameterSpec] {
        map { ParameterSpec(name: prefix + $0.name, shape: $0.shape, isAdapter: $0.isAdapter, trainable: $0.trainable) }
    }
}
