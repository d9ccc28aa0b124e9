// Attention over packed variable-length sequences: the rows of a batch without their padding, item b owning
// a contiguous run of rows (its segment). Padding rows cost as much as real ones in every linear, layer norm
// and FFN of a padded batch; packed, the JTM skips them (questions padded to the longest in the batch). One
// fused op per attention: scores, scaling, softmax, dropout and context for each (item, head), saving q, k,
// v and the probabilities; the dropout mask is regenerated in backward.

/// Rows of each batch item in a packed [rows, width] tensor: item b owns rows offsets[b] ..< offsets[b] + lengths[b].
public struct Segments: Equatable, Sendable {
    public let offsets: [Int]
    public let lengths: [Int]

    public init(lengths: [Int]) {
        check(lengths.allSatisfy { $0 >= 1 }, "Segments: every item needs at least one row, got \(lengths)")
        self.lengths = lengths
        var acc = 0, offsets: [Int] = []
        for n in lengths { offsets.append(acc); acc += n }
        self.offsets = offsets
    }

    public init(uniform length: Int, batch: Int) { self.init(lengths: Array(repeating: length, count: batch)) }

    public var batch: Int { lengths.count }
    public var rows: Int { lengths.reduce(0, +) }
}

/// Dropout on the attention probabilities. Element (b, h, t, s) uses the mask bit of index
/// ((b·H + h)·T + t)·S + s, its index in the [B, H, T, S] probabilities of the padded batch (T, S padded
/// query and key lengths): the packed and the padded computation drop the same probabilities.
public struct AttentionDropout: Sendable {
    public let p: Float
    public let seed: UInt64
    public let paddedQueries: Int
    public let paddedKeys: Int

    public init(p: Float, seed: UInt64, paddedQueries: Int, paddedKeys: Int) {
        check(p > 0 && p < 1, "attention dropout p must be in (0, 1), got \(p)")
        (self.p, self.seed, self.paddedQueries, self.paddedKeys) = (p, seed, paddedQueries, paddedKeys)
    }
}

/// Where each (item, head) block lives: rows and lengths in q and k, and its [Lq, Lk] block of the
/// probabilities (all blocks back to back).
private struct SegmentPlan {
    let queries: Segments
    let keys: Segments
    let heads: Int
    let headDim: Int
    let blockOffsets: [Int]   // per item: start of its H blocks
    let total: Int

    init(queries: Segments, keys: Segments, heads: Int, headDim: Int) {
        (self.queries, self.keys, self.heads, self.headDim) = (queries, keys, heads, headDim)
        var acc = 0, offsets: [Int] = []
        for (lq, lk) in zip(queries.lengths, keys.lengths) { offsets.append(acc); acc += heads * lq * lk }
        blockOffsets = offsets
        total = acc
    }

    var width: Int { heads * headDim }
    /// (item, head, Lq, Lk, offset of q rows, offset of k rows, offset of the probability block)
    func task(_ i: Int) -> (b: Int, h: Int, lq: Int, lk: Int, q: Int, k: Int, p: Int) {
        let (b, h) = (i / heads, i % heads)
        let (lq, lk) = (queries.lengths[b], keys.lengths[b])
        return (b, h, lq, lk, queries.offsets[b] * width + h * headDim, keys.offsets[b] * width + h * headDim,
                blockOffsets[b] + h * lq * lk)
    }

    /// dropout mask index of element (t, s) of block (b, h) in the padded [B, H, T, S] layout
    func paddedIndex(_ b: Int, _ h: Int, _ t: Int, _ s: Int, _ d: AttentionDropout) -> Int {
        ((b * heads + h) * d.paddedQueries + t) * d.paddedKeys + s
    }
}

/// softmax(factor · q_h k_hᵀ) v_h per batch item and head, over packed rows: q [Nq, H·Dh] with `queries`,
/// k and v [Nk, H·Dh] with `keys` (leading dims are flattened) -> [Nq, H·Dh] shaped like q. No mask: every
/// key of an item is visible to every query of it. `scaleInProduct`: factor is the product's alpha (else
/// a separate multiply, as `scale(scores)`; the two round differently in backward, and each matches its
/// padded counterpart bit for bit).
public func segmentAttention(q: Tensor, k: Tensor, v: Tensor, queries: Segments, keys: Segments, heads: Int,
                             factor: Float, scaleInProduct: Bool, dropout: AttentionDropout?) -> Tensor {
    let width = q.shape.last ?? 0, dh = width / Swift.max(heads, 1)
    check(heads >= 1 && dh * heads == width, "segmentAttention: width \(width) is not \(heads) heads")
    check(k.shape.last == width && v.shape.last == width, "segmentAttention: k \(k.shape) / v \(v.shape) vs q \(q.shape)")
    check(q.count == queries.rows * width && k.count == keys.rows * width && v.count == k.count,
          "segmentAttention: \(queries.rows) query / \(keys.rows) key rows do not match q \(q.shape), k \(k.shape)")
    check(queries.batch == keys.batch, "segmentAttention: \(queries.batch) query vs \(keys.batch) key items")
    let plan = SegmentPlan(queries: queries, keys: keys, heads: heads, headDim: dh)
    let meta = q.isMeta || k.isMeta || v.isMeta
    let probs = Tensor(empty: [plan.total], meta: meta)
    let out = output(q.shape, q, k, v)
    let dropped = dropout.map { _ in Tensor(empty: [plan.total], meta: meta) }   // scratch of the forward only
    if let o = out.data, let pp = probs.data {
        let (qp, kp, vp) = (q.ptr, k.ptr, v.ptr)
        parallelFor(queries.batch * heads, grain: 1) { tasks in
            for i in tasks {
                let t = plan.task(i), block = pp + t.p
                sgemm(false, true, t.lq, t.lk, dh, scaleInProduct ? factor : 1, qp + t.q, width, kp + t.k, width, 0, block, t.lk)
                if !scaleInProduct { for j in 0..<(t.lq * t.lk) { block[j] = factor * block[j] } }
                for r in 0..<t.lq { softmaxRow(block + r * t.lk, nil, 0, block + r * t.lk, t.lk) }
                var used = block
                if let d = dropout, let scratch = dropped?.data {
                    used = scratch + t.p
                    applyDropout(block, into: used, plan: plan, task: t, d)
                }
                sgemm(false, false, t.lq, dh, t.lk, 1, used, t.lk, vp + t.k, width, 0, o + t.q, width)
            }
        }
    }
    if needsGrad(q, k, v) {
        out.record([q, k, v]) { g, ins in
            segmentAttentionBackward(g, ins, q: q, k: k, v: v, probs: probs, plan: plan, factor: factor,
                                     scaleInProduct: scaleInProduct, dropout: dropout)
        }
    }
    return out
}

/// dst = mask ⊙ src / (1 - p) over one [Lq, Lk] block (the dropout op's arithmetic, element by element).
private func applyDropout(_ src: UnsafeMutablePointer<Float>, into dst: UnsafeMutablePointer<Float>, plan: SegmentPlan,
                          task t: (b: Int, h: Int, lq: Int, lk: Int, q: Int, k: Int, p: Int), _ d: AttentionDropout) {
    let mask = DropMask(seed: d.seed, p: d.p), keepScale = 1 / (1 - d.p)
    for r in 0..<t.lq {
        let base = plan.paddedIndex(t.b, t.h, r, 0, d)
        for s in 0..<t.lk { dst[r * t.lk + s] = mask.apply(src[r * t.lk + s] * keepScale, base + s) }
    }
}

private func segmentAttentionBackward(_ g: Tensor, _ ins: [Node?], q: Tensor, k: Tensor, v: Tensor, probs: Tensor,
                                      plan: SegmentPlan, factor: Float, scaleInProduct: Bool, dropout: AttentionDropout?) {
    // q, k and v are written block by block; each block is one item's rows and one head's columns, so the
    // blocks of a tensor tile it and a fresh gradient needs no zero fill, unless two of them are one tensor.
    let distinct = q !== k && k !== v && q !== v
    func target(_ n: Node?) -> (Tensor, Float)? {
        guard let n else { return nil }
        if distinct { let (t, fresh) = n.gradForWrite(); return (t, fresh ? 0 : 1) }
        return (n.gradTensor(), 1)
    }
    let (dq, dk, dv) = (target(ins[0]), target(ins[1]), target(ins[2]))
    let scratch = Tensor(empty: [2 * plan.total], meta: probs.isMeta)   // dP chain and the dropped probabilities
    guard let gp = g.data, let pp = probs.data, let sp = scratch.data else { return }
    let (qp, kp, vp) = (q.ptr, k.ptr, v.ptr)
    let (dh, width) = (plan.headDim, plan.width), alpha = scaleInProduct ? factor : 1
    parallelFor(plan.queries.batch * plan.heads, grain: 1) { tasks in
        for i in tasks {
            let t = plan.task(i), n = t.lq * t.lk, block = pp + t.p
            let dP = sp + t.p, used = dropout == nil ? block : sp + plan.total + t.p
            if let d = dropout { applyDropout(block, into: used, plan: plan, task: t, d) }
            // dv_h [Lk, Dh] (+)= P̃ᵀ [Lk, Lq] dO_h [Lq, Dh]
            if let (dvT, beta) = dv {
                sgemm(true, false, t.lk, dh, t.lq, 1, used, t.lk, gp + t.q, width, beta, dvT.ptr + t.k, width)
            }
            guard dq != nil || dk != nil else { continue }
            // dP̃ [Lq, Lk] = dO_h v_hᵀ, then through dropout and softmax: dS = P (dP - rowsum(dP P))
            sgemm(false, true, t.lq, t.lk, dh, 1, gp + t.q, width, vp + t.k, width, 0, dP, t.lk)
            if let d = dropout { applyDropout(dP, into: dP, plan: plan, task: t, d) }
            for r in 0..<t.lq { softmaxBackwardRowWrite(dP + r * t.lk, block + r * t.lk, dP + r * t.lk, t.lk) }
            if !scaleInProduct { for j in 0..<n { dP[j] = factor * dP[j] } }
            // dq_h [Lq, Dh] (+)= alpha dS k_h;  dk_h [Lk, Dh] (+)= alpha dSᵀ q_h
            if let (dqT, beta) = dq {
                sgemm(false, false, t.lq, dh, t.lk, alpha, dP, t.lk, kp + t.k, width, beta, dqT.ptr + t.q, width)
            }
            if let (dkT, beta) = dk {
                sgemm(true, false, t.lk, dh, t.lq, alpha, dP, t.lk, qp + t.q, width, beta, dkT.ptr + t.k, width)
            }
        }
    }
}
