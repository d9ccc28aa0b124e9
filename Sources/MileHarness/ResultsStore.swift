import Foundation
import GRDB

/// Where and with what a run was produced.
public struct Provenance: Sendable, Equatable, Codable {
    public var gitCommit: String?
    public var gitDirty: Bool?
    public var swiftVersion: String
    public var blasLibrary: String?
    public var blasThreads: Int?
    public var cpuModel: String?
    public var host: String?
    /// File name -> SHA-256 of the dataset files the run read.
    public var datasetHashes: [String: String]
    /// The harness's semantic code version (`HarnessVersion.code`); a change marks done cells stale.
    public var codeVersion: String
    /// The SLURM job array task that ran it (nil outside SLURM).
    public var slurm: SlurmTask?

    public init(gitCommit: String? = nil, gitDirty: Bool? = nil, swiftVersion: String = HarnessVersion.swift,
                blasLibrary: String? = nil, blasThreads: Int? = nil, cpuModel: String? = nil, host: String? = nil,
                datasetHashes: [String: String] = [:], codeVersion: String = HarnessVersion.code, slurm: SlurmTask? = nil) {
        self.gitCommit = gitCommit
        self.gitDirty = gitDirty
        self.swiftVersion = swiftVersion
        self.blasLibrary = blasLibrary
        self.blasThreads = blasThreads
        self.cpuModel = cpuModel
        self.host = host
        self.datasetHashes = datasetHashes
        self.codeVersion = codeVersion
        self.slurm = slurm
    }
}

/// The SLURM job (and array task) a run was made in, from the environment SLURM gives a job.
public struct SlurmTask: Sendable, Equatable, Codable {
    public var jobID: String
    public var arrayJobID: String?
    public var arrayTaskID: Int?
    /// SLURM_RESTART_COUNT: how often the job was requeued before this attempt.
    public var restartCount: Int

    public init(jobID: String, arrayJobID: String? = nil, arrayTaskID: Int? = nil, restartCount: Int = 0) {
        self.jobID = jobID
        self.arrayJobID = arrayJobID
        self.arrayTaskID = arrayTaskID
        self.restartCount = restartCount
    }

    /// The task of this process, nil when it does not run under SLURM.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> SlurmTask? {
        guard let job = environment["SLURM_JOB_ID"], !job.isEmpty else { return nil }
        return SlurmTask(jobID: job, arrayJobID: environment["SLURM_ARRAY_JOB_ID"],
                         arrayTaskID: environment["SLURM_ARRAY_TASK_ID"].flatMap { Int($0) },
                         restartCount: environment["SLURM_RESTART_COUNT"].flatMap { Int($0) } ?? 0)
    }
}

public enum RunStatus: String, Sendable, Codable {
    case running, done, failed, interrupted
}

/// One row of `runs`.
public struct RunRecord: Sendable, Equatable {
    public let id: Int64
    public let cellID: String
    public let table: String
    public let label: String
    public let seed: Int
    public let configJSON: String
    public let status: RunStatus
    public let runner: String
    public let startedAt: Date
    public let heartbeatAt: Date
    public let endedAt: Date?
    public let wallSeconds: Double?
    public let failureReason: String?
    public let provenance: Provenance
    /// Unique across databases (schema v3): `mile merge` recognises a run it merged before by it.
    public let uuid: String
    /// Stage kind -> key as planned when the run was claimed (schema v4; empty for older runs).
    public var stageKeys: [String: String] = [:]
    /// What the run used and made: `base`, `checkpoint` (paths; schema v4, recorded when done).
    public var artifacts: [String: String] = [:]
}

/// What a runner asks to claim.
public struct ClaimRequest: Sendable {
    public let cellID: String
    public let table: String
    public let label: String
    public let seed: Int
    public let configJSON: String
    public let provenance: Provenance
    /// Stage kind -> key (recorded with the claim).
    public var stageKeys: [String: String] = [:]

    public init(cellID: String, table: String, label: String, seed: Int, configJSON: String, provenance: Provenance) {
        self.cellID = cellID
        self.table = table
        self.label = label
        self.seed = seed
        self.configJSON = configJSON
        self.provenance = provenance
    }

    public init(cell: PlannedCell, provenance: Provenance) {
        self.init(cellID: cell.id, table: cell.table, label: cell.label, seed: cell.seed,
                  configJSON: cell.canonicalJSON, provenance: provenance)
        stageKeys = Dictionary(uniqueKeysWithValues: cell.stages.map { ($0.kind.rawValue, $0.key) })
    }
}

public enum ClaimOutcome: Sendable, Equatable {
    /// The caller now owns the new run.
    case claimed(runID: Int64)
    /// A done run exists; pass `force` to run again.
    case alreadyDone(runID: Int64)
    /// Another runner holds a live claim.
    case busy(runID: Int64, runner: String)
}

public struct EpochMetric: Sendable, Equatable {
    public let epoch: Int
    public let loss: Double
    public let lr: Double
    public let seconds: Double
    public let samples: Int?
    /// The mean training loss of each window of `Trainer.lossWindow` steps (the last one may be shorter).
    public var stepLosses: [Double] = []
    /// After the epoch, the VQA loss on SLAKE validate with the true images and with shuffled ones
    /// (`ImageReliance`); nil for a base or a run without validation questions.
    public var validationLoss: Double? = nil
    public var validationShuffledLoss: Double? = nil

    public init(epoch: Int, loss: Double, lr: Double, seconds: Double, samples: Int? = nil) {
        self.epoch = epoch
        self.loss = loss
        self.lr = lr
        self.seconds = seconds
        self.samples = samples
    }
}

/// Trainable and total parameter counts (the #Params column is trainable / total of the wrapped model).
public struct ParamCounts: Sendable, Equatable {
    public let trainable: Int
    public let total: Int
    public var percent: Double { total == 0 ? 0 : 100 * Double(trainable) / Double(total) }

    public init(trainable: Int, total: Int) {
        self.trainable = trainable
        self.total = total
    }
}

/// Everything a finished run stores beside its predictions.
public struct RunResults: Sendable, Equatable {
    public var runScale: ParamCounts
    public var paperScale: ParamCounts?
    /// The engine allocator's peak during training (reset at the start of the cell).
    public var peakEngineBytes: Int?
    /// The process peak RSS (VmHWM).
    public var peakRSSBytes: Int?
    /// Shape-only prediction of the paper-scale training peak (batch 20, 480², 361 M parameters).
    public var predictedPaperBytes: Int?
    public var scores: Scores

    public init(runScale: ParamCounts, paperScale: ParamCounts?, peakEngineBytes: Int?, peakRSSBytes: Int?,
                predictedPaperBytes: Int?, scores: Scores) {
        self.runScale = runScale
        self.paperScale = paperScale
        self.peakEngineBytes = peakEngineBytes
        self.peakRSSBytes = peakRSSBytes
        self.predictedPaperBytes = predictedPaperBytes
        self.scores = scores
    }
}

/// How the database file journals its transactions.
public enum StoreJournal: String, Sendable {
    /// Write-ahead log (a DatabasePool: readers alongside one writer). The local default; SQLite's WAL
    /// needs shared memory between the processes, so it is unsafe on a network filesystem.
    case wal
    /// The rollback journal (`journal_mode = DELETE`, a DatabaseQueue): for per-task shard databases of a
    /// SLURM run on a shared filesystem, where each shard has one writer.
    case rollback

    /// `MILE_DB_JOURNAL=rollback` (set by the `mile submit --slurm` batch scripts, whose databases sit on a
    /// shared filesystem) or WAL.
    public static var fromEnvironment: StoreJournal {
        ProcessInfo.processInfo.environment["MILE_DB_JOURNAL"].flatMap(StoreJournal.init(rawValue:)) ?? .wal
    }
}

/// The SQLite results database (GRDB DatabasePool: WAL, one writer at a time, readers alongside).
///
/// Claims make a cell exclusive: a claim is a `runs` row with status `running` and a heartbeat; a partial
/// unique index allows at most one such row per cell, and a claim whose heartbeat is older than
/// `staleClaimTimeout` is taken over (the old run is marked interrupted).
public final class ResultsStore: @unchecked Sendable {
    public let path: String
    public let runner: String
    public let staleClaimTimeout: TimeInterval
    /// A DatabasePool (WAL) for read-write stores; a DatabaseQueue for rollback-journal and `readOnly` ones.
    let pool: any DatabaseWriter
    public let journal: StoreJournal
    let now: @Sendable () -> Date

    /// Opens (read-write: creates and migrates) the database at `path`. `readOnly` opens an existing mile
    /// database without changing a byte (no migration, no WAL switch, no lock file), for commands that only
    /// read. Either way a file that is not mile's, or was written by a newer mile, is refused. `journal`:
    /// WAL (local default) or the rollback journal (shards on a shared filesystem; a WAL file is switched).
    public init(path: String, runner: String = ResultsStore.defaultRunnerID(), staleClaimTimeout: TimeInterval = 900,
                now: @escaping @Sendable () -> Date = { Date() }, readOnly: Bool = false, journal: StoreJournal = .fromEnvironment) throws {
        self.path = path
        self.journal = journal
        self.runner = runner
        self.staleClaimTimeout = staleClaimTimeout
        self.now = now
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        configuration.foreignKeysEnabled = true
        do {
            if readOnly {
                pool = try ResultsStore.openReadOnly(path, configuration)
                return
            }
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
            // Two processes opening a new database would both see no applied migration and both create
            // the tables; an exclusive file lock around open + migrate makes the second one find them done.
            pool = try ResultsStore.withExclusiveLock(path + ".lock") {
                if FileManager.default.fileExists(atPath: path) {
                    _ = try ResultsStore.checkIdentity(DatabaseQueue(path: path, configuration: ResultsStore.readOnlyConfiguration(configuration)),
                                                       path: path, allowEmpty: true)
                }
                let writer: any DatabaseWriter
                if journal == .rollback {
                    let queue = try DatabaseQueue(path: path, configuration: configuration)
                    try queue.writeWithoutTransaction { try $0.execute(sql: "PRAGMA journal_mode = DELETE") }
                    writer = queue
                } else {
                    writer = try DatabasePool(path: path, configuration: configuration)
                }
                try ResultsStore.migrator.migrate(writer)
                return writer
            }
        } catch let error as DatabaseError {
            throw HarnessError.store("cannot open results database \(path): \(error.message ?? "\(error)")")
        }
    }

    /// Migrations that only add columns the readers treat as absent: a database without them is still read
    /// as it is by read-only commands (its runs have no recorded stage keys or artifacts).
    static let readableWithout: Set<String> = ["v4-provenance-curves"]

    static func openReadOnly(_ path: String, _ configuration: Configuration) throws -> DatabaseQueue {
        guard FileManager.default.fileExists(atPath: path) else { throw HarnessError.store("no results database at \(path)") }
        let queue = try DatabaseQueue(path: path, configuration: readOnlyConfiguration(configuration))
        let applied = try checkIdentity(queue, path: path, allowEmpty: false)
        let missing = migrator.migrations.filter { !applied.contains($0) && !readableWithout.contains($0) }
        if !missing.isEmpty {
            throw HarnessError.store("\(path) was written by an older mile (schema without \(missing.joined(separator: ", "))); `mile run` or `mile report` on it upgrades it")
        }
        return queue
    }

    static func readOnlyConfiguration(_ configuration: Configuration) -> Configuration {
        var copy = configuration
        copy.readonly = true
        return copy
    }

    /// The applied migrations of a mile database. Throws for an SQLite file with other tables and for one
    /// with migrations this build does not know (a newer mile wrote it). `allowEmpty`: no tables at all is
    /// a new database.
    static func checkIdentity(_ reader: some DatabaseReader, path: String, allowEmpty: Bool) throws -> [String] {
        try reader.read { db in
            let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            if tables.isEmpty && allowEmpty { return [] }
            guard tables.contains("grdb_migrations"), tables.contains("runs") else {
                let found = tables.isEmpty ? "no tables" : "tables " + tables.prefix(8).joined(separator: ", ")
                throw HarnessError.store("\(path) is not a mile results database (\(found)); pass the database `mile run` writes (--db, default results/mile.db)")
            }
            let applied = try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
            let unknown = applied.filter { !migrator.migrations.contains($0) }
            if !unknown.isEmpty {
                throw HarnessError.store("\(path) was written by a newer mile (schema migrations \(unknown.joined(separator: ", ")) unknown to this build); use that build or a newer one")
            }
            return applied
        }
    }

    /// Runs `body` while holding a blocking `flock` on `lockPath` (created when missing).
    static func withExclusiveLock<T>(_ lockPath: String, _ body: () throws -> T) throws -> T {
        let fd = open(lockPath, O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else { throw HarnessError.store("cannot open lock file \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw HarnessError.store("cannot lock \(lockPath): \(String(cString: strerror(errno)))") }
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    public static func defaultRunnerID() -> String {
        let host = ProcessInfo.processInfo.hostName
        return "\(host):\(getpid()):\(UUID().uuidString.prefix(8))"
    }

    /// Schema versions. Never edit a registered migration; add a new one.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-runs-metrics-results-predictions") { db in
            try db.execute(sql: StoreSchema.v1)
        }
        migrator.registerMigration("v2-reference-shuffle") { db in
            try db.execute(sql: StoreSchema.v2)   // ReferenceStore.swift
        }
        migrator.registerMigration("v3-run-uuid-slurm") { db in
            try db.execute(sql: StoreSchema.v3)   // StoreMerge.swift
        }
        migrator.registerMigration("v4-provenance-curves") { db in
            try db.execute(sql: StoreSchema.v4)   // StoreMerge.swift
        }
        return migrator
    }

    /// The names of the applied migrations (for tests and `mile plan --json`).
    public func appliedMigrations() throws -> [String] {
        try pool.read { db in try ResultsStore.migrator.appliedMigrations(db) }
    }

    // MARK: writing (each call is one IMMEDIATE transaction)

    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        } catch let error as DatabaseError {
            throw HarnessError.store("\(path): \(error.message ?? "\(error)")")
        }
    }

    /// Claims a cell for this runner. Exclusive across processes: the check and the insert happen in one
    /// IMMEDIATE transaction, which SQLite serialises between all writers of the file.
    public func claim(_ request: ClaimRequest, force: Bool = false) throws -> ClaimOutcome {
        let time = now().timeIntervalSince1970
        return try write { db in
            // Done means what `mile plan` shows as done: a done run that is stale (other code version or data)
            // is run again rather than skipped.
            if !force, let row = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE cell_id = ? AND status = 'done' ORDER BY id DESC LIMIT 1", arguments: [request.cellID]) {
                let done = ResultsStore.record(row)
                if try Planner.doneStatus(done, versions: CurrentVersions(request.provenance)).state == .done { return .alreadyDone(runID: done.id) }
            }
            if let row = try Row.fetchOne(db, sql: "SELECT id, runner, heartbeat_at FROM runs WHERE cell_id = ? AND status = 'running'", arguments: [request.cellID]) {
                let heartbeat: Double = row["heartbeat_at"]
                let holder: String = row["runner"]
                if time - heartbeat < staleClaimTimeout { return .busy(runID: row["id"], runner: holder) }
                let reason = "stale claim: no heartbeat from \(holder) for \(Int(time - heartbeat)) s (timeout \(Int(staleClaimTimeout)) s)"
                try db.execute(sql: "UPDATE runs SET status = 'interrupted', ended_at = ?, failure_reason = ? WHERE id = ?",
                               arguments: [time, reason, row["id"] as Int64])
            }
            try insertRun(db, request, time: time)
            return .claimed(runID: db.lastInsertedRowID)
        }
    }

    private func insertRun(_ db: Database, _ request: ClaimRequest, time: Double) throws {
        let p = request.provenance
        try db.execute(sql: """
            INSERT INTO runs (cell_id, table_name, row_label, seed, config_json, status, runner, started_at, heartbeat_at,
                              code_version, git_commit, git_dirty, swift_version, blas_library, blas_threads, cpu_model,
                              host, dataset_hashes_json, run_uuid, slurm_job_id, slurm_array_job_id, slurm_array_task_id,
                              slurm_restart_count, stage_keys_json)
            VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: StatementArguments([
                request.cellID, request.table, request.label, request.seed, request.configJSON, runner,
                time, time, p.codeVersion, p.gitCommit, p.gitDirty, p.swiftVersion, p.blasLibrary,
                p.blasThreads, p.cpuModel, p.host, ResultsStore.encodeHashes(p.datasetHashes), UUID().uuidString.lowercased(),
                p.slurm?.jobID, p.slurm?.arrayJobID, p.slurm?.arrayTaskID, p.slurm?.restartCount,
                request.stageKeys.isEmpty ? nil : ResultsStore.encodeHashes(request.stageKeys),
            ] as [(any DatabaseValueConvertible)?]))
    }

    /// Keeps this runner's claim alive (call at least every `staleClaimTimeout / 3` during long stages).
    public func heartbeat(runID: Int64) throws {
        try write { db in
            try requireOwnedRunning(db, runID)
            try db.execute(sql: "UPDATE runs SET heartbeat_at = ? WHERE id = ?", arguments: [now().timeIntervalSince1970, runID])
        }
    }

    /// Records (or replaces, after a resume) one epoch's metrics; also refreshes the heartbeat.
    public func recordEpoch(runID: Int64, _ metric: EpochMetric) throws {
        try write { db in
            try requireOwnedRunning(db, runID)
            try db.execute(sql: """
                INSERT OR REPLACE INTO epoch_metrics (run_id, epoch, loss, lr, seconds, samples, step_losses_json,
                                                      validation_loss, validation_shuffled_loss)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [runID, metric.epoch, metric.loss, metric.lr, metric.seconds, metric.samples,
                                 metric.stepLosses.isEmpty ? nil : EpochMetric.encode(metric.stepLosses),
                                 metric.validationLoss, metric.validationShuffledLoss])
            try db.execute(sql: "UPDATE runs SET heartbeat_at = ? WHERE id = ?", arguments: [now().timeIntervalSince1970, runID])
        }
    }

    /// Stores results and every prediction and marks the run done, all in one transaction: a run is never
    /// done without its results, and results never exist for a run that is not done.
    public func complete(runID: Int64, results: RunResults, predictions: [QuestionScore], wallSeconds: Double? = nil,
                         artifacts: [String: String] = [:]) throws {
        let time = now().timeIntervalSince1970
        try write { db in
            let started = try requireOwnedRunning(db, runID)
            try insertResults(db, runID, results)
            let statement = try db.makeStatement(sql: """
                INSERT INTO predictions (run_id, qid, prediction, answer, score_group, answer_type, score, recall)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for item in predictions {
                try statement.execute(arguments: [runID, item.qid, item.prediction, item.answer, item.group.rawValue,
                                                  item.answerType, item.score, item.recall])
            }
            try db.execute(sql: """
                UPDATE runs SET status = 'done', ended_at = ?, heartbeat_at = ?, wall_seconds = ?, failure_reason = NULL,
                                artifacts_json = ? WHERE id = ?
                """, arguments: [time, time, wallSeconds ?? (time - started),
                                 artifacts.isEmpty ? nil : ResultsStore.encodeHashes(artifacts), runID])
        }
    }

    private func insertResults(_ db: Database, _ runID: Int64, _ r: RunResults) throws {
        let s = r.scores
        try db.execute(sql: """
            INSERT INTO results (run_id, trainable_run, total_run, percent_run, trainable_paper, total_paper, percent_paper,
                peak_engine_bytes, peak_rss_bytes, predicted_paper_bytes, opened, opened_recall, closed, global,
                global_recall, open_type_accuracy, closed_type_accuracy, opened_count, closed_count, opened_correct,
                closed_correct, open_type_count, closed_type_count)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: StatementArguments([
                runID, r.runScale.trainable, r.runScale.total, r.runScale.percent,
                r.paperScale?.trainable, r.paperScale?.total, r.paperScale?.percent,
                r.peakEngineBytes, r.peakRSSBytes, r.predictedPaperBytes,
                s.opened, s.openedRecall, s.closed, s.global, s.globalRecall, s.openTypeAccuracy, s.closedTypeAccuracy,
                s.openedCount, s.closedCount, s.openedCorrect, s.closedCorrect, s.openTypeCount, s.closedTypeCount,
            ] as [(any DatabaseValueConvertible)?]))
    }

    /// Marks a run failed (NaN loss, an exception...). The reason is shown by `mile plan`.
    public func fail(runID: Int64, reason: String) throws { try finish(runID, status: .failed, reason: reason) }

    /// Marks a run interrupted (SIGINT at a safe point); the next claim starts a new run for the cell.
    public func interrupt(runID: Int64, reason: String) throws { try finish(runID, status: .interrupted, reason: reason) }

    private func finish(_ runID: Int64, status: RunStatus, reason: String) throws {
        let time = now().timeIntervalSince1970
        try write { db in
            let started = try requireOwnedRunning(db, runID)
            try db.execute(sql: "UPDATE runs SET status = ?, ended_at = ?, wall_seconds = ?, failure_reason = ? WHERE id = ?",
                           arguments: [status.rawValue, time, time - started, reason, runID])
        }
    }

    /// Returns the run's start time; throws unless the run is running and owned by this runner (a runner
    /// whose stale claim was taken over must not write into the new owner's cell).
    @discardableResult
    private func requireOwnedRunning(_ db: Database, _ runID: Int64) throws -> Double {
        guard let row = try Row.fetchOne(db, sql: "SELECT status, runner, started_at FROM runs WHERE id = ?", arguments: [runID]) else {
            throw HarnessError.store("run \(runID) does not exist")
        }
        let status: String = row["status"]
        let owner: String = row["runner"]
        guard status == RunStatus.running.rawValue else { throw HarnessError.store("run \(runID) is \(status), not running") }
        guard owner == runner else { throw HarnessError.store("run \(runID) is claimed by \(owner), not by \(runner)") }
        return row["started_at"]
    }

    // MARK: reading

    public func run(id: Int64) throws -> RunRecord? {
        try read { db in try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE id = ?", arguments: [id]).map(ResultsStore.record) }
    }

    public func runs(cellID: String) throws -> [RunRecord] {
        try read { db in try Row.fetchAll(db, sql: "SELECT * FROM runs WHERE cell_id = ? ORDER BY id", arguments: [cellID]).map(ResultsStore.record) }
    }

    public func latestRun(cellID: String) throws -> RunRecord? {
        try runs(cellID: cellID).last
    }

    public func latestDoneRun(cellID: String) throws -> RunRecord? {
        try runs(cellID: cellID).last { $0.status == .done }
    }

    /// The latest done run of a row label and seed in a table, whatever its config (for stale reasons).
    /// The done runs of one table row (every seed), oldest first.
    public func doneRuns(table: String, label: String) throws -> [RunRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM runs WHERE table_name = ? AND row_label = ? AND status = 'done' ORDER BY id",
                             arguments: [table, label]).map(ResultsStore.record)
        }
    }

    public func latestDoneRun(table: String, label: String, seed: Int) throws -> RunRecord? {
        try read { db in
            try Row.fetchOne(db, sql: """
                SELECT * FROM runs WHERE table_name = ? AND row_label = ? AND seed = ? AND status = 'done'
                ORDER BY id DESC LIMIT 1
                """, arguments: [table, label, seed]).map(ResultsStore.record)
        }
    }

    public func results(runID: Int64) throws -> RunResults? {
        try read { db in try Row.fetchOne(db, sql: "SELECT * FROM results WHERE run_id = ?", arguments: [runID]).map(ResultsStore.results) }
    }

    public func epochs(runID: Int64) throws -> [EpochMetric] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM epoch_metrics WHERE run_id = ? ORDER BY epoch", arguments: [runID]).map {
                var metric = EpochMetric(epoch: $0["epoch"], loss: $0["loss"], lr: $0["lr"], seconds: $0["seconds"], samples: $0["samples"])
                metric.stepLosses = EpochMetric.decode($0["step_losses_json"])
                metric.validationLoss = $0["validation_loss"]
                metric.validationShuffledLoss = $0["validation_shuffled_loss"]
                return metric
            }
        }
    }

    public func predictions(runID: Int64) throws -> [QuestionScore] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM predictions WHERE run_id = ? ORDER BY qid", arguments: [runID]).map {
                QuestionScore(qid: $0["qid"], prediction: $0["prediction"], answer: $0["answer"],
                              group: ScoreGroup(rawValue: $0["score_group"]) ?? .opened, answerType: $0["answer_type"],
                              score: $0["score"], recall: $0["recall"])
            }
        }
    }

    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.read(body)
        } catch let error as DatabaseError {
            throw HarnessError.store("\(path): \(error.message ?? "\(error)")")
        }
    }

    static func record(_ row: Row) -> RunRecord {
        let provenance = Provenance(
            gitCommit: row["git_commit"], gitDirty: row["git_dirty"], swiftVersion: row["swift_version"] ?? "",
            blasLibrary: row["blas_library"], blasThreads: row["blas_threads"], cpuModel: row["cpu_model"],
            host: row["host"], datasetHashes: decodeHashes(row["dataset_hashes_json"]), codeVersion: row["code_version"],
            slurm: (row["slurm_job_id"] as String?).map {
                SlurmTask(jobID: $0, arrayJobID: row["slurm_array_job_id"], arrayTaskID: row["slurm_array_task_id"],
                          restartCount: row["slurm_restart_count"] ?? 0)
            })
        return RunRecord(
            id: row["id"], cellID: row["cell_id"], table: row["table_name"], label: row["row_label"], seed: row["seed"],
            configJSON: row["config_json"], status: RunStatus(rawValue: row["status"]) ?? .failed, runner: row["runner"],
            startedAt: Date(timeIntervalSince1970: row["started_at"]), heartbeatAt: Date(timeIntervalSince1970: row["heartbeat_at"]),
            endedAt: (row["ended_at"] as Double?).map(Date.init(timeIntervalSince1970:)), wallSeconds: row["wall_seconds"],
            failureReason: row["failure_reason"], provenance: provenance, uuid: row["run_uuid"] ?? "",
            stageKeys: decodeHashes(row["stage_keys_json"]), artifacts: decodeHashes(row["artifacts_json"]))
    }

    static func results(_ row: Row) -> RunResults {
        let paper: ParamCounts? = (row["trainable_paper"] as Int?).flatMap { trainable in
            (row["total_paper"] as Int?).map { ParamCounts(trainable: trainable, total: $0) }
        }
        let scores = Scores(
            opened: row["opened"], openedRecall: row["opened_recall"], closed: row["closed"], global: row["global"],
            globalRecall: row["global_recall"], openTypeAccuracy: row["open_type_accuracy"],
            closedTypeAccuracy: row["closed_type_accuracy"], openedCount: row["opened_count"],
            closedCount: row["closed_count"], openedCorrect: row["opened_correct"], closedCorrect: row["closed_correct"],
            openTypeCount: row["open_type_count"], closedTypeCount: row["closed_type_count"])
        return RunResults(runScale: ParamCounts(trainable: row["trainable_run"], total: row["total_run"]), paperScale: paper,
                          peakEngineBytes: row["peak_engine_bytes"], peakRSSBytes: row["peak_rss_bytes"],
                          predictedPaperBytes: row["predicted_paper_bytes"], scores: scores)
    }

    static func encodeHashes(_ hashes: [String: String]) -> String {
        ConfigValue.map(hashes.mapValues(ConfigValue.string)).canonicalJSON
    }

    static func decodeHashes(_ text: String?) -> [String: String] {
        guard let text, let value = try? ConfigValue.fromJSON(text), let map = value.mapValue else { return [:] }
        return map.compactMapValues(\.stringValue)
    }
}

/// The SQL of each schema version (documented in docs/HARNESS.md). Times are Unix seconds (REAL);
/// in the sqlite3 shell use datetime(started_at, 'unixepoch').
enum StoreSchema {
    static let v1 = """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            cell_id TEXT NOT NULL,
            table_name TEXT NOT NULL,
            row_label TEXT NOT NULL,
            seed INTEGER NOT NULL,
            config_json TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
            runner TEXT NOT NULL,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            ended_at REAL,
            wall_seconds REAL,
            failure_reason TEXT,
            code_version TEXT NOT NULL,
            git_commit TEXT,
            git_dirty INTEGER,
            swift_version TEXT,
            blas_library TEXT,
            blas_threads INTEGER,
            cpu_model TEXT,
            host TEXT,
            dataset_hashes_json TEXT NOT NULL DEFAULT '{}'
        );
        CREATE UNIQUE INDEX runs_one_running_claim ON runs(cell_id) WHERE status = 'running';
        CREATE INDEX runs_by_cell ON runs(cell_id, status);
        CREATE INDEX runs_by_label ON runs(table_name, row_label, seed, status);

        CREATE TABLE epoch_metrics (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            epoch INTEGER NOT NULL,
            loss REAL NOT NULL,
            lr REAL NOT NULL,
            seconds REAL NOT NULL,
            samples INTEGER,
            PRIMARY KEY (run_id, epoch)
        );

        CREATE TABLE results (
            run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
            trainable_run INTEGER NOT NULL,
            total_run INTEGER NOT NULL,
            percent_run REAL NOT NULL,
            trainable_paper INTEGER,
            total_paper INTEGER,
            percent_paper REAL,
            peak_engine_bytes INTEGER,
            peak_rss_bytes INTEGER,
            predicted_paper_bytes INTEGER,
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
        );

        CREATE TABLE predictions (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            qid INTEGER NOT NULL,
            prediction TEXT NOT NULL,
            answer TEXT NOT NULL,
            score_group TEXT NOT NULL CHECK (score_group IN ('closed', 'opened')),
            answer_type TEXT,
            score REAL NOT NULL,
            recall REAL NOT NULL,
            PRIMARY KEY (run_id, qid)
        );
        """
}

extension EpochMetric {
    /// Step losses as stored: `[1.25,1.5]`, full precision.
    static func encode(_ losses: [Double]) -> String { "[" + losses.map { "\($0)" }.joined(separator: ",") + "]" }

    static func decode(_ text: String?) -> [Double] {
        guard let text, text.hasPrefix("["), text.hasSuffix("]") else { return [] }
        return text.dropFirst().dropLast().split(separator: ",").compactMap { Double($0) }
    }
}
