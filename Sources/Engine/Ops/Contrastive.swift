import Foundation

/// Each row of x [N, D] divided by its L2 norm (F.normalize(dim=-1), eps 1e-12 on the norm).
/// Saves its output and the per-row norms [N]. Backward: dx = (g - y (g·y)) / n.
public func l2NormalizeRows(_ x: Tensor) -> Tensor {
    check(x.shape.count == 2, "l2NormalizeRows needs [N, D], got \(x.shape)")
    let n = x.shape[0], d = x.shape[1]
    let out = output(x.shape, x)
    let norms = Tensor(empty: [n], meta: out.isMeta)
    if let o = out.data, let np = norms.data {
        let xp = x.ptr
        for r in 0..<n {
            let xr = xp + r * d, orow = o + r * d
            var squares = 0.0
            for j in 0..<d { squares += Double(xr[j]) * Double(xr[j]) }
            let norm = Float(max(squares.squareRoot(), 1e-12))
            np[r] = norm
            for j in 0..<d { orow[j] = xr[j] / norm }
        }
    }
    if needsGrad(x) {
        let y = out.alias()
        out.record([x]) { g, ins in
            guard let dx = ins[0]?.gradTensor(), let gp = g.data, let yp = y.data, let np = norms.data,
                  let dp = dx.data else { return }
            for r in 0..<n {
                let gr = gp + r * d, yr = yp + r * d, dr = dp + r * d
                var dot = 0.0
                for j in 0..<d { dot += Double(gr[j]) * Double(yr[j]) }
                let projection = Float(dot), inverse = 1 / np[r]
                for j in 0..<d { dr[j] += (gr[j] - yr[j] * projection) * inverse }
            }
        }
    }
    return out
}

/// Per-row cross-entropy against a target distribution: loss_r = -Σ_j t_rj log softmax(x_r)_j.
/// logits [N, C], targets N·C probabilities (each row sums to 1) -> [N]. BLIP's ITC loss with soft
/// targets. Saves the logits and the per-row log-sum-exp. Backward: dx_rj = g_r (softmax_rj Σ_k t_rk - t_rj).
public func softCrossEntropy(logits: Tensor, targets: [Float]) -> Tensor {
    check(logits.shape.count == 2, "softCrossEntropy logits must be [N, C], got \(logits.shape)")
    let n = logits.shape[0], c = logits.shape[1]
    check(targets.count == n * c, "softCrossEntropy: \(targets.count) targets for [\(n), \(c)] logits")
    let out = output([n], logits)
    let lse = Tensor(empty: [n], meta: out.isMeta)
    if let o = out.data, let l = lse.data {
        let x = logits.ptr
        for r in 0..<n {
            let xr = x + r * c
            let mx = maxValue(xr, count: c)
            l[r] = mx + Float(Foundation.log(sumExp(xr, count: c, shift: mx)))
            var loss = 0.0
            for j in 0..<c where targets[r * c + j] != 0 { loss += Double(targets[r * c + j]) * Double(l[r] - xr[j]) }
            o[r] = Float(loss)
        }
    }
    if needsGrad(logits) {
        let saved = SavedTensor(logits)
        out.record([logits]) { g, ins in
            guard let dx = ins[0]?.gradTensor(), let gp = g.data, let d = dx.data, let l = lse.data else { return }
            let logits = saved.take()   // held to the end of the loop: its buffer is read through x
            let x = logits.ptr
            for r in 0..<n {
                let xr = x + r * c, dr = d + r * c, t = r * c
                var mass: Float = 0
                for j in 0..<c { mass += targets[t + j] }
                for j in 0..<c { dr[j] += gp[r] * (Foundation.exp(xr[j] - l[r]) * mass - targets[t + j]) }
            }
            withExtendedLifetime(logits) {}
        }
    }
    return out
}
