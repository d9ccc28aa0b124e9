// Attention products that read the heads straight out of [B, T, width] activations and write the context
// back as [B, T, H·Dh]: one strided sgemm per (batch, head) instead of permuting q, k and v into
// [B, H, T, Dh] copies and the context back (llm.c's attention reads its packed qkv the same way). Each
// per-head product is the same K-long dot product as on a contiguous copy, so the values are the same.

/// H heads of Dh columns of a [B, T, width] tensor, starting at `column` (e.g. the key block of ViT's
/// packed qkv at column C).
public struct HeadView {
    public let tensor: Tensor
    public let column: Int

    public init(_ tensor: Tensor, column: Int = 0) {
        self.tensor = tensor
        self.column = column
    }

    var batch: Int { tensor.shape[0] }
    var length: Int { tensor.shape[1] }
    var width: Int { tensor.shape[2] }

    func check(heads: Int, headDim: Int, _ what: String) {
        Engine.check(tensor.shape.count == 3, "\(what): needs [B, T, width], got \(tensor.shape)")
        Engine.check(column >= 0 && column + heads * headDim <= width,
                     "\(what): \(heads) heads of \(headDim) at column \(column) exceed width \(width)")
    }

    /// Offset of head h of batch item b.
    func offset(_ b: Int, _ h: Int, headDim: Int) -> Int { b * length * width + column + h * headDim }

    /// Whether the heads cover the whole tensor (a gradient written head by head then needs no zero fill).
    func covers(heads: Int, headDim: Int) -> Bool { column == 0 && heads * headDim == width }
}

/// Gradient buffer for a view written head block by head block: overwritten (beta 0) when the view covers
/// its whole fresh tensor, else zero-filled once and accumulated (beta 1).
private func gradTarget(_ node: Node, _ view: HeadView, heads: Int, headDim: Int, shared: Bool) -> (Tensor, Float) {
    if view.covers(heads: heads, headDim: headDim), !shared {
        let (g, fresh) = node.gradForWrite()
        return (g, fresh ? 0 : 1)
    }
    return (node.gradTensor(), 1)
}

/// scores [B, H, T, S] = alpha · q_h k_hᵀ for every batch item and head; q [B, T, ·], k [B, S, ·].
public func headScores(_ q: HeadView, _ k: HeadView, heads: Int, headDim: Int, alpha: Float) -> Tensor {
    q.check(heads: heads, headDim: headDim, "headScores q")
    k.check(heads: heads, headDim: headDim, "headScores k")
    check(q.batch == k.batch, "headScores: batch \(q.batch) vs \(k.batch)")
    let (b, t, s, dh) = (q.batch, q.length, k.length, headDim)
    let out = output([b, heads, t, s], q.tensor, k.tensor)
    if let o = out.data {
        let qp = q.tensor.ptr, kp = k.tensor.ptr
        parallelFor(b * heads, grain: 1) { items in
            for i in items {
                let (bi, h) = (i / heads, i % heads)
                sgemm(false, true, t, s, dh, alpha, qp + q.offset(bi, h, headDim: dh), q.width,
                      kp + k.offset(bi, h, headDim: dh), k.width, 0, o + i * t * s, s)
            }
        }
    }
    if needsGrad(q.tensor, k.tensor) {
        let savedQ = k.tensor.requiresGrad ? q.tensor : nil, savedK = q.tensor.requiresGrad ? k.tensor : nil
        let shared = q.tensor === k.tensor
        out.record([q.tensor, k.tensor]) { g, ins in
            let dq = ins[0].map { gradTarget($0, q, heads: heads, headDim: dh, shared: shared) }
            let dk = ins[1].map { gradTarget($0, k, heads: heads, headDim: dh, shared: shared) }
            guard let gp = g.data else { return }
            parallelFor(b * heads, grain: 1) { items in
                for i in items {
                    let (bi, h) = (i / heads, i % heads), gi = gp + i * t * s
                    // dq_h [T, Dh] (+)= alpha dS [T, S] k_h [S, Dh]
                    if case let (dqT, beta)? = dq, let dqp = dqT.data {
                        sgemm(false, false, t, dh, s, alpha, gi, s, savedK!.ptr + k.offset(bi, h, headDim: dh), k.width,
                              beta, dqp + q.offset(bi, h, headDim: dh), q.width)
                    }
                    // dk_h [S, Dh] (+)= alpha dSᵀ [S, T] q_h [T, Dh]
                    if case let (dkT, beta)? = dk, let dkp = dkT.data {
                        sgemm(true, false, s, dh, t, alpha, gi, s, savedQ!.ptr + q.offset(bi, h, headDim: dh), q.width,
                              beta, dkp + k.offset(bi, h, headDim: dh), k.width)
                    }
                }
            }
        }
    }
    return out
}

/// context [B, T, H·Dh] = probs_h v_h for every batch item and head; probs [B, H, T, S], v [B, S, ·].
public func headContext(_ probs: Tensor, _ v: HeadView, heads: Int, headDim: Int) -> Tensor {
    v.check(heads: heads, headDim: headDim, "headContext v")
    check(probs.shape.count == 4 && probs.shape[0] == v.batch && probs.shape[1] == heads && probs.shape[3] == v.length,
          "headContext: probs \(probs.shape) do not match \(heads) heads over v \(v.tensor.shape)")
    let (b, t, s, dh, c) = (v.batch, probs.shape[2], v.length, headDim, heads * headDim)
    let out = output([b, t, c], probs, v.tensor)
    if let o = out.data {
        let pp = probs.ptr, vp = v.tensor.ptr
        parallelFor(b * heads, grain: 1) { items in
            for i in items {
                let (bi, h) = (i / heads, i % heads)
                sgemm(false, false, t, dh, s, 1, pp + i * t * s, s, vp + v.offset(bi, h, headDim: dh), v.width,
                      0, o + bi * t * c + h * dh, c)
            }
        }
    }
    if needsGrad(probs, v.tensor) {
        let savedP = v.tensor.requiresGrad ? probs : nil, savedV = probs.requiresGrad ? v.tensor : nil
        out.record([probs, v.tensor]) { g, ins in
            let dp = ins[0]?.gradForWrite()
            let dv = ins[1].map { gradTarget($0, v, heads: heads, headDim: dh, shared: false) }
            guard let gp = g.data else { return }
            parallelFor(b * heads, grain: 1) { items in
                for i in items {
                    let (bi, h) = (i / heads, i % heads), gi = gp + bi * t * c + h * dh
                    // dP [T, S] (+)= dO_h [T, Dh] v_hᵀ [Dh, S]
                    if let dp, let dpp = dp.tensor.data {
                        sgemm(false, true, t, s, dh, 1, gi, c, savedV!.ptr + v.offset(bi, h, headDim: dh), v.width,
                              dp.fresh ? 0 : 1, dpp + i * t * s, s)
                    }
                    // dv_h [S, Dh] (+)= Pᵀ [S, T] dO_h [T, Dh]
                    if case let (dvT, beta)? = dv, let dvp = dvT.data {
                        sgemm(true, false, s, dh, t, 1, savedP!.ptr + i * t * s, s, gi, c, beta,
                              dvp + v.offset(bi, h, headDim: dh), v.width)
                    }
                }
            }
        }
    }
    return out
}
