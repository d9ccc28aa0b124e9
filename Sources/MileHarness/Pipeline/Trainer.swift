import Engine
import Foundation
import MileData
import MileModel

/// Set by the SIGINT handler; the training and evaluation loops stop at the end of the current step.
public enum StopRequest {
    nonisolated(unsafe) public static var requested: Int32 = 0
    public static var isSet: Bool { requested != 0 }
}

/// One training stage (base pretraining or a cell's fine-tuning) with per-epoch checkpoints.
///
/// Every epoch starts the same way, whether or not the process was restarted: the model is built with
/// the dropout stream `RNG(seed).split(epoch)`, the base weights are loaded from `baseFile`, and the
/// trainable tensors and AdamW state of the last finished epoch are loaded from `checkpointFile`. A run
/// killed at any point therefore resumes from its last finished epoch and produces exactly the tensors an
/// uninterrupted run produces (same seed, same thread count). The checkpoint holds only the trainable
/// tensors and the optimizer state.
public struct TrainingStage {
    public var name: String                 // "base" or "finetune", for progress lines
    public var key: String                  // stage key; a checkpoint of another key is never loaded
    public var config: ModelConfig
    public var assignment: PEFTAssignment
    public var baseFile: URL?               // nil: start from the model's own initialisation
    public var baseID: String               // identity of the base, stored in the checkpoint
    public var checkpointFile: URL
    public var epochs: Int
    public var lr: Double
    public var weightDecay: Double
    public var seed: Int
}

public enum TrainingOutcome: Equatable {
    case finished(history: [EpochMetric])
    case nonFinite(epoch: Int, step: Int, loss: Float)
    case stopped(epoch: Int, step: Int)
}

/// Progress of a stage, step by step.
public struct StepProgress {
    public let stage: String
    public let epoch: Int, epochs: Int
    public let step: Int, steps: Int
    public let loss: Double
    public let samplesPerSecond: Double
    public let secondsLeft: Double
}

public final class Trainer {
    let stage: TrainingStage
    let feed: TrainingFeed
    /// Called after every step (progress lines, heartbeats).
    var onStep: (StepProgress) throws -> Void = { _ in }
    /// Called after every finished epoch, once its checkpoint is on disk.
    var onEpoch: (EpochMetric) throws -> Void = { _ in }
    /// Highest engine peak of any epoch, measured from the moment the epoch's model and state are loaded.
    public private(set) var peakEngineBytes = 0
    public private(set) var trainedModel: MISSModel?

    init(stage: TrainingStage, feed: TrainingFeed) {
        self.stage = stage
        self.feed = feed
    }

    /// Epochs already finished by an earlier run of this stage, and their metrics.
    public static func resumePoint(_ stage: TrainingStage) -> (epoch: Int, step: Int, history: [EpochMetric]) {
        guard let meta = try? Safetensors.read(stage.checkpointFile).metadata, meta["key"] == stage.key,
              meta["base"] == stage.baseID, let epoch = Int(meta["epoch"] ?? ""), let step = Int(meta["step"] ?? "") else {
            return (0, 0, [])
        }
        return (epoch, step, decodeHistory(meta["history"] ?? "[]"))
    }

    public func run() throws -> TrainingOutcome {
        var (start, step, history) = Self.resumePoint(stage)
        let started = Date()
        var samplesDone = 0
        let totalSamples = (stage.epochs - start) * feed.sampleCount
        if start >= stage.epochs {
            trainedModel = try buildModel(epoch: stage.epochs - 1, loadCheckpoint: true).model
            return .finished(history: history)
        }
        for epoch in start..<stage.epochs {
            let (model, optimizer) = try buildModel(epoch: epoch, loadCheckpoint: epoch > 0)
            optimizer.lr = cosineLR(initial: Float(stage.lr), epoch: epoch, maxEpoch: stage.epochs)
            Memory.resetPeak()
            let epochStart = Date()
            var lossSum = 0.0, count = 0
            for index in 0..<feed.batchesPerEpoch {
                let batch = try feed.batch(epoch: epoch, index: index)
                let loss = try model.loss(images: Tensor(shape: [batch.count, 3, batch.imageSize, batch.imageSize], scalars: batch.images),
                                          questionIds: batch.questionIds, questionMask: batch.questionMask,
                                          answerIds: batch.answerIds, answerMask: batch.answerMask)
                let value = loss.item()
                guard value.isFinite else { return .nonFinite(epoch: epoch, step: step + 1, loss: value) }
                loss.backward()
                optimizer.step()
                optimizer.zeroGrad()
                step += 1
                lossSum += Double(value) * Double(batch.count); count += batch.count; samplesDone += batch.count
                let elapsed = Date().timeIntervalSince(started)
                let rate = Double(samplesDone) / max(elapsed, 1e-9)
                try onStep(StepProgress(stage: stage.name, epoch: epoch, epochs: stage.epochs, step: index + 1,
                                        steps: feed.batchesPerEpoch, loss: lossSum / Double(count), samplesPerSecond: rate,
                                        secondsLeft: Double(totalSamples - samplesDone) / max(rate, 1e-9)))
                if StopRequest.isSet { return .stopped(epoch: epoch, step: step) }
            }
            peakEngineBytes = max(peakEngineBytes, Memory.peakBytes)
            let metric = EpochMetric(epoch: epoch, loss: lossSum / Double(max(count, 1)), lr: Double(optimizer.lr),
                                     seconds: Date().timeIntervalSince(epochStart), samples: count)
            history.append(metric)
            try saveCheckpoint(model: model, optimizer: optimizer, epochsDone: epoch + 1, step: step, history: history)
            try onEpoch(metric)
            trainedModel = model
        }
        return .finished(history: history)
    }

    /// The model of `epoch` with base weights and (when asked) the last checkpoint, and its optimizer.
    func buildModel(epoch: Int, loadCheckpoint: Bool) throws -> (model: MISSModel, optimizer: AdamW) {
        let model = try MISSModel(config: stage.config, assignment: stage.assignment,
                                  rng: RNG(seed: UInt64(stage.seed)).split(UInt64(epoch)))
        if let base = stage.baseFile { try model.load(from: base, strict: true) }
        let optimizer = AdamW(parameters: model.trainableParameters(), lr: Float(stage.lr), weightDecay: Float(stage.weightDecay))
        if loadCheckpoint {
            let (tensors, meta) = try Safetensors.read(stage.checkpointFile)
            var weights: [String: Tensor] = [:], state: [String: Tensor] = [:]
            for (name, tensor) in tensors {
                if name.hasPrefix("exp_avg.") || name.hasPrefix("exp_avg_sq.") { state[name] = tensor } else { weights[name] = tensor }
            }
            try Self.copy(weights, into: model.trainableParameters(), file: stage.checkpointFile.path)
            try optimizer.loadState(state, step: Int(meta["step"] ?? "") ?? 0)
        }
        model.train(true)
        return (model, optimizer)
    }

    static func copy(_ tensors: [String: Tensor], into parameters: [(name: String, tensor: Tensor)], file: String) throws {
        for (name, parameter) in parameters {
            guard let stored = tensors[name] else { throw HarnessError.io("\(file): trainable tensor '\(name)' is missing") }
            guard stored.shape == parameter.shape else {
                throw HarnessError.io("\(file): tensor '\(name)' has shape \(stored.shape), model expects \(parameter.shape)")
            }
            parameter.copy(from: stored)
        }
    }

    /// Trainable tensors + AdamW state, written to a temporary file and renamed (never half-written).
    func saveCheckpoint(model: MISSModel, optimizer: AdamW, epochsDone: Int, step: Int, history: [EpochMetric]) throws {
        let meta = ["key": stage.key, "base": stage.baseID, "epoch": String(epochsDone), "step": String(step),
                    "history": Self.encodeHistory(history)]
        let folder = stage.checkpointFile.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let temporary = folder.appendingPathComponent(".\(stage.checkpointFile.lastPathComponent).\(getpid()).tmp")
        try Safetensors.write(model.trainableParameters() + optimizer.stateTensors(), to: temporary, metadata: meta)
        _ = try? FileManager.default.removeItem(at: stage.checkpointFile)
        try FileManager.default.moveItem(at: temporary, to: stage.checkpointFile)
    }

    static func encodeHistory(_ history: [EpochMetric]) -> String {
        let items = history.map { ["epoch": $0.epoch, "loss": $0.loss, "lr": $0.lr, "seconds": $0.seconds, "samples": $0.samples ?? 0] as [String: Any] }
        let data = (try? JSONSerialization.data(withJSONObject: items, options: [.sortedKeys])) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    static func decodeHistory(_ text: String) -> [EpochMetric] {
        guard let items = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]] else { return [] }
        return items.compactMap { item in
            guard let epoch = (item["epoch"] as? NSNumber)?.intValue, let loss = (item["loss"] as? NSNumber)?.doubleValue,
                  let lr = (item["lr"] as? NSNumber)?.doubleValue, let seconds = (item["seconds"] as? NSNumber)?.doubleValue else { return nil }
            return EpochMetric(epoch: epoch, loss: loss, lr: lr, seconds: seconds, samples: (item["samples"] as? NSNumber)?.intValue)
        }
    }
}
