import Engine
import Foundation
import XCTest
@testable import MileHarness
import MileData
import MileModel

/// Base pretraining with BLIP's objectives (ITC + ITM + LM) and image augmentation, as the pipeline runs it.
final class PretrainStageTests: XCTestCase {
    private func feed(augment: Bool) throws -> TrainingFeed {
        let samples = Array(try Slake.load(root: PipelineFixture.synthetic, split: .train).prefix(48))
        let tokenizer = Tokenizer.build(corpus: samples.flatMap { [$0.question, $0.answer] })
        let feed = try TrainingFeed(samples: samples, tokenizer: tokenizer,
                                    imageLoader: ImageLoader(size: ModelConfig.smoke.imageSize), batchSize: 12, seed: 4)
        feed.augment = augment
        return feed
    }

    private func stage(_ feed: TrainingFeed, dir: String, epochs: Int) throws -> TrainingStage {
        var config = ModelConfig.smoke
        config.vocabSize = feed.tokenizer.vocabularySize
        config.padTokenId = feed.tokenizer.padId; config.decTokenId = feed.tokenizer.decId; config.sepTokenId = feed.tokenizer.sepId
        return TrainingStage(name: "base", key: "k", config: config, assignment: .full, baseFile: nil, baseID: "init",
                             checkpointFile: URL(fileURLWithPath: dir + "/partial.safetensors"), epochs: epochs, lr: 1e-3,
                             weightDecay: 0.05, seed: 9, family: MISSFamily(), objectives: [.itc, .itm, .lm])
    }

    /// The heads train with the stage and are checkpointed with it, but the trained model is MISS alone, so
    /// the base file has upstream's VQA names only. A run stopped after its first epoch resumes to the same
    /// tensors as an uninterrupted run (heads and mining stream included).
    func testObjectivesTrainCheckpointAndResumeExactly() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let f = try feed(augment: true)
        let whole = Trainer(stage: try stage(f, dir: dir + "/a", epochs: 2), feed: f)
        try FileManager.default.createDirectory(atPath: dir + "/a", withIntermediateDirectories: true)
        guard case .finished = try whole.run() else { return XCTFail("uninterrupted run did not finish") }

        try FileManager.default.createDirectory(atPath: dir + "/b", withIntermediateDirectories: true)
        let stopped = Trainer(stage: try stage(f, dir: dir + "/b", epochs: 2), feed: f)
        struct Stop: Error {}
        stopped.onEpoch = { metric in if metric.epoch == 0 { throw Stop() } }
        XCTAssertThrowsError(try stopped.run())
        let saved = try Safetensors.read(URL(fileURLWithPath: dir + "/b/partial.safetensors")).tensors
        XCTAssertNotNil(saved["itm_head.weight"], "the heads are part of the stage's checkpoint")
        let resumed = Trainer(stage: try stage(f, dir: dir + "/b", epochs: 2), feed: f)
        guard case .finished = try resumed.run() else { return XCTFail("resumed run did not finish") }

        let a = try XCTUnwrap(whole.trainedModel as? MISSModel), b = try XCTUnwrap(resumed.trainedModel)
        let names = a.namedParameters().map(\.name)
        XCTAssertFalse(names.contains { $0.hasPrefix("itm_head") || $0.hasPrefix("vision_proj") || $0.hasPrefix("text_proj") })
        for ((name, x), (_, y)) in zip(a.namedParameters(), b.namedParameters()) {
            XCTAssertEqual(x.scalars, y.scalars, "\(name) differs after resuming")
        }
        let file = URL(fileURLWithPath: dir + "/base.safetensors")
        try a.save(to: file)
        let reloaded = try MISSModel(config: a.config, assignment: .full, rng: RNG(seed: 1))
        let (missing, unexpected) = try reloaded.load(from: file, strict: true)
        XCTAssertEqual(missing, []); XCTAssertEqual(unexpected, [])
    }

    /// Augmented batches are a pure function of (seed, epoch, batch): the same twice, different from the
    /// plain images and between epochs, and every pixel value is one the loader can produce.
    func testAugmentedBatchesAreSeededCrops() throws {
        let plain = try feed(augment: false), augmented = try feed(augment: true)
        let once = try augmented.batch(epoch: 0, index: 1).images, twice = try augmented.batch(epoch: 0, index: 1).images
        XCTAssertEqual(once, twice)
        XCTAssertNotEqual(once, try plain.batch(epoch: 0, index: 1).images)
        XCTAssertNotEqual(once, try augmented.batch(epoch: 1, index: 1).images)
        XCTAssertEqual(try augmented.batch(epoch: 0, index: 1).qids, try plain.batch(epoch: 0, index: 1).qids)
        XCTAssertTrue(once.allSatisfy { $0 >= 0 && $0 <= 1 })
    }
}

final class ImageRelianceTests: XCTestCase {
    /// A model that never saw training scores the same loss scale either way; the measurement runs end to end
    /// on the synthetic data and reports every question.
    func testMeasuresBothLossesOverEveryQuestion() throws {
        let samples = Array(try Slake.load(root: PipelineFixture.synthetic, split: .test).prefix(30))
        let tokenizer = Tokenizer.build(corpus: samples.flatMap { [$0.question, $0.answer] })
        var config = ModelConfig.smoke
        config.vocabSize = tokenizer.vocabularySize
        config.padTokenId = tokenizer.padId; config.decTokenId = tokenizer.decId; config.sepTokenId = tokenizer.sepId
        let model = try MISSModel(config: config, assignment: .full, rng: RNG(seed: 2))
        let store = ImageStore(loader: ImageLoader(size: config.imageSize))
        let reliance = try ImageReliance.measure(model: model, samples: samples, tokenizer: tokenizer, images: store, batchSize: 7)
        XCTAssertEqual(reliance.questions, 30)
        XCTAssertTrue(reliance.trueLoss.isFinite && reliance.trueLoss > 0)
        XCTAssertNotEqual(reliance.trueLoss, reliance.shuffledLoss, "other images must change a random model's loss")
    }
}

final class PromptFormatTests: XCTestCase {
    /// `data.prompts`: plain gives the test's question form alone; both keeps the templates and adds it.
    func testPlainAndMixedPromptPools() throws {
        let locations = DataLocations(slakeDir: PipelineFixture.synthetic, radDir: nil, cacheDir: NSTemporaryDirectory() + "mile-prompts")
        let questions = try Slake.load(root: PipelineFixture.synthetic, split: .train).map(\.question)
        let mile = try RunData.instructionRecords(["slake-train"], prompts: ["mile"], locations: locations)
        let plain = try RunData.instructionRecords(["slake-train"], prompts: ["plain"], locations: locations)
        let both = try RunData.instructionRecords(["slake-train"], prompts: ["mile", "plain"], locations: locations)
        XCTAssertEqual(plain.map(\.questionPool), questions.map { [$0] })
        XCTAssertEqual(both.map(\.questionPool), zip(mile, questions).map { $0.questionPool + [$1] })
        XCTAssertFalse(mile.contains { $0.questionPool.contains(questions[0]) && $0.qid == 0 }, "templates are not the plain question")
        XCTAssertEqual(plain.map(\.answer), mile.map(\.answer))
    }

    /// Prompt formats share the base (and its vocabulary) but not the fine-tuning.
    func testPromptFormatSharesTheBaseNotTheFineTuning() {
        func config(_ prompts: [String]) -> ConfigValue {
            .map(["model": .map(["scale": .string("small")]),
                  "data": .map(["prompts": .list(prompts.map { .string($0) }), "test": .string("slake-en-test")]),
                  "recipe": .map(["lr": .double(3e-4)])])
        }
        let mile = Planner.stages(config(["mile"]), cellID: "a"), plain = Planner.stages(config(["plain"]), cellID: "b")
        XCTAssertEqual(mile[1].key, plain[1].key, "base key")
        XCTAssertNotEqual(mile[2].key, plain[2].key, "fine-tune key")
    }
}
