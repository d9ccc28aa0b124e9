import Foundation
import MileData
import Engine
import MileModel

extension PipelineRunner {
    /// The image-shuffle evaluation of a cell: the same test questions, each with the image of another
    /// test question (`ImageShuffle`, seeded by `baselines.shuffle_seed`), scored and stored beside the
    /// real evaluation. The drop from the real scores is how much the cell relies on the image. Runs
    /// before the cell is marked done, so an interrupted shuffle resumes with the cell.
    func shuffleEvaluation(_ context: CellContext, evaluation: Evaluation, model: any VQAModel) throws {
        let seed = context.cell.baselines.shuffleSeed
        let samples = try Self.shuffledSamples(context.data.testSamples, seed: seed)
        progress.line("image-shuffle evaluation (shuffle seed \(seed))")
        let predictions = try evaluate(context, evaluation: evaluation, model: model, samples: samples)
        let (scores, perQuestion) = try Scorer.score(questions: evaluation.questions, predictions: predictions)
        try store.storeShuffle(ShuffleResult(runID: context.runID, shuffleSeed: seed, scores: scores, predictions: perQuestion))
        progress.line(String(format: "shuffled images: Opened %.2f, Closed %.2f, Global %.2f", scores.opened, scores.closed,
                             scores.global))
    }

    /// The test samples with their images deranged; questions, answers and qids unchanged.
    static func shuffledSamples(_ samples: [VQASample], seed: Int) throws -> [VQASample] {
        let paths = try ImageShuffle.shuffledPaths(samples.map(\.imagePath), seed: seed)
        let names = Dictionary(samples.map { ($0.imagePath, $0.imageName) }, uniquingKeysWith: { first, _ in first })
        return zip(samples, paths).map { sample, path in
            var moved = sample
            moved.imagePath = path
            moved.imageName = names[path] ?? moved.imageName
            return moved
        }
    }
}

extension PipelineRunner {
    /// A cell done before the image-shuffle evaluation existed gets one from its finished fine-tune
    /// checkpoint and its cached base: the same trained tensors, so the same model the real evaluation
    /// scored. Without both (deleted cache, converted-checkpoint base) the report keeps showing "—".
    /// Returns what happened, for the cell's line; nil when the shuffle was already stored.
    func backfillShuffle(_ cell: PlannedCell, runID: Int64, settings: RunSettings, data: RunData) throws -> String? {
        guard try store.shuffle(runID: runID, seed: cell.baselines.shuffleSeed) == nil else { return nil }
        do {
            return try addShuffle(cell, runID: runID, settings: settings, data: data)
        } catch let stop as StageStop {
            return "image-shuffle evaluation not added: \(stop.reason)"   // the run loop stops on the request
        } catch {
            return "image-shuffle evaluation not added: \(error)"         // the done cell itself is fine
        }
    }

    private func addShuffle(_ cell: PlannedCell, runID: Int64, settings: RunSettings, data: RunData) throws -> String {
        guard settings.pretraining.source == "own" else { return "no image-shuffle evaluation (converted-checkpoint base)" }
        let baseFile = BaseStage.file(cacheDir: options.locations.cacheDir, key: cell.stage(.base).key)
        guard FileManager.default.fileExists(atPath: baseFile.path), let baseID = try Safetensors.read(baseFile).metadata["id"] else {
            return "no image-shuffle evaluation (base not in the cache)"
        }
        let config = try modelConfig(settings, data)
        let stage = TrainingStage(name: "finetune", key: cell.stage(.finetune).key, config: config,
                                  assignment: try cell.assignment.peft(), baseFile: baseFile, baseID: baseID,
                                  checkpointFile: Self.checkpointFile(cacheDir: options.locations.cacheDir,
                                                                      finetuneKey: cell.stage(.finetune).key),
                                  epochs: settings.recipe.epochs, lr: settings.recipe.lr,
                                  weightDecay: settings.recipe.weightDecay, seed: settings.recipe.seed, family: settings.family,
                                  visionLRScale: settings.recipe.visionLRScale)
        guard Trainer.resumePoint(stage).epoch >= stage.epochs else {
            return "no image-shuffle evaluation (no finished fine-tune checkpoint of this base)"
        }
        let images = data.images(size: config.imageSize, doubleDivide255: settings.doubleDivide255)
        let feed = try TrainingFeed(instructions: data.instructions, tokenizer: data.tokenizer, images: images,
                                    batchSize: settings.recipe.batch, seed: UInt64(settings.recipe.seed))
        // Every epoch is finished (checked above), so run() only loads the final tensors: no training.
        let trainer = Trainer(stage: stage, feed: feed)
        guard case .finished = try trainer.run(), let model = trainer.trainedModel else {
            return "no image-shuffle evaluation (the fine-tune checkpoint did not load)"
        }
        let context = CellContext(cell: cell, settings: settings, data: data, runID: runID, config: config,
                                  assignment: stage.assignment, beat: {})   // a done run has no claim to keep alive
        try shuffleEvaluation(context, evaluation: Evaluation(settings: settings, data: data), model: model)
        return "image-shuffle evaluation added from the fine-tune checkpoint"
    }
}
