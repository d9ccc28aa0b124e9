/// Batch norm over (N, H, W) per channel, x [N, C, H, W], weight/bias/runningMean/runningVar [C].
/// Training: normalises with the batch mean and biased variance, and updates the running stats in place
/// as PyTorch does: running = (1 − momentum) running + momentum stat, with the *unbiased* variance
/// (· M / (M − 1), M = N·H·W). Eval: normalises with the running stats. The running stats are buffers:
/// never recorded, never given a gradient. Saves x, weight and the per-channel mean and rstd ([C] each).
public func batchNorm2d(_ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor,
                        training: Bool, momentum: Float = 0.1, eps: Float = 1e-5) -> Tensor {
    check(x.shape.count == 4, "batchNorm2d: x \(x.shape) is not (N, C, H, W)")
    let s = ChannelLayout(n: x.shape[0], c: x.shape[1], plane: x.shape[2] * x.shape[3])
    for t in [weight, bias, runningMean, runningVar] {
        check(t.shape == [s.c], "batchNorm2d: x \(x.shape) needs [\(s.c)] parameters and stats, got \(t.shape)")
    }
    check(!training || s.count > 1, "batchNorm2d: training needs more than one value per channel, x \(x.shape)")
    let out = output(x.shape, x, weight, bias)
    let mean = Tensor(empty: [s.c], meta: out.isMeta), rstd = Tensor(empty: [s.c], meta: out.isMeta)
    if let o = out.data {
        if training {
            batchStatistics(x.ptr, s, mean.ptr, rstd.ptr, runningMean.ptr, runningVar.ptr, momentum, eps)
        } else {
            for ch in 0..<s.c { mean.ptr[ch] = runningMean.ptr[ch]; rstd.ptr[ch] = 1 / (runningVar.ptr[ch] + eps).squareRoot() }
        }
        let xp = x.ptr, w = weight.ptr, b = bias.ptr, m = mean.ptr, r = rstd.ptr
        s.forEachPlane { ch, offset in
            let scale = r[ch] * w[ch], shift = b[ch] - m[ch] * r[ch] * w[ch]
            for j in offset..<offset + s.plane { o[j] = xp[j] * scale + shift }
        }
    }
    if needsGrad(x, weight, bias) {
        out.record([x, weight, bias]) { g, ins in
            let dx = ins[0]?.gradTensor(), dw = ins[1]?.gradTensor(), db = ins[2]?.gradTensor()
            guard let gp = g.data else { return }
            batchNormBackward(gp, x.ptr, weight.ptr, (mean.ptr, rstd.ptr), s, training: training,
                              dx?.ptr, dw?.ptr, db?.ptr)
        }
    }
    return out
}

/// Channel c of an [N, C, plane] tensor is N runs of `plane` elements, one per image.
struct ChannelLayout {
    let n: Int, c: Int, plane: Int
    var count: Int { n * plane }

    /// body(channel, offset of one run) for every run; channels split over threads.
    func forEachPlane(_ body: (Int, Int) -> Void) {
        parallelFor(c, grain: 1) { chans in
            for ch in chans { for i in 0..<n { body(ch, (i * c + ch) * plane) } }
        }
    }

    /// (Σ f(j), Σ f2(j)) over the elements j of one channel, in Double.
    func sums(_ ch: Int, _ f: (Int) -> (Double, Double)) -> (Double, Double) {
        var a = 0.0, b = 0.0
        for i in 0..<n {
            let base = (i * c + ch) * plane
            for j in base..<base + plane { let (u, v) = f(j); a += u; b += v }
        }
        return (a, b)
    }
}

/// Batch mean and rstd per channel (Double sums; two passes for the variance), and the running update.
private func batchStatistics(_ x: UnsafePointer<Float>, _ s: ChannelLayout, _ mean: UnsafeMutablePointer<Float>,
                             _ rstd: UnsafeMutablePointer<Float>, _ runMean: UnsafeMutablePointer<Float>,
                             _ runVar: UnsafeMutablePointer<Float>, _ momentum: Float, _ eps: Float) {
    let m = Double(s.count)
    parallelFor(s.c, grain: 1) { chans in
        for ch in chans {
            let mu = s.sums(ch) { (Double(x[$0]), 0) }.0 / m
            let v = s.sums(ch) { let d = Double(x[$0]) - mu; return (d * d, 0) }.0 / m   // biased
            mean[ch] = Float(mu)
            rstd[ch] = Float(1 / (v + Double(eps)).squareRoot())
            runMean[ch] = (1 - momentum) * runMean[ch] + momentum * Float(mu)
            runVar[ch] = (1 - momentum) * runVar[ch] + momentum * Float(v * m / (m - 1))
        }
    }
}

/// With n = (x − mean) rstd per channel: dweight += Σ g n, dbias += Σ g, and
/// dx += weight rstd (g − Σg / M − n Σ(g n) / M) in training (the batch stats depend on x),
/// dx += weight rstd g in eval (the running stats do not).
private func batchNormBackward(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                               _ stats: (mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>), _ s: ChannelLayout,
                               training: Bool, _ dx: UnsafeMutablePointer<Float>?, _ dw: UnsafeMutablePointer<Float>?,
                               _ db: UnsafeMutablePointer<Float>?) {
    parallelFor(s.c, grain: 1) { chans in
        for ch in chans {
            let mu = stats.mean[ch], r = stats.rstd[ch]
            let (sg, sgn) = s.sums(ch) { j in (Double(g[j]), Double(g[j]) * Double((x[j] - mu) * r)) }
            dw?[ch] += Float(sgn)
            db?[ch] += Float(sg)
            guard let dx else { continue }
            let k = w[ch] * r
            let a = training ? Float(sg / Double(s.count)) : 0, b = training ? Float(sgn / Double(s.count)) : 0
            for i in 0..<s.n {
                let base = (i * s.c + ch) * s.plane
                for j in base..<base + s.plane { dx[j] += k * (g[j] - a - (x[j] - mu) * r * b) }
            }
        }
    }
}
