import Engine
import Foundation
import MileData
import MileModel

/// The base model every cell fine-tunes from.
public struct BaseModel {
    public let file: URL
    /// Identity stored in fine-tune checkpoints: a checkpoint made from another base is never resumed.
    public let id: String
}

/// Outcome of a stage that may stop early.
enum StageResult<T> {
    case done(T)
    case failed(String)
    case stopped(String)
}

/// Pretrains (or locates) the base model of a base stage key, once per key, shared by all cells and all
/// processes: `<cache>/bases/<key>.safetensors`. A file lock makes a second process wait for the first
/// one's pretraining instead of repeating it; the partial pretraining checkpoint lets a killed
/// pretraining resume.
struct BaseStage {
    let key: String
    let settings: RunSettings
    let config: any FamilyConfig
    let data: RunData
    let cacheDir: String

    static func vocabularyFile(cacheDir: String, key: String) -> String {
        (cacheDir as NSString).appendingPathComponent("bases/\(key).vocab.txt")
    }

    /// The vocabulary that goes with a converted checkpoint: `vocab.txt` beside it.
    static func checkpointVocabulary(_ settings: RunSettings) -> String? {
        guard settings.pretraining.source == "checkpoint" else { return nil }
        return ((settings.pretraining.checkpoint as NSString).deletingLastPathComponent as NSString).appendingPathComponent("vocab.txt")
    }

    var file: URL { Self.file(cacheDir: cacheDir, key: key) }

    /// The pretraining epochs a base file records (none for a base made before bases kept them).
    public static func history(cacheDir: String, key: String) -> [EpochMetric] {
        guard let meta = try? Safetensors.metadata(file(cacheDir: cacheDir, key: key)) else { return [] }
        return Trainer.decodeHistory(meta["history"] ?? "")
    }

    /// Where the base of `key` is cached.
    static func file(cacheDir: String, key: String) -> URL {
        URL(fileURLWithPath: (cacheDir as NSString).appendingPathComponent("bases/\(key).safetensors"))
    }

    func ensure(wait: () throws -> Void, progress: @escaping (StepProgress) throws -> Void,
                epoch: @escaping (EpochMetric) -> Void) throws -> StageResult<BaseModel> {
        if settings.pretraining.source == "checkpoint" { return .done(try converted()) }
        if let base = try existing() { return .done(base) }
        let lockPath = (cacheDir as NSString).appendingPathComponent("bases/\(key).lock")
        try FileManager.default.createDirectory(atPath: (lockPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let fd = open(lockPath, O_CREAT | O_RDWR, 0o644)
        guard fd >= 0 else { throw HarnessError.io("cannot open lock file \(lockPath)") }
        defer { close(fd) }   // closing releases the lock
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            try wait()        // another process pretrains this base: keep our claim alive meanwhile
            if StopRequest.isSet { return .stopped("\(StopRequest.cause) while waiting for another process's base pretraining") }
            Thread.sleep(forTimeInterval: 1)
        }
        if let base = try existing() { return .done(base) }
        return try pretrain(progress: progress, epoch: epoch)
    }

    private func existing() throws -> BaseModel? {
        guard FileManager.default.fileExists(atPath: file.path) else { return nil }
        let meta = try Safetensors.metadata(file)
        guard meta["key"] == key, let id = meta["id"] else {
            throw HarnessError.io("\(file.path) is not the base of key \(key); delete it to pretrain again")
        }
        return BaseModel(file: file, id: id)
    }

    private func converted() throws -> BaseModel {
        let path = settings.pretraining.checkpoint
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
            throw HarnessError.input("pretraining.checkpoint \(path) does not exist")
        }
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        return BaseModel(file: URL(fileURLWithPath: path), id: "checkpoint:\(path):\(size):\(Int(modified))")
    }

    private func pretrain(progress: @escaping (StepProgress) throws -> Void,
                          epoch: @escaping (EpochMetric) -> Void) throws -> StageResult<BaseModel> {
        let partial = URL(fileURLWithPath: (cacheDir as NSString).appendingPathComponent("bases/\(key).partial.safetensors"))
        let stage = TrainingStage(name: "base", key: key, config: config, assignment: try settings.family.fullyTrained(),
                                  baseFile: nil, baseID: "init",
                                  checkpointFile: partial, epochs: max(settings.pretraining.epochs, 1),
                                  lr: settings.pretraining.lr, weightDecay: 0.05, seed: settings.pretraining.seed,
                                  family: settings.family, objectives: settings.pretraining.objectiveSet,
                                  visionLRScale: settings.pretraining.visionLRScale)
        let model: any VQAModel
        var history: [EpochMetric] = []
        if settings.pretraining.epochs == 0 {
            // No pretraining asked: the base is the seeded initialisation (useful only for tests).
            model = try stage.family.build(config: config, assignment: stage.assignment, rng: RNG(seed: UInt64(settings.pretraining.seed)))
        } else {
            guard !data.pretrainSamples.isEmpty else { throw HarnessError.input("pretraining.corpus is empty but pretraining.epochs is \(settings.pretraining.epochs)") }
            let images = data.images(size: config.imageSize, doubleDivide255: settings.doubleDivide255)
            let feed = try TrainingFeed(samples: data.pretrainSamples, tokenizer: data.tokenizer, images: images,
                                        batchSize: settings.pretraining.batch, seed: UInt64(settings.pretraining.seed))
            feed.augment = settings.pretraining.augment
            try feed.preload()
            let trainer = Trainer(stage: stage, feed: feed)
            trainer.onStep = progress
            trainer.onEpoch = epoch
            switch try trainer.run() {
            case let .finished(epochs):
                guard let trained = trainer.trainedModel else { throw HarnessError.io("base pretraining produced no model") }
                model = trained
                history = epochs
            case let .nonFinite(epoch, step, loss):
                return .failed("base pretraining: loss \(loss) at epoch \(epoch) step \(step)")
            case let .stopped(epoch, step):
                return .stopped("\(StopRequest.cause) during base pretraining at epoch \(epoch) step \(step)")
            }
        }
        let id = UUID().uuidString
        let temporary = file.deletingLastPathComponent().appendingPathComponent(".\(key).\(getpid()).tmp")
        // The base carries its own training history (epochs and loss curve), whichever process made it.
        try model.save(to: temporary, onlyTrainable: false, metadata: ["key": key, "id": id, "history": Trainer.encodeHistory(history)])
        try replaceFile(temporary, with: file)
        try? FileManager.default.removeItem(at: partial)
        return .done(BaseModel(file: file, id: id))
    }
}

/// Evaluation on the SLAKE English test questions: plain questions in file order, beam search.
struct Evaluation {
    let settings: RunSettings
    let data: RunData

    /// `samples` replaces the test samples (the image-shuffle evaluation passes them with other images).
    func predictions(model: any VQAModel, samples: [VQASample]? = nil,
                     progress: (Int, Int) throws -> Void) throws -> StageResult<[Prediction]> {
        let images = data.images(size: model.imageSize, doubleDivide255: settings.doubleDivide255)
        try model.constrainAnswers(to: try candidates())
        defer { try? model.constrainAnswers(to: nil) }
        let testSamples = samples ?? data.testSamples
        let feed = try EvaluationFeed(samples: testSamples, tokenizer: data.tokenizer, images: images, batchSize: 100)
        try feed.preload()
        var out: [Prediction] = []
        for index in 0..<feed.batchCount {
            let batch = try feed.batch(index)
            let question = try TokenBatch(ids: batch.questionIds, mask: batch.questionMask, batch: batch.count,
                                          length: batch.questionIds.count / batch.count)
            let ids = try model.generate(images: Tensor(shape: [batch.count, 3, batch.imageSize, batch.imageSize], scalars: batch.images),
                                         question: question, beams: settings.beams, maxLength: settings.maxLength, minLength: settings.minLength)
            for (qid, answer) in zip(batch.qids, ids) { out.append(Prediction(qid: qid, answer: data.tokenizer.decode(answer))) }
            try progress(out.count, testSamples.count)
            if StopRequest.isSet { return .stopped("\(StopRequest.cause) during evaluation (\(out.count) of \(testSamples.count) questions)") }
        }
        return .done(out)
    }

    /// The answers generation may choose from (`decoding.candidates`), as token ids, once each; nil: any.
    func candidates() throws -> [[Int32]]? {
        guard settings.candidates == "slake-train-validate" else { return nil }
        return try data.trainValidateAnswers()
    }

    var questions: [TestQuestion] {
        data.testSamples.map { TestQuestion(qid: $0.qid, question: $0.question, answer: $0.answer, answerType: $0.answerType) }
    }
}
