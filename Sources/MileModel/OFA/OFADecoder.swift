import Engine

/// OFA's `TransformerDecoder` / HF `OFADecoder` (`decoder`) for text targets:
/// - x = `layernorm_embedding`(`embed_tokens`(ids)) (scale 1, no type embedding), dropout;
/// - self-attention bias = disentangled positions ((self_pos_q_linear(p) · scale)(self_pos_k_linear(p))ᵀ,
///   p = pos_ln(embed_positions(0 ..< T))) + `token_rel_pos_table_list.N` + the causal mask; a prompt prefix's
///   keys (prefix tuning, P-tuning v2) sit in front with no bias and no mask, as BiomedGPT's
///   `unify_multihead_attention.py` (bias on the last src_len columns only); positions do not shift; PAD
///   inputs are masked as keys;
/// - cross-attention bias = (cross_pos_q_linear(p) · scale)(cross_pos_k_linear(encoder positions))ᵀ + the
///   question padding mask, the same for every layer;
/// - pre-LN NormFormer layers, final `layer_norm`, logits through the shared embedding (the tied
///   `output_projection`, not a tensor of its own).
/// `code_layernorm_embedding`, `embed_image_positions`, `image_pos_ln` and `image_rel_pos_table_list` serve
/// image-code targets (OFA's image generation), never VQA: they are parameters (counted, checkpointed) that
/// this forward does not use.
final class OFADecoder: Module {
    let embedTokens: Embedding
    let layers: ModuleList<OFADecoderLayer>
    let layernormEmbedding: LayerNorm
    let embedPositions: Embedding
    let embedImagePositions: Embedding
    let posLn: LayerNorm
    let imagePosLn: LayerNorm
    let selfPosQLinear: Linear
    let selfPosKLinear: Linear
    let crossPosQLinear: Linear
    let crossPosKLinear: Linear
    let codeLayernormEmbedding: LayerNorm
    let layerNorm: LayerNorm
    let tokenRelPosTables: ModuleList<Embedding>
    let imageRelPosTables: ModuleList<Embedding>
    let config: OFAConfig
    let random: RandomSource

    init(_ c: OFAConfig, embedTokens: Embedding, random: RandomSource) {
        let d = c.dModel, eps = c.layerNormEps, n = c.decoderLayers
        config = c
        self.random = random
        self.embedTokens = embedTokens
        layers = ModuleList(stochasticDepthRates(c.dropPathRate, layers: n).map { rate in
            OFADecoderLayer(c, dropPath: rate, random: random)
        })
        layernormEmbedding = LayerNorm(d, eps: eps)
        embedPositions = fairseqEmbedding(c.maxPositions + 2, d, random: random)
        embedImagePositions = fairseqEmbedding(c.imageBucketSize * c.imageBucketSize + 1, d, random: random)
        posLn = LayerNorm(d, eps: eps)
        imagePosLn = LayerNorm(d, eps: eps)
        selfPosQLinear = Linear(d, d, rng: &random.rng)
        selfPosKLinear = Linear(d, d, rng: &random.rng)
        crossPosQLinear = Linear(d, d, rng: &random.rng)
        crossPosKLinear = Linear(d, d, rng: &random.rng)
        codeLayernormEmbedding = LayerNorm(d, eps: eps)
        layerNorm = LayerNorm(d, eps: eps)
        (tokenRelPosTables, imageRelPosTables) = relativePositionTables(c, layers: n, random: random)
        super.init()
        register("embed_tokens", embedTokens)
        register("layers", layers)
        register("layernorm_embedding", layernormEmbedding)
        register("embed_positions", embedPositions)
        register("embed_image_positions", embedImagePositions)
        register("pos_ln", posLn)
        register("image_pos_ln", imagePosLn)
        register("self_pos_q_linear", selfPosQLinear)
        register("self_pos_k_linear", selfPosKLinear)
        register("cross_pos_q_linear", crossPosQLinear)
        register("cross_pos_k_linear", crossPosKLinear)
        register("code_layernorm_embedding", codeLayernormEmbedding)
        register("layer_norm", layerNorm)
        register("token_rel_pos_table_list", tokenRelPosTables)
        register("image_rel_pos_table_list", imageRelPosTables)
    }

    var headDim: Int { config.headDim }
    var positionScaling: Float { 1 / (Float(config.headDim) * config.attnScaleFactor).squareRoot() }

    /// The position biases of `length` decoder positions: per layer the self-attention bias [1, H, T, T]
    /// (absolute + relative, no mask), and the cross-attention bias [1, H, T, L] (no mask). Position i's
    /// row depends only on i and the keys, so a step's row is a row of a longer pass's bias.
    func positionBiases(length t: Int, encoderPositions: Tensor) -> (selfBias: [Tensor], crossBias: Tensor) {
        let heads = config.attentionHeads
        let p = posLn(embedPositions(ids: (0..<t).map { Int32($0) }, shape: [1, t]))
        let absolute = headScores(HeadView(selfPosQLinear(p)), HeadView(selfPosKLinear(p)), heads: heads,
                                  headDim: headDim, alpha: positionScaling)
        let cross = headScores(HeadView(crossPosQLinear(p)), HeadView(crossPosKLinear(encoderPositions)), heads: heads,
                               headDim: headDim, alpha: positionScaling)
        var index: [Int32] = []
        index.reserveCapacity(t * t)
        for i in 0..<t { for j in 0..<t { index.append(Int32(OFABuckets.token(i - j, bucketSize: config.tokenBucketSize))) } }
        let selfBias = tokenRelPosTables.items.map { table -> Tensor in
            let values = embedding(ids: index, shape: [t, t], table: table.weight)   // [T, T, H]
            return absolute + reshape(permute(values, [2, 0, 1]), [1, heads, t, t])
        }
        return (selfBias, cross)
    }

    /// Embedded tokens [B, T, d] (layernorm_embedding, dropout).
    func embed(ids: [Int32], batch: Int, length: Int) -> Tensor {
        drop(layernormEmbedding(embedTokens(ids: ids, shape: [batch, length])), config.dropout, random, training: training)
    }

    /// Teacher-forced hidden states [B, T, d] (after the final layer_norm) of ids [B, T], causal, with an
    /// optional prompt prefix per layer ([B, n, d] K/V).
    func callAsFunction(ids: [Int32], batch b: Int, length t: Int, encoder: OFAEncoderOutput,
                        prefixes: [OFAKeyValues]?) -> Tensor {
        let (selfBias, crossAbsolute) = positionBiases(length: t, encoderPositions: encoder.positions)
        let n = prefixes?.first?.key.shape[1] ?? 0
        var mask = causalMask(t, prefix: n)                    // [1, 1, T, n + T]
        // PAD inputs are masked as keys too (fairseq's self_attn_padding_mask); only PAD positions, whose
        // targets are ignored, can tell, since the causal mask hides every later PAD from a real position.
        let pad = config.padTokenId
        if ids.contains(pad) {
            let keep = (0..<b).flatMap { row in
                Array(repeating: Int32(1), count: n) + ids[(row * t)..<((row + 1) * t)].map { $0 == pad ? 0 : 1 }
            }
            mask = mask + paddingMask(keep, batch: b, length: n + t)
        }
        let crossBias = encoder.keyMask.map { crossAbsolute + $0 } ?? crossAbsolute
        var x = embed(ids: ids, batch: b, length: t)
        for (i, layer) in layers.items.enumerated() {
            var bias = selfBias[i]
            if n > 0 { bias = concat([Tensor.zeros([1, config.attentionHeads, t, n]), bias], axis: 3) }
            (x, _) = layer(x, earlier: prefixes?[i], selfBias: bias + mask,
                           cross: layer.crossAttn.keysValues(encoder.states), crossBias: crossBias)
        }
        return layerNorm(x)
    }

    /// One incremental step: the newest token of each row at position `position`, with every layer's
    /// self-attention K/V so far (`past`, prompt prefix first; extended in place), the encoder K/V per layer
    /// and the biases' rows for this position: `selfBias[i]` [1, H, 1, n + position + 1] and `crossBias`
    /// [R or 1, H, 1, L]. -> hidden [R, 1, d] after the final layer_norm.
    func step(ids: [Int32], past: inout [OFAKeyValues?], cross: [OFAKeyValues], selfBias: [Tensor],
              crossBias: Tensor) -> Tensor {
        var x = embed(ids: ids, batch: ids.count, length: 1)
        for (i, layer) in layers.items.enumerated() {
            let (out, present) = layer(x, earlier: past[i], selfBias: selfBias[i], cross: cross[i], crossBias: crossBias)
            x = out
            past[i] = present
        }
        return layerNorm(x)
    }

    /// hidden [..., d] -> logits [..., vocab] through the shared embedding.
    func logits(_ hidden: Tensor) -> Tensor { linear(hidden, weight: embedTokens.weight, bias: nil) }
}
