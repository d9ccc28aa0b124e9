import XCTest
@testable import Engine

/// conv2d, batchNorm2d, relu, maxPool2d (the ResNet trunk's ops), gradient clipping and the
/// polynomial-decay schedule.
final class ConvOpTests: XCTestCase {
    func testConv2dGradients() {
        var rng = RNG(seed: 31)
        let x = rand([2, 3, 5, 4], &rng), w = rand([4, 3, 3, 3], &rng), b = rand([4], &rng)
        for (stride, padding) in [(1, 0), (1, 1), (2, 1), (2, 0)] {
            checkGradients([x, w, b]) { conv2d($0[0], weight: $0[1], bias: $0[2], stride: stride, padding: padding) }
        }
        let w1 = rand([5, 3, 1, 1], &rng)   // ResNet's 1x1 projections, stride 2, no bias
        checkGradients([x, w1]) { conv2d($0[0], weight: $0[1], stride: 2) }
        checkGradients([x, w1, rand([5], &rng)]) { conv2d($0[0], weight: $0[1], bias: $0[2]) }   // pointwise: no im2col
    }

    func testConv2dOneChannelByHand() {
        // 3x3 image 1...9, kernel [[1, 0], [0, -1]]: out = in[y, x] - in[y + 1, x + 1] = -4 everywhere.
        let img = Tensor(shape: [1, 1, 3, 3], scalars: (1...9).map(Float.init))
        let k = Tensor(shape: [1, 1, 2, 2], scalars: [1, 0, 0, -1])
        XCTAssertEqual(conv2d(img, weight: k).scalars, [-4, -4, -4, -4])
        // stride 2, padding 1, bias 0.5: windows at rows/cols {-1, 0} and {1, 2}; zeros outside:
        // (0,0) = -in[0,0], (0,1) = -in[0,2], (1,0) = -in[2,0], (1,1) = in[1,1] - in[2,2].
        let y = conv2d(img, weight: k, bias: Tensor(shape: [1], scalars: [0.5]), stride: 2, padding: 1)
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        XCTAssertEqual(y.scalars, [-0.5, -2.5, -6.5, -3.5])
    }

    func testConv2dMatchesDirectConvolution() {
        var rng = RNG(seed: 32)
        let (n, c, h, w, o, kk, stride, padding) = (2, 3, 7, 6, 4, 3, 2, 1)
        let x = rand([n, c, h, w], &rng), wt = rand([o, c, kk, kk], &rng), bias = rand([o], &rng)
        let y = conv2d(x, weight: wt, bias: bias, stride: stride, padding: padding)
        let (oh, ow) = ((h + 2 * padding - kk) / stride + 1, (w + 2 * padding - kk) / stride + 1)
        XCTAssertEqual(y.shape, [n, o, oh, ow])
        let xv = x.scalars, wv = wt.scalars, bv = bias.scalars
        var ref: [Double] = []
        for b in 0..<n { for oc in 0..<o { for oy in 0..<oh { for ox in 0..<ow {
            var s = Double(bv[oc])
            for ci in 0..<c { for ky in 0..<kk { for kx in 0..<kk {
                let iy = oy * stride - padding + ky, ix = ox * stride - padding + kx
                guard iy >= 0 && iy < h && ix >= 0 && ix < w else { continue }
                s += Double(xv[((b * c + ci) * h + iy) * w + ix]) * Double(wv[((oc * c + ci) * kk + ky) * kk + kx])
            } } }
            ref.append(s)
        } } } }
        XCTAssertLessThan(maxDiff(y.scalars, ref), 1e-5)
    }

    func testReLU() {
        // Values kept 0.05 away from the kink so that x ± eps stays on one side.
        var rng = RNG(seed: 33)
        let x = Tensor(shape: [2, 3, 4], scalars: (0..<24).map { _ in
            let v = rng.nextFloat() * 2 - 1
            return v < 0 ? v - 0.05 : v + 0.05
        })
        checkGradients([x]) { relu($0[0]) }
        XCTAssertEqual(relu(Tensor(shape: [4], scalars: [-1, 0, 2, -0.5])).scalars, [0, 0, 2, 0])
    }

    func testMaxPoolStemByHand() {
        // 4x4 plane 0...15, ResNet's stem pool (3, 2, 1): windows rows/cols {-1...1} and {1...3}.
        let x = Tensor(shape: [1, 1, 4, 4], scalars: (0..<16).map(Float.init))
        let y = maxPool2d(x, kernel: 3, stride: 2, padding: 1)
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        XCTAssertEqual(y.scalars, [5, 7, 13, 15])
    }

    func testMaxPoolTieGoesToTheFirstMaximum() {
        // Tie rule: the first maximum in row-major window order takes the gradient (PyTorch CPU).
        // [[1, 3, 3], [3, 0, 0]], kernel 2, stride 1: both windows' max 3 is first met at index 1.
        let x = Tensor(shape: [1, 1, 2, 3], scalars: [1, 3, 3, 3, 0, 0])
        x.isTrainable = true
        let y = maxPool2d(x, kernel: 2, stride: 1)
        XCTAssertEqual(y.scalars, [3, 3])
        sum(y).backward()
        XCTAssertEqual(x.grad?.scalars, [0, 2, 0, 0, 0, 0])
    }

    func testMaxPoolGradients() {
        // Distinct values 0.1 apart (shuffled), so a ±eps step never changes an argmax.
        var rng = RNG(seed: 34)
        var values = (0..<(2 * 3 * 7 * 6)).map { Float($0) * 0.1 }
        for i in stride(from: values.count - 1, to: 0, by: -1) { values.swapAt(i, Int(rng.nextUInt64() % UInt64(i + 1))) }
        let x = Tensor(shape: [2, 3, 7, 6], scalars: values)
        checkGradients([x], maxPerInput: 252) { maxPool2d($0[0], kernel: 3, stride: 2, padding: 1) }
        checkGradients([x], maxPerInput: 252) { maxPool2d($0[0], kernel: 2, stride: 2) }
    }

    func testBatchNormGradientsInTrainingAndEval() {
        var rng = RNG(seed: 35)
        let x = rand([3, 4, 3, 2], &rng, scale: 2), w = rand([4], &rng), b = rand([4], &rng)
        let rm = rand([4], &rng, scale: 0.5), rv = Tensor(shape: [4], scalars: [0.5, 1, 1.5, 2])
        for training in [true, false] {
            checkGradients([x, w, b]) {
                batchNorm2d($0[0], weight: $0[1], bias: $0[2], runningMean: rm, runningVar: rv, training: training)
            }
        }
        XCTAssertNil(rm.grad); XCTAssertNil(rv.grad)
        XCTAssertFalse(rm.requiresGrad || rv.requiresGrad)
    }

    func testBatchNormTrainingForwardAndRunningStatsByHand() {
        // One channel, values 1, 2 (image 0) and 3, 4 (image 1): mean 2.5, biased variance 1.25,
        // unbiased 5/3. Running stats from (0, 1) with momentum 0.1: 0.25 and 0.9 + 0.1 · 5/3.
        let x = Tensor(shape: [2, 1, 1, 2], scalars: [1, 2, 3, 4])
        let w = Tensor(shape: [1], scalars: [2]), b = Tensor(shape: [1], scalars: [1])
        let rm = Tensor(shape: [1], scalars: [0]), rv = Tensor(shape: [1], scalars: [1])
        let y = batchNorm2d(x, weight: w, bias: b, runningMean: rm, runningVar: rv, training: true)
        let s = 1 / (1.25 + 1e-5).squareRoot()
        XCTAssertLessThan(maxDiff(y.scalars, [-1.5, -0.5, 0.5, 1.5].map { 2 * $0 * s + 1 }), 1e-6)
        XCTAssertEqual(rm.scalars[0], 0.25, accuracy: 1e-7)
        XCTAssertEqual(rv.scalars[0], Float(0.9 + 0.1 * 5.0 / 3.0), accuracy: 1e-6)
        // A second batch moves them again: 0.9 · 0.25 + 0.1 · 2.5.
        _ = batchNorm2d(x, weight: w, bias: b, runningMean: rm, runningVar: rv, training: true)
        XCTAssertEqual(rm.scalars[0], 0.475, accuracy: 1e-6)
        // Eval uses the running stats and leaves them alone.
        let e = batchNorm2d(x, weight: w, bias: b, runningMean: rm, runningVar: rv, training: false)
        let rvNow = Double(rv.scalars[0])
        let expected = [1.0, 2, 3, 4].map { 2 * ($0 - 0.475) / (rvNow + 1e-5).squareRoot() + 1 }
        XCTAssertLessThan(maxDiff(e.scalars, expected), 1e-5)
        XCTAssertEqual(rm.scalars[0], 0.475, accuracy: 1e-6)
    }

    func testClipGradNormByHand() {
        // Gradients (3, 4) and (12): norm 13. max 6.5 halves them (up to torch's 1e-6 in the divisor).
        let a = Tensor(shape: [2], scalars: [0, 0]), b = Tensor(shape: [1], scalars: [0]), none = Tensor(shape: [1], scalars: [0])
        a.grad = Tensor(shape: [2], scalars: [3, 4]); b.grad = Tensor(shape: [1], scalars: [12])
        XCTAssertEqual(clipGradNorm([a, b, none], maxNorm: 20), 13, accuracy: 1e-6)
        XCTAssertEqual(a.grad?.scalars, [3, 4])   // below the limit: unchanged
        XCTAssertEqual(clipGradNorm([a, b, none], maxNorm: 6.5), 13, accuracy: 1e-6)
        let c = Float(6.5 / (13 + 1e-6))
        XCTAssertEqual(a.grad!.scalars[0], 3 * c, accuracy: 1e-6)
        XCTAssertEqual(a.grad!.scalars[1], 4 * c, accuracy: 1e-6)
        XCTAssertEqual(b.grad!.scalars[0], 12 * c, accuracy: 1e-6)
        XCTAssertNil(none.grad)
    }

    func testPolynomialDecayByHand() {
        func lr(_ u: Int, power: Float = 2) -> Float {
            polynomialDecayLR(peak: 1, numUpdates: u, warmupUpdates: 10, totalUpdates: 110, end: 0.1, power: power)
        }
        XCTAssertEqual(lr(0), 0)
        XCTAssertEqual(lr(5), 0.5, accuracy: 1e-7)
        XCTAssertEqual(lr(10), 1, accuracy: 1e-7)
        XCTAssertEqual(lr(60), 0.9 * 0.25 + 0.1, accuracy: 1e-6)        // half-way: (1/2)^2
        XCTAssertEqual(lr(35, power: 1), 0.9 * 0.75 + 0.1, accuracy: 1e-6)
        XCTAssertEqual(lr(110), 0.1); XCTAssertEqual(lr(500), 0.1)
        // No warmup: starts at the peak.
        XCTAssertEqual(polynomialDecayLR(peak: 2, numUpdates: 0, warmupUpdates: 0, totalUpdates: 4), 2)
        XCTAssertEqual(polynomialDecayLR(peak: 2, numUpdates: 1, warmupUpdates: 0, totalUpdates: 4), 1.5, accuracy: 1e-7)
    }
    /// A ResNet stem and two convs, forward + backward with every parameter trainable, or frozen (forward).
    private func stemPeak(trainable: Bool) -> Int {
        let base = Memory.liveBytes
        Memory.resetPeak()
        do {
            var rng = RNG(seed: 36)
            let x = rand([2, 3, 16, 16], &rng)
            let w1 = rand([8, 3, 7, 7], &rng), w2 = rand([16, 8, 1, 1], &rng), w3 = rand([16, 16, 3, 3], &rng)
            let bw = Tensor.ones([8]), bb = Tensor.zeros([8]), rm = Tensor.zeros([8]), rv = Tensor.ones([8])
            for t in [w1, w2, w3, bw, bb] { t.isTrainable = trainable }
            var h = conv2d(x, weight: w1, stride: 2, padding: 3)
            h = maxPool2d(relu(batchNorm2d(h, weight: bw, bias: bb, runningMean: rm, runningVar: rv, training: true)),
                          kernel: 3, stride: 2, padding: 1)
            let loss = sum(conv2d(conv2d(h, weight: w2), weight: w3, padding: 1))
            if trainable { loss.backward() }
        }
        XCTAssertEqual(Memory.liveBytes, base, "everything is freed")
        return Memory.peakBytes - base
    }

    func testShapeOnlyPeakEqualsMeasuredPeakOnAResNetStem() {
        let measured = stemPeak(trainable: true)
        XCTAssertEqual(withShapeOnly { stemPeak(trainable: true) }, measured)
        XCTAssertEqual(withShapeOnly { stemPeak(trainable: false) }, stemPeak(trainable: false))
        XCTAssertLessThan(stemPeak(trainable: false), measured)   // a frozen trunk keeps no activations
    }
}
