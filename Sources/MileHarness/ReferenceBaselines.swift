import Foundation
import MileData

/// Computes, stores and finds the reference rows on a SLAKE folder. Training records: the English
/// questions of `train.json` (`q_lang == "en"`, 4,919 on SLAKE 1.0), plain, as `Slake.load` reads them;
/// never `validate.json`, VQA-RAD or any test record. Test: the English `test.json` questions scored by
/// `Scorer`, exactly as a cell's predictions are.
public enum ReferenceBaselines {
    /// Bump when a baseline's definition changes: its key changes and the stored result is recomputed.
    static let version = "reference-1"

    /// The files whose content a reference result depends on (with the images they name).
    static let dependencies = ["train.json", "test.json"]

    /// The key of a reference result and the settings it records.
    public static func key(_ kind: ReferenceKind, settings: BaselineSettings, hashes: [String: String]) -> (key: String, settingsJSON: String) {
        let used: ConfigValue = kind == .nearestImage ? .map(["thumbnail": .int(settings.thumbnail)]) : .map([:])
        var fields: [String: ConfigValue] = ["kind": .string(kind.rawValue), "settings": used, "version": .string(version)]
        for file in dependencies { fields[file] = .string(hashes[file] ?? "") }
        return (SHA256.hex(ConfigValue.map(fields).canonicalJSON), used.canonicalJSON)
    }

    static func currentHashes(slakeDir: String) throws -> [String: String] {
        try ProvenanceCollector.datasetHashes(files: dependencies.map { (slakeDir as NSString).appendingPathComponent($0) })
    }

    /// The stored reference rows for `slakeDir`'s data, computing and storing the missing ones.
    public static func ensure(store: ResultsStore, slakeDir: String, cacheDir: String?,
                              settings: BaselineSettings) throws -> [ReferenceResult] {
        let hashes = try currentHashes(slakeDir: slakeDir)
        let found = try stored(store: store, hashes: hashes, settings: settings)
        if found.count == ReferenceKind.allCases.count { return found }
        let computed = try compute(slakeDir: slakeDir, cacheDir: cacheDir, settings: settings, hashes: hashes)
        for result in computed where !found.contains(where: { $0.kind == result.kind }) { try store.storeReference(result) }
        return computed
    }

    /// Stored reference rows for data with these hashes (what `mile report` shows without a SLAKE folder:
    /// the hashes come from the runs' provenance).
    public static func stored(store: ResultsStore, hashes: [String: String], settings: BaselineSettings) throws -> [ReferenceResult] {
        try ReferenceKind.allCases.compactMap { kind in try store.reference(key: key(kind, settings: settings, hashes: hashes).key) }
    }

    /// Both baselines on a SLAKE folder (no store involved).
    public static func compute(slakeDir: String, cacheDir: String?, settings: BaselineSettings,
                               hashes: [String: String]? = nil) throws -> [ReferenceResult] {
        let hashes = try hashes ?? currentHashes(slakeDir: slakeDir)
        let train = try Slake.load(root: slakeDir, split: .train).map {
            PriorRecord(question: $0.question, answer: $0.answer, imagePath: $0.imagePath)
        }
        guard !train.isEmpty else { throw HarnessError.input("\(slakeDir)/train.json has no English questions") }
        let test = try Slake.load(root: slakeDir, split: .test)
        let questions = test.map { TestQuestion(qid: $0.qid, question: $0.question, answer: $0.answer, answerType: $0.answerType) }
        let cache = cacheDir.map { URL(fileURLWithPath: ($0 as NSString).appendingPathComponent("image-cache")) }
        let thumbnails = try Thumbnails(size: settings.thumbnail, cacheDirectory: cache)
            .load(train.map(\.imagePath) + test.map(\.imagePath))
        let prior = TrainPrior(train)
        let nearest = try NearestImage(train, thumbnails: thumbnails)
        let blind = test.map { Prediction(qid: $0.qid, answer: prior.answer($0.question)) }
        let image = test.map { Prediction(qid: $0.qid, answer: nearest.answer($0.question, thumbnail: thumbnails[$0.imagePath]!)) }
        return try [(ReferenceKind.blind, blind), (.nearestImage, image)].map { kind, predictions in
            let (scores, perQuestion) = try Scorer.score(questions: questions, predictions: predictions)
            let (key, settingsJSON) = key(kind, settings: settings, hashes: hashes)
            return ReferenceResult(kind: kind, key: key, settingsJSON: settingsJSON, datasetHashes: hashes, scores: scores,
                                   predictions: perQuestion)
        }
    }
}

extension ReferenceBaselines {
    /// The reference rows a report of `cells` shows: computed (and stored) from `slakeDir` when it holds
    /// SLAKE, else the stored ones for the data the done runs were evaluated on; none without a store.
    public static func forReport(store: ResultsStore?, cells: [PlannedCell], slakeDir: String?,
                                 cacheDir: String?) throws -> [ReferenceResult] {
        guard let store else { return [] }
        let settings = cells.first?.baselines ?? BaselineSettings()
        if let slakeDir, FileManager.default.fileExists(atPath: (slakeDir as NSString).appendingPathComponent("test.json")) {
            return try ensure(store: store, slakeDir: slakeDir, cacheDir: cacheDir, settings: settings)
        }
        for cell in cells {
            guard let run = try store.latestDoneRun(cellID: cell.id) else { continue }
            return try stored(store: store, hashes: run.provenance.datasetHashes, settings: settings)
        }
        return []
    }
}
