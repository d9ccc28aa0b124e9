import XCTest
@testable import MileHarness
import MileData

final class BaselineTests: XCTestCase {
    static let train = [
        PriorRecord(question: "Is this a CT?", answer: "Yes", imagePath: "a"),
        PriorRecord(question: "is this a ct ?", answer: "No", imagePath: "b"),    // same text once normalised
        PriorRecord(question: "Is this a CT?", answer: "yes", imagePath: "c"),
        PriorRecord(question: "Which organ?", answer: "Liver", imagePath: "a"),
        PriorRecord(question: "Which organ?", answer: "Lung", imagePath: "b"),
        PriorRecord(question: "Which organ?", answer: "lung", imagePath: "c"),
        PriorRecord(question: "Where?", answer: "Left", imagePath: "a"),
        PriorRecord(question: "Where?", answer: "Right", imagePath: "b"),
    ]

    /// A hand-made set: majority per normalised text, first-seen tie break, global fallback, scored.
    func testBlindTrainPrior() throws {
        let prior = TrainPrior(Self.train)
        XCTAssertEqual(prior.answer("IS THIS A CT"), "Yes", "yes 2 : no 1, spelled as first seen")
        XCTAssertEqual(prior.answer("Which organ?"), "Lung", "lung 2 (Lung, lung) : liver 1")
        XCTAssertEqual(prior.answer("Where?"), "Left", "1 : 1, the first seen wins")
        // Globally: yes 2, lung 2, others 1; yes was seen first.
        XCTAssertEqual(prior.globalAnswer, "Yes")
        XCTAssertFalse(prior.knows("What is this?"))
        XCTAssertEqual(prior.answer("What is this?"), "Yes")

        let test = [TestQuestion(qid: 1, question: "Is this a CT?", answer: "yes", answerType: "CLOSED"),
                    TestQuestion(qid: 2, question: "Which organ?", answer: "Liver", answerType: "OPEN"),
                    TestQuestion(qid: 3, question: "Where?", answer: "left", answerType: "OPEN"),
                    TestQuestion(qid: 4, question: "Is it normal?", answer: "No", answerType: "CLOSED")]
        let predictions = test.map { Prediction(qid: $0.qid, answer: prior.answer($0.question)) }
        let (scores, _) = try Scorer.score(questions: test, predictions: predictions)
        XCTAssertEqual(scores.closed, 50)     // qid 1 right, qid 4 ("Yes" fallback) wrong
        XCTAssertEqual(scores.opened, 50)     // qid 3 right, qid 2 wrong
        XCTAssertEqual(scores.global, 50)
    }

    func testNearestImageTakesTheClosestThumbnailOfTheSameQuestion() throws {
        let thumbnails: [String: [Float]] = ["a": [1, 0, 0], "b": [0, 1, 0], "c": [0, 0, 1]]
        let nearest = try NearestImage(Self.train, thumbnails: thumbnails)
        XCTAssertEqual(nearest.answer("Which organ?", thumbnail: [0.9, 0.2, 0.1]), "Liver")
        XCTAssertEqual(nearest.answer("Which organ?", thumbnail: [0.1, 0.2, 3]), "lung")
        XCTAssertEqual(nearest.answer("Is this a CT?", thumbnail: [0, 5, 0]), "No", "b's answer, not the majority")
        XCTAssertEqual(nearest.answer("Unseen?", thumbnail: [0, 5, 0]), "Yes", "unseen text: the blind answer")
        XCTAssertEqual(NearestImage.cosine([1, 1], [2, 2]), 1, accuracy: 1e-12)
        XCTAssertEqual(NearestImage.cosine([0, 0], [2, 2]), 0)
        XCTAssertThrowsError(try NearestImage(Self.train, thumbnails: ["a": [1]]))
    }

    func testDerangementHasNoFixedPointAndIsSeeded() {
        for count in 2...60 {
            for seed in [0, 7, 123] {
                let p = ImageShuffle.derangement(count: count, seed: seed)
                XCTAssertEqual(p.sorted(), Array(0..<count), "a permutation")
                XCTAssertFalse(p.indices.contains { p[$0] == $0 }, "fixed point for count \(count) seed \(seed): \(p)")
            }
        }
        XCTAssertEqual(ImageShuffle.derangement(count: 30, seed: 7), ImageShuffle.derangement(count: 30, seed: 7))
        XCTAssertNotEqual(ImageShuffle.derangement(count: 30, seed: 7), ImageShuffle.derangement(count: 30, seed: 8))
        XCTAssertEqual(ImageShuffle.derangement(count: 1, seed: 7), [0])
    }

    func testShuffledPathsNeverKeepTheirOwnImage() throws {
        let paths = ["x", "x", "y", "z", "x", "y", "w"]
        let moved = try ImageShuffle.shuffledPaths(paths, seed: 7)
        XCTAssertEqual(moved.count, paths.count)
        for (old, new) in zip(paths, moved) { XCTAssertNotEqual(old, new) }
        XCTAssertEqual(Set(moved[0..<1] + moved[1..<2] + moved[4..<5]).count, 1, "one image's questions move together")
        XCTAssertEqual(Set(moved), Set(paths), "only test images are used")
        XCTAssertEqual(try ImageShuffle.shuffledPaths(paths, seed: 7), moved)
        XCTAssertThrowsError(try ImageShuffle.shuffledPaths(["x", "x"], seed: 7))
    }

    func testShuffledSamplesKeepQuestionsAndMoveImages() throws {
        let samples = try Slake.load(root: PipelineFixture.synthetic, split: .test)
        let moved = try PipelineRunner.shuffledSamples(samples, seed: 7)
        XCTAssertEqual(moved.map(\.qid), samples.map(\.qid))
        XCTAssertEqual(moved.map(\.question), samples.map(\.question))
        XCTAssertFalse(zip(samples, moved).contains { $0.imagePath == $1.imagePath })
        XCTAssertTrue(zip(samples, moved).allSatisfy { $1.imagePath.hasSuffix($1.imageName) })
    }

    /// Both reference rows on the synthetic SLAKE, stored once and then read back by key.
    func testReferenceRowsAreComputedStoredAndFoundByKey() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let store = try ResultsStore(path: dir + "/r.db")
        let settings = BaselineSettings(thumbnail: 8)
        let first = try ReferenceBaselines.ensure(store: store, slakeDir: PipelineFixture.synthetic, cacheDir: dir, settings: settings)
        XCTAssertEqual(first.map(\.kind), [.blind, .nearestImage])
        let testCount = try Slake.load(root: PipelineFixture.synthetic, split: .test).count
        for result in first {
            XCTAssertEqual(result.predictions.count, testCount)
            XCTAssertEqual(result.scores.openedCount + result.scores.closedCount, testCount)
        }
        let hashes = try ReferenceBaselines.currentHashes(slakeDir: PipelineFixture.synthetic)
        let stored = try ReferenceBaselines.stored(store: store, hashes: hashes, settings: settings)
        XCTAssertEqual(stored.map(\.scores), first.map(\.scores))
        XCTAssertEqual(stored.map(\.predictions), first.map(\.predictions))
        XCTAssertEqual(try ReferenceBaselines.stored(store: store, hashes: hashes, settings: BaselineSettings(thumbnail: 4)).map(\.kind),
                       [.blind], "another thumbnail size is another nearest-image result; the blind row does not depend on it")
        XCTAssertTrue(try ReferenceBaselines.stored(store: store, hashes: ["test.json": "other"], settings: settings).isEmpty)
    }

    /// Baseline settings are carried by the cell but never change its id.
    func testBaselineSettingsAreNotPartOfTheCellID() throws {
        let table = try ExperimentLoader.load(path: TestSupport.experiment("table1.yaml"))
        let plain = try Planner.expand(table)
        let changed = try Planner.expand(table, overrides: [ConfigOverride("baselines.shuffle_seed=9"), ConfigOverride("baselines.thumbnail=8")])
        XCTAssertEqual(plain.map(\.id), changed.map(\.id))
        XCTAssertEqual(plain[0].baselines, BaselineSettings(thumbnail: 16, shuffleSeed: 7, resamples: 1000))
        XCTAssertEqual(changed[0].baselines.shuffleSeed, 9)
        XCTAssertEqual(changed[0].baselines.thumbnail, 8)
        XCTAssertNil(plain[0].config["baselines"])
        XCTAssertThrowsError(try ConfigOverride("baselines.thumbnail=0"))
    }
}
