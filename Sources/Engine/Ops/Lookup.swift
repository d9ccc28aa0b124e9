import Foundation

/// table [V, D] gathered at ids -> shape + [D]. Backward scatter-adds into the table's gradient.
public func embedding(ids: [Int32], shape: [Int], table: Tensor) -> Tensor {
    check(table.shape.count == 2, "embedding table must be [V, D], got \(table.shape)")
    check(shape.reduce(1, *) == ids.count, "embedding: \(ids.count) ids for shape \(shape)")
    let v = table.shape[0], d = table.shape[1]
    for (i, id) in ids.enumerated() {
        check(id >= 0 && Int(id) < v, "embedding: id \(id) at position \(i) outside vocabulary of \(v)")
    }
    let out = output(shape + [d], table)
    if let o = out.data {
        let t = table.ptr
        for (i, id) in ids.enumerated() { (o + i * d).update(from: t + Int(id) * d, count: d) }
    }
    if needsGrad(table) {
        out.record([table]) { g, ins in
            guard let dt = ins[0]?.gradTensor(), let gp = g.data else { return }
            let t = dt.ptr
            for (i, id) in ids.enumerated() {
                let dr = t + Int(id) * d, gr = gp + i * d
                for j in 0..<d { dr[j] += gr[j] }
            }
        }
    }
    return out
}

/// Rows `rows` of x [N, D] -> [rows.count, D] (index_select on dim 0); the gradient scatter-adds back.
public func selectRows(_ x: Tensor, _ rows: [Int]) -> Tensor {
    embedding(ids: rows.map { Int32($0) }, shape: [rows.count], table: x)
}

/// Per-row cross-entropy, PyTorch F.cross_entropy(reduction='none', ignore_index, label_smoothing):
/// loss = (1 - ls) (lse - x_t) + ls/V sum_j (lse - x_j); 0 on ignored rows. logits [N, V], targets [N] -> [N].
/// Saves logits and per-row log-sum-exp [N].
public func crossEntropy(logits: Tensor, targets: [Int32], ignoreIndex: Int32 = -100,
                         labelSmoothing: Float = 0) -> Tensor {
    check(logits.shape.count == 2, "crossEntropy logits must be [N, V], got \(logits.shape)")
    let n = logits.shape[0], v = logits.shape[1], ls = labelSmoothing
    check(targets.count == n, "crossEntropy: \(targets.count) targets for \(n) rows")
    for (i, t) in targets.enumerated() {
        check(t == ignoreIndex || (t >= 0 && Int(t) < v), "crossEntropy: target \(t) at row \(i) outside 0..<\(v)")
    }
    let out = output([n], logits)
    let grad = needsGrad(logits)
    let lse = Tensor(empty: [n], meta: out.isMeta)
    if let o = out.data {
        let x = logits.ptr, l = lse.ptr
        parallelFor(n, grain: 8) { range in
            for r in range {
                let xr = x + r * v
                // Vectorised passes with Double accumulation (a running Float sum does not vectorise).
                let mx = maxValue(xr, count: v), total = Float(sumValues(xr, count: v))
                l[r] = mx + Float(Foundation.log(sumExp(xr, count: v, shift: mx)))
                let t = targets[r]
                o[r] = t == ignoreIndex ? 0 : (1 - ls) * (l[r] - xr[Int(t)]) + ls * (l[r] - total / Float(v))
            }
        }
    }
    if grad {
        let saved = SavedTensor(logits), rule = CrossEntropyGrad(n: n, v: v, targets: targets, ignoreIndex: ignoreIndex, ls: ls)
        out.record([logits]) { g, ins in
            guard let node = ins[0] else { return }
            var x = saved.take()
            // When nothing else holds the logits ([N, V], the largest activation of a vocabulary head), the
            // gradient overwrites them in place instead of taking a second buffer of the same size.
            if node.leaf == nil, !node.hasGradient, Tensor.isExclusive(&x) {
                if let d = x.data, let gp = g.data { rule.overwrite(d, gp, lse.ptr) }   // meta: accounting only
                node.accumulate(adopting: x)
                return
            }
            let dl = node.gradTensor()
            if let gp = g.data, let xp = x.data, let d = dl.data { rule.add(xp, into: d, gp, lse.ptr) }
        }
    }
    return out
}

/// Cross-entropy's backward: dx_j = g_r (softmax_j - (1 - ls) [j == t] - ls / V) on every kept row r.
private struct CrossEntropyGrad {
    let n, v: Int
    let targets: [Int32]
    let ignoreIndex: Int32
    let ls: Float

    /// x [N, V] (the logits) becomes dx; ignored rows become 0.
    func overwrite(_ x: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ lse: UnsafePointer<Float>) {
        let u = ls / Float(v)
        parallelFor(n, grain: 8) { range in
            for r in range {
                let xr = x + r * v
                guard targets[r] != ignoreIndex else { xr.update(repeating: 0, count: v); continue }
                let gr = g[r], lr = lse[r]
                for j in 0..<v { xr[j] = gr * (expNonPositive(xr[j] - lr) - u) }
                xr[Int(targets[r])] -= gr * (1 - ls)
            }
        }
    }

    /// d += dx, reading the logits from x.
    func add(_ x: UnsafePointer<Float>, into d: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>,
             _ lse: UnsafePointer<Float>) {
        let u = ls / Float(v)
        parallelFor(n, grain: 8) { range in
            for r in range where targets[r] != ignoreIndex {
                let xr = x + r * v, dr = d + r * v, gr = g[r], lr = lse[r]
                for j in 0..<v { dr[j] += gr * (expNonPositive(xr[j] - lr) - u) }
                dr[Int(targets[r])] -= gr * (1 - ls)
            }
        }
    }
}
