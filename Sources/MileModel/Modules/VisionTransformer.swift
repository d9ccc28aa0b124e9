import Engine

/// The dims BLIP's ViT reads, not the whole MISS config (`ModelConfig.vision`).
struct ViTConfig {
    let width: Int
    let heads: Int
    let mlp: Int
    let depth: Int
    let patchSize: Int
    let imageTokens: Int
    let layerNormEps: Float
    let initializerRange: Float
    let dropPathRate: Float
}

/// `patch_embed.proj`: Conv2d(3, w, p, stride p), optionally with peft's LoRA for Conv2d:
/// A = Conv2d(3, r, p, stride p) (kaiming-uniform), B = Conv2d(r, w, 1x1) (zero), no biases.
final class PatchProjection: Module, AdaptableLayer {
    let weight: Tensor
    let bias: Tensor
    let patch: Int
    private(set) var lora: LoRA?
    let random: RandomSource

    init(width: Int, patch: Int, std: Float, random: RandomSource) {
        self.patch = patch
        self.random = random
        weight = Tensor.randn([width, 3, patch, patch], std: std, rng: &random.rng)
        bias = Tensor.zeros([width])
        super.init()
        register(parameter: "weight", weight)
        register(parameter: "bias", bias)
    }

    func addLoRA(rank: Int, alpha: Float, dropout: Float) {
        lora = LoRA(host: self, aShape: [rank, 3, patch, patch], outFeatures: weight.shape[0], alpha: alpha,
                    dropout: dropout, rng: &random.rng)
    }

    func addIA3(_ role: IA3Role) throws {
        throw ConfigError("IA3 on the patch-embedding conv is not supported (peft 0.7.1 has no IA3 for Conv2d here)")
    }

    /// image [B, 3, S, S] -> tokens [B, (S/p)^2, w]
    func callAsFunction(_ image: Tensor) -> Tensor {
        let out = patchConv(image, weight: weight, bias: bias, patch: patch)
        guard let lora, !lora.merged else { return out }
        return out + lora.update(image, random: random, training: training) { [patch] in
            patchConv($0, weight: $1, bias: nil, patch: patch)   // [B, N, r]; B is the 1x1 conv
        }
    }
}

final class PatchEmbed: Module {
    let proj: PatchProjection
    init(_ c: ViTConfig, random: RandomSource) {
        proj = PatchProjection(width: c.width, patch: c.patchSize, std: c.initializerRange, random: random)
        super.init()
        register("proj", proj)
    }
}

final class ViTAttention: Module {
    let qkv: AdaptedLinear
    let proj: AdaptedLinear
    let heads: Int
    init(_ c: ViTConfig, random: RandomSource) {
        let w = c.width
        heads = c.heads
        qkv = AdaptedLinear(w, 3 * w, std: c.initializerRange, random: random)
        proj = AdaptedLinear(w, w, std: c.initializerRange, random: random)
        super.init()
        register("qkv", qkv)
        register("proj", proj)
    }

    /// x [B, T, w]; timm's layout: qkv output is [3][heads][head dim].
    func callAsFunction(_ x: Tensor) -> Tensor {
        let w = x.shape[2]
        let packed = qkv(x), dh = w / heads
        // q, k and v are read in place from the packed [B, T, 3w] output (no slices or head copies).
        let scores = headScores(HeadView(packed), HeadView(packed, column: w), heads: heads, headDim: dh,
                                alpha: 1 / Float(dh).squareRoot())
        return proj(headContext(softmax(scores, mask: nil), HeadView(packed, column: 2 * w), heads: heads, headDim: dh))
    }
}

final class ViTMLP: Module {
    let fc1: AdaptedLinear
    let fc2: AdaptedLinear
    init(_ c: ViTConfig, random: RandomSource) {
        fc1 = AdaptedLinear(c.width, c.mlp, std: c.initializerRange, random: random)
        fc2 = AdaptedLinear(c.mlp, c.width, std: c.initializerRange, random: random)
        super.init()
        register("fc1", fc1)
        register("fc2", fc2)
    }
    func callAsFunction(_ x: Tensor) -> Tensor { fc2(geluOf: fc1(x)) }
}

/// Pre-LN block: x + DropPath(attn(norm1 x)); x + DropPath(mlp(norm2 x)).
final class ViTBlock: Module {
    let norm1: LayerNorm
    let attn: ViTAttention
    let norm2: LayerNorm
    let mlp: ViTMLP
    let dropPath: Float
    let random: RandomSource

    init(_ c: ViTConfig, dropPath: Float, random: RandomSource) {
        norm1 = LayerNorm(c.width, eps: c.layerNormEps)
        attn = ViTAttention(c, random: random)
        norm2 = LayerNorm(c.width, eps: c.layerNormEps)
        mlp = ViTMLP(c, random: random)
        self.dropPath = dropPath
        self.random = random
        super.init()
        register("norm1", norm1)
        register("attn", attn)
        register("norm2", norm2)
        register("mlp", mlp)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = x + stochasticDepth(attn(norm1(x)))
        return h + stochasticDepth(mlp(norm2(h)))
    }

    /// timm's drop_path: zero a whole sample's branch with probability p, scale survivors by 1/(1-p).
    private func stochasticDepth(_ branch: Tensor) -> Tensor {
        guard training, dropPath > 0 else { return branch }
        let batch = branch.shape[0], keep = 1 - dropPath
        let mask = (0..<batch).map { _ in random.rng.nextFloat() < keep ? 1 / keep : 0 }
        return branch * Tensor(shape: [batch] + Array(repeating: 1, count: branch.shape.count - 1), scalars: mask)
    }
}

/// BLIP's `VisionTransformer` (`visual_encoder`): patch conv, CLS token, learned positions,
/// pre-LN blocks, final LayerNorm; no head. Output [B, 1 + patches, w] (all tokens go to the JTM).
final class VisionTransformer: Module {
    let clsToken: Tensor
    let posEmbed: Tensor
    let patchEmbed: PatchEmbed
    let blocks: ModuleList<ViTBlock>
    let norm: LayerNorm

    init(_ c: ViTConfig, random: RandomSource) {
        let w = c.width
        clsToken = Tensor.randn([1, 1, w], std: c.initializerRange, rng: &random.rng)
        posEmbed = Tensor.randn([1, c.imageTokens, w], std: c.initializerRange, rng: &random.rng)
        patchEmbed = PatchEmbed(c, random: random)
        // Stochastic depth rises linearly 0 ... rate over the blocks (torch.linspace).
        let depth = c.depth
        blocks = ModuleList(stochasticDepthRates(c.dropPathRate, layers: depth).map { rate in
            ViTBlock(c, dropPath: rate, random: random)
        })
        norm = LayerNorm(w, eps: c.layerNormEps)
        super.init()
        register(parameter: "cls_token", clsToken)
        register(parameter: "pos_embed", posEmbed)
        register("patch_embed", patchEmbed)
        register("blocks", blocks)
        register("norm", norm)
    }

    func callAsFunction(_ image: Tensor) -> Tensor {
        let patches = patchEmbed.proj(image)
        let batch = patches.shape[0], w = patches.shape[2]
        let cls = clsToken + Tensor.zeros([batch, 1, w])   // expand over the batch (grads sum back)
        var x = concat([cls, patches], axis: 1) + posEmbed
        for block in blocks.items { x = block(x) }
        return norm(x)
    }
}
