import Foundation
import XCTest
@testable import MileData

final class FeedTests: XCTestCase {
    private static let size = 12

    private func trainSamples() throws -> [VQASample] {
        try Slake.load(root: Fixtures.synthetic.root, split: .train)
    }

    private func tokenizer(_ samples: [VQASample]) -> Tokenizer {
        Vocabulary.build(samples: samples)
    }

    private func feed(_ samples: [VQASample], batchSize: Int = 7, seed: UInt64 = 3) throws -> TrainingFeed {
        try TrainingFeed(samples: samples, tokenizer: tokenizer(samples), imageLoader: ImageLoader(size: FeedTests.size),
                         batchSize: batchSize, seed: seed)
    }

    private func instructions() throws -> InstructionDataset {
        let records = InstructionBuilder(seed: 5).build(try trainSamples(), imagePrefix: "", firstQid: 0)
        return InstructionDataset(records: records, imageRoot: Fixtures.synthetic.root + "/imgs", seed: 5)
    }

    func testBatchShapesPaddingAndMasks() throws {
        let samples = Array(try trainSamples().prefix(30))
        let feed = try feed(samples)
        XCTAssertEqual(feed.batchesPerEpoch, 5)
        var seen: [Int] = []
        try feed.forEachBatch(epoch: 0) { batch in
            XCTAssertEqual(batch.count, batch.index < 4 ? 7 : 2, "drop_last=False keeps the short last batch")
            XCTAssertEqual(batch.images.count, batch.count * 3 * FeedTests.size * FeedTests.size)
            XCTAssertEqual(batch.questionIds.count, batch.count * batch.questionLength)
            XCTAssertEqual(batch.answerIds.count, batch.count * batch.answerLength)
            let t = feed.tokenizer
            for row in 0..<batch.count {
                let q = t.encodeQuestion(batch.questions[row]), a = t.encodeAnswer(batch.answers[row])
                checkRow(batch.questionIds, batch.questionMask, row: row, length: batch.questionLength, expected: q)
                checkRow(batch.answerIds, batch.answerMask, row: row, length: batch.answerLength, expected: a)
                XCTAssertEqual(q.first, t.encId)
                XCTAssertEqual(a.first, t.decId)
            }
            // Padded to the longest of the batch, not further.
            XCTAssertEqual(batch.questionLength, batch.questions.map { t.encodeQuestion($0).count }.max())
            XCTAssertEqual(batch.answerLength, batch.answers.map { t.encodeAnswer($0).count }.max())
            seen += batch.qids
        }
        XCTAssertEqual(seen.sorted(), samples.map(\.qid).sorted(), "each sample exactly once per epoch")
    }

    private func checkRow(_ ids: [Int32], _ mask: [Int32], row: Int, length: Int, expected: [Int32],
                          file: StaticString = #filePath, line: UInt = #line) {
        let rowIds = Array(ids[row * length..<(row + 1) * length])
        let rowMask = Array(mask[row * length..<(row + 1) * length])
        XCTAssertEqual(Array(rowIds.prefix(expected.count)), expected, file: file, line: line)
        XCTAssertEqual(rowMask, [Int32](repeating: 1, count: expected.count) + [Int32](repeating: 0, count: length - expected.count),
                       file: file, line: line)
        XCTAssertTrue(rowIds.dropFirst(expected.count).allSatisfy { $0 == 0 }, file: file, line: line)
    }

    func testLongQuestionsAreCutTo35() throws {
        var samples = Array(try trainSamples().prefix(3))
        samples[1].question = Array(repeating: "liver", count: 60).joined(separator: " ")
        let feed = try feed(samples, batchSize: 3)
        let batch = try feed.batch(epoch: 0, index: 0)
        XCTAssertEqual(batch.questionLength, 35)
        let row = batch.qids.firstIndex(of: samples[1].qid)!
        XCTAssertEqual(batch.questionIds[row * 35 + 34], feed.tokenizer.sepId)
        XCTAssertEqual(batch.questionMask[(row * 35)..<(row * 35 + 35)].reduce(0, +), 35)
    }

    func testShuffleIsDeterministicPerSeedAndEpoch() throws {
        let samples = try trainSamples()
        let a = try feed(samples, seed: 11), b = try feed(samples, seed: 11), c = try feed(samples, seed: 12)
        XCTAssertEqual(a.order(epoch: 0), b.order(epoch: 0))
        XCTAssertEqual(try a.batch(epoch: 2, index: 3).qids, try b.batch(epoch: 2, index: 3).qids)
        XCTAssertEqual(try a.batch(epoch: 2, index: 3).images, try b.batch(epoch: 2, index: 3).images)
        XCTAssertNotEqual(a.order(epoch: 0), a.order(epoch: 1), "a new epoch gives a new order")
        XCTAssertNotEqual(a.order(epoch: 0), c.order(epoch: 0), "a new seed gives a new order")
        XCTAssertNotEqual(a.order(epoch: 0), Array(samples.indices), "the order is shuffled")
        XCTAssertEqual(a.order(epoch: 4).sorted(), Array(samples.indices))
        // Random access gives what a full pass gives (a resumed run sees the same batches).
        var pass: [[Int]] = []
        try a.forEachBatch(epoch: 1) { pass.append($0.qids) }
        XCTAssertNotEqual(try c.batch(epoch: 1, index: 0).qids, pass[0])
        XCTAssertEqual(try b.batch(epoch: 1, index: pass.count - 1).qids, pass.last)
        var resumed: [[Int]] = []
        try b.forEachBatch(epoch: 1, from: 2) { resumed.append($0.qids) }
        XCTAssertEqual(resumed, Array(pass.dropFirst(2)))
    }

    func testInstructionPromptsAreDrawnPerEpoch() throws {
        let data = try instructions()
        let samples = try trainSamples()
        let feed = try TrainingFeed(instructions: data, tokenizer: Vocabulary.build(instructions: data.records),
                                    imageLoader: ImageLoader(size: FeedTests.size), batchSize: 16, seed: 9)
        XCTAssertEqual(feed.sampleCount, samples.count)
        var reseeded = data
        reseeded.seed = 9
        for epoch in [0, 1] {
            let batch = try feed.batch(epoch: epoch, index: 1)
            for (row, qid) in batch.qids.enumerated() {
                let record = data.records.first { $0.qid == qid }!
                XCTAssertEqual(batch.questions[row], reseeded.prompt(for: record, epoch: epoch))
                XCTAssertTrue(record.questionPool.contains(batch.questions[row]))
                XCTAssertEqual(batch.answers[row], record.answer)
            }
        }
        let first = feed.samples(epoch: 0).map(\.question), second = feed.samples(epoch: 1).map(\.question)
        let changed = zip(first, second).filter { $0 != $1 }.count
        XCTAssertGreaterThan(changed, first.count / 2, "about 5/6 of prompts change between epochs")
        XCTAssertEqual(feed.samples(epoch: 1).map(\.question), second, "the draw is a pure function of the epoch")
    }

    func testImagesDecodedOnceAndEqualToTheLoader() throws {
        let samples = Array(try trainSamples().prefix(40))
        let loader = ImageLoader(size: FeedTests.size)
        let feed = try TrainingFeed(samples: samples, tokenizer: tokenizer(samples), imageLoader: loader, batchSize: 8, seed: 1)
        let distinct = Set(samples.map(\.imagePath)).count
        for epoch in 0..<2 { try feed.forEachBatch(epoch: epoch) { _ in } }
        XCTAssertEqual(feed.images.loaderCalls, distinct)
        XCTAssertEqual(feed.images.count, distinct)
        let batch = try feed.batch(epoch: 0, index: 2)
        let plane = 3 * FeedTests.size * FeedTests.size
        let path = samples.first { $0.qid == batch.qids[1] }!.imagePath
        XCTAssertEqual(Array(batch.images[plane..<(2 * plane)]), try loader.load(path))
        let preloaded = try TrainingFeed(samples: samples, tokenizer: tokenizer(samples), imageLoader: loader,
                                         batchSize: 8, seed: 1)
        var calls = 0
        try preloaded.preload { done, total in calls += 1; XCTAssertEqual(total, distinct); XCTAssertLessThanOrEqual(done, total) }
        XCTAssertEqual(calls, distinct)
        XCTAssertEqual(preloaded.images.loaderCalls, distinct)
    }

    func testUpstreamScaleIsKept() throws {
        let samples = Array(try trainSamples().prefix(2))
        let loader = ImageLoader(size: FeedTests.size, upstreamDoubleScale: true)
        let feed = try TrainingFeed(samples: samples, tokenizer: tokenizer(samples), imageLoader: loader, batchSize: 2, seed: 1)
        let images = try feed.batch(epoch: 0, index: 0).images
        XCTAssertLessThanOrEqual(images.max()!, 1 / 255 + 1e-7)
        XCTAssertGreaterThan(images.max()!, 0)
    }

    func testBadInputIsAnError() throws {
        let samples = Array(try trainSamples().prefix(4))
        XCTAssertThrowsError(try feed(samples, batchSize: 0))
        XCTAssertThrowsError(try feed([]))
        let good = try feed(samples, batchSize: 3)
        XCTAssertThrowsError(try good.batch(epoch: 0, index: 2))
        XCTAssertThrowsError(try good.batch(epoch: 0, index: -1))
        var broken = samples
        broken[0].imagePath = Fixtures.synthetic.root + "/imgs/nowhere/source.jpg"
        let bad = try feed(broken, batchSize: 4)
        XCTAssertThrowsError(try bad.batch(epoch: 0, index: 0)) { error in
            XCTAssertTrue("\(error)".contains("nowhere/source.jpg"), "\(error)")
        }
        XCTAssertThrowsError(try bad.preload())
    }

    func testEvaluationFeedKeepsFileOrder() throws {
        let root = Fixtures.synthetic.root
        let test = try Slake.load(root: root, split: .test)
        let feed = try EvaluationFeed.slakeTest(root: root, tokenizer: tokenizer(try trainSamples()),
                                                imageLoader: ImageLoader(size: FeedTests.size), batchSize: 10)
        XCTAssertEqual(feed.batchCount, (test.count + 9) / 10)
        var qids: [Int] = [], answers: [String] = []
        try feed.forEachBatch { batch in
            XCTAssertEqual(batch.count, min(10, test.count - batch.index * 10))
            XCTAssertEqual(batch.images.count, batch.count * 3 * FeedTests.size * FeedTests.size)
            XCTAssertEqual(batch.questionIds.count, batch.count * batch.questionLength)
            for row in 0..<batch.count {
                checkRow(batch.questionIds, batch.questionMask, row: row, length: batch.questionLength,
                         expected: feed.tokenizer.encodeQuestion(batch.samples[row].question))
            }
            qids += batch.qids
            answers += batch.answers
        }
        XCTAssertEqual(qids, test.map(\.qid))
        XCTAssertEqual(answers, test.map(\.answer))
        XCTAssertThrowsError(try feed.batch(feed.batchCount))
        XCTAssertThrowsError(try EvaluationFeed(samples: [], tokenizer: feed.tokenizer,
                                                imageLoader: ImageLoader(size: 4)))
    }
}
