import XCTest
@testable import MileHarness

final class UncertaintyTests: XCTestCase {
    func testQuantileInterpolatesLikeRType7() {
        XCTAssertEqual(Bootstrap.quantile([1, 2, 3, 4], 0.25), 1.75, accuracy: 1e-12)   // 0.25·3 = 0.75 → 1 + 0.75
        XCTAssertEqual(Bootstrap.quantile([1, 2, 3, 4], 0.5), 2.5, accuracy: 1e-12)
        XCTAssertEqual(Bootstrap.quantile([10, 20], 0.975), 19.75, accuracy: 1e-12)
        let ci = Bootstrap.percentileInterval([4, 1, 3, 2, 5], level: 0.5)   // quartiles of 1…5: 2 and 4
        XCTAssertEqual(ci, Interval(low: 2, high: 4))
    }

    func testBootstrapOfConstantScoresIsAPoint() {
        let sample = QuestionSample(closed: [1, 1, 1], opened: [0, 0])
        let ci = Bootstrap.intervals(sample, resamples: 200)
        XCTAssertEqual(ci.closed, Interval(low: 100, high: 100))
        XCTAssertEqual(ci.opened, Interval(low: 0, high: 0))
        XCTAssertEqual(ci.global, Interval(low: 60, high: 60), "stratified: always 3 closed + 2 opened questions")
    }

    /// 400 closed questions, half right: the CI half-width is about 1.96 · sqrt(0.25 / 400) = 4.9 points.
    func testBootstrapWidthMatchesTheBinomialStandardError() {
        let sample = QuestionSample(closed: (0..<400).map { Double($0 % 2) }, opened: [])
        let ci = Bootstrap.intervals(sample).closed
        XCTAssertEqual((ci.high - ci.low) / 2, 4.9, accuracy: 0.8)
        XCTAssertTrue(ci.contains(50))
        XCTAssertEqual(Bootstrap.intervals(sample).closed, ci, "seeded: the same interval every time")
        XCTAssertNotEqual(Bootstrap.intervals(sample, seed: 99).closed, ci, "another seed, other resamples")
    }

    func testPairedDifferenceKeepsThePairing() {
        let a = QuestionSample(closed: (0..<100).map { Double($0 % 2) }, opened: (0..<100).map { Double($0 % 3 == 0 ? 1 : 0) })
        XCTAssertEqual(Bootstrap.pairedDifference(a, a, metric: .global), Interval(low: 0, high: 0), "a cell against itself")
        // b = a with 10 closed questions flipped from right to wrong: a − b is +10 closed points per resample
        // only where those questions are drawn, so the CI lies strictly above 0.
        var b = a
        var flipped = 0
        for i in b.closed.indices where b.closed[i] == 1 && flipped < 10 { b.closed[i] = 0; flipped += 1 }
        let ci = try! XCTUnwrap(Bootstrap.pairedDifference(a, b, metric: .closed))
        XCTAssertGreaterThan(ci.low, 0)
        XCTAssertTrue(ci.contains(10))
        XCTAssertNil(Bootstrap.pairedDifference(a, QuestionSample(closed: [1], opened: []), metric: .global))
    }

    func testPooledSeedsAverageEachQuestion() throws {
        let (_, one) = try SampleScores.scored(["yes", "no", "liver", "lung"])      // right, right, right, wrong
        let (_, two) = try SampleScores.scored(["no", "no", "kidney", "left lung"])  // wrong, right, wrong, right
        let pooled = try XCTUnwrap(QuestionSample.pooled([one, two]))
        XCTAssertEqual(pooled.closed, [0.5, 1])
        XCTAssertEqual(pooled.opened, [0.5, 0.5])
        XCTAssertEqual(pooled.metrics, MetricTriple(opened: 50, closed: 75, global: 62.5))
    }

    func testMcNemarExactPValue() {
        // 1 vs 9 discordant: 2 · (C(10,0) + C(10,1)) / 2^10 = 2 · 11 / 1024.
        XCTAssertEqual(McNemar.exactPValue(1, 9), 22.0 / 1024, accuracy: 1e-12)
        XCTAssertEqual(McNemar.exactPValue(9, 1), 22.0 / 1024, accuracy: 1e-12)
        XCTAssertEqual(McNemar.exactPValue(0, 0), 1)
        XCTAssertEqual(McNemar.exactPValue(5, 5), 1, "capped at 1")
        XCTAssertEqual(McNemar.exactPValue(0, 3), 0.25, accuracy: 1e-12)   // 2 · 1/8
        let result = McNemar.test([1, 1, 0, 0, 1], [0, 1, 1, 0, 0])
        XCTAssertEqual(result.aOnly, 2)
        XCTAssertEqual(result.bOnly, 1)
        XCTAssertEqual(result.pValue, 1, accuracy: 1e-12)   // 2 · (1 + 3) / 8 capped
    }

    func testSpearmanWithTies() throws {
        XCTAssertEqual(Spearman.ranks([5, 6, 7, 8, 7]), [1, 2, 3.5, 5, 3.5])
        // ranks x 1…5, y 1, 2, 3.5, 5, 3.5: Σdxdy = 8, Σdx² = 10, Σdy² = 9.5 → 8 / √95.
        XCTAssertEqual(try XCTUnwrap(Spearman.rho([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])), 8 / 95.0.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(Spearman.rho([1, 2, 3], [30, 20, 10])), -1, accuracy: 1e-12)
        XCTAssertNil(Spearman.rho([1, 2], [3, 3]), "no variance in y")
        XCTAssertNil(Spearman.rho([1], [1]))
    }
}
