import Engine

/// Keys and values of one attention, in the [B, S, d] layout of the projections (heads are read in place by
/// `headScores` / `headContext`): a decoder layer's prompt prefix and self-attention cache, or the
/// cross-attention projections of the encoder states.
struct OFAKeyValues {
    let key: Tensor
    let value: Tensor

    /// `earlier` in front of these along the sequence axis.
    func after(_ earlier: OFAKeyValues?) -> OFAKeyValues {
        guard let earlier else { return self }
        return OFAKeyValues(key: concat([earlier.key, key], axis: 1), value: concat([earlier.value, value], axis: 1))
    }
}

/// A linear that PEFT can adapt (`AdaptedLinear`) with fairseq's init: Xavier-uniform weight
/// (`gain` 1/√2 for q/k/v as `MultiheadAttention.reset_parameters`), zero bias.
func xavierLinear(_ inF: Int, _ outF: Int, gain: Float = 1, random: RandomSource) -> AdaptedLinear {
    let layer = AdaptedLinear(inF, outF, std: 0, random: random)
    let bound = gain * (6 / Float(inF + outF)).squareRoot()
    layer.weight.copy(from: Tensor.uniform([outF, inF], low: -bound, high: bound, rng: &random.rng))
    return layer
}

/// fairseq's `Embedding`: N(0, d^-1/2), the padding row zero; `zeroInit` for the relative-position tables.
func fairseqEmbedding(_ count: Int, _ d: Int, padding: Int? = nil, zeroInit: Bool = false, random: RandomSource) -> Embedding {
    let table = Embedding(count, d, rng: &random.rng)
    if zeroInit {
        table.weight.copy(from: Tensor.zeros([count, d]))
    } else {
        var values = Tensor.randn([count, d], std: 1 / Float(d).squareRoot(), rng: &random.rng)
        if let padding, !values.isMeta {
            var scalars = values.scalars
            for j in 0..<d { scalars[padding * d + j] = 0 }
            values = Tensor(shape: [count, d], scalars: scalars)
        }
        table.weight.copy(from: values)
    }
    return table
}

/// Stochastic depth on a residual branch x [B, ...] (OFA's `drop_path`): zero a whole sample's branch with
/// probability p, scale survivors by 1/(1-p).
func dropPath(_ x: Tensor, _ p: Float, _ random: RandomSource, training: Bool) -> Tensor {
    guard training, p > 0 else { return x }
    let batch = x.shape[0], keep = 1 - p
    let mask = (0..<batch).map { _ in random.rng.nextFloat() < keep ? 1 / keep : 0 }
    return x * Tensor(shape: [batch] + Array(repeating: 1, count: x.shape.count - 1), scalars: mask)
}

/// OFA's `MultiheadAttention` (`self_attn`, `cross_attn`): q/k/v/out projections, scores scaled by
/// (head dim · attn_scale_factor)^-1/2, an additive bias (position biases and masks, one tensor) on the
/// scores, attention dropout, and the NormFormer per-head scale `c_attn` on the context before `out_proj`.
final class OFAAttention: Module {
    let cAttn: Tensor
    let kProj: AdaptedLinear
    let vProj: AdaptedLinear
    let qProj: AdaptedLinear
    let outProj: AdaptedLinear
    let heads: Int
    let scaling: Float
    let dropoutP: Float
    let random: RandomSource

    init(_ c: OFAConfig, random: RandomSource) {
        let d = c.dModel, gain = 1 / Float(2).squareRoot()
        cAttn = Tensor.ones([c.attentionHeads])
        kProj = xavierLinear(d, d, gain: gain, random: random)
        vProj = xavierLinear(d, d, gain: gain, random: random)
        qProj = xavierLinear(d, d, gain: gain, random: random)
        outProj = xavierLinear(d, d, random: random)
        heads = c.attentionHeads
        scaling = 1 / (Float(c.headDim) * c.attnScaleFactor).squareRoot()
        dropoutP = c.attentionDropout
        self.random = random
        super.init()
        register(parameter: "c_attn", cAttn)
        register("k_proj", kProj)
        register("v_proj", vProj)
        register("q_proj", qProj)
        register("out_proj", outProj)
    }

    /// Keys and values of `source` [B, S, d].
    func keysValues(_ source: Tensor) -> OFAKeyValues { OFAKeyValues(key: kProj(source), value: vProj(source)) }

    /// x [B, T, d] attends to `kv` [B, S, d]; `bias` broadcastable to [B, H, T, S] is added to the scaled
    /// scores (it carries the -10000 mask entries too). -> [B, T, d].
    func callAsFunction(_ x: Tensor, _ kv: OFAKeyValues, bias: Tensor?) -> Tensor {
        let q = qProj(x)
        let (b, t, d) = (q.shape[0], q.shape[1], q.shape[2]), dh = d / heads
        let scores = headScores(HeadView(q), HeadView(kv.key), heads: heads, headDim: dh, alpha: scaling)
        let probs = drop(softmax(scores, mask: bias), dropoutP, random, training: training)
        let context = headContext(probs, HeadView(kv.value), heads: heads, headDim: dh)
        let scaled = reshape(reshape(context, [b, t, heads, dh]) * reshape(cAttn, [heads, 1]), [b, t, d])
        return outProj(scaled)
    }
}

/// Per layer, the zero-initialised relative-position bias tables (`token_rel_pos_table_list.N`,
/// `image_rel_pos_table_list.N`), one bias per head: the encoder and the decoder have the same.
func relativePositionTables(_ c: OFAConfig, layers n: Int, random: RandomSource) -> (token: ModuleList<Embedding>, image: ModuleList<Embedding>) {
    let token = ModuleList((0..<n).map { _ in
        fairseqEmbedding(OFABuckets.tokenRows(c.tokenBucketSize), c.attentionHeads, zeroInit: true, random: random)
    })
    let image = ModuleList((0..<n).map { _ in
        fairseqEmbedding(OFABuckets.imageRows(c.imageBucketSize), c.attentionHeads, zeroInit: true, random: random)
    })
    return (token, image)
}

/// An attention half of a NormFormer layer added to the residual: x + DropPath(dropout(mid_ln(branch))).
private func attentionResidual(_ x: Tensor, _ branch: Tensor, midNorm: LayerNorm,
                               _ c: (dropout: Float, activation: Float, dropPath: Float), _ random: RandomSource,
                               training: Bool) -> Tensor {
    x + dropPath(drop(midNorm(branch), c.dropout, random, training: training), c.dropPath, random, training: training)
}

/// The FFN half of a NormFormer layer: final_layer_norm -> fc1 -> GELU -> activation dropout ->
/// ffn_layer_norm -> fc2 -> dropout, added to the residual through drop path.
private func feedForward(_ x: Tensor, norm: LayerNorm, fc1: AdaptedLinear, ffnNorm: LayerNorm, fc2: AdaptedLinear,
                         _ c: (dropout: Float, activation: Float, dropPath: Float), _ random: RandomSource,
                         training: Bool) -> Tensor {
    var h = drop(gelu(fc1(norm(x))), c.activation, random, training: training)
    h = drop(fc2(ffnNorm(h)), c.dropout, random, training: training)
    return x + dropPath(h, c.dropPath, random, training: training)
}

/// `encoder.layers.N` (pre-LN NormFormer): x + DropPath(dropout(mid_ln(attn(ln(x))))), then the FFN.
final class OFAEncoderLayer: Module {
    let selfAttn: OFAAttention
    let selfAttnLayerNorm: LayerNorm
    let selfAttnMidLayerNorm: LayerNorm
    let fc1: AdaptedLinear
    let fc2: AdaptedLinear
    let ffnLayerNorm: LayerNorm
    let finalLayerNorm: LayerNorm
    let rates: (dropout: Float, activation: Float, dropPath: Float)
    let random: RandomSource

    init(_ c: OFAConfig, dropPath: Float, random: RandomSource) {
        let d = c.dModel, eps = c.layerNormEps
        selfAttn = OFAAttention(c, random: random)
        selfAttnLayerNorm = LayerNorm(d, eps: eps)
        selfAttnMidLayerNorm = LayerNorm(d, eps: eps)
        fc1 = xavierLinear(d, c.ffnDim, random: random)
        fc2 = xavierLinear(c.ffnDim, d, random: random)
        ffnLayerNorm = LayerNorm(c.ffnDim, eps: eps)
        finalLayerNorm = LayerNorm(d, eps: eps)
        rates = (c.dropout, c.activationDropout, dropPath)
        self.random = random
        super.init()
        register("self_attn", selfAttn)
        register("self_attn_layer_norm", selfAttnLayerNorm)
        register("self_attn_mid_layer_norm", selfAttnMidLayerNorm)
        register("fc1", fc1)
        register("fc2", fc2)
        register("ffn_layer_norm", ffnLayerNorm)
        register("final_layer_norm", finalLayerNorm)
    }

    func callAsFunction(_ x: Tensor, bias: Tensor?) -> Tensor {
        let h = selfAttnLayerNorm(x)
        let s = attentionResidual(x, selfAttn(h, selfAttn.keysValues(h), bias: bias), midNorm: selfAttnMidLayerNorm,
                                  rates, random, training: training)
        return feedForward(s, norm: finalLayerNorm, fc1: fc1, ffnNorm: ffnLayerNorm, fc2: fc2, rates, random,
                           training: training)
    }
}

/// `decoder.layers.N`: self-attention (prompt prefix / cache K/V in front), cross-attention to the
/// encoder, FFN; each pre-LN with its NormFormer mid LayerNorm.
final class OFADecoderLayer: Module {
    let selfAttn: OFAAttention
    let selfAttnLayerNorm: LayerNorm
    let selfAttnMidLayerNorm: LayerNorm
    let crossAttn: OFAAttention
    let crossAttnLayerNorm: LayerNorm
    let crossAttnMidLayerNorm: LayerNorm
    let fc1: AdaptedLinear
    let fc2: AdaptedLinear
    let ffnLayerNorm: LayerNorm
    let finalLayerNorm: LayerNorm
    let rates: (dropout: Float, activation: Float, dropPath: Float)
    let random: RandomSource

    init(_ c: OFAConfig, dropPath: Float, random: RandomSource) {
        let d = c.dModel, eps = c.layerNormEps
        selfAttn = OFAAttention(c, random: random)
        selfAttnLayerNorm = LayerNorm(d, eps: eps)
        selfAttnMidLayerNorm = LayerNorm(d, eps: eps)
        crossAttn = OFAAttention(c, random: random)
        crossAttnLayerNorm = LayerNorm(d, eps: eps)
        crossAttnMidLayerNorm = LayerNorm(d, eps: eps)
        fc1 = xavierLinear(d, c.ffnDim, random: random)
        fc2 = xavierLinear(c.ffnDim, d, random: random)
        ffnLayerNorm = LayerNorm(c.ffnDim, eps: eps)
        finalLayerNorm = LayerNorm(d, eps: eps)
        rates = (c.dropout, c.activationDropout, dropPath)
        self.random = random
        super.init()
        register("self_attn", selfAttn)
        register("self_attn_layer_norm", selfAttnLayerNorm)
        register("self_attn_mid_layer_norm", selfAttnMidLayerNorm)
        register("cross_attn", crossAttn)
        register("cross_attn_layer_norm", crossAttnLayerNorm)
        register("cross_attn_mid_layer_norm", crossAttnMidLayerNorm)
        register("fc1", fc1)
        register("fc2", fc2)
        register("ffn_layer_norm", ffnLayerNorm)
        register("final_layer_norm", finalLayerNorm)
    }

    /// x [B, T, d]; `earlier`: K/V [B, n, d] in front of the new ones (the prompt prefix and/or the tokens
    /// decoded so far); `selfBias` broadcastable to [B, H, T, n + T]; `cross` the encoder's K/V for this
    /// layer with `crossBias`. Returns the output and the self-attention K/V including `earlier`.
    func callAsFunction(_ x: Tensor, earlier: OFAKeyValues?, selfBias: Tensor?, cross: OFAKeyValues,
                        crossBias: Tensor?) -> (Tensor, OFAKeyValues) {
        let h = selfAttnLayerNorm(x)
        let present = selfAttn.keysValues(h).after(earlier)
        let s = attentionResidual(x, selfAttn(h, present, bias: selfBias), midNorm: selfAttnMidLayerNorm, rates, random,
                                  training: training)
        let r = attentionResidual(s, crossAttn(crossAttnLayerNorm(s), cross, bias: crossBias), midNorm: crossAttnMidLayerNorm,
                                  rates, random, training: training)
        return (feedForward(r, norm: finalLayerNorm, fc1: fc1, ffnNorm: ffnLayerNorm, fc2: fc2, rates, random,
                            training: training), present)
    }
}
