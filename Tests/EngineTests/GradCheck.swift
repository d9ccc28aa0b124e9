import XCTest
@testable import Engine

/// Random tensor with values in [-1, 1) (a fixed stream per call site seed).
func rand(_ shape: [Int], _ rng: inout RNG, scale: Float = 1) -> Tensor {
    Tensor.uniform(shape, low: -scale, high: scale, rng: &rng)
}

/// Loss used by the checker: L = sum_i w_i out_i with fixed random weights, evaluated in Double.
private func weightedSum(_ out: Tensor, _ w: [Double]) -> Double {
    let s = out.scalars
    var acc = 0.0
    for i in 0..<s.count { acc += Double(s[i]) * w[i] }
    return acc
}

/// Compares the engine's gradients of L = sum(w * f(inputs)) with central finite differences computed in
/// Double (the Float op is evaluated at x +- eps; its outputs are accumulated in Double). Every input is
/// made trainable. Checks up to `maxPerInput` evenly spread elements of each input.
/// Returns the largest violation ratio |a - n| / (atol + rtol |n|) (> 1 means failure).
@discardableResult
func checkGradients(_ inputs: [Tensor], eps: Float = 1e-2, atol: Double = 2e-3, rtol: Double = 2e-2,
                    maxPerInput: Int = 48, file: StaticString = #filePath, line: UInt = #line,
                    _ f: ([Tensor]) -> Tensor) -> Double {
    for x in inputs { x.isTrainable = true; x.grad = nil }
    let probe = withNoGrad { f(inputs) }
    var wr = RNG(seed: 99)
    let w = (0..<probe.count).map { _ in Double(wr.nextFloat() * 2 - 1) }
    let out = f(inputs)
    let wt = Tensor(shape: out.shape, scalars: w.map { Float($0) })
    sum(out * wt).backward()
    var worst = 0.0
    for (k, x) in inputs.enumerated() {
        guard let g = x.grad?.scalars else { XCTFail("input \(k) got no gradient", file: file, line: line); continue }
        let step = Swift.max(1, x.count / maxPerInput)
        for i in stride(from: 0, to: x.count, by: step) {
            let saved = x.ptr[i]
            x.ptr[i] = saved + eps
            let plus = withNoGrad { weightedSum(f(inputs), w) }
            x.ptr[i] = saved - eps
            let minus = withNoGrad { weightedSum(f(inputs), w) }
            x.ptr[i] = saved
            let numeric = (plus - minus) / (2 * Double(eps))
            let ratio = abs(Double(g[i]) - numeric) / (atol + rtol * abs(numeric))
            worst = Swift.max(worst, ratio)
            if ratio > 1 {
                XCTFail("input \(k) \(x.shape) element \(i): analytic \(g[i]) vs numeric \(numeric)", file: file, line: line)
                return worst
            }
        }
    }
    return worst
}

/// Max |a - b| over two arrays of equal length.
func maxDiff(_ a: [Float], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "maxDiff: \(a.count) vs \(b.count)")
    return zip(a, b).map { abs(Double($0) - $1) }.max() ?? 0
}
