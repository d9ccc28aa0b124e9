/// linear(gelu(h), weight, bias) as one op that saves h instead of gelu(h). The backward recomputes
/// gelu(h) (for dW) in the same erf pass that computes gelu'(h) (for dh), the pass GELU's own backward
/// makes anyway, so a feed-forward block keeps one [rows, hidden] activation instead of two at no extra
/// arithmetic (29 MB of the small model's full fine-tuning peak). Results are bit-identical to
/// `linear(gelu(h), ...)`: the same formulas in the same order, with the same GEMMs.
/// h [..., In], weight [Out, In], bias [Out] -> [..., Out].
public func geluLinear(_ h: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    let inputs = [h, weight] + (bias.map { [$0] } ?? [])
    let out = withNoGrad { linear(gelu(h), weight: weight, bias: bias) }   // gelu(h) is freed right here
    guard Mode.gradEnabled && inputs.contains(where: { $0.requiresGrad }) else { return out }
    let inF = weight.shape[1], outF = weight.shape[0], rows = h.count / Swift.max(inF, 1)
    let savedW = h.requiresGrad ? weight : nil
    out.record(inputs) { g, ins in
        let dh = ins[0]?.gradForWrite(), dw = ins[1]?.gradForWrite(), db = ins.count > 2 ? ins[2]?.gradTensor() : nil
        // a = gelu(h) [rows, In] for dW, and with it slope = gelu'(h) for dh from the same erf values:
        // scratch of this backward only. Without dW the slope is computed in the last pass instead.
        // da [rows, In] = dy [rows, Out] W [Out, In] goes straight into a new gradient buffer of h.
        // (Allocated before the meta-mode return, so that shape-only runs count them too.)
        let a = dw == nil ? nil : Tensor(empty: h.shape), slope = dh == nil || dw == nil ? nil : Tensor(empty: h.shape)
        let da = dh.map { $0.fresh ? $0.tensor : Tensor(empty: h.shape) }
        guard let gp = g.data else { return }
        if let ap = a?.data { geluAndSlope(h.ptr, ap, slope?.data, count: h.count) }
        LinearShape(rows: rows, inF: inF, outF: outF).backward(gp, x: a?.ptr, w: savedW?.ptr,
                                                              dx: da.map { ($0.ptr, 0, ins[0]!) },
                                                              dw: dw.map { ($0.tensor.ptr, $0.fresh ? 0 : 1, ins[1]!) })
        if let dh, let da, let d = dh.tensor.data {
            let dap = da.ptr, hp = h.ptr, fresh = dh.fresh
            // One loop per case, so that each vectorises. A fresh gradient holds da itself: read it through d
            // (through dap the loads and stores would alias exactly and the loop would stay scalar).
            parallelFor(h.count, grain: 16384) { r in
                switch (slope?.data, fresh) {
                case let (sp?, true): for i in r { d[i] = d[i] * sp[i] }
                case let (sp?, false): for i in r { d[i] += dap[i] * sp[i] }
                case (nil, true): for i in r { d[i] = d[i] * geluSlope(hp[i]) }
                case (nil, false): for i in r { d[i] += dap[i] * geluSlope(hp[i]) }
                }
            }
        }
        if let db { addColumnSums(gp, rows: rows, columns: outF, into: db.ptr) }
    }
    return out
}

/// a[i] = gelu(h[i]) and, if wanted, s[i] = gelu'(h[i]) from the same erf evaluation.
private func geluAndSlope(_ h: UnsafeMutablePointer<Float>, _ a: UnsafeMutablePointer<Float>,
                          _ s: UnsafeMutablePointer<Float>?, count: Int) {
    parallelFor(count, grain: 16384) { r in
        for i in r {
            let v = h[i]
            let (erf, gaussian) = erfAndGaussian(v * invSqrt2)
            a[i] = 0.5 * v * (1 + erf)
            if let s { s[i] = 0.5 * (1 + erf) + v * (invSqrt2Pi * gaussian) }
        }
    }
}
