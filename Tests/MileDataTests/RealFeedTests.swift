import Foundation
import XCTest
@testable import MileData

/// The pretraining corpus, feeds and vocabulary on the real SLAKE / VQA-RAD. Skipped unless SLAKE_DIR
/// (and RAD_DIR where needed) are set.
final class RealFeedTests: XCTestCase {
    private func env(_ name: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
            throw XCTSkip("\(name) is not set")
        }
        guard FileManager.default.fileExists(atPath: value) else { throw XCTSkip("\(name)=\(value) does not exist") }
        return value
    }

    func testRealSlakeCaptionsLeaveOutEveryTestImage() throws {
        let slake = try env("SLAKE_DIR")
        let corpus = try PretrainCorpus.build(slakeRoot: slake, radRoot: nil)
        // 586 images are named by train.json (all languages); 142 of them are also named by test.json.
        XCTAssertEqual(corpus.captionImages, 444)
        XCTAssertEqual(corpus.excludedImages, 142)
        XCTAssertEqual(corpus.captionCount, 2195)
        try assertNoSlakeTestLeak(corpus, slakeRoot: slake)
        let englishTest = Set(try Slake.load(root: slake, split: .test).map(\.imagePath))
        XCTAssertEqual(englishTest.count, 96)
        XCTAssertTrue(corpus.samples.allSatisfy { !englishTest.contains($0.imagePath) })
        XCTAssertTrue(corpus.samples.allSatisfy { FileManager.default.fileExists(atPath: $0.imagePath) })
    }

    func testRealDefaultCorpus() throws {
        let slake = try env("SLAKE_DIR"), rad = try env("RAD_DIR")
        let corpus = try PretrainCorpus.build(slakeRoot: slake, radRoot: rad)
        XCTAssertEqual(corpus.radCount, 1797)
        XCTAssertEqual(corpus.samples.count, 1797 + 2195)
        XCTAssertEqual(corpus.samples, try PretrainCorpus.build(slakeRoot: slake, radRoot: rad).samples)
        try assertNoSlakeTestLeak(corpus, slakeRoot: slake)
    }

    func testRealEvaluationFeed() throws {
        let slake = try env("SLAKE_DIR")
        let tokenizer = Vocabulary.build(samples: try Slake.load(root: slake, split: .train))
        let feed = try EvaluationFeed.slakeTest(root: slake, tokenizer: tokenizer, imageLoader: ImageLoader(size: 16))
        XCTAssertEqual(feed.samples.count, 1061)
        XCTAssertEqual(feed.batchCount, 11)
        let last = try feed.batch(10)
        XCTAssertEqual(last.count, 61)
        XCTAssertEqual(last.qids, Array(try Slake.load(root: slake, split: .test).suffix(61).map(\.qid)))
        XCTAssertEqual(last.samples.filter(\.isYesNo).count + (try (0..<10).map { try feed.batch($0).samples.filter(\.isYesNo).count }.reduce(0, +)), 355)
    }

    /// The run vocabulary (SLAKE train and VQA-RAD train instruction records plus the pretraining corpus)
    /// against the English test questions, which it never saw.
    func testRealVocabularyCoversTestQuestions() throws {
        let slake = try env("SLAKE_DIR"), rad = try env("RAD_DIR")
        let builder = InstructionBuilder(seed: 42)
        let slakeTrain = try Slake.load(root: slake, split: .train), radTrain = try VQARad.load(root: rad, split: .train)
        let records = builder.build(slakeTrain, imagePrefix: "slake/", firstQid: 0)
            + builder.build(radTrain, imagePrefix: "vqa-rad/", firstQid: slakeTrain.count)
        let corpus = try PretrainCorpus.build(slakeRoot: slake, radRoot: rad)
        let tokenizer = Vocabulary.build(instructions: records, samples: corpus.samples)
        let coverage = Vocabulary.coverage(tokenizer, texts: try Slake.load(root: slake, split: .test).map(\.question))
        print("vocabulary \(tokenizer.vocabularySize) tokens; SLAKE-en test questions: \(coverage)")
        XCTAssertLessThan(Double(coverage.unknown), 0.01 * Double(coverage.words))
    }
}
