// Shape ops. reshape is a view (shared storage, no bytes); permute/concat/slice copy.

/// Same storage, new shape; one dim may be -1.
public func reshape(_ x: Tensor, _ shape: [Int]) -> Tensor {
    var s = shape
    if let i = s.firstIndex(of: -1) {
        let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
        check(known > 0 && x.count % known == 0, "cannot reshape \(x.shape) to \(shape)")
        s[i] = x.count / known
    }
    check(s.reduce(1, *) == x.count, "cannot reshape \(x.shape) (\(x.count) values) to \(shape)")
    let out = Tensor(shape: s, buffer: x.buffer)
    if needsGrad(x) {
        out.record([x]) { g, ins in ins[0]?.accumulate(adopting: g) }
    }
    return out
}

/// out.shape[i] = x.shape[dims[i]].
public func permute(_ x: Tensor, _ dims: [Int]) -> Tensor {
    check(dims.sorted() == Array(0..<x.shape.count), "permute dims \(dims) invalid for \(x.shape)")
    let out = output(dims.map { x.shape[$0] }, x)
    if let o = out.data { permuteCopy(x.ptr, x.shape, dims, o, accumulate: false) }
    if needsGrad(x) {
        var inverse = dims
        for (i, d) in dims.enumerated() { inverse[d] = i }
        let outShape = out.shape
        out.record([x]) { g, ins in
            guard let dx = ins[0]?.gradForWrite(), let gp = g.data else { return }
            permuteCopy(gp, outShape, inverse, dx.tensor.ptr, accumulate: !dx.fresh)   // a permutation covers every element
        }
    }
    return out
}

/// dst (shape dims.map{srcShape[$0]}) = or += permuted src. Rows of the last dim are contiguous when
/// the last axis stays last. Rows are split over threads (each destination row is written by one thread,
/// so the result does not depend on the split).
private func permuteCopy(_ src: UnsafeMutablePointer<Float>, _ srcShape: [Int], _ dims: [Int],
                         _ dst: UnsafeMutablePointer<Float>, accumulate: Bool) {
    let rank = srcShape.count
    var srcStrides = Array(repeating: 1, count: rank)
    for i in stride(from: rank - 2, through: 0, by: -1) { srcStrides[i] = srcStrides[i + 1] * srcShape[i + 1] }
    let outShape = dims.map { srcShape[$0] }, strides = dims.map { srcStrides[$0] }
    let n = outShape.last ?? 1
    let rows = outShape.dropLast().reduce(1, *)
    parallelFor(rows, grain: Swift.max(1, 16384 / Swift.max(n, 1))) { range in
        permuteRows(range, src, outShape, strides, dst, accumulate: accumulate)
    }
}

/// permuteCopy for destination rows `range`: an odometer over the leading output dims gives each row's
/// source offset.
private func permuteRows(_ range: Range<Int>, _ src: UnsafeMutablePointer<Float>, _ outShape: [Int], _ strides: [Int],
                         _ dst: UnsafeMutablePointer<Float>, accumulate: Bool) {
    let rank = outShape.count, n = outShape.last ?? 1, sn = strides.last ?? 1
    var idx = Array(repeating: 0, count: Swift.max(rank - 1, 0)), off = 0, rest = range.lowerBound
    for k in stride(from: rank - 2, through: 0, by: -1) {
        idx[k] = rest % outShape[k]; rest /= outShape[k]; off += idx[k] * strides[k]
    }
    for r in range {
        let s = src + off, d = dst + r * n
        switch (accumulate, sn) {
        case (false, 1): d.update(from: s, count: n)
        case (true, 1): for j in 0..<n { d[j] += s[j] }
        case (false, _): for j in 0..<n { d[j] = s[j * sn] }
        case (true, _): for j in 0..<n { d[j] += s[j * sn] }
        }
        var k = rank - 2
        while k >= 0 {
            idx[k] += 1; off += strides[k]
            if idx[k] < outShape[k] { break }
            off -= strides[k] * outShape[k]; idx[k] = 0
            k -= 1
        }
    }
}

/// [B, T, H*Dh] -> [B, H, T, Dh]
public func splitHeads(_ x: Tensor, heads: Int) -> Tensor {
    check(x.shape.count == 3 && x.shape[2] % heads == 0, "splitHeads: \(x.shape) with \(heads) heads")
    let (b, t, c) = (x.shape[0], x.shape[1], x.shape[2])
    return permute(reshape(x, [b, t, heads, c / heads]), [0, 2, 1, 3])
}

/// [B, H, T, Dh] -> [B, T, H*Dh]
public func mergeHeads(_ x: Tensor) -> Tensor {
    check(x.shape.count == 4, "mergeHeads needs [B, H, T, Dh], got \(x.shape)")
    let (b, h, t, dh) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    return reshape(permute(x, [0, 2, 1, 3]), [b, t, h * dh])
}

/// Concatenation along `axis` (e.g. prefix K/V along the sequence axis).
public func concat(_ xs: [Tensor], axis: Int) -> Tensor {
    check(!xs.isEmpty, "concat of no tensors")
    let first = xs[0].shape
    check(axis >= 0 && axis < first.count, "concat axis \(axis) out of range for \(first)")
    for x in xs {
        var s = x.shape; s[axis] = first[axis]
        check(s == first, "concat: shapes \(xs.map(\.shape)) differ off axis \(axis)")
    }
    let outer = first[..<axis].reduce(1, *), inner = first[(axis + 1)...].reduce(1, *)
    var shape = first; shape[axis] = xs.reduce(0) { $0 + $1.shape[axis] }
    let out = Tensor(empty: shape, meta: xs.contains { $0.isMeta })
    let widths = xs.map { $0.shape[axis] * inner }, total = shape[axis] * inner
    if let o = out.data {
        var col = 0
        for (x, w) in zip(xs, widths) {
            let s = x.ptr
            let c = col
            parallelFor(outer, grain: Swift.max(1, 16384 / Swift.max(w, 1))) { rs in
                for r in rs { (o + r * total + c).update(from: s + r * w, count: w) }
            }
            col += w
        }
    }
    if Mode.gradEnabled && xs.contains(where: { $0.requiresGrad }) {
        out.record(xs) { g, ins in
            let grads = ins.map { $0?.gradTensor() }
            guard let gp = g.data else { return }
            var col = 0
            for (dx, w) in zip(grads, widths) {
                if let d = dx?.ptr {
                    let c = col
                    parallelFor(outer, grain: Swift.max(1, 16384 / Swift.max(w, 1))) { rs in
                        for r in rs { let gr = gp + r * total + c, dr = d + r * w; for j in 0..<w { dr[j] += gr[j] } }
                    }
                }
                col += w
            }
        }
    }
    return out
}

/// x restricted to `range` along `axis`.
public func slice(_ x: Tensor, axis: Int, range: Range<Int>) -> Tensor {
    check(axis >= 0 && axis < x.shape.count && range.lowerBound >= 0 && range.upperBound <= x.shape[axis],
                 "slice \(range) on axis \(axis) out of bounds for \(x.shape)")
    let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
    let total = x.shape[axis] * inner, w = range.count * inner, start = range.lowerBound * inner
    var shape = x.shape; shape[axis] = range.count
    let out = output(shape, x)
    if let o = out.data {
        let s = x.ptr
        parallelFor(outer, grain: Swift.max(1, 16384 / Swift.max(w, 1))) { rs in
            for r in rs { (o + r * w).update(from: s + r * total + start, count: w) }
        }
    }
    if needsGrad(x) {
        out.record([x]) { g, ins in
            guard let dx = ins[0]?.gradTensor(), let gp = g.data else { return }
            let d = dx.ptr
            parallelFor(outer, grain: Swift.max(1, 16384 / Swift.max(w, 1))) { rs in
                for r in rs { let dr = d + r * total + start, gr = gp + r * w; for j in 0..<w { dr[j] += gr[j] } }
            }
        }
    }
    return out
}
