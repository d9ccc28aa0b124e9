import XCTest
@testable import Engine

/// Attention over packed variable-length rows against finite differences and against the padded
/// computation (head products + padding mask + softmax + dropout) it replaces.
final class SegmentAttentionTests: XCTestCase {
    private let heads = 2, dh = 3

    func testGradientsAgainstFiniteDifferences() {
        var rng = RNG(seed: 31)
        let queries = Segments(lengths: [3, 1, 2]), keys = Segments(lengths: [2, 4, 3])
        let q = rand([queries.rows, heads * dh], &rng), k = rand([keys.rows, heads * dh], &rng)
        let v = rand([keys.rows, heads * dh], &rng)
        for inProduct in [true, false] {
            checkGradients([q, k, v]) {
                segmentAttention(q: $0[0], k: $0[1], v: $0[2], queries: queries, keys: keys, heads: self.heads,
                                 factor: 0.6, scaleInProduct: inProduct, dropout: nil)
            }
        }
        // with dropout: the mask is a function of the seed, so finite differences see a fixed mask
        let d = AttentionDropout(p: 0.3, seed: 7, paddedQueries: 3, paddedKeys: 4)
        checkGradients([q, k, v]) {
            segmentAttention(q: $0[0], k: $0[1], v: $0[2], queries: queries, keys: keys, heads: self.heads,
                             factor: 0.6, scaleInProduct: false, dropout: d)
        }
    }

    /// Self-attention of a padded batch (lengths 4, 2, 3 of T = 4): the packed op gives every real row the
    /// padded computation's values bit for bit, with and without dropout; gradients agree to rounding.
    func testMatchesPaddedSelfAttention() {
        let lengths = [4, 2, 3], t = 4
        for dropping in [false, true] {
            let padded = paddedRun(lengths: lengths, t: t, dropping: dropping)
            let packed = packedRun(lengths: lengths, t: t, dropping: dropping)
            XCTAssertEqual(packed.out, padded.out, "dropout \(dropping)")
            for (a, b) in zip(packed.grads, padded.grads) { XCTAssertLessThan(maxDiff(a, b.map(Double.init)), 1e-6) }
        }
    }

    /// Packed dropout drops what the padded dropout drops at the same padded positions.
    func testDropoutOfPackedRowsUsesPaddedIndices() {
        var rng = RNG(seed: 33)
        let full = rand([6, 5], &rng), rows = [1, 2, 4]
        var a = RNG(seed: 9), b = RNG(seed: 9)
        let padded = dropout(full, p: 0.4, rng: &a, training: true).scalars
        let packedIn = withNoGrad { selectRows(full, rows) }
        let packed = dropout(packedIn, p: 0.4, rng: &b, training: true, paddedRows: rows).scalars
        for (r, row) in rows.enumerated() { XCTAssertEqual(Array(packed[(r * 5)..<(r * 5 + 5)]), Array(padded[(row * 5)..<(row * 5 + 5)])) }
    }

    /// Shape-only mode counts the new ops' buffers (probabilities, forward and backward scratch,
    /// geluLinear's backward scratch) exactly as a real run allocates them.
    func testMetaPeakEqualsMeasured() {
        func run() -> Int {
            let base = Memory.liveBytes
            Memory.resetPeak()
            var rng = RNG(seed: 36)
            let segments = Segments(lengths: [3, 1, 2])
            let x = rand([6, 4], &rng), w = rand([4, 4], &rng), w1 = rand([8, 4], &rng), w2 = rand([4, 8], &rng)
            for t in [w, w1, w2] { t.isTrainable = true }
            let q = linear(x, weight: w, bias: nil)
            let d = AttentionDropout(p: 0.3, seed: 3, paddedQueries: 3, paddedKeys: 3)
            let a = segmentAttention(q: q, k: linear(x, weight: w, bias: nil), v: q, queries: segments, keys: segments,
                                     heads: 2, factor: 0.7, scaleInProduct: false, dropout: d)
            var drop = RNG(seed: 4)
            let h = dropout(linear(a, weight: w1, bias: nil), p: 0.2, rng: &drop, training: true, paddedRows: [0, 1, 2, 4, 6, 7])
            sum(geluLinear(h, weight: w2, bias: nil)).backward()
            return Memory.peakBytes - base
        }
        let real = run()
        XCTAssertEqual(withShapeOnly { run() }, real)
        XCTAssertGreaterThan(real, 0)
    }

    // MARK: helpers

    private func inputs(_ t: Int, batch: Int) -> (Tensor, Tensor, Tensor) {
        var rng = RNG(seed: 34)
        return (rand([batch, t, heads * dh], &rng), rand([batch, t, heads * dh], &rng), rand([batch, t, heads * dh], &rng))
    }

    private func realRows(_ lengths: [Int], _ t: Int) -> [Int] { lengths.enumerated().flatMap { b, n in (b * t)..<(b * t + n) } }

    /// Output rows and q/k/v gradients (real rows only) of the padded computation, as BERT's attention.
    private func paddedRun(lengths: [Int], t: Int, dropping: Bool) -> (out: [Float], grads: [[Float]]) {
        let (q, k, v) = inputs(t, batch: lengths.count)
        for x in [q, k, v] { x.isTrainable = true }
        let keep = lengths.flatMap { n in (0..<t).map { Int32($0 < n ? 1 : 0) } }
        let mask = paddingMask(keep, batch: lengths.count, length: t)
        let factor = 1 / Float(dh).squareRoot()
        var probs: Tensor
        if dropping {
            probs = softmax(scale(headScores(HeadView(q), HeadView(k), heads: heads, headDim: dh, alpha: 1), factor), mask: mask)
            var rng = RNG(seed: 5)
            probs = dropout(probs, p: 0.25, rng: &rng, training: true)
        } else {
            probs = softmax(headScores(HeadView(q), HeadView(k), heads: heads, headDim: dh, alpha: factor), mask: mask)
        }
        let out = headContext(probs, HeadView(v), heads: heads, headDim: dh)
        let rows = realRows(lengths, t)
        let real = selectRows(reshape(out, [-1, heads * dh]), rows)
        sum(real * weights(real.shape)).backward()
        return (real.scalars, [q, k, v].map { selectRows(reshape($0.grad!, [-1, heads * dh]), rows).scalars })
    }

    private func packedRun(lengths: [Int], t: Int, dropping: Bool) -> (out: [Float], grads: [[Float]]) {
        let (qp, kp, vp) = inputs(t, batch: lengths.count)
        let rows = realRows(lengths, t)
        let (q, k, v) = withNoGrad { (selectRows(reshape(qp, [-1, heads * dh]), rows), selectRows(reshape(kp, [-1, heads * dh]), rows),
                                      selectRows(reshape(vp, [-1, heads * dh]), rows)) }
        for x in [q, k, v] { x.isTrainable = true }
        var rng = RNG(seed: 5)
        let d = dropping ? AttentionDropout(p: 0.25, seed: rng.nextUInt64(), paddedQueries: t, paddedKeys: t) : nil
        let segments = Segments(lengths: lengths)
        let out = segmentAttention(q: q, k: k, v: v, queries: segments, keys: segments, heads: heads,
                                   factor: 1 / Float(dh).squareRoot(), scaleInProduct: !dropping, dropout: d)
        sum(out * weights(out.shape)).backward()
        return (out.scalars, [q, k, v].map { $0.grad!.scalars })
    }

    private func weights(_ shape: [Int]) -> Tensor {
        var rng = RNG(seed: 35)
        return rand(shape, &rng)
    }
}
