import XCTest
@testable import Engine

/// Pre-LN transformer block (ViT style): x + proj(attn(ln1 x)); x + fc2(gelu(fc1(ln2 x))).
final class TinyBlock: Module {
    let d: Int, heads: Int
    let ln1: LayerNorm, qkv: Linear, proj: Linear, ln2: LayerNorm, fc1: Linear, fc2: Linear

    init(_ d: Int, heads: Int, rng: inout RNG) {
        self.d = d
        self.heads = heads
        ln1 = LayerNorm(d, eps: 1e-6)
        qkv = Linear(d, 3 * d, rng: &rng)
        proj = Linear(d, d, rng: &rng)
        ln2 = LayerNorm(d, eps: 1e-6)
        fc1 = Linear(d, 4 * d, rng: &rng)
        fc2 = Linear(4 * d, d, rng: &rng)
        super.init()
        register("norm1", ln1); register("qkv", qkv); register("proj", proj)
        register("norm2", ln2); register("fc1", fc1); register("fc2", fc2)
    }

    func callAsFunction(_ x: Tensor, mask: Tensor?) -> Tensor {
        let h = qkv(ln1(x))                                   // [B, T, 3D]
        let q = splitHeads(slice(h, axis: 2, range: 0..<d), heads: heads)
        let k = splitHeads(slice(h, axis: 2, range: d..<(2 * d)), heads: heads)
        let v = splitHeads(slice(h, axis: 2, range: (2 * d)..<(3 * d)), heads: heads)
        let x1 = x + proj(mergeHeads(attention(q: q, k: k, v: v, mask: mask)))
        return x1 + fc2(gelu(fc1(ln2(x1))))
    }
}

/// Embedding -> block -> LN -> vocabulary head; next-token loss with causal attention.
final class TinyLM: Module {
    let vocab: Int
    let emb: Embedding, block: TinyBlock, norm: LayerNorm, head: Linear

    init(vocab: Int, d: Int, heads: Int, rng: inout RNG) {
        self.vocab = vocab
        emb = Embedding(vocab, d, rng: &rng)
        block = TinyBlock(d, heads: heads, rng: &rng)
        norm = LayerNorm(d, eps: 1e-6)
        head = Linear(d, vocab, rng: &rng)
        super.init()
        register("emb", emb); register("block", block); register("norm", norm); register("head", head)
    }

    /// Mean per-token cross-entropy (label smoothing 0.1) of ids [B, T] against targets [B * T].
    func loss(_ ids: [Int32], _ targets: [Int32], batch: Int, length: Int) -> Tensor {
        let x = emb(ids: ids, shape: [batch, length])
        let h = norm(block(x, mask: causalMask(length)))
        let logits = reshape(head(h), [batch * length, vocab])
        return mean(crossEntropy(logits: logits, targets: targets, labelSmoothing: 0.1))
    }
}

/// Seeded toy data: ids in 0..<vocab, targets = next id (the last one ignored).
func toyBatch(vocab: Int, batch: Int, length: Int, rng: inout RNG) -> (ids: [Int32], targets: [Int32]) {
    let ids = (0..<(batch * length)).map { _ in Int32(rng.nextInt(vocab)) }
    var targets = ids
    for b in 0..<batch {
        for t in 0..<length { targets[b * length + t] = t + 1 < length ? ids[b * length + t + 1] : -100 }
    }
    return (ids, targets)
}

/// Trains TinyLM for `steps` AdamW steps from `seed`; returns the losses.
func trainTinyLM(steps: Int, seed: UInt64, vocab: Int = 11, d: Int = 16, heads: Int = 2,
                 batch: Int = 3, length: Int = 6) -> [Float] {
    let rng = RNG(seed: seed)
    var initRng = rng.split(1)
    let model = TinyLM(vocab: vocab, d: d, heads: heads, rng: &initRng)
    let opt = AdamW(parameters: model.namedParameters(), lr: 3e-3)
    var data = rng.split(2)
    let (ids, targets) = toyBatch(vocab: vocab, batch: batch, length: length, rng: &data)
    var losses: [Float] = []
    for _ in 0..<steps {
        let loss = model.loss(ids, targets, batch: batch, length: length)
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zeroGrad()
    }
    return losses
}
