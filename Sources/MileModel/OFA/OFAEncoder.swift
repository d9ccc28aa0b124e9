import Engine

/// What the decoder reads of the encoder: the states [B, L, d] (image tokens first, then the question),
/// the LayerNormed position embeddings [1, L, d] the cross-attention position bias is built from, and the
/// additive key mask [B, 1, 1, L] of the question padding (nil when nothing is padded).
struct OFAEncoderOutput {
    let states: Tensor
    let positions: Tensor
    let keyMask: Tensor?
    /// 1 keep / 0 pad for each of the L positions of each item (for repeating the mask over beams).
    let keep: [Int32]
}

/// Additive key mask [B, 1, 1, L] (0 keep, -10000 pad) from keep flags, nil when all are kept.
func ofaKeyMask(_ keep: [Int32], batch: Int, length: Int) -> Tensor? {
    keep.contains(0) ? paddingMask(keep, batch: batch, length: length) : nil
}

/// OFA's `TransformerEncoder` / HF `OFAEncoder` (`encoder`), ResNet path, no encoder prompt:
/// - image tokens: `embed_images` (ResNet) -> flatten -> `image_proj` + type 1 -> `patch_layernorm_embedding`
///   -> dropout; text: `embed_tokens` (the shared table, scale 1) + type 0 -> `layernorm_embedding` ->
///   dropout, padded positions zeroed; x = [image tokens; question tokens];
/// - positions are disentangled (BiomedGPT `--disable-entangle`, upstream's default): they never enter x,
///   only the attention, as the bias (pos_q_linear(p) · scale)(pos_k_linear(p))ᵀ per head with p =
///   [image_pos_ln(embed_image_positions); pos_ln(embed_positions)], shared by all layers;
/// - each layer adds its relative-position bias: `image_rel_pos_table_list.N` on the image×image block
///   (2-D grid offsets), `token_rel_pos_table_list.N` on the text×text block, nothing across;
/// - pre-LN NormFormer layers, final `layer_norm`.
final class OFAEncoder: Module {
    let layernormEmbedding: LayerNorm
    let embedTokens: Embedding
    let typeEmbedding: Embedding
    let embedImages: OFAResNet
    let imageProj: AdaptedLinear
    let patchLayernormEmbedding: LayerNorm
    let embedPositions: Embedding
    let embedImagePositions: Embedding
    let posLn: LayerNorm
    let imagePosLn: LayerNorm
    let posQLinear: Linear
    let posKLinear: Linear
    let layers: ModuleList<OFAEncoderLayer>
    let layerNorm: LayerNorm
    let tokenRelPosTables: ModuleList<Embedding>
    let imageRelPosTables: ModuleList<Embedding>
    let config: OFAConfig
    let random: RandomSource

    init(_ c: OFAConfig, embedTokens: Embedding, random: RandomSource) {
        let d = c.dModel, eps = c.layerNormEps
        config = c
        self.random = random
        layernormEmbedding = LayerNorm(d, eps: eps)
        self.embedTokens = embedTokens
        typeEmbedding = fairseqEmbedding(2, d, random: random)
        embedImages = OFAResNet(c, random: random)
        imageProj = xavierLinear(c.resnetChannels, d, random: random)
        patchLayernormEmbedding = LayerNorm(d, eps: eps)
        embedPositions = fairseqEmbedding(c.maxPositions + 2, d, random: random)
        embedImagePositions = fairseqEmbedding(c.imageBucketSize * c.imageBucketSize + 1, d, random: random)
        posLn = LayerNorm(d, eps: eps)
        imagePosLn = LayerNorm(d, eps: eps)
        posQLinear = Linear(d, d, rng: &random.rng)
        posKLinear = Linear(d, d, rng: &random.rng)
        let n = c.encoderLayers
        layers = ModuleList(stochasticDepthRates(c.dropPathRate, layers: n).map { rate in
            OFAEncoderLayer(c, dropPath: rate, random: random)
        })
        layerNorm = LayerNorm(d, eps: eps)
        (tokenRelPosTables, imageRelPosTables) = relativePositionTables(c, layers: n, random: random)
        super.init()
        register("layernorm_embedding", layernormEmbedding)
        register("embed_tokens", embedTokens)
        register("type_embedding", typeEmbedding)
        register("embed_images", embedImages)
        register("image_proj", imageProj)
        register("patch_layernorm_embedding", patchLayernormEmbedding)
        register("embed_positions", embedPositions)
        register("embed_image_positions", embedImagePositions)
        register("pos_ln", posLn)
        register("image_pos_ln", imagePosLn)
        register("pos_q_linear", posQLinear)
        register("pos_k_linear", posKLinear)
        register("layers", layers)
        register("layer_norm", layerNorm)
        register("token_rel_pos_table_list", tokenRelPosTables)
        register("image_rel_pos_table_list", imageRelPosTables)
    }

    /// images [B, 3, S, S]; question ids and keep flags [B, T].
    func callAsFunction(images: Tensor, ids: [Int32], keep: [Int32], batch b: Int, length t: Int) -> OFAEncoderOutput {
        let c = config, d = c.dModel, heads = c.attentionHeads
        // Image tokens.
        let features = embedImages(images)                      // [B, C, g, g]
        let grid = features.shape[2], n = grid * features.shape[3]
        let flat = permute(reshape(features, [b, features.shape[1], n]), [0, 2, 1])   // [B, N, C]
        let imageType = typeEmbedding(ids: [1], shape: [1])
        let imageX = drop(patchLayernormEmbedding(imageProj(flat) + imageType), c.dropout, random, training: training)
        // Question tokens.
        let textType = typeEmbedding(ids: [0], shape: [1])
        var textX = drop(layernormEmbedding(embedTokens(ids: ids, shape: [b, t]) + textType), c.dropout, random,
                         training: training)
        let padded = keep.contains(0)
        if padded { textX = textX * Tensor(shape: [b, t, 1], scalars: keep.map { Float($0) }) }
        let x0 = concat([imageX, textX], axis: 1)               // [B, L, d]
        let l = n + t

        // Disentangled absolute positions -> one bias [1, H, L, L] for every layer.
        let width = features.shape[3]
        let imageIds = (0..<n).map { OFABuckets.imagePosition(y: $0 / width, x: $0 % width, bucketSize: c.imageBucketSize) }
        let imagePos = imagePosLn(embedImagePositions(ids: imageIds, shape: [1, n]))
        let textPos = posLn(embedPositions(ids: (0..<t).map { Int32($0) }, shape: [1, t]))
        let positions = concat([imagePos, textPos], axis: 1)    // [1, L, d]
        let absolute = headScores(HeadView(posQLinear(positions)), HeadView(posKLinear(positions)), heads: heads,
                                  headDim: d / heads, alpha: positionScaling)

        let fullKeep = (0..<b).flatMap { row in Array(repeating: Int32(1), count: n) + keep[(row * t)..<((row + 1) * t)] }
        let keyMask = ofaKeyMask(fullKeep, batch: b, length: l)
        let relIndex = relativeIndex(grid: grid, width: width, textLength: t)
        var x = x0
        for (i, layer) in layers.items.enumerated() {
            var bias = absolute + relativeBias(layer: i, index: relIndex, length: l)
            if let keyMask { bias = bias + keyMask }
            x = layer(x, bias: bias)
        }
        return OFAEncoderOutput(states: layerNorm(x), positions: positions, keyMask: keyMask, keep: fullKeep)
    }

    /// (head dim · attn_scale_factor)^-1/2 on the position queries (`pos_scaling`).
    var positionScaling: Float { 1 / (Float(config.headDim) * config.attnScaleFactor).squareRoot() }

    /// For every (query, key) pair of [image grid; text], the row of [token table; image table; zero row]:
    /// the image×image block reads the image table, the text×text block the token table, the rest zero.
    private func relativeIndex(grid: Int, width: Int, textLength t: Int) -> [Int32] {
        let c = config, n = grid * width, l = n + t
        let tokenRows = OFABuckets.tokenRows(c.tokenBucketSize), imageRows = OFABuckets.imageRows(c.imageBucketSize)
        let zero = Int32(tokenRows + imageRows)
        var index = [Int32](repeating: zero, count: l * l)
        for i in 0..<n {
            for j in 0..<n {
                let row = OFABuckets.image(dy: i / width - j / width, dx: i % width - j % width, bucketSize: c.imageBucketSize)
                index[i * l + j] = Int32(tokenRows + row)
            }
        }
        for i in 0..<t {
            for j in 0..<t { index[(n + i) * l + n + j] = Int32(OFABuckets.token(i - j, bucketSize: c.tokenBucketSize)) }
        }
        return index
    }

    /// Layer i's relative-position bias [1, H, L, L] gathered from its two tables (and a constant zero row).
    private func relativeBias(layer i: Int, index: [Int32], length l: Int) -> Tensor {
        let heads = config.attentionHeads
        let table = concat([tokenRelPosTables.items[i].weight, imageRelPosTables.items[i].weight, Tensor.zeros([1, heads])],
                           axis: 0)
        let values = embedding(ids: index, shape: [l, l], table: table)   // [L, L, H]
        return reshape(permute(values, [2, 0, 1]), [1, heads, l, l])
    }
}
