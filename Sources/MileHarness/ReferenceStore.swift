import Foundation
import GRDB

/// A reference row of the reports (blind train-prior, nearest-image): scores and per-question results.
public struct ReferenceResult: Sendable, Equatable {
    public let kind: ReferenceKind
    /// SHA-256 of what the result depends on (kind, settings, dataset hashes, definition version).
    public let key: String
    public let settingsJSON: String
    public let datasetHashes: [String: String]
    public let scores: Scores
    public let predictions: [QuestionScore]

    public init(kind: ReferenceKind, key: String, settingsJSON: String, datasetHashes: [String: String], scores: Scores,
                predictions: [QuestionScore]) {
        self.kind = kind
        self.key = key
        self.settingsJSON = settingsJSON
        self.datasetHashes = datasetHashes
        self.scores = scores
        self.predictions = predictions
    }
}

public enum ReferenceKind: String, Sendable, CaseIterable, Codable {
    case blind = "blind-train-prior"
    case nearestImage = "nearest-image"

    /// How the reports name the row.
    public var display: String {
        switch self {
        case .blind: return "blind train-prior (no image)"
        case .nearestImage: return "nearest-image (no learning)"
        }
    }
}

/// A cell's evaluation with every test image replaced by another (`ImageShuffle`).
public struct ShuffleResult: Sendable, Equatable {
    public let runID: Int64
    public let shuffleSeed: Int
    public let scores: Scores
    public let predictions: [QuestionScore]

    public init(runID: Int64, shuffleSeed: Int, scores: Scores, predictions: [QuestionScore]) {
        self.runID = runID
        self.shuffleSeed = shuffleSeed
        self.scores = scores
        self.predictions = predictions
    }
}

extension ResultsStore {
    // MARK: reference rows

    /// Stores a reference result, replacing one with the same key (recomputing gives the same numbers).
    public func storeReference(_ reference: ReferenceResult) throws {
        let time = now().timeIntervalSince1970
        try write { db in
            try db.execute(sql: "DELETE FROM reference_results WHERE key = ?", arguments: [reference.key])
            let columns = StoreSchema.scoreColumns.joined(separator: ", ")
            let marks = Array(repeating: "?", count: StoreSchema.scoreColumns.count).joined(separator: ", ")
            let values: [(any DatabaseValueConvertible)?] = [reference.key, reference.kind.rawValue, reference.settingsJSON,
                                                              ResultsStore.encodeHashes(reference.datasetHashes),
                                                              HarnessVersion.code, time]
            try db.execute(sql: """
                INSERT INTO reference_results (key, kind, settings_json, dataset_hashes_json, code_version, computed_at, \(columns))
                VALUES (?, ?, ?, ?, ?, ?, \(marks))
                """, arguments: StatementArguments(values + StoreSchema.scoreValues(reference.scores)))
            let id = db.lastInsertedRowID
            try StoreSchema.insertQuestions(db, table: "reference_predictions", owner: ["reference_id": id], reference.predictions)
        }
    }

    /// The stored reference result of `key`, with its predictions.
    public func reference(key: String) throws -> ReferenceResult? {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM reference_results WHERE key = ?", arguments: [key]),
                  let kind = ReferenceKind(rawValue: row["kind"]) else { return nil }
            let id: Int64 = row["id"]
            let predictions = try StoreSchema.questions(db, sql: "SELECT * FROM reference_predictions WHERE reference_id = ? ORDER BY qid",
                                                        arguments: [id])
            return ReferenceResult(kind: kind, key: key, settingsJSON: row["settings_json"],
                                   datasetHashes: ResultsStore.decodeHashes(row["dataset_hashes_json"]),
                                   scores: StoreSchema.scores(row), predictions: predictions)
        }
    }

    // MARK: image shuffle

    /// Stores (or replaces) the image-shuffle evaluation of a run. Allowed on running and done runs, so a
    /// done cell can be re-evaluated later without a claim.
    public func storeShuffle(_ shuffle: ShuffleResult) throws {
        let time = now().timeIntervalSince1970
        try write { db in
            guard try Int64.fetchOne(db, sql: "SELECT id FROM runs WHERE id = ?", arguments: [shuffle.runID]) != nil else {
                throw HarnessError.store("run \(shuffle.runID) does not exist")
            }
            try db.execute(sql: "DELETE FROM shuffle_results WHERE run_id = ? AND shuffle_seed = ?",
                           arguments: [shuffle.runID, shuffle.shuffleSeed])
            let columns = StoreSchema.scoreColumns.joined(separator: ", ")
            let marks = Array(repeating: "?", count: StoreSchema.scoreColumns.count).joined(separator: ", ")
            let values: [(any DatabaseValueConvertible)?] = [shuffle.runID, shuffle.shuffleSeed, time]
            try db.execute(sql: "INSERT INTO shuffle_results (run_id, shuffle_seed, computed_at, \(columns)) VALUES (?, ?, ?, \(marks))",
                           arguments: StatementArguments(values + StoreSchema.scoreValues(shuffle.scores)))
            try StoreSchema.insertQuestions(db, table: "shuffle_predictions",
                                            owner: ["run_id": shuffle.runID, "shuffle_seed": Int64(shuffle.shuffleSeed)],
                                            shuffle.predictions)
        }
    }

    /// The image-shuffle evaluation of a run under `seed`, if one was made.
    public func shuffle(runID: Int64, seed: Int) throws -> ShuffleResult? {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM shuffle_results WHERE run_id = ? AND shuffle_seed = ?",
                                             arguments: [runID, seed]) else { return nil }
            let predictions = try StoreSchema.questions(db, sql: """
                SELECT * FROM shuffle_predictions WHERE run_id = ? AND shuffle_seed = ? ORDER BY qid
                """, arguments: [runID, seed])
            return ShuffleResult(runID: runID, shuffleSeed: seed, scores: StoreSchema.scores(row), predictions: predictions)
        }
    }
}

extension StoreSchema {
    /// Schema v2 (`v2-reference-shuffle`): reference rows and image-shuffle evaluations, each with its
    /// per-question results like `predictions`.
    static let v2 = """
        CREATE TABLE reference_results (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            settings_json TEXT NOT NULL,
            dataset_hashes_json TEXT NOT NULL,
            code_version TEXT NOT NULL,
            computed_at REAL NOT NULL,
            \(scoreColumnsSQL)
        );

        CREATE TABLE reference_predictions (
            reference_id INTEGER NOT NULL REFERENCES reference_results(id) ON DELETE CASCADE,
            \(questionColumnsSQL),
            PRIMARY KEY (reference_id, qid)
        );

        CREATE TABLE shuffle_results (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            shuffle_seed INTEGER NOT NULL,
            computed_at REAL NOT NULL,
            \(scoreColumnsSQL),
            PRIMARY KEY (run_id, shuffle_seed)
        );

        CREATE TABLE shuffle_predictions (
            run_id INTEGER NOT NULL,
            shuffle_seed INTEGER NOT NULL,
            \(questionColumnsSQL),
            PRIMARY KEY (run_id, shuffle_seed, qid),
            FOREIGN KEY (run_id, shuffle_seed) REFERENCES shuffle_results(run_id, shuffle_seed) ON DELETE CASCADE
        );
        """

    /// The score columns shared by `results`, `reference_results` and `shuffle_results` (same meaning).
    static let scoreColumns = ["opened", "opened_recall", "closed", "global", "global_recall", "open_type_accuracy",
                               "closed_type_accuracy", "opened_count", "closed_count", "opened_correct", "closed_correct",
                               "open_type_count", "closed_type_count"]

    static let scoreColumnsSQL = """
        opened REAL NOT NULL,
            opened_recall REAL NOT NULL,
            closed REAL NOT NULL,
            global REAL NOT NULL,
            global_recall REAL NOT NULL,
            open_type_accuracy REAL,
            closed_type_accuracy REAL,
            opened_count INTEGER NOT NULL,
            closed_count INTEGER NOT NULL,
            opened_correct INTEGER NOT NULL,
            closed_correct INTEGER NOT NULL,
            open_type_count INTEGER NOT NULL,
            closed_type_count INTEGER NOT NULL
        """

    static let questionColumnsSQL = """
        qid INTEGER NOT NULL,
            prediction TEXT NOT NULL,
            answer TEXT NOT NULL,
            score_group TEXT NOT NULL CHECK (score_group IN ('closed', 'opened')),
            answer_type TEXT,
            score REAL NOT NULL,
            recall REAL NOT NULL
        """

    static func scoreValues(_ s: Scores) -> [(any DatabaseValueConvertible)?] {
        [s.opened, s.openedRecall, s.closed, s.global, s.globalRecall, s.openTypeAccuracy, s.closedTypeAccuracy,
         s.openedCount, s.closedCount, s.openedCorrect, s.closedCorrect, s.openTypeCount, s.closedTypeCount]
    }

    static func scores(_ row: Row) -> Scores {
        Scores(opened: row["opened"], openedRecall: row["opened_recall"], closed: row["closed"], global: row["global"],
               globalRecall: row["global_recall"], openTypeAccuracy: row["open_type_accuracy"],
               closedTypeAccuracy: row["closed_type_accuracy"], openedCount: row["opened_count"],
               closedCount: row["closed_count"], openedCorrect: row["opened_correct"], closedCorrect: row["closed_correct"],
               openTypeCount: row["open_type_count"], closedTypeCount: row["closed_type_count"])
    }

    /// Inserts per-question results into `table`, whose leading columns are `owner`'s keys.
    static func insertQuestions(_ db: Database, table: String, owner: KeyValuePairs<String, Int64>, _ items: [QuestionScore]) throws {
        let ownerColumns = owner.map(\.key).joined(separator: ", ")
        let marks = Array(repeating: "?", count: owner.count + 7).joined(separator: ", ")
        let statement = try db.makeStatement(sql: """
            INSERT INTO \(table) (\(ownerColumns), qid, prediction, answer, score_group, answer_type, score, recall)
            VALUES (\(marks))
            """)
        let ownerValues: [(any DatabaseValueConvertible)?] = owner.map(\.value)
        for item in items {
            let values: [(any DatabaseValueConvertible)?] = [item.qid, item.prediction, item.answer, item.group.rawValue,
                                                              item.answerType, item.score, item.recall]
            try statement.execute(arguments: StatementArguments(ownerValues + values))
        }
    }

    static func questions(_ db: Database, sql: String, arguments: StatementArguments) throws -> [QuestionScore] {
        try Row.fetchAll(db, sql: sql, arguments: arguments).map {
            QuestionScore(qid: $0["qid"], prediction: $0["prediction"], answer: $0["answer"],
                          group: ScoreGroup(rawValue: $0["score_group"]) ?? .opened, answerType: $0["answer_type"],
                          score: $0["score"], recall: $0["recall"])
        }
    }
}
