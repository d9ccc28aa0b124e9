/// Sum of all elements -> [1].
public func sum(_ x: Tensor) -> Tensor {
    let out = output([1], x)
    if let o = out.data {
        let xp = x.ptr
        var s: Double = 0   // Double accumulator: losses are summed over many rows
        for i in 0..<x.count { s += Double(xp[i]) }
        o[0] = Float(s)
    }
    if needsGrad(x) {
        out.record([x]) { g, ins in
            guard let dx = ins[0]?.gradTensor(), let gp = g.data else { return }
            let d = dx.ptr, v = gp[0]
            for i in 0..<dx.count { d[i] += v }
        }
    }
    return out
}

/// Mean of all elements -> [1].
public func mean(_ x: Tensor) -> Tensor { scale(sum(x), 1 / Float(Swift.max(x.count, 1))) }

/// Sum over `axis`: x [..., A, ...] -> [..., ...] (or [..., 1, ...] with keepDims).
public func sum(_ x: Tensor, axis: Int, keepDims: Bool = false) -> Tensor {
    check(axis >= 0 && axis < x.shape.count, "sum axis \(axis) out of range for \(x.shape)")
    let outer = x.shape[..<axis].reduce(1, *), len = x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *)
    var shape = x.shape
    if keepDims { shape[axis] = 1 } else { shape.remove(at: axis) }
    let out = output(shape, x)
    if let o = out.data {
        let xp = x.ptr
        o.update(repeating: 0, count: outer * inner)
        for r in 0..<outer {
            for a in 0..<len { let s = xp + (r * len + a) * inner, d = o + r * inner; for j in 0..<inner { d[j] += s[j] } }
        }
    }
    if needsGrad(x) {
        out.record([x]) { g, ins in
            guard let dx = ins[0]?.gradTensor(), let gp = g.data else { return }
            let d = dx.ptr
            for r in 0..<outer {
                for a in 0..<len { let dr = d + (r * len + a) * inner, gr = gp + r * inner; for j in 0..<inner { dr[j] += gr[j] } }
            }
        }
    }
    return out
}
