import Engine
import Foundation
import MileData
import MileModel

/// Set by the SIGINT handler; the training and evaluation loops stop at the end of the current step.
public enum StopRequest {
    /// 0: run on; a signal number (SIGINT, SIGTERM); or `parentGone` (a `--jobs` worker whose parent died).
    nonisolated(unsafe) public static var requested: Int32 = 0
    public static let parentGone: Int32 = -1
    public static var isSet: Bool { requested != 0 }

    /// What stopped the run, for the interrupted cell's reason.
    public static var cause: String {
        switch requested {
        case parentGone: return "parent `mile run --jobs` gone"
        case SIGTERM: return "SIGTERM"
        case SIGUSR1: return "SIGUSR1 (the SLURM job's time limit is near)"
        default: return "SIGINT"
        }
    }
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
    public var config: any FamilyConfig
    public var assignment: PEFTAssignment
    public var baseFile: URL?               // nil: start from the model's own initialisation
    public var baseID: String               // identity of the base, stored in the checkpoint
    public var checkpointFile: URL
    public var epochs: Int
    public var lr: Double
    public var weightDecay: Double
    public var seed: Int
    /// The family whose model the stage builds.
    public var family: any ModelFamily
    /// The losses trained: LM alone is the VQA loss of fine-tuning; ITC/ITM add BLIP's heads (base only).
    public var objectives: Set<PretrainObjective> = [.lm]
    /// Multiplier of `lr` for the family's image encoder (`vision_lr_scale`).
    public var visionLRScale: Double = 1
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
    /// Measures the epoch's model on held-out questions (before its checkpoint, so a resume keeps it).
    var validate: ((any VQAModel) throws -> ImageReliance)? = nil
    /// Called after every step (progress lines, heartbeats).
    var onStep: (StepProgress) throws -> Void = { _ in }
    /// Called after every finished epoch, once its checkpoint is on disk.
    var onEpoch: (EpochMetric) throws -> Void = { _ in }
    /// Highest engine peak of any epoch, measured from the moment the epoch's model and state are loaded.
    public private(set) var peakEngineBytes = 0
    public private(set) var trainedModel: (any VQAModel)?

    init(stage: TrainingStage, feed: TrainingFeed) {
        self.stage = stage
        self.feed = feed
    }

    /// Epochs already finished by an earlier run of this stage, and their metrics.
    public static func resumePoint(_ stage: TrainingStage) -> (epoch: Int, step: Int, history: [EpochMetric], peak: Int) {
        guard let meta = try? Safetensors.read(stage.checkpointFile).metadata, meta["key"] == stage.key,
              meta["base"] == stage.baseID, let epoch = Int(meta["epoch"] ?? ""), let step = Int(meta["step"] ?? "") else {
            return (0, 0, [], 0)
        }
        return (epoch, step, decodeHistory(meta["history"] ?? ""), Int(meta["peak_engine_bytes"] ?? "") ?? 0)
    }

    public func run() throws -> TrainingOutcome {
        var (start, step, history, peak) = Self.resumePoint(stage)
        peakEngineBytes = peak
        let started = Date()
        var samplesDone = 0
        let totalSamples = (stage.epochs - start) * feed.sampleCount
        if start >= stage.epochs {
            trainedModel = try buildModel(epoch: stage.epochs - 1, loadCheckpoint: true).model.model
            return .finished(history: history)
        }
        for epoch in start..<stage.epochs {
            trainedModel = nil   // the last epoch's model must not count in this epoch's peak
            let (model, optimizer) = try buildModel(epoch: epoch, loadCheckpoint: epoch > 0)
            optimizer.lr = cosineLR(initial: Float(stage.lr), epoch: epoch, maxEpoch: stage.epochs)
            Memory.resetPeak()
            let epochStart = Date()
            var lossSum = 0.0, count = 0
            var window = LossWindow()
            for index in 0..<feed.batchesPerEpoch {
                let batch = try feed.batch(epoch: epoch, index: index)
                let loss = try model.loss(batch, tokenizer: feed.tokenizer)
                let value = loss.item()
                guard value.isFinite else { return .nonFinite(epoch: epoch, step: step + 1, loss: value) }
                optimizer.backwardAndStep(loss)   // = backward, step, zeroGrad (each gradient freed once applied)
                step += 1
                lossSum += Double(value) * Double(batch.count); count += batch.count; samplesDone += batch.count
                window.add(Double(value), samples: batch.count)
                let elapsed = Date().timeIntervalSince(started)
                let rate = Double(samplesDone) / max(elapsed, 1e-9)
                try onStep(StepProgress(stage: stage.name, epoch: epoch, epochs: stage.epochs, step: index + 1,
                                        steps: feed.batchesPerEpoch, loss: lossSum / Double(count), samplesPerSecond: rate,
                                        secondsLeft: Double(totalSamples - samplesDone) / max(rate, 1e-9)))
                if StopRequest.isSet { return .stopped(epoch: epoch, step: step) }
            }
            peakEngineBytes = max(peakEngineBytes, Memory.peakBytes)
            var metric = EpochMetric(epoch: epoch, loss: lossSum / Double(max(count, 1)), lr: Double(optimizer.lr),
                                     seconds: Date().timeIntervalSince(epochStart), samples: count)
            metric.stepLosses = window.means()
            if let validate {
                let reliance = try validate(model.model)
                (metric.validationLoss, metric.validationShuffledLoss) = (reliance.trueLoss, reliance.shuffledLoss)
            }
            history.append(metric)
            try saveCheckpoint(model: model, optimizer: optimizer, epochsDone: epoch + 1, step: step, history: history)
            try onEpoch(metric)
            trainedModel = model.model
        }
        return .finished(history: history)
    }

    /// The model of `epoch` with base weights and (when asked) the last checkpoint, and its optimizer.
    func buildModel(epoch: Int, loadCheckpoint: Bool) throws -> (model: StageModel, optimizer: AdamW) {
        let rng = RNG(seed: UInt64(stage.seed)).split(UInt64(epoch))
        let vqa = try stage.family.build(config: stage.config, assignment: stage.assignment, rng: rng)
        if let base = stage.baseFile { try vqa.load(from: base, strict: true) }
        let model = try StageModel(model: vqa, objectives: stage.objectives, rng: rng)
        let prefix = stage.family.imageEncoderPrefix, scale = Float(stage.visionLRScale)
        let optimizer = AdamW(parameters: model.trainableParameters(), lr: Float(stage.lr), weightDecay: Float(stage.weightDecay),
                              lrScale: { $0.hasPrefix(prefix) ? scale : 1 })
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
    func saveCheckpoint(model: StageModel, optimizer: AdamW, epochsDone: Int, step: Int, history: [EpochMetric]) throws {
        let meta = ["key": stage.key, "base": stage.baseID, "epoch": String(epochsDone), "step": String(step),
                    "peak_engine_bytes": String(peakEngineBytes), "history": Self.encodeHistory(history)]
        let folder = stage.checkpointFile.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let temporary = folder.appendingPathComponent(".\(stage.checkpointFile.lastPathComponent).\(getpid()).tmp")
        try Safetensors.write(model.trainableParameters() + optimizer.stateTensors(), to: temporary, metadata: meta)
        try replaceFile(temporary, with: stage.checkpointFile)
    }

    /// One line per epoch: `epoch loss lr seconds samples`, doubles in Swift's round-trip form so a
    /// resumed run re-records exactly the numbers the first run measured.
    /// One line per epoch: `epoch loss lr seconds samples [step losses] validation shuffled` ("-" for no
    /// validation; checkpoints written before these have five fields).
    static func encodeHistory(_ history: [EpochMetric]) -> String {
        history.map { e in
            let validation = [e.validationLoss, e.validationShuffledLoss].map { $0.map { "\($0)" } ?? "-" }.joined(separator: " ")
            return "\(e.epoch) \(e.loss) \(e.lr) \(e.seconds) \(e.samples ?? 0) \(EpochMetric.encode(e.stepLosses)) \(validation)"
        }.joined(separator: "\n")
    }

    static func decodeHistory(_ text: String) -> [EpochMetric] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ").map(String.init)
            guard [5, 6, 8].contains(f.count), let epoch = Int(f[0]), let loss = Double(f[1]), let lr = Double(f[2]),
                  let seconds = Double(f[3]), let samples = Int(f[4]) else { return nil }
            var metric = EpochMetric(epoch: epoch, loss: loss, lr: lr, seconds: seconds, samples: samples)
            if f.count >= 6 { metric.stepLosses = EpochMetric.decode(f[5]) }
            if f.count == 8 { (metric.validationLoss, metric.validationShuffledLoss) = (Double(f[6]), Double(f[7])) }
            return metric
        }
    }

    /// Steps per point of the loss curve.
    public static let lossWindow = 25
}

/// The model a stage trains: the family's model alone for the VQA loss, or MISS inside BLIP's pretraining
/// heads when the stage has contrastive or matching objectives (the heads are checkpointed with the stage,
/// never saved into the base).
struct StageModel {
    let model: any VQAModel
    let pretrainer: MISSPretrainer?

    init(model: any VQAModel, objectives: Set<PretrainObjective>, rng: RNG) throws {
        self.model = model
        guard objectives != [.lm] else { pretrainer = nil; return }
        guard let miss = model as? MISSModel else {
            throw HarnessError.input("pretraining.objectives \(objectives.map(\.rawValue).sorted()) are BLIP's (MISS) objectives; this family trains lm only")
        }
        pretrainer = try MISSPretrainer(model: miss, objectives: objectives, rng: rng)
    }

    func trainableParameters() -> [(name: String, tensor: Tensor)] {
        pretrainer.map { $0.namedParameters().filter { $0.tensor.isTrainable } } ?? model.trainableParameters()
    }

    func train(_ on: Bool) { pretrainer?.train(on) ?? model.train(on) }

    /// The stage's loss on one batch (the sum of the objectives' losses).
    func loss(_ batch: TrainingBatch, tokenizer: Tokenizer) throws -> Tensor {
        let images = Tensor(shape: [batch.count, 3, batch.imageSize, batch.imageSize], scalars: batch.images)
        let question = try TokenBatch(ids: batch.questionIds, mask: batch.questionMask, batch: batch.count, length: batch.questionLength)
        let answer = try TokenBatch(ids: batch.answerIds, mask: batch.answerMask, batch: batch.count, length: batch.answerLength)
        guard let pretrainer else { return try model.loss(images: images, question: question, answer: answer) }
        return try pretrainer.losses(images: images, question: question, answer: answer,
                                     pairs: Self.pairs(batch, tokenizer: tokenizer)).total
    }

    /// The pair texts `[CLS] question answer [SEP]` of a batch and which rows are true of each other's image.
    static func pairs(_ batch: TrainingBatch, tokenizer: Tokenizer) throws -> PretrainPairs {
        let texts = zip(batch.questions, batch.answers).map { "\($0) \($1)".lowercased() }
        let tokens = tokenizer.batch(zip(batch.questions, batch.answers).map { tokenizer.encodePair(question: $0, answer: $1) })
        return try PretrainPairs(text: tokens,
                                 positive: PretrainPairs.positives(imageKeys: batch.imagePaths, texts: texts),
                                 encTokenId: tokenizer.encId)
    }
}

/// rename(2): the destination is replaced atomically, so a kill never leaves it missing or half-written.
func replaceFile(_ source: URL, with destination: URL) throws {
    guard rename(source.path, destination.path) == 0 else {
        throw HarnessError.io("cannot rename \(source.path) to \(destination.path): \(String(cString: strerror(errno)))")
    }
}

/// The sample-weighted mean loss of each run of `Trainer.lossWindow` steps.
struct LossWindow {
    private var sum = 0.0, samples = 0, steps = 0
    private var closed: [Double] = []

    mutating func add(_ loss: Double, samples count: Int) {
        sum += loss * Double(count); samples += count; steps += 1
        if steps == Trainer.lossWindow { close() }
    }

    private mutating func close() {
        if samples > 0 { closed.append(sum / Double(samples)) }
        sum = 0; samples = 0; steps = 0
    }

    mutating func means() -> [Double] {
        close()
        return closed
    }
}
