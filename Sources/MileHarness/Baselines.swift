import Foundation
import MileData

/// The `baselines:` section of experiments/defaults.yaml. These settings change what the reference rows
/// and the image-shuffle evaluation compute, never the trained model, so the planner keeps them out of
/// the cell id (`Planner.resolvedConfig`) and carries them beside the cell instead.
public struct BaselineSettings: Sendable, Equatable {
    /// Side of the grayscale thumbnail the nearest-image baseline compares (N×N).
    public var thumbnail: Int
    /// Seed of the test-image derangement of the image-shuffle evaluation.
    public var shuffleSeed: Int
    /// Bootstrap resamples for the CIs and paired tests of the reports.
    public var resamples: Int

    public init(thumbnail: Int = 16, shuffleSeed: Int = 7, resamples: Int = Bootstrap.defaultResamples) {
        self.thumbnail = thumbnail
        self.shuffleSeed = shuffleSeed
        self.resamples = resamples
    }

    /// Reads `baselines.*` from a config; the schema has already checked types and bounds.
    public init(_ config: ConfigValue) {
        let defaults = BaselineSettings()
        thumbnail = config["baselines.thumbnail"]?.intValue ?? defaults.thumbnail
        shuffleSeed = config["baselines.shuffle_seed"]?.intValue ?? defaults.shuffleSeed
        resamples = config["baselines.resamples"]?.intValue ?? defaults.resamples
    }
}

/// One training question as the baselines see it: its text, answer and image.
public struct PriorRecord: Sendable, Equatable {
    public let question: String
    public let answer: String
    public let imagePath: String

    public init(question: String, answer: String, imagePath: String) {
        self.question = question
        self.answer = answer
        self.imagePath = imagePath
    }
}

/// Blind train-prior baseline: the most frequent training answer for the same normalised question text
/// (`Scorer.normalise`, the scorer's own normalisation), else the most frequent training answer overall.
/// Answers are counted by their normalised form; a tie goes to the answer seen first in training order,
/// and the answer is returned as first spelled in training.
public struct TrainPrior: Sendable {
    let byQuestion: [String: String]
    public let globalAnswer: String

    public init(_ records: [PriorRecord]) {
        var groups: [String: [String]] = [:]
        for record in records { groups[Scorer.normalise(record.question), default: []].append(record.answer) }
        byQuestion = groups.mapValues(Self.mostFrequent)
        globalAnswer = Self.mostFrequent(records.map(\.answer))
    }

    /// Whether the normalised text occurs in training.
    public func knows(_ question: String) -> Bool { byQuestion[Scorer.normalise(question)] != nil }

    public func answer(_ question: String) -> String {
        byQuestion[Scorer.normalise(question)] ?? globalAnswer
    }

    /// The mode of the answers under normalisation; ties go to the earliest.
    static func mostFrequent(_ answers: [String]) -> String {
        var counts: [String: Int] = [:], first: [String: String] = [:], order: [String] = []
        for answer in answers {
            let key = Scorer.normalise(answer)
            if counts[key] == nil { order.append(key); first[key] = answer }
            counts[key, default: 0] += 1
        }
        var best: String?
        for key in order where best == nil || counts[key]! > counts[best!]! { best = key }
        return best.map { first[$0]! } ?? ""
    }
}

/// Nearest-image baseline: among the training questions with the same normalised text, the answer of the
/// one whose thumbnail is nearest to the test image's by cosine similarity (ties: first in training
/// order); the train prior when the text is unseen. Thumbnails are given, so this is pure.
public struct NearestImage: Sendable {
    let byQuestion: [String: [(answer: String, thumbnail: [Float])]]
    public let prior: TrainPrior

    public init(_ records: [PriorRecord], thumbnails: [String: [Float]]) throws {
        var groups: [String: [(answer: String, thumbnail: [Float])]] = [:]
        for record in records {
            guard let thumbnail = thumbnails[record.imagePath] else {
                throw HarnessError.input("nearest-image baseline: no thumbnail for \(record.imagePath)")
            }
            groups[Scorer.normalise(record.question), default: []].append((record.answer, thumbnail))
        }
        byQuestion = groups
        prior = TrainPrior(records)
    }

    public func answer(_ question: String, thumbnail: [Float]) -> String {
        guard let candidates = byQuestion[Scorer.normalise(question)] else { return prior.answer(question) }
        var best = candidates[0]
        var bestSimilarity = Self.cosine(thumbnail, best.thumbnail)
        for candidate in candidates.dropFirst() {
            let similarity = Self.cosine(thumbnail, candidate.thumbnail)
            if similarity > bestSimilarity { best = candidate; bestSimilarity = similarity }
        }
        return best.answer
    }

    /// Cosine similarity; 0 when either vector is all zeros (a black image matches nothing better).
    public static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var dot = 0.0, na = 0.0, nb = 0.0
        for (x, y) in zip(a, b) {
            dot += Double(x) * Double(y)
            na += Double(x) * Double(x)
            nb += Double(y) * Double(y)
        }
        guard na > 0, nb > 0 else { return 0 }
        return dot / (na * nb).squareRoot()
    }
}

/// Grayscale N×N thumbnails through MileData's image loader (and its content-keyed image cache).
public struct Thumbnails {
    let loader: ImageLoader

    public init(size: Int, cacheDirectory: URL?) {
        loader = ImageLoader(size: size, cacheDirectory: cacheDirectory)
    }

    /// The thumbnail of every distinct path: the mean of the three channel planes, in [0, 1].
    public func load(_ paths: [String]) throws -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for path in paths where out[path] == nil {
            let planes = try loader.load(path)
            let count = planes.count / 3
            out[path] = (0..<count).map { (planes[$0] + planes[count + $0] + planes[2 * count + $0]) / 3 }
        }
        return out
    }
}

/// The fixed derangement of the image-shuffle evaluation: every question gets the image of another test
/// question, never its own image.
public enum ImageShuffle {
    /// A cyclic permutation of 0..<count (Sattolo's algorithm, seeded): a single cycle, so no index maps
    /// to itself when count ≥ 2.
    public static func derangement(count: Int, seed: Int) -> [Int] {
        var permutation = Array(0..<count)
        guard count > 1 else { return permutation }
        var rng = SeededRandom(seed: UInt64(bitPattern: Int64(seed)), 0x5348_5546)   // "SHUF"
        for i in stride(from: count - 1, to: 0, by: -1) { permutation.swapAt(i, rng.below(i)) }
        return permutation
    }

    /// The image path each question gets. The derangement runs over the distinct paths (in order of first
    /// use), so all questions of one image move to the same other image and none keeps an identical path,
    /// even when several questions share an image. Needs at least two distinct images.
    public static func shuffledPaths(_ paths: [String], seed: Int) throws -> [String] {
        var distinct: [String] = [], index: [String: Int] = [:]
        for path in paths where index[path] == nil {
            index[path] = distinct.count
            distinct.append(path)
        }
        guard distinct.count >= 2 else {
            throw HarnessError.input("image-shuffle evaluation needs at least two distinct test images, found \(distinct.count)")
        }
        let permutation = derangement(count: distinct.count, seed: seed)
        return paths.map { distinct[permutation[index[$0]!]] }
    }
}
