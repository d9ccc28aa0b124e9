import Foundation
import GRDB

/// What `ResultsStore.merge` did with one shard.
public struct MergeSummary: Sendable, Equatable {
    public var shard: String
    /// Runs new to the output database.
    public var added = 0
    /// Runs merged before whose shard copy has changed since (a later heartbeat, a new status).
    public var updated = 0
    /// Runs merged before and unchanged (a re-merge adds nothing).
    public var unchanged = 0
    /// Runs still `running` in the shard, recorded interrupted (their task ended without recording them).
    public var dangling = 0
    /// Reference rows new to the output database.
    public var references = 0

    public init(shard: String) { self.shard = shard }

    public var text: String {
        "\(shard): \(added) added, \(updated) updated, \(unchanged) unchanged, \(dangling) dangling claim\(dangling == 1 ? "" : "s") recorded interrupted, \(references) reference row\(references == 1 ? "" : "s")"
    }
}

/// What a merge does with a run that is still `running` in its shard.
public enum DanglingClaims: Sendable {
    /// Record it interrupted: the shard's task has ended (the merge job runs after every task), so no one
    /// will finish it. The default.
    case interrupt
    /// Copy it as running (a live view while the tasks still run, `mile status`).
    case keep
}

/// `mile merge`: the per-task shard databases of a SLURM run merged into one database.
///
/// Runs are matched by their UUID (schema v3), never by their id, which every shard counts from 1: merging
/// the same shard twice adds nothing, and a shard merged while its task ran is brought up to date by a
/// later merge. A run's epochs, results, predictions and image-shuffle evaluations move with it; reference
/// rows are added when their key is new.
extension ResultsStore {
    public func merge(shard path: String, dangling: DanglingClaims = .interrupt) throws -> MergeSummary {
        let name = (path as NSString).lastPathComponent
        do {
            _ = try ResultsStore.openReadOnly(path, Configuration())
        } catch let error as HarnessError {
            throw HarnessError.store("cannot merge \(path): \(error.description.replacingOccurrences(of: "error: ", with: ""))")
        }
        do {
            return try pool.writeWithoutTransaction { db in
                try db.execute(sql: "ATTACH DATABASE ? AS shard", arguments: [path])
                defer { try? db.execute(sql: "DETACH DATABASE shard") }
                var summary = MergeSummary(shard: name)
                try db.inTransaction(.immediate) {
                    try ResultsStore.mergeRuns(db, shard: name, dangling: dangling, into: &summary)
                    summary.references = try ResultsStore.mergeReferences(db)
                    return .commit
                }
                return summary
            }
        } catch let error as DatabaseError {
            throw HarnessError.store("cannot merge \(path) into \(self.path): \(error.message ?? "\(error)")")
        }
    }

    /// The runs table's columns other than `id`, in schema order.
    static func runColumns(_ db: Database) throws -> [String] {
        try Row.fetchAll(db, sql: "PRAGMA main.table_info(runs)").map { $0["name"] as String }.filter { $0 != "id" }
    }

    private static func mergeRuns(_ db: Database, shard name: String, dangling: DanglingClaims, into summary: inout MergeSummary) throws {
        let columns = try runColumns(db)
        let runs = try Row.fetchAll(db, sql: "SELECT * FROM shard.runs ORDER BY started_at, id")
        for run in runs {
            let shardID: Int64 = run["id"]
            var values = Dictionary(uniqueKeysWithValues: columns.map { ($0, run[$0] as DatabaseValue) })
            if dangling == .interrupt, run["status"] as String == RunStatus.running.rawValue {
                values = danglingAsInterrupted(values, shard: name)
                summary.dangling += 1
            }
            let uuid: String = run["run_uuid"]
            guard let existing = try Row.fetchOne(db, sql: "SELECT * FROM main.runs WHERE run_uuid = ?", arguments: [uuid]) else {
                let id = try insertRun(db, columns: columns, values: values, id: nil)
                try copyChildren(db, from: shardID, to: id)
                summary.added += 1
                continue
            }
            let compared = ["status", "heartbeat_at", "ended_at", "failure_reason"]
            let same = compared.allSatisfy { existing[$0] as DatabaseValue == values[$0]! }
            let older = (values["heartbeat_at"].flatMap { Double.fromDatabaseValue($0) } ?? 0) < (existing["heartbeat_at"] as Double)
            if same || older {
                summary.unchanged += 1
                continue
            }
            // Replaced in place: the run keeps its id in the output database.
            let id: Int64 = existing["id"]
            try db.execute(sql: "DELETE FROM main.runs WHERE id = ?", arguments: [id])
            _ = try insertRun(db, columns: columns, values: values, id: id)
            try copyChildren(db, from: shardID, to: id)
            summary.updated += 1
        }
    }

    /// A run still `running` in a finished shard: interrupted at its last heartbeat (the last sign of life,
    /// which also makes a re-merge of the same shard find it unchanged).
    private static func danglingAsInterrupted(_ values: [String: DatabaseValue], shard: String) -> [String: DatabaseValue] {
        var copy = values
        let heartbeat = values["heartbeat_at"].flatMap { Double.fromDatabaseValue($0) } ?? 0
        let started = values["started_at"].flatMap { Double.fromDatabaseValue($0) } ?? heartbeat
        let runner = values["runner"].flatMap { String.fromDatabaseValue($0) } ?? "?"
        copy["status"] = RunStatus.interrupted.rawValue.databaseValue
        copy["ended_at"] = heartbeat.databaseValue
        copy["wall_seconds"] = (heartbeat - started).databaseValue
        copy["failure_reason"] = "dangling claim of \(runner) in shard \(shard): its task ended without recording the cell (killed, node failure or time limit); resumes from its last finished epoch".databaseValue
        return copy
    }

    private static func insertRun(_ db: Database, columns: [String], values: [String: DatabaseValue], id: Int64?) throws -> Int64 {
        let names = (id == nil ? [] : ["id"]) + columns
        let arguments = (id.map { [$0.databaseValue] } ?? []) + columns.map { values[$0] ?? .null }
        let marks = Array(repeating: "?", count: names.count).joined(separator: ", ")
        try db.execute(sql: "INSERT INTO main.runs (\(names.joined(separator: ", "))) VALUES (\(marks))",
                       arguments: StatementArguments(arguments))
        return id ?? db.lastInsertedRowID
    }

    /// Copies the rows that hang off a run (epochs, results, predictions, image-shuffle evaluations).
    private static func copyChildren(_ db: Database, from shardID: Int64, to id: Int64) throws {
        for table in ["epoch_metrics", "results", "predictions", "shuffle_results", "shuffle_predictions"] {
            let columns = try Row.fetchAll(db, sql: "PRAGMA main.table_info(\(table))").map { $0["name"] as String }
            let selected = columns.map { $0 == "run_id" ? "?" : $0 }.joined(separator: ", ")
            try db.execute(sql: "INSERT INTO main.\(table) (\(columns.joined(separator: ", "))) SELECT \(selected) FROM shard.\(table) WHERE run_id = ?",
                           arguments: [id, shardID])
        }
    }

    /// Reference rows whose key the output database lacks, with their per-question results.
    private static func mergeReferences(_ db: Database) throws -> Int {
        let missing = try Row.fetchAll(db, sql: "SELECT id FROM shard.reference_results WHERE key NOT IN (SELECT key FROM main.reference_results)")
        let columns = try Row.fetchAll(db, sql: "PRAGMA main.table_info(reference_results)").map { $0["name"] as String }.filter { $0 != "id" }
        let questionColumns = try Row.fetchAll(db, sql: "PRAGMA main.table_info(reference_predictions)").map { $0["name"] as String }
        for row in missing {
            let shardID: Int64 = row["id"]
            let list = columns.joined(separator: ", ")
            try db.execute(sql: "INSERT INTO main.reference_results (\(list)) SELECT \(list) FROM shard.reference_results WHERE id = ?",
                           arguments: [shardID])
            let id = db.lastInsertedRowID
            let selected = questionColumns.map { $0 == "reference_id" ? "?" : $0 }.joined(separator: ", ")
            try db.execute(sql: "INSERT INTO main.reference_predictions (\(questionColumns.joined(separator: ", "))) SELECT \(selected) FROM shard.reference_predictions WHERE reference_id = ?",
                           arguments: [id, shardID])
        }
        return missing.count
    }
}

extension StoreSchema {
    /// Schema v3 (`v3-run-uuid-slurm`): a UUID per run, unique across databases (existing runs get one),
    /// and the SLURM job, array job, array task and restart count of runs made in a SLURM job.
    static let v3 = """
        ALTER TABLE runs ADD COLUMN run_uuid TEXT;
        ALTER TABLE runs ADD COLUMN slurm_job_id TEXT;
        ALTER TABLE runs ADD COLUMN slurm_array_job_id TEXT;
        ALTER TABLE runs ADD COLUMN slurm_array_task_id INTEGER;
        ALTER TABLE runs ADD COLUMN slurm_restart_count INTEGER;
        UPDATE runs SET run_uuid = lower(hex(randomblob(16))) WHERE run_uuid IS NULL;
        CREATE UNIQUE INDEX runs_by_uuid ON runs(run_uuid);
        """

    /// Schema v4 (`v4-provenance-curves`): the stage keys a run was planned with (data, base, finetune,
    /// evaluate), recorded when it is claimed, and the files it used and made (base, fine-tune checkpoint),
    /// recorded when it is done: provenance that does not depend on how a later build derives them. Each
    /// epoch's loss per window of steps (the loss curve) and its validation losses.
    static let v4 = """
        ALTER TABLE runs ADD COLUMN stage_keys_json TEXT;
        ALTER TABLE runs ADD COLUMN artifacts_json TEXT;
        ALTER TABLE epoch_metrics ADD COLUMN step_losses_json TEXT;
        ALTER TABLE epoch_metrics ADD COLUMN validation_loss REAL;
        ALTER TABLE epoch_metrics ADD COLUMN validation_shuffled_loss REAL;
        """
}

/// The databases named by `mile merge` arguments.
public enum MergeInputs {
    /// Files as given; folders give their `*.db` files in name order. `excluding` (the output) is left out.
    public static func shardFiles(_ arguments: [String], excluding out: String) throws -> [String] {
        let manager = FileManager.default
        let outPath = URL(fileURLWithPath: out).standardizedFileURL.path
        var files: [String] = []
        for argument in arguments {
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: argument, isDirectory: &isDirectory) else {
                throw HarnessError.input("\(argument): no such shard database or folder")
            }
            if isDirectory.boolValue {
                files += try manager.contentsOfDirectory(atPath: argument).filter { $0.hasSuffix(".db") }.sorted().map { argument + "/" + $0 }
            } else {
                files.append(argument)
            }
        }
        return files.filter { URL(fileURLWithPath: $0).standardizedFileURL.path != outPath }
    }
}
