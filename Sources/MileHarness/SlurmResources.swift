import Foundation
import MileModel

/// What one job of a submission needs, from its cells: the epochs it trains and, for `--mem auto`, the
/// engine's predicted peak bytes of its heaviest training step.
public struct JobNeeds: Sendable, Equatable {
    public var epochs: Int
    public var peakBytes: Int?

    public init(epochs: Int, peakBytes: Int? = nil) {
        self.epochs = epochs
        self.peakBytes = peakBytes
    }
}

/// Per-job `--time` from `--time-per-epoch` and `--mem` from `--mem auto` (docs/SLURM.md, "Resources").
public enum SlurmResources {
    /// A job's limit: 1.5 × its epochs × the time of one epoch, plus 15 min for start-up, data loading,
    /// evaluation and the image-shuffle evaluation (the margin keeps a slow node from hitting the limit).
    public static func timeLimit(epochs: Int, perEpoch seconds: Int) -> String {
        format(seconds: epochs * seconds * 3 / 2 + 15 * 60)
    }

    /// 2 × the predicted engine peak + 1 GiB for the process, BLAS buffers and decoded images, in MiB.
    public static func memoryRequest(peakBytes: Int) -> String {
        let mib = 1 << 20
        return "\((2 * peakBytes + 1024 * mib + mib - 1) / mib)M"
    }

    /// `D-HH:MM:SS`, or `HH:MM:SS` under a day.
    public static func format(seconds: Int) -> String {
        let days = seconds / 86_400, rest = seconds % 86_400
        let clock = String(format: "%02d:%02d:%02d", rest / 3600, rest % 3600 / 60, rest % 60)
        return days > 0 ? "\(days)-\(clock)" : clock
    }

    /// Seconds of a SLURM duration: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M` or `D-H:M:S`.
    public static func seconds(_ text: String) throws -> Int {
        let bad = HarnessError.input("'\(text)' is not a SLURM duration (M, M:S, H:M:S, D-H, D-H:M or D-H:M:S)")
        let dayParts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard dayParts.count <= 2 else { throw bad }
        let days = dayParts.count == 2 ? Int(dayParts[0]) : 0
        let fields = dayParts.last!.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
        guard let days, days >= 0, (1...3).contains(fields.count), fields.allSatisfy({ ($0 ?? -1) >= 0 }) else { throw bad }
        let f = fields.map { $0! }
        let clock: Int
        switch (dayParts.count, f.count) {
        case (1, 1): clock = f[0] * 60
        case (1, 2): clock = f[0] * 60 + f[1]
        case (_, 3): clock = f[0] * 3600 + f[1] * 60 + f[2]
        case (2, 1): clock = f[0] * 3600
        default: clock = f[0] * 3600 + f[1] * 60
        }
        guard days * 86_400 + clock > 0 else { throw bad }
        return days * 86_400 + clock
    }

    /// The predicted engine peak of one fine-tuning step of the cell at its run scale and recipe batch
    /// (35-token questions as upstream truncates, `decoding.max_length` answer tokens: the longest either is).
    public static func cellPeak(_ cell: PlannedCell, _ settings: RunSettings, config: any FamilyConfig) throws -> Int {
        try MemoryPrediction.predict(family: settings.family, config: config, assignment: try cell.assignment.peft(),
                                     batch: settings.recipe.batch, questionLength: 35, answerLength: settings.maxLength).peakBytes
    }

    /// A base job's step: the fully trained model at the pretraining batch, times `baseFactor` for the
    /// objectives' extra passes (ITC runs the JTM in text mode, ITM on the positive and two negatives per pair).
    public static func basePeak(_ settings: RunSettings, config: any FamilyConfig) throws -> Int {
        let step = try MemoryPrediction.predict(family: settings.family, config: config, assignment: try settings.family.fullyTrained(),
                                                batch: settings.pretraining.batch, questionLength: 35, answerLength: settings.maxLength)
        return step.peakBytes * baseFactor
    }

    /// The ITM + ITC passes over a VQA step, on the safe side: docs/SLURM.md ("Resources") has the base's
    /// measured RSS beside this estimate.
    public static let baseFactor = 3
}
