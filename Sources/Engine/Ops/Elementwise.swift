import Foundation

// Element-wise ops. Forward and backward side by side; gradients accumulate with +=.

private enum BinaryKind { case add, sub, mul }

public func + (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .add) }
public func - (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .sub) }
public func * (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .mul) }

/// Broadcasting a (op) b -> out [broadcast shape].
private func binary(_ a: Tensor, _ b: Tensor, _ kind: BinaryKind) -> Tensor {
    let plan = BroadcastPlan(a.shape, b.shape)
    let out = output(plan.outShape, a, b)
    if let o = out.data {
        binaryForward(plan, a.ptr, b.ptr, o, kind)
    }
    if needsGrad(a, b) {
        let savedA = kind == .mul && b.requiresGrad ? a : nil   // d(a*b)/db needs a
        let savedB = kind == .mul && a.requiresGrad ? b : nil
        let aTakesG = kind != .mul && a.count == out.count   // da is g itself: adopt its buffer
        let bIsG = kind != .mul && b.count == out.count       // db is ±g (e.g. a residual's second branch)
        out.record([a, b]) { g, ins in
            if aTakesG {
                ins[0]?.accumulate(adopting: g)
            } else if let da = ins[0]?.gradTensor(), let gp = g.data {
                binaryBackward(plan, gp, da.ptr, other: savedB?.ptr, otherIsB: true, sign: 1)
            }
            if bIsG {
                guard let db = ins[1]?.gradForWrite(), let gp = g.data else { return }
                copyScaled(gp, kind == .sub ? -1 : 1, into: db.tensor.ptr, count: g.count, accumulate: !db.fresh)
            } else if let db = ins[1]?.gradTensor(), let gp = g.data {
                binaryBackward(plan, gp, db.ptr, other: savedA?.ptr, otherIsB: false, sign: kind == .sub ? -1 : 1)
            }
        }
    }
    return out
}

private func binaryForward(_ plan: BroadcastPlan, _ a: UnsafeMutablePointer<Float>,
                           _ b: UnsafeMutablePointer<Float>, _ o: UnsafeMutablePointer<Float>, _ kind: BinaryKind) {
    let n = plan.inner, sa = plan.aStrides.last!, sb = plan.bStrides.last!
    if plan.rows == 1 && n >= 65536 {   // one long row (e.g. same shapes): split it over threads
        parallelFor(n, grain: 32768) { r in
            binaryRow(kind, a + r.lowerBound * sa, sa, b + r.lowerBound * sb, sb, o + r.lowerBound, r.count)
        }
        return
    }
    plan.forEachRowParallel { io, ia, ib in binaryRow(kind, a + ia, sa, b + ib, sb, o + io, n) }
}

/// z[0..<n] = x (op) y with element strides sx, sy in {0, 1}.
@inline(__always)
private func binaryRow(_ kind: BinaryKind, _ x: UnsafeMutablePointer<Float>, _ sx: Int, _ y: UnsafeMutablePointer<Float>,
                       _ sy: Int, _ z: UnsafeMutablePointer<Float>, _ n: Int) {
    switch (kind, sx, sy) {
    case (.add, 1, 1): for j in 0..<n { z[j] = x[j] + y[j] }
    case (.sub, 1, 1): for j in 0..<n { z[j] = x[j] - y[j] }
    case (.mul, 1, 1): for j in 0..<n { z[j] = x[j] * y[j] }
    case (.add, _, _): for j in 0..<n { z[j] = x[j * sx] + y[j * sy] }
    case (.sub, _, _): for j in 0..<n { z[j] = x[j * sx] - y[j * sy] }
    case (.mul, _, _): for j in 0..<n { z[j] = x[j * sx] * y[j * sy] }
    }
}

/// d = s g, or d += s g, over `count` elements in parallel (s = ±1, so both are exact: d - g for s = -1).
private func copyScaled(_ g: UnsafeMutablePointer<Float>, _ s: Float, into d: UnsafeMutablePointer<Float>, count: Int,
                        accumulate: Bool) {
    parallelFor(count, grain: 32768) { r in
        if accumulate { for i in r { d[i] += s * g[i] } } else { for i in r { d[i] = s * g[i] } }
    }
}

/// d(target) += sign * g (* other) reduced over the target's broadcast dims.
private func binaryBackward(_ plan: BroadcastPlan, _ g: UnsafeMutablePointer<Float>, _ d: UnsafeMutablePointer<Float>,
                            other: UnsafeMutablePointer<Float>?, otherIsB: Bool, sign: Float) {
    let n = plan.inner
    let sd = otherIsB ? plan.aStrides.last! : plan.bStrides.last!
    let so = otherIsB ? plan.bStrides.last! : plan.aStrides.last!
    plan.forEachRow { io, ia, ib in
        let gr = g + io
        let dr = d + (otherIsB ? ia : ib)
        if let other {
            let orow = other + (otherIsB ? ib : ia)
            if sd == 1 && so == 1 { for j in 0..<n { dr[j] += gr[j] * orow[j] } }
            else { for j in 0..<n { dr[j * sd] += gr[j] * orow[j * so] } }
        } else if sd == 1 {
            if sign == 1 { for j in 0..<n { dr[j] += gr[j] } } else { for j in 0..<n { dr[j] -= gr[j] } }
        } else {
            var s: Float = 0
            for j in 0..<n { s += gr[j] }
            dr[0] += sign * s
        }
    }
}

/// x broadcast (numpy rules) to `shape`, copied. Backward sums over the broadcast dims.
/// E.g. a prefix [1, H, P, Dh] -> [B, H, P, Dh] before concat with the keys.
public func expand(_ x: Tensor, _ shape: [Int]) -> Tensor {
    let plan = BroadcastPlan(x.shape, shape)
    check(plan.outShape == shape, "expand: \(x.shape) does not broadcast to \(shape)")
    let out = output(shape, x)
    if let o = out.data {
        let xp = x.ptr, n = plan.inner, sx = plan.aStrides.last!
        plan.forEachRow { io, ix, _ in
            if sx == 1 { (o + io).update(from: xp + ix, count: n) } else { (o + io).update(repeating: xp[ix], count: n) }
        }
    }
    if needsGrad(x) {
        out.record([x]) { g, ins in
            guard let dx = ins[0]?.gradTensor(), let gp = g.data else { return }
            binaryBackward(plan, gp, dx.ptr, other: nil, otherIsB: true, sign: 1)
        }
    }
    return out
}

/// out = s * x
public func scale(_ x: Tensor, _ s: Float) -> Tensor {
    let out = output(x.shape, x)
    if let o = out.data { let xp = x.ptr; for i in 0..<x.count { o[i] = s * xp[i] } }
    if needsGrad(x) {
        out.record([x]) { g, ins in
            guard let dx = ins[0]?.gradTensor(), let gp = g.data else { return }
            let d = dx.ptr
            for i in 0..<g.count { d[i] += s * gp[i] }
        }
    }
    return out
}

let invSqrt2: Float = 0.70710678118654752
let invSqrt2Pi: Float = 0.39894228040143268

/// GELU, erf form: 0.5 x (1 + erf(x / sqrt 2)). Saves x.
public func gelu(_ x: Tensor) -> Tensor {
    let out = output(x.shape, x)
    if let o = out.data {
        let xp = x.ptr
        parallelFor(x.count, grain: 16384) { r in
            for i in r { o[i] = 0.5 * xp[i] * (1 + erfApprox(xp[i] * invSqrt2)) }
        }
    }
    if needsGrad(x) {
        out.record([x]) { g, ins in
            guard let dx = ins[0]?.gradForWrite(), let gp = g.data else { return }
            let xp = x.ptr, d = dx.tensor.ptr, fresh = dx.fresh
            parallelFor(x.count, grain: 16384) { r in
                if fresh { for i in r { d[i] = gp[i] * geluSlope(xp[i]) } }   // new buffer: no zero fill
                else { for i in r { d[i] += gp[i] * geluSlope(xp[i]) } }
            }
        }
    }
    return out
}

/// d gelu / dx = Phi(x) + x phi(x). phi(x) = e^(-(x/sqrt 2)^2) / sqrt(2 pi) reuses erf's exponential.
@inline(__always)
func geluSlope(_ v: Float) -> Float {
    let (erf, gaussian) = erfAndGaussian(v * invSqrt2)
    return 0.5 * (1 + erf) + v * (invSqrt2Pi * gaussian)
}

/// tanh. Saves its output.
public func tanh(_ x: Tensor) -> Tensor {
    let out = output(x.shape, x)
    if let o = out.data { let xp = x.ptr; for i in 0..<x.count { o[i] = Foundation.tanh(xp[i]) } }
    if needsGrad(x) {
        let y = out.alias()
        out.record([x]) { g, ins in
            guard let dx = ins[0]?.gradTensor(), let gp = g.data else { return }
            let yp = y.ptr, d = dx.ptr
            for i in 0..<g.count { d[i] += gp[i] * (1 - yp[i] * yp[i]) }
        }
    }
    return out
}

/// Inverted dropout: zero with probability p, scale kept values by 1/(1-p). Identity when not training or
/// p == 0. The mask is a counter-based stream (element i keeps iff uniform(seed, i) >= p), so it is
/// computed in parallel and regenerated in backward: only the seed is saved, no mask buffer.
/// `paddedRows`: x [R, C] holds rows paddedRows[r] of a padded [N, C] tensor (packed sequences), and each
/// element uses the mask bit of its padded index, so packed and padded batches drop the same elements.
public func dropout(_ x: Tensor, p: Float, rng: inout RNG, training: Bool, paddedRows: [Int]? = nil) -> Tensor {
    check(p >= 0 && p < 1, "dropout p must be in [0, 1), got \(p)")
    guard training && p > 0 else { return x }
    let seed = rng.nextUInt64()
    let keepScale = 1 / (1 - p)
    let out = output(x.shape, x)
    let mask = DropMask(seed: seed, p: p)
    let index = DropIndex(count: x.count, columns: x.shape.last ?? 1, rows: paddedRows)
    if let o = out.data {
        let xp = x.ptr
        index.forEach { i, m in o[i] = mask.apply(xp[i] * keepScale, m) }
    }
    if needsGrad(x) {
        out.record([x]) { g, ins in
            guard let dx = ins[0]?.gradForWrite(), let gp = g.data else { return }
            let d = dx.tensor.ptr
            if dx.fresh {   // new buffer: write every element (0 where dropped) instead of zero fill + add
                index.forEach { i, m in d[i] = mask.apply(gp[i] * keepScale, m) }
            } else {
                index.forEach { i, m in d[i] += mask.apply(gp[i] * keepScale, m) }
            }
        }
    }
    return out
}

/// Element i of a dropout input and the index of its mask bit: i itself, or its index in the padded
/// tensor when the rows are packed.
private struct DropIndex {
    let count: Int
    let columns: Int
    let rows: [Int]?

    init(count: Int, columns: Int, rows: [Int]?) {
        if let rows { check(rows.count * columns == count, "dropout: \(rows.count) padded rows for \(count / Swift.max(columns, 1)) rows") }
        (self.count, self.columns, self.rows) = (count, columns, rows)
    }

    @inline(__always)
    func forEach(_ body: (_ element: Int, _ maskIndex: Int) -> Void) {
        guard let rows else {
            parallelFor(count, grain: 16384) { r in for i in r { body(i, i) } }
            return
        }
        let c = columns
        parallelFor(rows.count, grain: Swift.max(1, 16384 / Swift.max(c, 1))) { rs in
            for r in rs {
                let base = rows[r] * c
                for j in 0..<c { body(r * c + j, base + j) }
            }
        }
    }
}

/// Dropout's keep mask without branches (a data-dependent branch mispredicts on ~p of the elements):
/// element i is kept iff RNG.uniform(seed, i) >= p, i.e. iff its top 24 random bits k satisfy
/// k * 2^-24 >= p, i.e. k >= ceil(p * 2^24) (k is an integer and the scaling by 2^24 is exact).
struct DropMask {
    let seed: UInt64
    let threshold: UInt64

    init(seed: UInt64, p: Float) {
        self.seed = seed
        threshold = UInt64((p * 16_777_216).rounded(.up))
    }

    /// v where element i is kept, +0 where it is dropped.
    @inline(__always)
    func apply(_ v: Float, _ i: Int) -> Float {
        let k = RNG.bits24(seed: seed, index: i)
        let keep = UInt32(truncatingIfNeeded: 0 &- UInt64(k >= threshold ? 1 : 0))
        return Float(bitPattern: v.bitPattern & keep)
    }
}
