// Scalar math written branch-free so that loops over it vectorise (libm's expf/erff are calls per element).

import Foundation

private let log2e: Float = 1.442695040888963
private let ln2Hi: Float = 0.693145751953125
private let ln2Lo: Float = 1.428606765330187e-06

/// e^x for x <= 0 (0 below -87), relative error ~2e-7.
@inline(__always)
func expNonPositive(_ x: Float) -> Float {
    let v = Swift.max(x, -87)
    let k = (v * log2e + 12_582_912) - 12_582_912         // round to nearest via 1.5 * 2^23 (no libm call)
    let r = v - k * ln2Hi - k * ln2Lo                       // |r| <= ln2 / 2
    // Taylor/minimax polynomial of e^r on [-ln2/2, ln2/2]
    var p: Float = 1.0 / 5040
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    let e = p * Float(bitPattern: UInt32(bitPattern: Int32(k) + 127) << 23)
    return x < -87 ? 0 : e
}

/// erf(x), Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7).
@inline(__always)
func erfApprox(_ x: Float) -> Float { erfAndGaussian(x).erf }

/// erf(x) and the e^(-x^2) it is built from (GELU's backward needs both: one exponential instead of two).
@inline(__always)
func erfAndGaussian(_ x: Float) -> (erf: Float, gaussian: Float) {
    let a = Swift.abs(x)
    let t = 1 / (1 + 0.3275911 * a)
    var p: Float = 1.061405429
    p = p * t - 1.453152027
    p = p * t + 1.421413741
    p = p * t - 0.284496736
    p = p * t + 0.254829592
    let g = expNonPositive(-a * a)
    let y = 1 - p * t * g
    return (x < 0 ? -y : y, g)
}

/// Argument check that stays active under -Ounchecked (which removes `precondition`): API misuse stops
/// with a message naming the problem instead of reading out of bounds.
@inline(__always)
func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
           file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}

/// log(sum(exp(x))) over `count` floats, as accurate as a Double sum of libm's expf (see sumExp).
public func logSumExp(_ x: UnsafePointer<Float>, count: Int) -> Float {
    guard count > 0 else { return -.infinity }
    let mx = maxValue(x, count: count)
    guard mx.isFinite else { return mx }
    return mx + Float(Foundation.log(sumExp(x, count: count, shift: mx)))
}

/// Largest of `count` floats (-inf for none), eight independent lanes (a single running max is latency-bound).
func maxValue(_ x: UnsafePointer<Float>, count: Int) -> Float {
    guard count > 0 else { return -.infinity }
    var i = 0, mx = x[0]
    if count >= 8 {
        var lanes = load8(x)
        i = 8
        while i + 8 <= count {
            // replacing(with:where:) inlines to one compare and blend; the stdlib's generic pointwiseMax
            // stayed an out-of-line call per eight floats in profiles.
            let v = load8(x + i)
            lanes = lanes.replacing(with: v, where: v .> lanes)
            i += 8
        }
        mx = lanes.max()
    }
    while i < count { mx = Swift.max(mx, x[i]); i += 1 }
    return mx
}

/// sum_i exp(x_i - shift) for x_i <= shift: exponentials in blocks (a loop that vectorises, no libm
/// call) summed with eight Double accumulators.
func sumExp(_ x: UnsafePointer<Float>, count: Int, shift: Float) -> Double {
    let block = 1024
    var acc = SIMD8<Double>()
    withUnsafeTemporaryAllocation(of: Float.self, capacity: block) { e in
        let e = e.baseAddress!
        var start = 0
        while start < count {
            let len = Swift.min(block, count - start), xs = x + start
            for i in 0..<len { e[i] = expNonPositive(xs[i] - shift) }
            var i = 0
            while i + 8 <= len {
                acc += SIMD8<Double>(UnsafeRawPointer(e + i).loadUnaligned(as: SIMD8<Float>.self))
                i += 8
            }
            while i < len { acc[0] += Double(e[i]); i += 1 }
            start += len
        }
    }
    return acc.sum()
}

/// sum_i x_i in eight Double lanes.
func sumValues(_ x: UnsafePointer<Float>, count: Int) -> Double {
    var acc = SIMD8<Double>(), i = 0
    while i + 8 <= count {
        acc += SIMD8<Double>(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self))
        i += 8
    }
    while i < count { acc[0] += Double(x[i]); i += 1 }
    return acc.sum()
}

/// d[0..<count] = value, split over threads for large buffers (gradient zero fills run between kernels
/// that use every core, so a serial fill would leave the other threads waiting).
func fill(_ d: UnsafeMutablePointer<Float>, count: Int, with value: Float) {
    parallelFor(count, grain: 262_144) { r in (d + r.lowerBound).update(repeating: value, count: r.count) }
}

// Row reductions in eight Float lanes: element j always goes to lane j % 8 (the tail too, as a
// zero-padded vector), and the lanes are added in one fixed order. A running scalar sum is bound by the
// add latency (one add per 4 cycles); this is not, and trailing zeros leave the result unchanged to the
// bit, so a row and the same row padded with zeros (masked keys, padded positions) reduce alike.

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }

@inline(__always)
func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self) }

/// x[i..<count] (fewer than 8) in lanes 0..<count-i, zeros elsewhere.
@inline(__always)
func tail8(_ x: UnsafePointer<Float>, from i: Int, count: Int) -> SIMD8<Float> {
    var t = SIMD8<Float>()
    for j in i..<count { t[j - i] = x[j] }
    return t
}

/// sum of x[0..<count].
@inline(__always)
func laneSum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var acc = SIMD8<Float>(), i = 0
    while i + 8 <= count { acc += load8(x + i); i += 8 }
    if i < count { acc += tail8(x, from: i, count: count) }
    return acc.sum()
}

/// sum of a[j] * b[j] over 0..<count.
@inline(__always)
func laneDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var acc = SIMD8<Float>(), i = 0
    while i + 8 <= count { acc += load8(a + i) * load8(b + i); i += 8 }
    if i < count { acc += tail8(a, from: i, count: count) * tail8(b, from: i, count: count) }
    return acc.sum()
}

/// sum of (x[j] - mean)^2 over 0..<count.
@inline(__always)
func laneSquaredDeviations(_ x: UnsafePointer<Float>, mean: Float, count: Int) -> Float {
    var acc = SIMD8<Float>(), i = 0
    while i + 8 <= count { let c = load8(x + i) - mean; acc += c * c; i += 8 }
    while i < count { let c = x[i] - mean; acc[i & 7] += c * c; i += 1 }   // not tail8: a zero pads to mean²
    return acc.sum()
}
