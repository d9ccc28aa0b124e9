import Foundation
import MileData
import MileModel

extension PipelineRunner {
    /// The image-shuffle evaluation of a cell: the same test questions, each with the image of another
    /// test question (`ImageShuffle`, seeded by `baselines.shuffle_seed`), scored and stored beside the
    /// real evaluation. The drop from the real scores is how much the cell relies on the image. Runs
    /// before the cell is marked done, so an interrupted shuffle resumes with the cell.
    func shuffleEvaluation(_ context: CellContext, evaluation: Evaluation, model: MISSModel) throws {
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
