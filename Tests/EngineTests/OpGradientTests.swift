import XCTest
@testable import Engine

final class OpGradientTests: XCTestCase {
    func testCheckerDetectsAWrongGradient() {
        // A deliberately wrong composite (forward x*x but the checker compares with analytic of x*x*1.5)
        // must be caught: compare d(scale(x*x, 1.5)) against finite differences of x*x.
        var rng = RNG(seed: 1)
        let x = rand([5], &rng)
        x.isTrainable = true
        sum(scale(x * x, 1.5)).backward()
        let analytic = x.grad!.scalars
        let numeric = x.scalars.map { 2 * Double($0) }
        XCTAssertGreaterThan(maxDiff(analytic, numeric), 1e-2)
    }

    func testBroadcastBinaryOps() {
        var rng = RNG(seed: 2)
        let pairs: [([Int], [Int])] = [([2, 3, 4], [2, 3, 4]), ([2, 3, 4], [4]), ([2, 1, 4], [3, 1]),
                                       ([1], [2, 3]), ([2, 3, 1, 5], [1, 3, 4, 1])]
        for (sa, sb) in pairs {
            let a = rand(sa, &rng), b = rand(sb, &rng)
            checkGradients([a, b]) { $0[0] + $0[1] }
            checkGradients([a, b]) { $0[0] - $0[1] }
            checkGradients([a, b]) { $0[0] * $0[1] }
        }
    }

    func testLargeBroadcastsTakeTheThreadedPathsCorrectly() {
        var rng = RNG(seed: 18)
        let a = rand([300, 400], &rng), b = rand([400], &rng), c = rand([300, 400], &rng), s = rand([1], &rng)
        let av = a.scalars, bv = b.scalars, cv = c.scalars, sv = s.scalars[0]
        let sumAB = (a + b).scalars, prodAC = (a * c).scalars, diffSA = (s - a).scalars
        for i in stride(from: 0, to: 120_000, by: 997) {
            XCTAssertEqual(sumAB[i], av[i] + bv[i % 400])
            XCTAssertEqual(prodAC[i], av[i] * cv[i])
            XCTAssertEqual(diffSA[i], sv - av[i])
        }
        let e = expand(b, [300, 400]).scalars
        XCTAssertEqual(e[123 * 400 + 7], bv[7])
    }

    /// Inputs used several times: gradients accumulate into an existing buffer (GEMM beta 1, adopted
    /// buffers, the same node on both sides of an op).
    func testAccumulationWhenATensorIsUsedTwice() {
        var rng = RNG(seed: 20)
        let x = rand([3, 4], &rng), w = rand([5, 4], &rng), b = rand([3, 4, 2], &rng), c = rand([4, 5], &rng)
        checkGradients([x, w]) { linear($0[0], weight: $0[1], bias: nil) + linear($0[0], weight: $0[1], bias: nil) }
        checkGradients([x]) { matmul($0[0], $0[0], transposeB: true) }
        checkGradients([x]) { $0[0] + $0[0] }
        checkGradients([x]) { ($0[0] - scale($0[0], 3)) * $0[0] }
        checkGradients([x]) { sum(reshape($0[0], [12]), axis: 0, keepDims: true) + reshape($0[0], [2, 6]) }
        checkGradients([b, c]) { matmul($0[0], $0[1], transposeA: true) + matmul($0[0], $0[1], transposeA: true) }   // shared b, tA: db sums over the batch
    }

    func testZeroSizeTensors() {
        XCTAssertEqual(Tensor(shape: [0, 2], scalars: []).count, 0)
        let a = Tensor.zeros([0, 3]), b = Tensor.ones([3])
        a.isTrainable = true
        let y = a + b
        XCTAssertEqual(y.shape, [0, 3])
        sum(y * y).backward()
        XCTAssertEqual(a.grad?.count, 0)
        XCTAssertEqual(concat([Tensor.zeros([2, 0]), Tensor.ones([2, 2])], axis: 1).scalars, [1, 1, 1, 1])
    }

    func testBroadcastForwardValues() {
        let a = Tensor(shape: [2, 1], scalars: [1, 2]), b = Tensor(shape: [3], scalars: [10, 20, 30])
        XCTAssertEqual((a + b).scalars, [11, 21, 31, 12, 22, 32])
        XCTAssertEqual((a - b).shape, [2, 3])
        XCTAssertEqual((a * b).scalars, [10, 20, 30, 20, 40, 60])
    }

    func testExpand() {
        var rng = RNG(seed: 17)
        let x = rand([1, 3, 1, 2], &rng)
        checkGradients([x]) { expand($0[0], [2, 3, 4, 2]) }
        checkGradients([x]) { expand($0[0], [5, 1, 3, 2, 2]) }
        let y = withNoGrad { expand(Tensor(shape: [2, 1], scalars: [1, 2]), [2, 3]) }
        XCTAssertEqual(y.scalars, [1, 1, 1, 2, 2, 2])
    }

    func testScaleGeluTanh() {
        var rng = RNG(seed: 3)
        let x = rand([3, 7], &rng, scale: 3)
        checkGradients([x]) { scale($0[0], -2.5) }
        checkGradients([x]) { gelu($0[0]) }
        checkGradients([x]) { tanh($0[0]) }
        let v: [Float] = [-3, -1, 0, 0.5, 2]
        let ref = v.map { 0.5 * Double($0) * (1 + erf(Double($0) / 2.0.squareRoot())) }
        XCTAssertLessThan(maxDiff(gelu(Tensor(shape: [5], scalars: v)).scalars, ref), 1e-6)
    }

    func testMatmulAllTransposesSharedAndBatched() {
        var rng = RNG(seed: 4)
        let (m, k, n) = (3, 4, 5)
        for tA in [false, true] {
            for tB in [false, true] {
                let a2 = rand(tA ? [k, m] : [m, k], &rng), b2 = rand(tB ? [n, k] : [k, n], &rng)
                checkGradients([a2, b2]) { matmul($0[0], $0[1], transposeA: tA, transposeB: tB) }
                let a = rand([2, 3] + (tA ? [k, m] : [m, k]), &rng)
                checkGradients([a, b2]) { matmul($0[0], $0[1], transposeA: tA, transposeB: tB) }   // shared b
                let b = rand([2, 3] + (tB ? [n, k] : [k, n]), &rng)
                checkGradients([a, b]) { matmul($0[0], $0[1], transposeA: tA, transposeB: tB, alpha: 0.7) }
            }
        }
    }

    func testMatmulForwardMatchesDoubleReference() {
        var rng = RNG(seed: 5)
        let a = rand([2, 3, 4], &rng), b = rand([2, 5, 4], &rng)
        let c = matmul(a, b, transposeB: true)
        XCTAssertEqual(c.shape, [2, 3, 5])
        let av = a.scalars, bv = b.scalars
        var ref: [Double] = []
        for z in 0..<2 { for i in 0..<3 { for j in 0..<5 {
            ref.append((0..<4).reduce(0.0) { $0 + Double(av[z * 12 + i * 4 + $1]) * Double(bv[z * 20 + j * 4 + $1]) })
        } } }
        XCTAssertLessThan(maxDiff(c.scalars, ref), 1e-5)
    }

    func testLinear() {
        var rng = RNG(seed: 6)
        let x = rand([2, 3, 4], &rng), w = rand([5, 4], &rng), b = rand([5], &rng)
        checkGradients([x, w, b]) { linear($0[0], weight: $0[1], bias: $0[2]) }
        checkGradients([x, w]) { linear($0[0], weight: $0[1], bias: nil) }
        let y = withNoGrad { linear(x, weight: w, bias: b) }
        let ref = matmul(x, w, transposeB: true) + b
        XCTAssertLessThan(maxDiff(y.scalars, ref.scalars.map(Double.init)), 1e-6)
    }

    func testSoftmaxWithPaddingAndCausalMasks() {
        var rng = RNG(seed: 7)
        let x = rand([2, 2, 3, 4], &rng, scale: 2)
        checkGradients([x]) { softmax($0[0]) }
        let pad = paddingMask([1, 1, 1, 0, 1, 1, 0, 0], batch: 2, length: 4)
        checkGradients([x]) { softmax($0[0], mask: pad) }
        let causal = causalMask(3, prefix: 1)
        XCTAssertEqual(causal.shape, [1, 1, 3, 4])
        checkGradients([x]) { softmax($0[0], mask: causal) }
        // A trainable mask gets the same gradient as the scores, summed over its broadcast dims.
        let m = rand([2, 1, 1, 4], &rng)
        checkGradients([x, m]) { softmax($0[0], mask: $0[1]) }
        // Masked keys get exactly zero probability; rows sum to one.
        let y = withNoGrad { softmax(x, mask: pad) }.scalars
        XCTAssertEqual(y[3], 0)
        XCTAssertEqual(y[24 + 2], 0)
        XCTAssertEqual(Double(y[0] + y[1] + y[2] + y[3]), 1, accuracy: 1e-6)
        let yc = withNoGrad { softmax(x, mask: causal) }.scalars
        XCTAssertEqual(yc[2], 0); XCTAssertEqual(yc[3], 0); XCTAssertNotEqual(yc[4 + 2], 0); XCTAssertEqual(yc[4 + 3], 0)
    }

    func testLayerNorm() {
        var rng = RNG(seed: 8)
        let x = rand([2, 3, 6], &rng, scale: 2), w = rand([6], &rng), b = rand([6], &rng)
        checkGradients([x, w, b]) { layerNorm($0[0], weight: $0[1], bias: $0[2], eps: 1e-5) }
        let y = withNoGrad { layerNorm(x, weight: w, bias: b, eps: 1e-5) }.scalars
        let xv = x.scalars.map(Double.init), wv = w.scalars.map(Double.init), bv = b.scalars.map(Double.init)
        var ref: [Double] = []
        for r in 0..<6 {
            let row = Array(xv[(r * 6)..<(r * 6 + 6)])
            let mu = row.reduce(0, +) / 6, v = row.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / 6
            for j in 0..<6 { ref.append((row[j] - mu) / (v + 1e-5).squareRoot() * wv[j] + bv[j]) }
        }
        XCTAssertLessThan(maxDiff(y, ref), 1e-5)
    }

    func testEmbeddingScatterAdd() {
        var rng = RNG(seed: 9)
        let table = rand([5, 3], &rng)
        let ids: [Int32] = [1, 4, 1, 0, 1, 2]
        checkGradients([table]) { embedding(ids: ids, shape: [2, 3], table: $0[0]) }
        let e = withNoGrad { embedding(ids: ids, shape: [2, 3], table: table) }
        XCTAssertEqual(e.shape, [2, 3, 3])
        XCTAssertEqual(Array(e.scalars[0..<3]), Array(table.scalars[3..<6]))
    }

    func testDropout() {
        var rng = RNG(seed: 10)
        let x = rand([4, 50], &rng)
        checkGradients([x]) { var r = RNG(seed: 5); return dropout($0[0], p: 0.3, rng: &r, training: true) }
        var r = RNG(seed: 11)
        let ones = Tensor.ones([10_000])
        let y = dropout(ones, p: 0.25, rng: &r, training: true).scalars
        let zeros = y.filter { $0 == 0 }.count
        XCTAssertEqual(Double(zeros) / 10_000, 0.25, accuracy: 0.02)
        XCTAssertTrue(y.allSatisfy { $0 == 0 || abs($0 - 4.0 / 3.0) < 1e-6 })
        XCTAssertTrue(dropout(ones, p: 0.25, rng: &r, training: false) === ones)
    }

    /// The branch-free mask keeps exactly the elements whose uniform draw is >= p (the definition the
    /// stream had before), including p values on and just off the 2^-24 grid.
    func testDropMaskMatchesUniformThreshold() {
        for p: Float in [0.1, 0.25, 0.5, 1.0 / 16_777_216, Float(0.3).nextUp, 0.9] {
            let mask = DropMask(seed: 77, p: p)
            var mismatches = 0
            for i in 0..<200_000 {
                let kept = mask.apply(1, i) == 1
                if kept != (RNG.uniform(seed: 77, index: i) >= p) { mismatches += 1 }
            }
            XCTAssertEqual(mismatches, 0, "p = \(p)")
        }
        // at the boundary: a draw equal to p is kept; p half a grid step above the draw drops it
        // (k < 2^22 so that k + 0.5 is exact in Float)
        let i = (0..<1000).first { RNG.bits24(seed: 3, index: $0) < 1 << 22 }!
        let k = Float(RNG.bits24(seed: 3, index: i))
        XCTAssertEqual(DropMask(seed: 3, p: k / 16_777_216).apply(1, i), 1)
        XCTAssertEqual(DropMask(seed: 3, p: (k + 0.5) / 16_777_216).apply(1, i), 0)
        XCTAssertEqual(DropMask(seed: 3, p: (k + 1) / 16_777_216).apply(1, i), 0)
    }

    func testShapeOps() {
        var rng = RNG(seed: 12)
        let x = rand([2, 3, 4], &rng)
        checkGradients([x]) { reshape($0[0], [4, -1]) }
        checkGradients([x]) { permute($0[0], [2, 0, 1]) }
        checkGradients([x]) { permute($0[0], [1, 0, 2]) }
        checkGradients([x]) { splitHeads($0[0], heads: 2) }
        checkGradients([x]) { mergeHeads(splitHeads($0[0], heads: 2)) * $0[0] }
        let y = rand([2, 5, 4], &rng)
        checkGradients([x, y]) { concat([$0[0], $0[1]], axis: 1) }
        checkGradients([x]) { slice($0[0], axis: 1, range: 1..<3) }
        checkGradients([x]) { slice($0[0], axis: 2, range: 0..<1) }
        let p = withNoGrad { permute(x, [2, 0, 1]) }
        XCTAssertEqual(p.shape, [4, 2, 3])
        XCTAssertEqual(p.scalars[11], x.scalars[21])   // p[1,1,2] = x[1,2,1]
        let s = withNoGrad { splitHeads(x, heads: 2) }   // [2, 2, 3, 2]
        XCTAssertEqual(s.scalars[11], x.scalars[11])   // s[0,1,2,1] = x[0,2,1*2+1]
        XCTAssertEqual(withNoGrad { mergeHeads(s) }.scalars, x.scalars)
        let c = withNoGrad { concat([x, y], axis: 1) }
        XCTAssertEqual(c.shape, [2, 8, 4])
        XCTAssertEqual(Array(c.scalars[12..<32]), Array(y.scalars[0..<20]))
    }

    func testReductions() {
        var rng = RNG(seed: 13)
        let x = rand([3, 4, 2], &rng)
        checkGradients([x]) { sum($0[0]) }
        checkGradients([x]) { mean($0[0]) }
        checkGradients([x]) { sum($0[0], axis: 1) }
        checkGradients([x]) { sum($0[0], axis: 0, keepDims: true) }
        XCTAssertEqual(sum(x, axis: 2, keepDims: true).shape, [3, 4, 1])
        XCTAssertEqual(Double(sum(x).item()), x.scalars.reduce(0.0) { $0 + Double($1) }, accuracy: 1e-5)
    }

    func testCrossEntropyLabelSmoothingAndIgnoreIndex() {
        var rng = RNG(seed: 14)
        let logits = rand([5, 7], &rng, scale: 3)
        let targets: [Int32] = [3, -100, 0, 6, -100]
        for ls: Float in [0, 0.1] {
            checkGradients([logits]) { crossEntropy(logits: $0[0], targets: targets, labelSmoothing: ls) }
            let loss = withNoGrad { crossEntropy(logits: logits, targets: targets, labelSmoothing: ls) }.scalars
            XCTAssertLessThan(maxDiff(loss, referenceCE(logits.scalars, targets, 7, Double(ls))), 1e-5)
            XCTAssertEqual(loss[1], 0); XCTAssertEqual(loss[4], 0)
        }
        checkGradients([logits]) { crossEntropy(logits: $0[0], targets: [1, 1, 2, 2, 0], ignoreIndex: 2, labelSmoothing: 0.2) }
        // Logits that are an op result nobody else holds: the backward writes the gradient over them.
        checkGradients([logits]) { crossEntropy(logits: scale($0[0], 1.5), targets: targets, labelSmoothing: 0.1) }
    }

    /// The in-place backward (logits held by nothing else) gives the same gradient as the ordinary one
    /// (logits still held by the caller) and needs one [N, V] buffer less at its peak.
    func testCrossEntropyBackwardInPlaceWhenLogitsAreUnshared() {
        var rng = RNG(seed: 16)
        let x = rand([64, 500], &rng, scale: 3)
        x.isTrainable = true
        let targets: [Int32] = (0..<64).map { (i: Int) -> Int32 in i % 9 == 0 ? -100 : Int32(i * 7 % 500) }
        func run(keepLogits: Bool) -> (grad: [Float], peak: Int) {
            x.grad = nil
            var kept: Tensor?
            let loss: Tensor = {
                let logits = scale(x, 2)
                if keepLogits { kept = logits }
                return sum(crossEntropy(logits: logits, targets: targets, labelSmoothing: 0.1))
            }()
            let base = Memory.liveBytes
            Memory.resetPeak()
            loss.backward()
            let peak = Memory.peakBytes - base
            withExtendedLifetime(kept) {}
            return (x.grad!.scalars, peak)
        }
        let shared = run(keepLogits: true), inPlace = run(keepLogits: false)
        XCTAssertEqual(inPlace.grad, shared.grad)
        XCTAssertLessThanOrEqual(inPlace.peak, shared.peak - 64 * 500 * 4)
    }

    /// PyTorch semantics in Double: (1 - ls) * nll + ls * mean_j(-log p_j); 0 on ignored rows.
    private func referenceCE(_ x: [Float], _ t: [Int32], _ v: Int, _ ls: Double) -> [Double] {
        t.enumerated().map { r, target in
            guard target != -100 else { return 0 }
            let row = x[(r * v)..<(r * v + v)].map(Double.init)
            let mx = row.max()!, lse = mx + log(row.map { exp($0 - mx) }.reduce(0, +))
            let logp = row.map { $0 - lse }
            return (1 - ls) * -logp[Int(target)] + ls * -logp.reduce(0, +) / Double(v)
        }
    }

    func testPatchConvMatchesDirectConvolution() {
        var rng = RNG(seed: 15)
        let (b, c, h, w, o, p) = (2, 3, 4, 6, 5, 2)
        let img = rand([b, c, h, w], &rng), wt = rand([o, c, p, p], &rng), bias = rand([o], &rng)
        checkGradients([img, wt, bias]) { patchConv($0[0], weight: $0[1], bias: $0[2], patch: p) }
        let y = withNoGrad { patchConv(img, weight: wt, bias: bias, patch: p) }
        XCTAssertEqual(y.shape, [b, (h / p) * (w / p), o])
        let iv = img.scalars, wv = wt.scalars, bv = bias.scalars
        var ref: [Double] = []
        for n in 0..<b { for gy in 0..<(h / p) { for gx in 0..<(w / p) { for oc in 0..<o {
            var s = Double(bv[oc])
            for ci in 0..<c { for ky in 0..<p { for kx in 0..<p {
                s += Double(iv[((n * c + ci) * h + gy * p + ky) * w + gx * p + kx]) * Double(wv[((oc * c + ci) * p + ky) * p + kx])
            } } }
            ref.append(s)
        } } } }
        XCTAssertLessThan(maxDiff(y.scalars, ref), 1e-5)
    }

    func testAttentionWithMasks() {
        var rng = RNG(seed: 16)
        let q = rand([2, 2, 3, 4], &rng), k = rand([2, 2, 5, 4], &rng), v = rand([2, 2, 5, 4], &rng)
        let pad = paddingMask([1, 1, 1, 1, 0, 1, 1, 0, 0, 0], batch: 2, length: 5)
        checkGradients([q, k, v]) { attention(q: $0[0], k: $0[1], v: $0[2], mask: pad) }
        let causal = causalMask(3, prefix: 2)
        checkGradients([q, k, v]) { attention(q: $0[0], k: $0[1], v: $0[2], mask: causal + pad) }
        // Forward against a Double reference for one (batch, head, query).
        let y = withNoGrad { attention(q: q, k: k, v: v, mask: pad) }.scalars
        let qv = q.scalars.map(Double.init), kv = k.scalars.map(Double.init), vv = v.scalars.map(Double.init)
        let (bz, hd, i) = (1, 1, 2)
        let qo = ((bz * 2 + hd) * 3 + i) * 4, ko = (bz * 2 + hd) * 5 * 4
        var s = (0..<5).map { j in (0..<4).reduce(0.0) { $0 + qv[qo + $1] * kv[ko + j * 4 + $1] } / 2 }
        for j in 2..<5 { s[j] += -10000 }
        let e = s.map { exp($0 - s.max()!) }, z = e.reduce(0, +)
        let ref = (0..<4).map { d in (0..<5).reduce(0.0) { $0 + e[$1] / z * vv[ko + $1 * 4 + d] } }
        XCTAssertLessThan(maxDiff(Array(y[qo..<(qo + 4)]), ref), 1e-5)
    }
}

final class KernelTests: XCTestCase {
    func testFastExpAndErfAccuracy() {
        var worstExp = 0.0, worstErf = 0.0
        for i in 0...20000 {
            let x = -Float(i) * 0.004                   // 0 ... -80
            let e = Double(expNonPositive(x)), r = Foundation.exp(Double(x))
            worstExp = max(worstExp, abs(e - r) / r)
            let z = Float(i - 10000) * 0.0006           // -6 ... 6
            worstErf = max(worstErf, abs(Double(erfApprox(z)) - Foundation.erf(Double(z))))
        }
        XCTAssertLessThan(worstExp, 5e-7)
        XCTAssertLessThan(worstErf, 5e-7)   // A&S bound 1.5e-7 plus Float rounding
        XCTAssertEqual(expNonPositive(-100), 0)
        XCTAssertEqual(expNonPositive(0), 1)
    }

    /// Softmax and layer norm reduce rows in lanes; a row followed by exact zeros (masked keys, positions
    /// not yet generated) must give the short row's bits, or packed and padded attention would differ.
    func testLaneReductionsIgnoreTrailingZerosAndMatchDouble() {
        // Magnitudes 0.01 ... 100 with full mantissas, so that a different grouping of the adds would round
        // differently (values from `rand` alone often add exactly).
        func values(_ n: Int, _ phase: Double) -> [Float] {
            (0..<n).map { (j: Int) -> Float in
                let wave: Double = Foundation.sin(Double(j) * 1.7 + phase)
                let scale: Double = Foundation.pow(10, Double(j % 5) - 2)
                return Float(wave * scale)
            }
        }
        for n in [1, 5, 8, 13, 37, 64] {
            let x = values(n, 0.3), y = values(n, 1.1)
            let padded = x + [Float](repeating: 0, count: 11), paddedY = y + [Float](repeating: 0, count: 11)
            let short = laneSum(x, count: n), dot = laneDot(x, y, count: n)
            XCTAssertEqual(short.bitPattern, laneSum(padded, count: n + 11).bitPattern, "n \(n)")
            XCTAssertEqual(dot.bitPattern, laneDot(padded, paddedY, count: n + 11).bitPattern, "n \(n)")
            // Against Double sums, within n Float roundings of the sum of magnitudes.
            let refSum = x.reduce(0.0) { $0 + Double($1) }, refDot = zip(x, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let bound = { (magnitude: Double) in 1.2e-7 * Double(n) * magnitude }
            XCTAssertEqual(Double(short), refSum, accuracy: bound(x.reduce(0.0) { $0 + Double(abs($1)) }))
            XCTAssertEqual(Double(dot), refDot, accuracy: bound(zip(x, y).reduce(0.0) { $0 + Double(abs($1.0 * $1.1)) }))
            let mean = Float(refSum / Double(n))
            let refVar = x.reduce(0.0) { $0 + (Double($1) - Double(mean)) * (Double($1) - Double(mean)) }
            XCTAssertEqual(Double(laneSquaredDeviations(x, mean: mean, count: n)), refVar, accuracy: bound(refVar))
            // One softmax row over the keys, and over the keys plus masked (-10000) keys.
            var keys = x, masked = x + [Float](repeating: 0, count: 11)
            let mask = [Float](repeating: 0, count: n) + [Float](repeating: -10000, count: 11)
            var out = [Float](repeating: 0, count: n + 11), mk = mask
            keys.withUnsafeMutableBufferPointer { k in softmaxRow(k.baseAddress!, nil, 0, k.baseAddress!, n) }   // in place
            softmaxRow(&masked, &mk, 1, &out, n + 11)
            XCTAssertEqual(keys.map(\.bitPattern), out[0..<n].map(\.bitPattern), "n \(n)")
            XCTAssertEqual(out[n...].max(), 0)
        }
    }
}

final class ThreadedKernelTests: XCTestCase {
    /// Forward and backward of the row-parallel kernels on inputs large enough to be split, with 1 and 3
    /// threads: results must be bit-identical (every row is computed by the same code).
    func testThreadCountDoesNotChangeResults() {
        func run(threads: Int) -> [[Float]] {
            Threads.set(threads)
            defer { Threads.configure() }
            var rng = RNG(seed: 19)
            let x = rand([300, 200], &rng, scale: 3), w = rand([200], &rng), b = rand([200], &rng)
            let mask = reshape(paddingMask((0..<200).map { Int32($0 % 7 == 0 ? 0 : 1) }, batch: 1, length: 200), [1, 200])
            let targets = (0..<300).map { Int32($0 % 50 == 0 ? -100 : $0 % 200) }
            for t in [x, w, b] { t.isTrainable = true }
            var dropRng = RNG(seed: 4)
            let y = gelu(x) + softmax(x, mask: mask) + layerNorm(x, weight: w, bias: b, eps: 1e-5) + x * x
                + dropout(x, p: 0.2, rng: &dropRng, training: true)
            let loss = sum(y * y) + sum(crossEntropy(logits: x, targets: targets, labelSmoothing: 0.1))
            loss.backward()
            let opt = AdamW(parameters: [("x", x)], lr: 0.01)
            opt.step()
            return [y.scalars, x.scalars, w.grad!.scalars, b.grad!.scalars, [loss.item()]]
        }
        XCTAssertEqual(run(threads: 1), run(threads: 3))
    }
}

/// Gradient checks on randomly drawn small shapes (seeded, so a failure reproduces).
final class RandomShapeGradientTests: XCTestCase {
    func testRandomShapes() {
        var rng = RNG(seed: 31)
        func dim() -> Int { 1 + rng.nextInt(4) }
        for _ in 0..<8 {
            // Broadcasting: b drops leading dims and sets random dims to 1.
            let rank = 1 + rng.nextInt(4)
            let sa = (0..<rank).map { _ in dim() }
            let sb = Array(sa.dropFirst(rng.nextInt(rank)).map { rng.nextInt(2) == 0 ? 1 : $0 })
            let a = rand(sa, &rng), b = rand(sb, &rng)
            checkGradients([a, b]) { $0[0] * $0[1] + $0[1] - $0[0] }
            // Batched matmul with random transposes.
            let (m, k, n, batch) = (dim(), dim(), dim(), dim())
            let tA = rng.nextInt(2) == 0, tB = rng.nextInt(2) == 0
            let x = rand([batch] + (tA ? [k, m] : [m, k]), &rng), y = rand([batch] + (tB ? [n, k] : [k, n]), &rng)
            checkGradients([x, y]) { matmul($0[0], $0[1], transposeA: tA, transposeB: tB) }
            // Softmax with a random padding mask, layer norm, attention.
            let (bt, h, t) = (dim(), dim(), 1 + dim())
            let s = rand([bt, h, t, t], &rng, scale: 2)
            let keep = (0..<(bt * t)).map { i in Int32(i % t == 0 || rng.nextInt(3) > 0 ? 1 : 0) }
            let pad = paddingMask(keep, batch: bt, length: t)
            checkGradients([s]) { softmax($0[0], mask: pad + causalMask(t)) }
            let ln = rand([bt, t, 2 + dim()], &rng)
            let w = rand([ln.shape[2]], &rng), bias = rand([ln.shape[2]], &rng)
            checkGradients([ln, w, bias]) { layerNorm($0[0], weight: $0[1], bias: $0[2], eps: 1e-5) }
            let q = rand([bt, h, t, 2], &rng), kk = rand([bt, h, t, 2], &rng), v = rand([bt, h, t, 2], &rng)
            checkGradients([q, kk, v]) { attention(q: $0[0], k: $0[1], v: $0[2], mask: pad) }
        }
    }
}
