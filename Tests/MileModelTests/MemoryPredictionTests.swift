import Engine
import Foundation
import XCTest
@testable import MileModel

final class MemoryPredictionTests: XCTestCase {
    /// Resident set size of this process, from /proc (Linux).
    private func residentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb * 1024
    }

    /// One paper-scale training step in shape-only mode: no 1.4 GB of weights is allocated, the
    /// prediction covers at least the fp32 weights, and training the ViT costs more than freezing it.
    func testPaperScaleStepInShapeOnlyMode() throws {
        let weights = 361_478_972 * 4
        let rssBefore = residentBytes()
        let frozen = try MemoryPrediction.predict(config: .paper, assignment: try assignment("F", "lora", "lora"),
                                                  batch: 2, questionLength: 35, answerLength: 6)
        let trained = try MemoryPrediction.predict(config: .paper, assignment: try assignment("T", "lora", "lora"),
                                                   batch: 2, questionLength: 35, answerLength: 6)
        let rssGrowth = residentBytes() - rssBefore
        XCTAssertLessThan(rssGrowth, 400 << 20, "shape-only mode must not allocate the paper model")
        XCTAssertGreaterThan(frozen.stepPeakBytes, weights)
        XCTAssertGreaterThan(trained.stepPeakBytes, frozen.stepPeakBytes + 86_339_328 * 4,
                             "a trained ViT adds at least its gradients")
        let count = try ParameterAccounting.count(config: .paper, assignment: try assignment("F", "lora", "lora", rank: 4))
        XCTAssertEqual(frozen.optimizerBytes, 8 * count.trainable)
        XCTAssertEqual(try MemoryPrediction.predict(config: .paper, assignment: try assignment("F", "lora", "lora"), batch: 2,
                                                   questionLength: 35, answerLength: 6).peakBytes, frozen.peakBytes)
    }
}
