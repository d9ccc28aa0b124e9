import Foundation

/// Decoded, resized images kept in memory as 8-bit CHW planes (3*S*S bytes each), keyed by path, so a feed
/// decodes each image once however many epochs it serves. SLAKE and VQA-RAD together have fewer than 1000
/// images (about 0.5 GB at 480, 7 MB at 48). Safe to use from several threads.
public final class ImageStore: @unchecked Sendable {
    public let loader: ImageLoader
    private let lock = NSLock()
    private var planes: [String: [UInt8]] = [:]
    private var loads = 0

    public init(loader: ImageLoader) {
        self.loader = loader
    }

    public var imageSize: Int { loader.size }
    /// Images held in memory.
    public var count: Int { lock.withLock { planes.count } }
    /// How many times the loader was asked for an image (once per distinct path when the store works).
    public var loaderCalls: Int { lock.withLock { loads } }

    /// The image's CHW bytes, loaded (through the loader and its disk cache) on first use.
    public func bytes(_ path: String) throws -> [UInt8] {
        if let known = lock.withLock({ planes[path] }) { return known }
        let loaded = try loader.loadBytes(path)
        lock.withLock {
            loads += 1
            planes[path] = loaded
        }
        return loaded
    }

    /// Loads every path not yet held; `progress(done, total)` is called after each distinct image.
    public func preload(_ paths: [String], progress: ((Int, Int) -> Void)? = nil) throws {
        var seen: Set<String> = []
        let distinct = paths.filter { seen.insert($0).inserted }
        for (index, path) in distinct.enumerated() {
            _ = try bytes(path)
            progress?(index + 1, distinct.count)
        }
    }

    /// The images of `paths` one after another as floats (`count * 3*S*S`), scaled as the loader scales.
    public func floats(_ paths: [String]) throws -> [Float] {
        let scale = loader.pixelScale
        let plane = 3 * imageSize * imageSize
        var out = [Float](repeating: 0, count: paths.count * plane)
        for (row, path) in paths.enumerated() {
            let image = try bytes(path)
            out.withUnsafeMutableBufferPointer { buffer in
                for i in 0..<plane { buffer[row * plane + i] = Float(image[i]) * scale }
            }
        }
        return out
    }
}

/// One training batch, ready for the model. Row-major arrays; `count` rows.
public struct TrainingBatch: Sendable {
    public let epoch: Int
    /// Position of the batch in its epoch (0-based).
    public let index: Int
    public let count: Int
    public let imageSize: Int
    /// `count x 3 x imageSize x imageSize`, CHW per image.
    public let images: [Float]
    /// `count x questionLength`: `[ENC] question [SEP]` (at most 35 ids), padded with `[PAD]` (0) to the
    /// longest question of the batch; the mask is 1 on real tokens.
    public let questionIds: [Int32]
    public let questionMask: [Int32]
    public let questionLength: Int
    /// `count x answerLength`: `[DEC] answer [SEP]`, padded to the longest answer of the batch.
    public let answerIds: [Int32]
    public let answerMask: [Int32]
    public let answerLength: Int
    public let qids: [Int]
    /// The texts behind the ids (the drawn prompt for instruction data), for logs and checks.
    public let questions: [String]
    public let answers: [String]
    /// Each row's image file (rows showing one image are positives of each other in pretraining).
    public let imagePaths: [String]
}

/// Serves training data epoch by epoch: a deterministic shuffle of all samples per (seed, epoch), batches
/// of `batchSize` with a smaller last batch (`drop_last=False`, as upstream), questions and answers
/// tokenized and padded, images from an in-memory `ImageStore`.
///
/// With instruction data, each record shows one prompt of its pool per epoch, drawn by
/// `InstructionDataset.samples(epoch:)`; the feed's `seed` drives that draw (it replaces the dataset's
/// seed) as well as the shuffle, so one seed fixes everything. `batch(epoch:index:)` is a pure function
/// of (seed, epoch, index), which lets a resumed run continue with exactly the batches it would have seen.
public final class TrainingFeed: @unchecked Sendable {
    public let tokenizer: Tokenizer
    public let images: ImageStore
    public let batchSize: Int
    public let seed: UInt64
    /// Random resized crop of every training image (`Augment`), drawn per (seed, epoch, batch, row).
    public var augment = false
    private let plain: [VQASample]?
    private let instructions: InstructionDataset?
    private let lock = NSLock()
    private var cached: (epoch: Int, samples: [VQASample], order: [Int])?

    /// Plain samples: the same question every epoch (e.g. the pretraining corpus).
    public convenience init(samples: [VQASample], tokenizer: Tokenizer, imageLoader: ImageLoader, batchSize: Int,
                            seed: UInt64) throws {
        try self.init(samples: samples, tokenizer: tokenizer, images: ImageStore(loader: imageLoader),
                      batchSize: batchSize, seed: seed)
    }

    public init(samples: [VQASample], tokenizer: Tokenizer, images: ImageStore, batchSize: Int, seed: UInt64) throws {
        try TrainingFeed.validate(count: samples.count, batchSize: batchSize)
        self.tokenizer = tokenizer
        self.images = images
        self.batchSize = batchSize
        self.seed = seed
        plain = samples
        instructions = nil
    }

    /// Instruction records: one prompt drawn per record per epoch.
    public convenience init(instructions: InstructionDataset, tokenizer: Tokenizer, imageLoader: ImageLoader,
                            batchSize: Int, seed: UInt64) throws {
        try self.init(instructions: instructions, tokenizer: tokenizer, images: ImageStore(loader: imageLoader),
                      batchSize: batchSize, seed: seed)
    }

    public init(instructions: InstructionDataset, tokenizer: Tokenizer, images: ImageStore, batchSize: Int,
                seed: UInt64) throws {
        try TrainingFeed.validate(count: instructions.records.count, batchSize: batchSize)
        self.tokenizer = tokenizer
        self.images = images
        self.batchSize = batchSize
        self.seed = seed
        plain = nil
        var seeded = instructions
        seeded.seed = seed
        self.instructions = seeded
    }

    private static func validate(count: Int, batchSize: Int) throws {
        guard batchSize > 0 else { throw DataError.invalid("training feed: batch size must be positive, got \(batchSize)") }
        guard count > 0 else { throw DataError.invalid("training feed: no training samples") }
    }

    public var sampleCount: Int { plain?.count ?? instructions?.records.count ?? 0 }
    /// Batches per epoch, the last one possibly smaller.
    public var batchesPerEpoch: Int { (sampleCount + batchSize - 1) / batchSize }

    /// The samples of an epoch in source order (instruction prompts drawn for that epoch).
    public func samples(epoch: Int) -> [VQASample] {
        epochData(epoch).samples
    }

    /// The shuffled sample indices of an epoch.
    public func order(epoch: Int) -> [Int] {
        epochData(epoch).order
    }

    /// Every image path the feed uses, for `images.preload`.
    public var imagePaths: [String] {
        plain?.map(\.imagePath) ?? instructions.map { data in data.records.map(data.imagePath) } ?? []
    }

    /// Decodes every image now (so a bad file fails before training starts, and epochs never decode).
    public func preload(progress: ((Int, Int) -> Void)? = nil) throws {
        try images.preload(imagePaths, progress: progress)
    }

    /// Batch `index` (0..<batchesPerEpoch) of `epoch`.
    public func batch(epoch: Int, index: Int) throws -> TrainingBatch {
        guard index >= 0 && index < batchesPerEpoch else {
            throw DataError.invalid("training feed: batch \(index) out of range 0..<\(batchesPerEpoch)")
        }
        let data = epochData(epoch)
        let rows = data.order[(index * batchSize)..<min(sampleCount, (index + 1) * batchSize)].map { data.samples[$0] }
        let questions = tokenizer.batch(rows.map { tokenizer.encodeQuestion($0.question) })
        let answers = tokenizer.batch(rows.map { tokenizer.encodeAnswer($0.answer) })
        let paths = rows.map(\.imagePath)
        return TrainingBatch(
            epoch: epoch, index: index, count: rows.count, imageSize: images.imageSize,
            images: augment ? try augmentedImages(paths, epoch: epoch, index: index) : try images.floats(paths),
            questionIds: questions.ids, questionMask: questions.mask, questionLength: questions.length,
            answerIds: answers.ids, answerMask: answers.mask, answerLength: answers.length,
            qids: rows.map(\.qid), questions: rows.map(\.question), answers: rows.map(\.answer), imagePaths: paths)
    }

    /// The crop stream is tagged apart from the shuffle and the prompt draws.
    private static let cropTag = -0x4352_4F50

    private func augmentedImages(_ paths: [String], epoch: Int, index: Int) throws -> [Float] {
        let s = images.imageSize, plane = 3 * s * s, scale = images.loader.pixelScale
        var out = [Float](repeating: 0, count: paths.count * plane)
        for (row, path) in paths.enumerated() {
            var random = SeededRandom(seed: seed, TrainingFeed.cropTag, epoch, index, row)
            let cropped = Augment.randomResizedCrop(try images.bytes(path), size: s, random: &random)
            for i in 0..<plane { out[row * plane + i] = Float(cropped[i]) * scale }
        }
        return out
    }

    /// Calls `body` with each batch of `epoch` from `start` on, in order. A throw from `body` stops it.
    public func forEachBatch(epoch: Int, from start: Int = 0, _ body: (TrainingBatch) throws -> Void) throws {
        for index in max(0, start)..<batchesPerEpoch {
            try body(try batch(epoch: epoch, index: index))
        }
    }

    /// The shuffle stream is tagged so it never coincides with a prompt draw `(seed, qid, epoch)`.
    private static let shuffleTag = -0x5348_5546

    private func epochData(_ epoch: Int) -> (samples: [VQASample], order: [Int]) {
        if let cached = lock.withLock({ cached }), cached.epoch == epoch { return (cached.samples, cached.order) }
        let samples = plain ?? instructions?.samples(epoch: epoch) ?? []
        var order = Array(samples.indices)
        var random = SeededRandom(seed: seed, TrainingFeed.shuffleTag, epoch)
        random.shuffle(&order)
        lock.withLock { cached = (epoch, samples, order) }
        return (samples, order)
    }
}

/// One evaluation batch: plain questions in file order with their ground truth.
public struct EvaluationBatch: Sendable {
    public let index: Int
    public let count: Int
    public let imageSize: Int
    public let images: [Float]
    /// `count x questionLength`, `[ENC] question [SEP]` (at most 35), padded with 0. Upstream's generation
    /// attends to every question position, padding included (spec §5); the mask is given anyway.
    public let questionIds: [Int32]
    public let questionMask: [Int32]
    public let questionLength: Int
    public let qids: [Int]
    /// The samples of this batch: question, ground-truth answer, answer type, yes/no, image.
    public let samples: [VQASample]

    public var answers: [String] { samples.map(\.answer) }
}

/// Serves evaluation questions in their given order (no shuffle) in batches of `batchSize` (upstream: 100).
public final class EvaluationFeed: @unchecked Sendable {
    public let samples: [VQASample]
    public let tokenizer: Tokenizer
    public let images: ImageStore
    public let batchSize: Int

    public convenience init(samples: [VQASample], tokenizer: Tokenizer, imageLoader: ImageLoader,
                            batchSize: Int = 100) throws {
        try self.init(samples: samples, tokenizer: tokenizer, images: ImageStore(loader: imageLoader),
                      batchSize: batchSize)
    }

    public init(samples: [VQASample], tokenizer: Tokenizer, images: ImageStore, batchSize: Int = 100) throws {
        guard batchSize > 0 else { throw DataError.invalid("evaluation feed: batch size must be positive, got \(batchSize)") }
        guard !samples.isEmpty else { throw DataError.invalid("evaluation feed: no questions") }
        self.samples = samples
        self.tokenizer = tokenizer
        self.images = images
        self.batchSize = batchSize
    }

    /// The SLAKE English test questions (1061 on the real data), in `test.json` order.
    public static func slakeTest(root: String, tokenizer: Tokenizer, imageLoader: ImageLoader,
                                 batchSize: Int = 100) throws -> EvaluationFeed {
        try EvaluationFeed(samples: Slake.load(root: root, split: .test), tokenizer: tokenizer,
                           imageLoader: imageLoader, batchSize: batchSize)
    }

    public var batchCount: Int { (samples.count + batchSize - 1) / batchSize }

    public func preload(progress: ((Int, Int) -> Void)? = nil) throws {
        try images.preload(samples.map(\.imagePath), progress: progress)
    }

    public func batch(_ index: Int) throws -> EvaluationBatch {
        guard index >= 0 && index < batchCount else {
            throw DataError.invalid("evaluation feed: batch \(index) out of range 0..<\(batchCount)")
        }
        let rows = Array(samples[(index * batchSize)..<min(samples.count, (index + 1) * batchSize)])
        let questions = tokenizer.batch(rows.map { tokenizer.encodeQuestion($0.question) })
        return EvaluationBatch(index: index, count: rows.count, imageSize: images.imageSize,
                               images: try images.floats(rows.map(\.imagePath)),
                               questionIds: questions.ids, questionMask: questions.mask,
                               questionLength: questions.length, qids: rows.map(\.qid), samples: rows)
    }

    public func forEachBatch(from start: Int = 0, _ body: (EvaluationBatch) throws -> Void) throws {
        for index in max(0, start)..<batchCount {
            try body(try batch(index))
        }
    }
}
