/// Layer norm over the last axis: (x - mean) / sqrt(var + eps) * weight + bias.
/// x [..., D], weight/bias [D]. Saves x, weight and per-row mean and rstd ([rows] each).
public func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float) -> Tensor {
    let d = x.shape.last!, rows = x.count / Swift.max(d, 1)
    check(weight.shape == [d] && bias.shape == [d], "layerNorm: x \(x.shape), weight \(weight.shape), bias \(bias.shape)")
    let out = output(x.shape, x, weight, bias)
    let grad = needsGrad(x, weight, bias)
    let mean = grad ? Tensor(empty: [rows], meta: out.isMeta) : nil
    let rstd = grad ? Tensor(empty: [rows], meta: out.isMeta) : nil
    if let o = out.data {
        let xp = x.ptr, w = weight.ptr, b = bias.ptr, mp = mean?.data, rp = rstd?.data
        parallelFor(rows, grain: 32) { range in
            for r in range {
                let xr = xp + r * d, yr = o + r * d
                let m = laneSum(xr, count: d) / Float(d)
                let v = laneSquaredDeviations(xr, mean: m, count: d)
                let s = 1 / (v / Float(d) + eps).squareRoot()
                for j in 0..<d { yr[j] = (xr[j] - m) * s * w[j] + b[j] }
                mp?[r] = m; rp?[r] = s
            }
        }
    }
    if grad {
        out.record([x, weight, bias]) { g, ins in
            let dx = ins[0]?.gradForWrite(), dw = ins[1]?.gradTensor(), db = ins[2]?.gradTensor()
            guard let gp = g.data else { return }
            let stats = (mean: mean!.ptr, rstd: rstd!.ptr)
            if let dx { layerNormInputGrad(gp, x.ptr, weight.ptr, stats, dx.tensor.ptr, fresh: dx.fresh, rows, d) }
            if dw != nil || db != nil { layerNormParamGrads(gp, x.ptr, stats, dw?.ptr, db?.ptr, rows, d) }
        }
    }
    return out
}

// llm.c layernorm_backward: dx += (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd,
// dweight += norm * dy, dbias += dy, with dnorm = weight * dy.
// `fresh`: dx is a new uninitialised gradient, written instead of zero-filled and added to.
private func layerNormInputGrad(_ g: UnsafeMutablePointer<Float>, _ x: UnsafeMutablePointer<Float>,
                                _ w: UnsafeMutablePointer<Float>,
                                _ stats: (mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>),
                                _ dx: UnsafeMutablePointer<Float>, fresh: Bool, _ rows: Int, _ d: Int) {
    parallelFor(rows, grain: 32) { range in
        for r in range {
            let xr = x + r * d, gr = g + r * d, dr = dx + r * d, m = stats.mean[r], s = stats.rstd[r]
            let (a, b) = laneSums(w, gr, xr, mean: m, rstd: s, count: d)
            if fresh { for j in 0..<d { dr[j] = (w[j] * gr[j] - a - (xr[j] - m) * s * b) * s } }
            else { for j in 0..<d { dr[j] += (w[j] * gr[j] - a - (xr[j] - m) * s * b) * s } }
        }
    }
}

/// (sum of dn, sum of dn * norm) / count for dn = w * g, norm = (x - mean) * rstd, in eight lanes (see laneSum).
@inline(__always)
private func laneSums(_ w: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                      mean m: Float, rstd s: Float, count d: Int) -> (Float, Float) {
    var a = SIMD8<Float>(), b = SIMD8<Float>(), j = 0
    while j + 8 <= d {
        let dn = load8(w + j) * load8(g + j)
        a += dn; b += dn * (load8(x + j) - m) * s
        j += 8
    }
    while j < d { let dn = w[j] * g[j]; a[j & 7] += dn; b[j & 7] += dn * (x[j] - m) * s; j += 1 }
    return (a.sum() / Float(d), b.sum() / Float(d))
}

/// dweight and dbias: columns split over threads, rows added in order (independent of the split).
private func layerNormParamGrads(_ g: UnsafeMutablePointer<Float>, _ x: UnsafeMutablePointer<Float>,
                                 _ stats: (mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>),
                                 _ dw: UnsafeMutablePointer<Float>?, _ db: UnsafeMutablePointer<Float>?, _ rows: Int, _ d: Int) {
    if let db { addColumnSums(g, rows: rows, columns: d, into: db) }
    guard let dw else { return }
    parallelFor(d, grain: Swift.max(16, d * 8192 / Swift.max(rows * d, 1))) { cs in
        for r in 0..<rows {
            let xr = x + r * d, gr = g + r * d, m = stats.mean[r], s = stats.rstd[r]
            for j in cs { dw[j] += (xr[j] - m) * s * gr[j] }
        }
    }
}
