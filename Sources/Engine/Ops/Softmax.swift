import Foundation

/// Row offsets of a mask broadcast against x's leading dims (last dim handled with stride 0 or 1).
private struct MaskIndex {
    let dims: [Int]       // x's leading dims
    let strides: [Int]    // mask strides for them (0 where broadcast)
    let lastStride: Int

    init(mask: [Int], x: [Int]) {
        check(mask.count <= x.count, "mask \(mask) has more dims than x \(x)")
        let pm = Array(repeating: 1, count: x.count - mask.count) + mask
        var strides = Array(repeating: 0, count: x.count), acc = 1
        for i in stride(from: x.count - 1, through: 0, by: -1) {
            check(pm[i] == x[i] || pm[i] == 1, "mask \(mask) does not broadcast to \(x)")
            if pm[i] != 1 { strides[i] = acc }
            acc *= pm[i]
        }
        dims = Array(x.dropLast())
        lastStride = strides[x.count - 1]
        self.strides = Array(strides.dropLast())
    }

    func offset(row: Int) -> Int {
        var r = row, off = 0
        for d in stride(from: dims.count - 1, through: 0, by: -1) {
            off += (r % dims[d]) * strides[d]
            r /= dims[d]
        }
        return off
    }
}

/// softmax(x + mask) over the last axis; mask is additive and broadcast to x. Saves its output.
public func softmax(_ x: Tensor, mask: Tensor? = nil) -> Tensor {
    let n = x.shape.last ?? 1, rows = x.count / Swift.max(n, 1)
    let mi = mask.map { MaskIndex(mask: $0.shape, x: x.shape) }
    let out = mask.map { output(x.shape, x, $0) } ?? output(x.shape, x)
    if let o = out.data {
        let xp = x.ptr, mp = mask?.ptr
        parallelFor(rows, grain: 64) { range in
            for r in range {
                softmaxRow(xp + r * n, mp.map { $0 + mi!.offset(row: r) }, mi?.lastStride ?? 0, o + r * n, n)
            }
        }
    }
    let inputs = [x] + (mask.map { [$0] } ?? [])
    if Mode.gradEnabled && inputs.contains(where: { $0.requiresGrad }) {
        let y = out.alias()
        out.record(inputs) { g, ins in
            let dx = ins[0]?.gradForWrite(), dm = ins.count > 1 ? ins[1]?.gradTensor() : nil
            guard let gp = g.data else { return }
            let yp = y.ptr
            // dx_j = y_j (g_j - sum_i g_i y_i); the mask gets the same gradient, reduced over broadcast dims
            if let dx {
                let d = dx.tensor.ptr, fresh = dx.fresh
                parallelFor(rows, grain: 64) { range in
                    for r in range {
                        if fresh { softmaxBackwardRowWrite(gp + r * n, yp + r * n, d + r * n, n) }
                        else { softmaxBackwardRow(gp + r * n, yp + r * n, d + r * n, 1, n) }
                    }
                }
            }
            if let dm, let mi {
                let d = dm.ptr
                for r in 0..<rows { softmaxBackwardRow(gp + r * n, yp + r * n, d + mi.offset(row: r), mi.lastStride, n) }
            }
        }
    }
    return out
}

/// y = softmax(x + m) for one row (m at stride ms, or none; x may be y). Max, sum and the backward's dot
/// reduce in lanes (Kernels.swift), so a row padded with masked keys gives the unpadded row's bits.
@inline(__always)
func softmaxRow(_ x: UnsafeMutablePointer<Float>, _ m: UnsafeMutablePointer<Float>?, _ ms: Int,
                        _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    if let m { for j in 0..<n { y[j] = x[j] + m[j * ms] } }
    else if x != y { y.update(from: x, count: n) }
    let mx = maxValue(y, count: n)
    for j in 0..<n { y[j] = expNonPositive(y[j] - mx) }
    let inv = 1 / laneSum(y, count: n)
    for j in 0..<n { y[j] *= inv }
}

@inline(__always)
private func softmaxBackwardRow(_ g: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                _ d: UnsafeMutablePointer<Float>, _ ds: Int, _ n: Int) {
    let dot = laneDot(g, y, count: n)
    if ds == 1 { for j in 0..<n { d[j] += y[j] * (g[j] - dot) } }
    else { for j in 0..<n { d[j * ds] += y[j] * (g[j] - dot) } }
}

/// softmaxBackwardRow into a fresh (uninitialised) gradient row: = instead of +=, no zero fill.
@inline(__always)
func softmaxBackwardRowWrite(_ g: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                     _ d: UnsafeMutablePointer<Float>, _ n: Int) {
    let dot = laneDot(g, y, count: n)
    for j in 0..<n { d[j] = y[j] * (g[j] - dot) }
}

/// Scaled dot-product attention: softmax(q k^T / sqrt(Dh) + mask) v.
/// q [B, H, Tq, Dh], k/v [B, H, Tk, Dh], mask broadcastable to [B, H, Tq, Tk] -> [B, H, Tq, Dh].
public func attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor?) -> Tensor {
    var rng = RNG(seed: 0)
    return attention(q: q, k: k, v: v, mask: mask, dropout: 0, rng: &rng, training: false)
}

/// Attention with dropout on the probabilities (BERT attention_probs_dropout_prob).
public func attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor?, dropout p: Float, rng: inout RNG,
                      training: Bool) -> Tensor {
    let dh = q.shape.last!
    let scores = matmul(q, k, transposeA: false, transposeB: true, alpha: 1 / Float(dh).squareRoot())
    let probs = dropout(softmax(scores, mask: mask), p: p, rng: &rng, training: training)
    return matmul(probs, v)
}

/// Causal mask [1, 1, t, prefix + t]: query i sees keys 0 ..< prefix + i + 1. Blocked entries are -10000
/// (BERT's extended-mask value, which exp() turns into exactly 0 next to unmasked scores).
public func causalMask(_ t: Int, prefix: Int = 0) -> Tensor {
    let tk = prefix + t
    let m = Tensor(empty: [1, 1, t, tk])
    if let d = m.data {
        for i in 0..<t { for j in 0..<tk { d[i * tk + j] = j <= prefix + i ? 0 : -10000 } }
    }
    return m
}

/// Padding mask from keep flags (1 keep / 0 pad), [B * length] -> additive [B, 1, 1, length] (0 / -10000).
public func paddingMask(_ keep: [Int32], batch: Int, length: Int) -> Tensor {
    check(keep.count == batch * length, "paddingMask: \(keep.count) flags for \(batch) x \(length)")
    let m = Tensor(empty: [batch, 1, 1, length])
    if let d = m.data { for i in 0..<keep.count { d[i] = keep[i] != 0 ? 0 : -10000 } }
    return m
}
