import Engine

/// The dims a BERT module reads (upstream's `med_config.json`), not the whole MISS config: the JTM and the
/// answer decoder are built from `ModelConfig.text`.
struct BertConfig {
    let hidden: Int
    let heads: Int
    let intermediate: Int
    let hiddenDropout: Float
    let attentionDropout: Float
    let layerNormEps: Float
    let initializerRange: Float
    let vocabSize: Int
    let maxPositions: Int
}

/// Keys and values split into heads ([B, heads, n, head dim] each): a layer's prompt-tuning prefix for
/// self-attention, or a cached cross-attention projection of the encoder states (generation).
struct LayerPrefix {
    let key: Tensor
    let value: Tensor
}

/// `embeddings`: word + absolute position (no token types), LayerNorm, dropout.
final class BertEmbeddings: Module {
    let wordEmbeddings: Embedding
    let positionEmbeddings: Embedding
    let layerNorm: LayerNorm
    let dropoutP: Float
    let random: RandomSource

    init(_ c: BertConfig, random: RandomSource) {
        wordEmbeddings = Embedding(c.vocabSize, c.hidden, rng: &random.rng)
        positionEmbeddings = Embedding(c.maxPositions, c.hidden, rng: &random.rng)
        layerNorm = LayerNorm(c.hidden, eps: c.layerNormEps)
        dropoutP = c.hiddenDropout
        self.random = random
        super.init()
        register("word_embeddings", wordEmbeddings)
        register("position_embeddings", positionEmbeddings)
        register("LayerNorm", layerNorm)
    }

    /// ids [B, T]; positions start at `positionOffset` (the prefix length under prompt tuning, med.py:81).
    func callAsFunction(ids: [Int32], batch: Int, length: Int, positionOffset: Int) -> Tensor {
        let words = wordEmbeddings(ids: ids, shape: [batch, length])
        let positionIds = (0..<length).map { Int32($0 + positionOffset) }
        let positions = positionEmbeddings(ids: positionIds, shape: [1, length])
        return drop(layerNorm(words + positions), dropoutP, random, training: training)
    }

    /// The same for the packed rows of a padded batch: [rows, h].
    func callAsFunction(packed: PackedTokens) -> Tensor {
        let words = wordEmbeddings(ids: packed.ids, shape: [packed.rows])
        let positions = positionEmbeddings(ids: packed.positions, shape: [packed.rows])
        return drop(layerNorm(words + positions), dropoutP, random, training: training, paddedRows: packed.paddedRows)
    }
}

/// `attention.self` / `crossattention.self`: query, key, value. Self-attention prepends the layer's
/// prefix K/V; cross-attention reads K/V from the encoder states and never sees a prefix.
final class BertSelfAttention: Module {
    let query: AdaptedLinear
    let key: AdaptedLinear
    let value: AdaptedLinear
    let heads: Int
    let dropoutP: Float
    let random: RandomSource

    init(_ c: BertConfig, kvWidth: Int, random: RandomSource) {
        let h = c.hidden, std = c.initializerRange
        query = AdaptedLinear(h, h, std: std, random: random)
        key = AdaptedLinear(kvWidth, h, std: std, random: random)
        value = AdaptedLinear(kvWidth, h, std: std, random: random)
        heads = c.heads
        dropoutP = c.attentionDropout
        self.random = random
        super.init()
        register("query", query)
        register("key", key)
        register("value", value)
    }

    /// x [B, T, h]; memory [B, S, kv] for cross-attention; mask additive, broadcastable to [B, H, T, keys].
    func callAsFunction(_ x: Tensor, memory: Tensor?, mask: Tensor?, prefix: LayerPrefix?) -> Tensor {
        callAsFunction(x, memory: memory, mask: mask, prefix: prefix, cachedMemory: nil)
    }

    /// `cachedMemory`: keys/values of the memory computed once by `memoryKeyValues` (generation).
    func callAsFunction(_ x: Tensor, memory: Tensor?, mask: Tensor?, prefix: LayerPrefix?,
                        cachedMemory: LayerPrefix?, segments: AttentionSegments? = nil) -> Tensor {
        if let segments { return attendPacked(x, memory: memory, segments) }   // (no prefix, cache or mask then)
        if let cached = cachedMemory {
            return mergeHeads(attend(splitHeads(query(x), heads: heads), cached.key, cached.value, mask))
        }
        guard memory == nil, let prefix else { return attendInPlace(x, source: memory ?? x, mask: mask) }
        // Self-attention with a prefix: its K/V are in head layout, so the heads are split here.
        let q = splitHeads(query(x), heads: heads)
        let (k, v) = prepend(prefix, splitHeads(key(x), heads: heads), splitHeads(value(x), heads: heads))
        return mergeHeads(attend(q, k, v, mask))
    }

    /// K/V [R, H, n, dh] with `earlier` (a prompt prefix or past tokens) in front along the sequence axis.
    private func prepend(_ earlier: LayerPrefix?, _ k: Tensor, _ v: Tensor) -> (Tensor, Tensor) {
        guard let earlier else { return (k, v) }
        return (concat([earlier.key, k], axis: 2), concat([earlier.value, v], axis: 2))
    }

    /// One incremental decoding step (generation): x [R, 1, h] is the newest token of each row, `past` the
    /// keys/values of the earlier ones (prompt prefix first) [R, H, n, dh]. The newest token attends to all
    /// of them and itself, which is the last row of the causal full pass (mask all ones, so no mask).
    /// Returns the output [R, 1, h] and `past` extended by this token's keys/values.
    func step(_ x: Tensor, past: LayerPrefix?) -> (Tensor, LayerPrefix) {
        let q = splitHeads(query(x), heads: heads)
        let (k, v) = prepend(past, splitHeads(key(x), heads: heads), splitHeads(value(x), heads: heads))
        return (mergeHeads(attend(q, k, v, nil)), LayerPrefix(key: k, value: v))
    }

    /// Cross-attention keys/values of `memory` (they do not depend on the decoded tokens).
    func memoryKeyValues(_ memory: Tensor) -> LayerPrefix {
        LayerPrefix(key: splitHeads(key(memory), heads: heads), value: splitHeads(value(memory), heads: heads))
    }

    /// The same attention without head copies: scores and context read q, k and v in their [B, T, h]
    /// layout (`headScores` / `headContext`). Used whenever no prefix K/V (already in head layout) joins in.
    private func attendInPlace(_ x: Tensor, source: Tensor, mask: Tensor?) -> Tensor {
        let q = query(x), k = key(source), v = value(source)
        let dh = q.shape[2] / heads, factor = 1 / Float(dh).squareRoot()
        let probs: Tensor
        if training, dropoutP > 0 {
            // As `attend`: the scaling as its own op, whose backward rounds differently from an alpha
            // inside the product; this keeps training bit-identical to the head-copy path.
            let scores = scale(headScores(HeadView(q), HeadView(k), heads: heads, headDim: dh, alpha: 1), factor)
            probs = drop(softmax(scores, mask: mask), dropoutP, random, training: true)
        } else {
            probs = softmax(headScores(HeadView(q), HeadView(k), heads: heads, headDim: dh, alpha: factor), mask: mask)
        }
        return headContext(probs, HeadView(v), heads: heads, headDim: dh)
    }

    /// `attendInPlace` on rows laid out by `segments`: x [rows, h] attends within each item's segment of
    /// x (self-attention) or of memory [rows', kv]. Drops the probabilities a padded batch would drop.
    private func attendPacked(_ x: Tensor, memory: Tensor?, _ segments: AttentionSegments) -> Tensor {
        let source = memory ?? x
        let q = query(x), k = key(source), v = value(source)
        let dh = q.shape.last! / heads
        let dropping = training && dropoutP > 0
        let d = dropping ? AttentionDropout(p: dropoutP, seed: random.rng.nextUInt64(), paddedQueries: segments.paddedQueries,
                                            paddedKeys: segments.paddedKeys) : nil
        return segmentAttention(q: q, k: k, v: v, queries: segments.queries, keys: segments.keys, heads: heads,
                                factor: 1 / Float(dh).squareRoot(), scaleInProduct: !dropping, dropout: d)
    }

    /// Scaled dot-product attention with dropout on the probabilities (BERT's attention_probs_dropout).
    private func attend(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ mask: Tensor?) -> Tensor {
        guard training, dropoutP > 0 else { return attention(q: q, k: k, v: v, mask: mask) }
        let dh = q.shape[3]
        let scores = scale(matmul(q, k, transposeB: true), 1 / Float(dh).squareRoot())
        let probs = drop(softmax(scores, mask: mask), dropoutP, random, training: true)
        return matmul(probs, v)
    }
}

/// `*.output`: dense -> dropout -> LayerNorm(residual + ·) (post-LN).
final class BertResidualOutput: Module {
    let dense: AdaptedLinear
    let layerNorm: LayerNorm
    let dropoutP: Float
    let random: RandomSource

    init(_ c: BertConfig, inFeatures: Int, random: RandomSource) {
        dense = AdaptedLinear(inFeatures, c.hidden, std: c.initializerRange, random: random)
        layerNorm = LayerNorm(c.hidden, eps: c.layerNormEps)
        dropoutP = c.hiddenDropout
        self.random = random
        super.init()
        register("dense", dense)
        register("LayerNorm", layerNorm)
    }

    /// `paddedRows`: x holds packed rows (see `PackedTokens`).
    func callAsFunction(_ x: Tensor, residual: Tensor, paddedRows: [Int]? = nil) -> Tensor {
        finish(dense(x), residual: residual, paddedRows)
    }

    /// The FFN's output part on the intermediate pre-activation h: LayerNorm(dropout(dense(gelu(h))) + residual).
    func callAsFunction(geluOf h: Tensor, residual: Tensor, paddedRows: [Int]? = nil) -> Tensor {
        finish(dense(geluOf: h), residual: residual, paddedRows)
    }

    private func finish(_ y: Tensor, residual: Tensor, _ paddedRows: [Int]?) -> Tensor {
        layerNorm(drop(y, dropoutP, random, training: training, paddedRows: paddedRows) + residual)
    }
}

/// `attention` / `crossattention`: self-attention part + output part.
final class BertAttention: Module {
    let selfAttention: BertSelfAttention
    let output: BertResidualOutput
    init(_ c: BertConfig, kvWidth: Int, random: RandomSource) {
        selfAttention = BertSelfAttention(c, kvWidth: kvWidth, random: random)
        output = BertResidualOutput(c, inFeatures: c.hidden, random: random)
        super.init()
        register("self", selfAttention)
        register("output", output)
    }

    func callAsFunction(_ x: Tensor, memory: Tensor?, mask: Tensor?, prefix: LayerPrefix?,
                        cachedMemory: LayerPrefix? = nil, segments: AttentionSegments? = nil,
                        paddedRows: [Int]? = nil) -> Tensor {
        output(selfAttention(x, memory: memory, mask: mask, prefix: prefix, cachedMemory: cachedMemory, segments: segments),
               residual: x, paddedRows: paddedRows)
    }
}

final class BertIntermediate: Module {
    let dense: AdaptedLinear
    init(_ c: BertConfig, random: RandomSource) {
        dense = AdaptedLinear(c.hidden, c.intermediate, std: c.initializerRange, random: random)
        super.init()
        register("dense", dense)
    }
    /// The pre-activation dense(x): the GELU is applied by `BertResidualOutput.callAsFunction(geluOf:)`,
    /// fused with its dense layer.
    func callAsFunction(_ x: Tensor) -> Tensor { dense(x) }
}

/// One layer: self-attention -> cross-attention -> FFN, all post-LN (med.py BertLayer, multimodal mode).
final class BertLayer: Module {
    let attention: BertAttention
    let crossAttention: BertAttention
    let intermediate: BertIntermediate
    let output: BertResidualOutput

    init(_ c: BertConfig, crossWidth: Int, random: RandomSource) {
        attention = BertAttention(c, kvWidth: c.hidden, random: random)
        crossAttention = BertAttention(c, kvWidth: crossWidth, random: random)
        intermediate = BertIntermediate(c, random: random)
        output = BertResidualOutput(c, inFeatures: c.intermediate, random: random)
        super.init()
        register("attention", attention)
        register("crossattention", crossAttention)
        register("intermediate", intermediate)
        register("output", output)
    }

    /// `memorySegments`: memory holds packed rows, attended as these segments (then no memoryMask).
    /// `memory` nil: text mode (BLIP's `mode='text'`), the cross-attention is skipped.
    func callAsFunction(_ x: Tensor, selfMask: Tensor?, memory: Tensor?, memoryMask: Tensor?,
                        prefix: LayerPrefix?, cachedMemory: LayerPrefix? = nil,
                        memorySegments: AttentionSegments? = nil) -> Tensor {
        let s = attention(x, memory: nil, mask: selfMask, prefix: prefix)
        guard memory != nil || cachedMemory != nil else { return output(geluOf: intermediate(s), residual: s) }
        let cross = crossAttention(s, memory: memory, mask: memoryMask, prefix: nil, cachedMemory: cachedMemory,
                                   segments: memorySegments)
        return output(geluOf: intermediate(cross), residual: cross)
    }

    /// The layer on packed rows [rows, h] (no padding mask, prefix or cache), cross-attending to all of memory.
    func callAsFunction(packed x: Tensor, _ tokens: PackedTokens, memory: Tensor) -> Tensor {
        let rows = tokens.paddedRows
        let s = attention(x, memory: nil, mask: nil, prefix: nil, segments: .selfAttention(tokens), paddedRows: rows)
        let cross = crossAttention(s, memory: memory, mask: nil, prefix: nil,
                                   segments: .packedQueries(tokens, memoryLength: memory.shape[1]), paddedRows: rows)
        return output(geluOf: intermediate(cross), residual: cross, paddedRows: rows)
    }
}

extension BertLayer {
    /// `callAsFunction` for the newest token only, reading and extending the self-attention cache `past`;
    /// cross-attention reads the precomputed memory keys/values.
    func step(_ x: Tensor, past: LayerPrefix?, cachedMemory: LayerPrefix) -> (Tensor, LayerPrefix) {
        let (attended, present) = attention.selfAttention.step(x, past: past)
        let s = attention.output(attended, residual: x)
        let cross = crossAttention(s, memory: nil, mask: nil, prefix: nil, cachedMemory: cachedMemory)
        return (output(geluOf: intermediate(cross), residual: cross), present)
    }
}

final class BertEncoder: Module {
    let layers: ModuleList<BertLayer>
    init(_ c: BertConfig, layers count: Int, crossWidth: Int, random: RandomSource) {
        layers = ModuleList((0..<count).map { _ in BertLayer(c, crossWidth: crossWidth, random: random) })
        super.init()
        register("layer", layers)
    }
}

/// BLIP's `BertModel` (add_pooling_layer=False), multimodal mode: the JTM (`text_encoder`), and the
/// body (`bert`) of the decoder with `causal` self-attention.
final class BertModel: Module {
    let embeddings: BertEmbeddings
    let encoder: BertEncoder
    let causal: Bool

    init(_ c: BertConfig, layers: Int, crossWidth: Int, causal: Bool, random: RandomSource) {
        embeddings = BertEmbeddings(c, random: random)
        encoder = BertEncoder(c, layers: layers, crossWidth: crossWidth, random: random)
        self.causal = causal
        super.init()
        register("embeddings", embeddings)
        register("encoder", encoder)
    }

    /// ids/mask [B, T] (mask 1 keep, 0 pad); memory [B, S, ·] (nil: text mode, no cross-attention);
    /// memoryMask nil = attend to all of it.
    /// With `prefixes`, every self-attention sees n extra keys (mask extended with ones) and
    /// positions shift by n. `cachedMemory` replaces each layer's cross-attention K/V of `memory`.
    /// `packedMemory`: memory is the packed rows of these question tokens (the JTM's output without its
    /// padding, `callAsFunction(packed:memory:)`); each item attends to its own rows, so no memoryMask.
    func callAsFunction(ids: [Int32], mask: [Int32], batch: Int, length: Int, memory: Tensor?,
                        memoryMask: Tensor?, prefixes: [LayerPrefix]?, cachedMemory: [LayerPrefix]? = nil,
                        packedMemory: PackedTokens? = nil) -> Tensor {
        let memorySegments = packedMemory.map { AttentionSegments.packedMemory($0, queryLength: length) }
        let n = prefixes?.first?.key.shape[2] ?? 0
        var x = embeddings(ids: ids, batch: batch, length: length, positionOffset: n)
        var keep = mask
        if n > 0 {
            keep = []
            keep.reserveCapacity(batch * (n + length))
            for b in 0..<batch { keep += Array(repeating: 1, count: n) + mask[(b * length)..<((b + 1) * length)] }
        }
        var selfMask = paddingMask(keep, batch: batch, length: n + length)
        if causal { selfMask = causalMask(length, prefix: n) + selfMask }
        for (i, layer) in encoder.layers.items.enumerated() {
            x = layer(x, selfMask: selfMask, memory: memory, memoryMask: memoryMask, prefix: prefixes?[i],
                      cachedMemory: cachedMemory?[i], memorySegments: memorySegments)
        }
        return x
    }
}

extension BertModel {
    /// `callAsFunction` of the (bidirectional, prompt-free) encoder without the padding rows: the layers
    /// run on the packed rows of `tokens` (every item's real tokens), cross-attending to all of `memory`
    /// [B, S, ·]. Returns those rows [rows, h]: every real position gets the values the padded computation
    /// gives it, dropout included (row r is position tokens.paddedRows[r] of the padded [B·T] layout).
    func callAsFunction(packed tokens: PackedTokens, memory: Tensor) -> Tensor {
        var x = embeddings(packed: tokens)
        for layer in encoder.layers.items { x = layer(packed: x, tokens, memory: memory) }
        return x
    }

    /// Decoder hidden states [R, 1, h] of one new token per row at absolute position `position` (prompt
    /// prefix included), with every layer's self-attention cache `past` read and extended in place.
    func step(ids: [Int32], position: Int, past: inout [LayerPrefix?], cachedMemory: [LayerPrefix]) -> Tensor {
        var x = embeddings(ids: ids, batch: ids.count, length: 1, positionOffset: position)
        for (i, layer) in encoder.layers.items.enumerated() {
            let (out, present) = layer.step(x, past: past[i], cachedMemory: cachedMemory[i])
            x = out
            past[i] = present
        }
        return x
    }
}

/// `cls.predictions`: bias (own), transform (dense, GELU, LayerNorm); the projection is the tied
/// word-embedding matrix.
final class BertLMPredictionHead: Module {
    let bias: Tensor
    let transform: PredictionTransform
    init(_ c: BertConfig, random: RandomSource) {
        bias = Tensor.zeros([c.vocabSize])
        transform = PredictionTransform(c, random: random)
        super.init()
        register(parameter: "bias", bias)
        register("transform", transform)
    }
}

final class PredictionTransform: Module {
    let dense: AdaptedLinear
    let layerNorm: LayerNorm
    init(_ c: BertConfig, random: RandomSource) {
        dense = AdaptedLinear(c.hidden, c.hidden, std: c.initializerRange, random: random)
        layerNorm = LayerNorm(c.hidden, eps: c.layerNormEps)
        super.init()
        register("dense", dense)
        register("LayerNorm", layerNorm)
    }
    func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(gelu(dense(x))) }
}

final class BertOnlyMLMHead: Module {
    let predictions: BertLMPredictionHead
    init(_ c: BertConfig, random: RandomSource) {
        predictions = BertLMPredictionHead(c, random: random)
        super.init()
        register("predictions", predictions)
    }
}

/// BLIP's `BertLMHeadModel` (`text_decoder`): causal BERT with cross-attention to the JTM output and
/// the MLM head whose output projection is tied to `bert.embeddings.word_embeddings.weight`.
final class BertLMHeadModel: Module {
    let bert: BertModel
    let cls: BertOnlyMLMHead
    init(_ c: BertConfig, layers: Int, random: RandomSource) {
        bert = BertModel(c, layers: layers, crossWidth: c.hidden, causal: true, random: random)
        cls = BertOnlyMLMHead(c, random: random)
        super.init()
        register("bert", bert)
        register("cls", cls)
    }

    /// hidden [..., h] -> logits [..., vocab].
    func logits(_ hidden: Tensor) -> Tensor {
        linear(cls.predictions.transform(hidden), weight: bert.embeddings.wordEmbeddings.weight,
               bias: cls.predictions.bias)
    }
}
