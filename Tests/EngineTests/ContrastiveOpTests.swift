import XCTest
@testable import Engine

/// The ops of the contrastive pretraining loss: row normalisation and cross-entropy with soft targets.
final class ContrastiveOpTests: XCTestCase {
    func testL2NormalizeRowsForwardAndGradient() {
        var rng = RNG(seed: 31)
        let x = rand([4, 6], &rng, scale: 2)
        let y = withNoGrad { l2NormalizeRows(x) }.scalars, xs = x.scalars
        for r in 0..<4 {
            let row = xs[(r * 6)..<((r + 1) * 6)].map(Double.init)
            let norm = row.map { $0 * $0 }.reduce(0, +).squareRoot()
            for j in 0..<6 { XCTAssertEqual(Double(y[r * 6 + j]), row[j] / norm, accuracy: 1e-6) }
        }
        checkGradients([x]) { l2NormalizeRows($0[0]) }
        checkGradients([x]) { l2NormalizeRows(scale($0[0], 0.5)) + l2NormalizeRows($0[0]) }   // accumulates
    }

    func testSoftCrossEntropyMatchesDoubleReferenceAndGradient() {
        var rng = RNG(seed: 32)
        let logits = rand([3, 5], &rng, scale: 3)
        // Row 0 one-hot, row 1 spread over two classes, row 2 over all five.
        let targets: [Float] = [0, 0, 1, 0, 0,  0.5, 0, 0, 0.5, 0,  0.2, 0.2, 0.2, 0.2, 0.2]
        let loss = withNoGrad { softCrossEntropy(logits: logits, targets: targets) }.scalars
        let x = logits.scalars.map(Double.init)
        for r in 0..<3 {
            let row = Array(x[(r * 5)..<((r + 1) * 5)])
            let lse = Foundation.log(row.map { Foundation.exp($0) }.reduce(0, +))
            let expected = (0..<5).map { Double(targets[r * 5 + $0]) * (lse - row[$0]) }.reduce(0, +)
            XCTAssertEqual(Double(loss[r]), expected, accuracy: 1e-5)
        }
        // A one-hot row is the ordinary cross-entropy.
        let hard = withNoGrad { crossEntropy(logits: logits, targets: [2, 0, 0]) }.scalars
        XCTAssertEqual(loss[0], hard[0], accuracy: 1e-5)
        checkGradients([logits]) { softCrossEntropy(logits: $0[0], targets: targets) }
    }
}
