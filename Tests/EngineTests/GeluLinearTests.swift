import XCTest
@testable import Engine

/// `geluLinear(h, W, b)` is `linear(gelu(h), W, b)` as one op that keeps h instead of gelu(h).
final class GeluLinearTests: XCTestCase {
    func testGradientsAgainstFiniteDifferences() {
        var rng = RNG(seed: 21)
        let h = rand([2, 3, 6], &rng, scale: 3), w = rand([4, 6], &rng), b = rand([4], &rng)
        checkGradients([h, w, b]) { geluLinear($0[0], weight: $0[1], bias: $0[2]) }
        checkGradients([h, w]) { geluLinear($0[0], weight: $0[1], bias: nil) }
    }

    /// Same values and gradients to the last bit as the two separate ops, for every trainable subset.
    func testBitIdenticalToSeparateOps() {
        for (hTrains, wTrains) in [(true, true), (true, false), (false, true)] {
            let fused = run(fused: true, hTrains: hTrains, wTrains: wTrains)
            let plain = run(fused: false, hTrains: hTrains, wTrains: wTrains)
            XCTAssertEqual(fused.out, plain.out)
            XCTAssertEqual(fused.grads, plain.grads, "h \(hTrains) W \(wTrains)")
        }
    }

    /// A second use of h: its gradient arrives first from elsewhere, so the fused op must add to it.
    func testAccumulatesIntoAnExistingGradient() {
        var rng = RNG(seed: 22)
        let h = rand([5, 8], &rng, scale: 2), w = rand([3, 8], &rng)
        checkGradients([h, w]) { geluLinear($0[0], weight: $0[1], bias: nil) + linear($0[0], weight: $0[1], bias: nil) }
    }

    /// After the forward only h (and the output) are held: one [rows, In] buffer less than gelu + linear.
    func testKeepsOneActivationLess() {
        let fused = savedBytes(fused: true), plain = savedBytes(fused: false)
        XCTAssertEqual(plain - fused, 64 * 48 * 4)
    }

    /// Frozen weight and an input that needs no gradient: nothing is recorded or kept.
    func testFrozenRecordsNothing() {
        var rng = RNG(seed: 23)
        let h = rand([4, 6], &rng), w = rand([3, 6], &rng)
        let base = Memory.liveBytes
        let y = geluLinear(h, weight: w, bias: nil)
        XCTAssertFalse(y.requiresGrad)
        XCTAssertEqual(Memory.liveBytes - base, y.byteCount)
    }

    private func run(fused: Bool, hTrains: Bool, wTrains: Bool) -> (out: [Float], grads: [[Float]]) {
        var rng = RNG(seed: 24)
        let x = rand([3, 5, 8], &rng, scale: 2), w1 = rand([8, 8], &rng), w2 = rand([6, 8], &rng), b = rand([6], &rng)
        x.isTrainable = hTrains; w2.isTrainable = wTrains; b.isTrainable = true
        let h = linear(x, weight: w1, bias: nil)
        let out = fused ? geluLinear(h, weight: w2, bias: b) : linear(gelu(h), weight: w2, bias: b)
        let values = out.scalars
        sum(out * rand(out.shape, &rng)).backward()
        return (values, [x, w2, b].map { $0.grad?.scalars ?? [] })
    }

    /// Bytes alive after the forward of a trainable two-layer MLP on [64, 16] (hidden 48), inputs excluded.
    private func savedBytes(fused: Bool) -> Int {
        var rng = RNG(seed: 25)
        let x = rand([64, 16], &rng), w1 = rand([48, 16], &rng), w2 = rand([16, 48], &rng)
        w1.isTrainable = true; w2.isTrainable = true
        let base = Memory.liveBytes
        let h = linear(x, weight: w1, bias: nil)
        let y = fused ? geluLinear(h, weight: w2, bias: nil) : linear(gelu(h), weight: w2, bias: nil)
        defer { sum(y).backward() }
        return Memory.liveBytes - base
    }
}
