import Foundation

public struct OptimizerError: Error, CustomStringConvertible {
    public let description: String
}

/// AdamW as torch.optim.AdamW: decoupled weight decay, bias correction. State (exp_avg, exp_avg_sq) is
/// created lazily at the first step, only for trainable tensors that received a gradient.
public final class AdamW {
    public var lr: Float
    public let beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    public private(set) var stepCount = 0
    private let params: [(name: String, tensor: Tensor)]
    private var expAvg: [ObjectIdentifier: Tensor] = [:]
    private var expAvgSq: [ObjectIdentifier: Tensor] = [:]
    /// Per-parameter multipliers of `lr` (torch's parameter groups with their own lr); absent: 1.
    private var lrScales: [ObjectIdentifier: Float] = [:]

    /// `lrScale` gives each parameter's multiplier of `lr` by name (e.g. a higher lr for the image encoder).
    public init(parameters: [(name: String, tensor: Tensor)], lr: Float, betas: (Float, Float) = (0.9, 0.999),
                eps: Float = 1e-8, weightDecay: Float = 0.05, lrScale: (String) -> Float = { _ in 1 }) {
        params = parameters.filter { $0.tensor.isTrainable }
        for (name, p) in params { let s = lrScale(name); if s != 1 { lrScales[ObjectIdentifier(p)] = s } }
        self.lr = lr
        (beta1, beta2) = betas
        self.eps = eps
        self.weightDecay = weightDecay
    }

    public func step() {
        stepCount += 1
        let (bc1, bc2) = biasCorrections()
        for (_, p) in params { apply(to: p, bc1: bc1, bc2: bc2) }
    }

    /// `loss.backward(); step(); zeroGrad()` in one pass: each parameter is updated as soon as backward
    /// has finished its gradient, and that gradient is dropped right away. The values are the same as
    /// with the three calls (a parameter's update reads only its own gradient and state, and no op reads
    /// a parameter after its gradient is final), but the gradients are never all alive at once and each
    /// is read back while it is still in cache. Gradients of leaves this optimizer does not own are kept.
    public func backwardAndStep(_ loss: Tensor) {
        stepCount += 1
        let (bc1, bc2) = biasCorrections()
        let owned = Set(params.map { ObjectIdentifier($0.tensor) })
        loss.backward { leaf in
            guard owned.contains(ObjectIdentifier(leaf)) else { return }
            self.apply(to: leaf, bc1: bc1, bc2: bc2)
            leaf.grad = nil
        }
    }

    private func biasCorrections() -> (Float, Float) {
        (1 - pow(beta1, Float(stepCount)), 1 - pow(beta2, Float(stepCount)))
    }

    /// One parameter's AdamW update from its gradient (none: untouched); creates its state on first use.
    private func apply(to p: Tensor, bc1: Float, bc2: Float) {
        guard let g = p.grad else { return }
        let id = ObjectIdentifier(p)
        let m = expAvg[id] ?? Tensor.zeros(p.shape), v = expAvgSq[id] ?? Tensor.zeros(p.shape)
        expAvg[id] = m; expAvgSq[id] = v
        guard let pp = p.data, let gp = g.data, let mp = m.data, let vp = v.data else { return }   // meta: shapes only
        update(pp, gp, mp, vp, p.count, lr: lr * (lrScales[id] ?? 1), bc1: bc1, bc2: bc2)
    }

    // p *= 1 - lr wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m / bc1) / (sqrt(v / bc2) + eps)
    private func update(_ p: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ m: UnsafeMutablePointer<Float>,
                        _ v: UnsafeMutablePointer<Float>, _ n: Int, lr: Float, bc1: Float, bc2: Float) {
        let decay = 1 - lr * weightDecay, stepSize = lr / bc1, sqrtBc2 = bc2.squareRoot()
        let (b1, b2, e) = (beta1, beta2, eps)
        let (c1, c2) = (1 - b1, 1 - b2)
        // Explicit 8-wide vectors: the scalar loop compiled to sqrtss/divss (with a sqrtf call path), since
        // the compiler cannot prove the four buffers disjoint. Same operations in the same order per
        // element, so the results are bit-identical to the scalar formula kept for the tail.
        parallelFor(n, grain: 65536) { r in
            var i = r.lowerBound
            while i + 8 <= r.upperBound {
                let gi = load8(g + i)
                let pi = load8(p + i) * decay
                let mi = b1 * load8(m + i) + c1 * gi
                let vi = b2 * load8(v + i) + c2 * gi * gi
                store8(mi, m + i); store8(vi, v + i)
                store8(pi - stepSize * mi / (vi.squareRoot() / sqrtBc2 + e), p + i)
                i += 8
            }
            while i < r.upperBound {
                p[i] *= decay
                m[i] = b1 * m[i] + c1 * g[i]
                v[i] = b2 * v[i] + c2 * g[i] * g[i]
                p[i] -= stepSize * m[i] / (v[i].squareRoot() / sqrtBc2 + e)
                i += 1
            }
        }
    }

    /// Drops all gradients (set_to_none), which frees their memory.
    public func zeroGrad() {
        for (_, p) in params { p.grad = nil }
    }

    /// "exp_avg.<name>" and "exp_avg_sq.<name>" for every parameter that has state.
    public func stateTensors() -> [(name: String, tensor: Tensor)] {
        var out: [(name: String, tensor: Tensor)] = []
        for (name, p) in params {
            let id = ObjectIdentifier(p)
            if let m = expAvg[id], let v = expAvgSq[id] {
                out.append(("exp_avg." + name, m)); out.append(("exp_avg_sq." + name, v))
            }
        }
        return out
    }

    /// Restores state written by stateTensors(); every tensor must match its parameter's shape.
    public func loadState(_ tensors: [String: Tensor], step: Int) throws {
        var m: [ObjectIdentifier: Tensor] = [:], v: [ObjectIdentifier: Tensor] = [:]
        for (name, p) in params {
            let a = tensors["exp_avg." + name], b = tensors["exp_avg_sq." + name]
            if a == nil && b == nil { continue }
            guard let a, let b else { throw OptimizerError(description: "optimizer state for '\(name)' has only one of exp_avg/exp_avg_sq") }
            guard a.shape == p.shape, b.shape == p.shape else {
                throw OptimizerError(description: "optimizer state for '\(name)' has shape \(a.shape)/\(b.shape), parameter is \(p.shape)")
            }
            m[ObjectIdentifier(p)] = a; v[ObjectIdentifier(p)] = b
        }
        let known = Set(params.flatMap { ["exp_avg." + $0.name, "exp_avg_sq." + $0.name] })
        if let stray = tensors.keys.sorted().first(where: { !known.contains($0) }) {
            throw OptimizerError(description: "optimizer state '\(stray)' matches no trainable parameter")
        }
        guard step >= 0 else { throw OptimizerError(description: "optimizer step \(step) is negative") }
        expAvg = m; expAvgSq = v; stepCount = step
    }
}

/// Per-epoch cosine schedule to 0 (spec §4): 0.5 lr (1 + cos(pi epoch / maxEpoch)).
public func cosineLR(initial: Float, epoch: Int, maxEpoch: Int) -> Float {
    0.5 * initial * (1 + Float(Foundation.cos(Double.pi * Double(epoch) / Double(Swift.max(maxEpoch, 1)))))
}

/// fairseq's `polynomial_decay` schedule, the lr for the update after `numUpdates` updates (fairseq's
/// step_update(num_updates)): linear warmup numUpdates / warmupUpdates · peak while
/// numUpdates <= warmupUpdates, then (peak − end) · (1 − (u − warmup) / (total − warmup))^power + end,
/// and `end` from totalUpdates on.
public func polynomialDecayLR(peak: Float, numUpdates u: Int, warmupUpdates: Int, totalUpdates: Int,
                              end: Float = 0, power: Float = 1) -> Float {
    if warmupUpdates > 0 && u <= warmupUpdates { return Float(u) / Float(warmupUpdates) * peak }
    if u >= totalUpdates { return end }
    let remaining = 1 - Double(u - warmupUpdates) / Double(totalUpdates - warmupUpdates)
    return (peak - end) * Float(Foundation.pow(remaining, Double(power))) + end
}

/// torch.nn.utils.clip_grad_norm_: the global L2 norm of the gradients of `parameters` (Double sum; a
/// tensor without a gradient counts 0); when above maxNorm every gradient is scaled by
/// maxNorm / (norm + 1e-6). Returns the norm before clipping.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    var squares = 0.0
    for case let g? in parameters.map(\.grad) {
        guard let d = g.data else { continue }
        for i in 0..<g.count { squares += Double(d[i]) * Double(d[i]) }
    }
    let norm = Float(squares.squareRoot())
    let coefficient = maxNorm / (norm + 1e-6)
    guard coefficient < 1 else { return norm }
    for case let g? in parameters.map(\.grad) {
        guard let d = g.data else { continue }
        for i in 0..<g.count { d[i] *= coefficient }
    }
    return norm
}
