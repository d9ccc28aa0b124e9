import Engine
import Foundation
import MileData
import MileModel

/// How much a model's answers lean on the image: its VQA loss (the fine-tuning loss, label smoothing
/// included, mean per question) on questions with their own images, and with every question given another
/// question's image. A model that ignores the image scores the same on both.
public struct ImageReliance: Sendable {
    public let questions: Int
    public let trueLoss: Double
    public let shuffledLoss: Double
    public var gap: Double { shuffledLoss - trueLoss }

    public var description: String {
        String(format: "VQA loss %.4f with the true images, %.4f with shuffled images (%+.4f nats) over %d questions",
               trueLoss, shuffledLoss, gap, questions)
    }

    /// Measured in eval mode over `samples` in batches of `batchSize`, the images moved by the derangement
    /// of the image-shuffle evaluation (`ImageShuffle`, seed `shuffleSeed`).
    public static func measure(model: any VQAModel, samples: [VQASample], tokenizer: Tokenizer, images: ImageStore,
                               batchSize: Int = 50, shuffleSeed: Int = 7) throws -> ImageReliance {
        model.train(false)
        defer { model.train(true) }
        let shuffled = try ImageShuffle.shuffledPaths(samples.map(\.imagePath), seed: shuffleSeed)
        var trueSum = 0.0, shuffledSum = 0.0
        for start in stride(from: 0, to: samples.count, by: batchSize) {
            let rows = Array(samples[start..<min(samples.count, start + batchSize)])
            let question = tokenizer.batch(rows.map { tokenizer.encodeQuestion($0.question) })
            let answer = tokenizer.batch(rows.map { tokenizer.encodeAnswer($0.answer) })
            func loss(_ paths: [String]) throws -> Double {
                let s = images.imageSize
                let pixels = Tensor(shape: [rows.count, 3, s, s], scalars: try images.floats(paths))
                return Double(try withNoGrad { try model.loss(images: pixels, question: question, answer: answer).item() })
            }
            trueSum += try loss(rows.map(\.imagePath)) * Double(rows.count)
            shuffledSum += try loss(Array(shuffled[start..<(start + rows.count)])) * Double(rows.count)
        }
        let n = Double(max(samples.count, 1))
        return ImageReliance(questions: samples.count, trueLoss: trueSum / n, shuffledLoss: shuffledSum / n)
    }
}
