import XCTest
@testable import Engine

/// headScores / headContext against finite differences and against the head-copy path they replace.
final class HeadAttentionTests: XCTestCase {
    /// Separate q, k, v [B, T, H·Dh] and a packed [B, T, 3·H·Dh] tensor read at three column offsets
    /// (all three views of one tensor, so the gradient blocks share one buffer), with a padding mask.
    func testGradientsOfSeparateAndPackedViews() {
        var rng = RNG(seed: 41)
        let (heads, dh) = (2, 3), c = 6
        let q = rand([2, 4, c], &rng), k = rand([2, 5, c], &rng), v = rand([2, 5, c], &rng)
        let pad = paddingMask([1, 1, 1, 0, 0, 1, 1, 1, 1, 1], batch: 2, length: 5)
        checkGradients([q, k, v]) { t in
            let scores = headScores(HeadView(t[0]), HeadView(t[1]), heads: heads, headDim: dh, alpha: 0.7)
            return headContext(softmax(scores, mask: pad), HeadView(t[2]), heads: heads, headDim: dh)
        }
        let packed = rand([2, 4, 3 * c], &rng)
        checkGradients([packed]) { t in
            let scores = headScores(HeadView(t[0]), HeadView(t[0], column: c), heads: heads, headDim: dh, alpha: 0.5)
            return headContext(softmax(scores, mask: nil), HeadView(t[0], column: 2 * c), heads: heads, headDim: dh)
        }
    }

    /// Same values and gradients, bit for bit, as slicing, splitting heads, attention and merging heads.
    func testMatchesTheHeadCopyPath() {
        let rng = RNG(seed: 42)   // copied by each run: both see the same data
        let (b, t, heads, dh) = (3, 7, 3, 8), c = heads * dh
        func run(inPlace: Bool) -> [[Float]] {
            var r = rng
            let packed = rand([b, t, 3 * c], &r), mask = causalMask(t)
            packed.isTrainable = true
            let out: Tensor
            if inPlace {
                let s = headScores(HeadView(packed), HeadView(packed, column: c), heads: heads, headDim: dh,
                                   alpha: 1 / Float(dh).squareRoot())
                out = headContext(softmax(s, mask: mask), HeadView(packed, column: 2 * c), heads: heads, headDim: dh)
            } else {
                let q = splitHeads(slice(packed, axis: 2, range: 0..<c), heads: heads)
                let k = splitHeads(slice(packed, axis: 2, range: c..<(2 * c)), heads: heads)
                let v = splitHeads(slice(packed, axis: 2, range: (2 * c)..<(3 * c)), heads: heads)
                out = mergeHeads(attention(q: q, k: k, v: v, mask: mask))
            }
            let w = rand(out.shape, &r)
            sum(out * w).backward()
            return [out.scalars, packed.grad!.scalars]
        }
        let copies = run(inPlace: false), inPlace = run(inPlace: true)
        XCTAssertTrue(copies[0] == inPlace[0], "forward differs")
        XCTAssertTrue(copies[1] == inPlace[1], "gradient differs")
    }

    /// Only a view over the whole tensor may overwrite a fresh gradient instead of accumulating.
    func testOnlyAWholeTensorViewCoversIt() {
        let x = Tensor.zeros([2, 3, 4])
        XCTAssertFalse(HeadView(x, column: 2).covers(heads: 1, headDim: 2))
        XCTAssertFalse(HeadView(x).covers(heads: 1, headDim: 2))
        XCTAssertTrue(HeadView(x).covers(heads: 2, headDim: 2))
    }
}
