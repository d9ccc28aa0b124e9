import Foundation

/// `sbatch` settings of `mile submit --slurm`; nil leaves a setting to the cluster's defaults.
public struct SlurmOptions: Sendable, Equatable {
    public var partition: String?
    public var account: String?
    public var qos: String?
    /// Wall-clock limit of each job (`--time`, e.g. `4:00:00`).
    public var time: String?
    /// Seconds of one epoch (`--time-per-epoch`): each job's limit then follows its epochs (SlurmResources).
    public var timePerEpoch: Int?
    /// CPUs per task; each task runs with MILE_THREADS = this.
    public var cpus: Int
    /// Memory per task (`--mem`, e.g. `4G`), or `auto`: each job's request from its predicted peak.
    public var memory: String?
    /// At most this many array tasks of one base run at once (`--array=...%K`).
    public var maxParallel: Int?
    /// Further `#SBATCH` lines, verbatim (`--sbatch-arg=--constraint=avx2`).
    public var extra: [String]
    /// Seconds before the time limit at which SLURM sends SIGUSR1 (`--signal=B:USR1@N`): mile records the
    /// cell interrupted and requeues its own job, at most `maxRequeues` times.
    public var requeueBefore: Int? = nil
    public var maxRequeues: Int = 3

    public static let autoMemory = "auto"

    public init(partition: String? = nil, account: String? = nil, qos: String? = nil, time: String? = nil, timePerEpoch: Int? = nil,
                cpus: Int = 1, memory: String? = nil, maxParallel: Int? = nil, extra: [String] = []) {
        self.partition = partition
        self.account = account
        self.qos = qos
        self.time = time
        self.timePerEpoch = timePerEpoch
        self.cpus = cpus
        self.memory = memory
        self.maxParallel = maxParallel
        self.extra = extra
    }

    /// The `#SBATCH` lines of a job that needs `needs`.
    func lines(_ needs: JobNeeds) -> [String] {
        var lines = ["--cpus-per-task=\(cpus)"]
        if memory == Self.autoMemory {
            if let peak = needs.peakBytes { lines.append("--mem=\(SlurmResources.memoryRequest(peakBytes: peak))") }
        } else if let memory {
            lines.append("--mem=\(memory)")
        }
        if let time {
            lines.append("--time=\(time)")
        } else if let timePerEpoch {
            lines.append("--time=\(SlurmResources.timeLimit(epochs: needs.epochs, perEpoch: timePerEpoch))")
        }
        if let partition { lines.append("--partition=\(partition)") }
        if let account { lines.append("--account=\(account)") }
        if let qos { lines.append("--qos=\(qos)") }
        if let requeueBefore { lines.append("--signal=B:USR1@\(requeueBefore)") }
        return lines + extra
    }
}

/// The cells of one base key: a base job (when the base is missing) and one job array.
public struct SlurmGroup: Sendable {
    /// "1", "2", ... (a resubmission: "r2-1", ...): names the group's files (`base-1.sbatch`, `cells-1.sbatch`,
    /// `cells-1.txt`) and jobs.
    public let index: String
    public let baseKey: String
    /// Seed-major: every cell of the first seed, then the second seed, ...
    public let cells: [PlannedCell]
    public let needsBase: Bool
    /// The base job's pretraining epochs and the cell array's most fine-tuning epochs; the peaks are set by
    /// `mile submit` for `--mem auto`.
    public var baseNeeds: JobNeeds
    public var cellNeeds: JobNeeds

    /// Groups cells by base key in first-use order, each group seed-major (a partial grid then has whole
    /// seeds); `baseExists` says whether a base is already pretrained (no base job then).
    public static func make(_ cells: [PlannedCell], prefix: String = "", baseExists: (String) -> Bool) -> [SlurmGroup] {
        var order: [String] = []
        var byKey: [String: [PlannedCell]] = [:]
        for cell in cells {
            let key = cell.stage(.base).key
            if byKey[key] == nil { order.append(key) }
            byKey[key, default: []].append(cell)
        }
        return order.enumerated().map { index, key in
            let list = byKey[key]!.enumerated().sorted { ($0.element.seed, $0.offset) < ($1.element.seed, $1.offset) }.map(\.element)
            let baseEpochs = list[0].config["pretraining.epochs"]?.intValue ?? 0
            let cellEpochs = list.compactMap { $0.config["recipe.epochs"]?.intValue }.max() ?? 0
            return SlurmGroup(index: prefix + String(index + 1), baseKey: key, cells: list, needsBase: !baseExists(key),
                              baseNeeds: JobNeeds(epochs: baseEpochs), cellNeeds: JobNeeds(epochs: cellEpochs))
        }
    }
}

extension SlurmGroup {
    /// Whether the base of `key` needs no pretraining: cached in `cache`, or a converted checkpoint.
    public static func baseIsReady(_ key: String, cells: [PlannedCell], cache: String) -> Bool {
        let fromCheckpoint = cells.first { $0.stage(.base).key == key }?.config["pretraining.source"]?.stringValue == "checkpoint"
        return fromCheckpoint || FileManager.default.fileExists(atPath: BaseStage.file(cacheDir: cache, key: key).path)
    }
}

/// A frozen run folder, `runs/<id>/`: the manifest, the copied `mile` binary and experiment files, the
/// batch scripts, the cell lists, logs and the shard databases.
public struct SlurmRunFolder: Sendable {
    public let path: String
    public init(path: String) { self.path = path }

    public var binary: String { path + "/bin/mile" }
    public var experiments: String { path + "/experiments" }
    public var shards: String { path + "/shards" }
    public var logs: String { path + "/logs" }
    public var merged: String { path + "/mile.db" }
    public var results: String { path + "/results" }
    public var manifest: String { path + "/manifest.json" }
    public var jobs: String { path + "/jobs.txt" }
    public func baseScript(_ group: SlurmGroup) -> String { path + "/base-\(group.index).sbatch" }
    public func cellScript(_ group: SlurmGroup) -> String { path + "/cells-\(group.index).sbatch" }
    public func cellList(_ group: SlurmGroup) -> String { path + "/cells-\(group.index).txt" }
}

/// The batch scripts of `mile submit --slurm`. Every mile command in them runs the run folder's copy of
/// the binary on its copy of the experiment files, with `MILE_DB_JOURNAL=rollback` (WAL is unsafe on a
/// network filesystem) and MILE_THREADS = the task's CPUs.
public struct SlurmScripts: Sendable {
    public let folder: SlurmRunFolder
    public let options: SlurmOptions
    /// The folder `mile submit` ran in: jobs start there, so git provenance and relative paths match.
    public let workingDirectory: String
    /// Frozen table files, `--set`/`--scale`/`--seeds` and data options, shared by every mile command.
    public let selection: [String]
    /// Absolute paths of the data and the cache (bases, checkpoints), on the shared filesystem.
    public let slake: String
    public let rad: String?
    public let cache: String

    public init(folder: SlurmRunFolder, options: SlurmOptions, workingDirectory: String, selection: [String], slake: String,
                rad: String?, cache: String) {
        self.folder = folder
        self.options = options
        self.workingDirectory = workingDirectory
        self.selection = selection
        self.slake = slake
        self.rad = rad
        self.cache = cache
    }

    /// `--slake`, `--rad` and `--cache` of `mile run`.
    var data: [String] { ["--slake", slake] + (rad.map { ["--rad", $0] } ?? []) + ["--cache", cache] }

    /// Pretrains the group's base (`mile run --bases-only`); a failure fails the job, which cancels the
    /// array waiting on it (`--kill-on-invalid-dep=yes`), and is recorded for every cell of the group in the
    /// base's shard (so the merge shows the reason).
    public func base(_ group: SlurmGroup) -> String {
        let shard = folder.shards + "/base-\(group.index).db"
        return script(name: "mile-base-\(group.index)", log: "base-\(group.index)-%j.out",
                      about: "pretrains base \(group.baseKey.prefix(12)) for \(group.cells.count) cell\(group.cells.count == 1 ? "" : "s")",
                      lines: ["--requeue", "--open-mode=append"] + options.lines(group.baseNeeds),
                      body: ["exec " + mile(["run"] + selection + group.cells.flatMap { ["--cell", $0.id] }
                                            + ["--bases-only", "--db", shard, "--shard", "--no-report"] + data)])
    }

    /// One array task per cell of the group: task i runs line i+1 of the cell list, in its own shard (a
    /// requeued attempt appends to the task's log instead of truncating it). `exec`
    /// makes mile the job's process, so `scancel` and `scontrol requeue` deliver SIGTERM to it (it records
    /// the cell interrupted at the next step; a requeued task resumes from its last finished epoch).
    public func cells(_ group: SlurmGroup) -> String {
        let last = group.cells.count - 1
        let throttle = options.maxParallel.map { "%\($0)" } ?? ""
        return script(name: "mile-cells-\(group.index)", log: "cells-\(group.index)-%A_%a.out",
                      about: "\(group.cells.count) cell\(group.cells.count == 1 ? "" : "s") of base \(group.baseKey.prefix(12)), seed-major; task i runs line i+1 of \(folder.cellList(group))",
                      lines: ["--array=0-\(last)\(throttle)", "--requeue", "--open-mode=append", "--kill-on-invalid-dep=yes"]
                        + options.lines(group.cellNeeds),
                      body: ["cell=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" \(Shell.quote(folder.cellList(group))))",
                             "test -n \"$cell\" || { echo \"no cell for array task $SLURM_ARRAY_TASK_ID\" >&2; exit 1; }",
                             "exec " + mile(["run"] + selection + ["--cell"]) + " \"$cell\" " + Shell.quote("--db") + " "
                                + "\(Shell.quote(folder.shards))/\"$cell\".db "
                                + (["--shard", "--no-report"] + data).map(Shell.quote).joined(separator: " ")])
    }

    /// Merges every shard into the run's database and renders the reports; runs after all arrays whatever
    /// their outcome (`afterany`), so failed and interrupted cells show with their reasons.
    public func merge(_ groups: [SlurmGroup]) -> String {
        let peak = groups.compactMap(\.cellNeeds.peakBytes).max()
        let report = ["report"] + selection + ["--db", folder.merged, "--out", folder.results, "--slake", slake, "--cache", cache]
        return script(name: "mile-merge", log: "merge-%j.out", about: "merges the shards into \(folder.merged) and renders \(folder.results)",
                      lines: options.lines(JobNeeds(epochs: 0, peakBytes: peak)),
                      body: [mile(["merge", folder.merged, folder.shards]), "exec " + mile(report)])
    }

    private func mile(_ arguments: [String]) -> String {
        ([folder.binary] + arguments).map(Shell.quote).joined(separator: " ")
    }

    private func script(name: String, log: String, about: String, lines: [String], body: [String]) -> String {
        let header = ["--job-name=\(name)", "--output=\(folder.logs)/\(log)"] + lines
        return (["#!/bin/bash",
                 "# mile submit --slurm, run folder \(folder.path): \(about)."]
                + header.map { "#SBATCH \($0)" }
                + ["set -euo pipefail",
                   "cd \(Shell.quote(workingDirectory))",
                   "export MILE_DB_JOURNAL=rollback",
                   "export MILE_THREADS=\"${SLURM_CPUS_PER_TASK:-\(options.cpus)}\""]
                + (options.requeueBefore == nil ? [] : ["export MILE_MAX_REQUEUES=\(options.maxRequeues)"])
                + body).joined(separator: "\n") + "\n"
    }
}

/// POSIX shell quoting for the generated scripts.
public enum Shell {
    /// The word unchanged when it is safe, else in single quotes.
    public static func quote(_ word: String) -> String {
        let safe = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+%@")
        if !word.isEmpty, word.unicodeScalars.allSatisfy(safe.contains) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

/// `runs/<id>/manifest.json`: what a submission froze, so a later status or resubmission sees the same grid.
public enum SlurmManifest {
    /// The manifest text: run id, creation time, the mile arguments every job shares, and per cell its id,
    /// table, row, seed, group and array task, stage keys and resolved config.
    public static func json(runID: String, created: Date, scripts: SlurmScripts, groups: [SlurmGroup]) -> String {
        var cells: [ConfigValue] = []
        for group in groups {
            for (task, cell) in group.cells.enumerated() {
                cells.append(.map([
                    "id": .string(cell.id), "table": .string(cell.table), "row": .string(cell.label), "seed": .int(cell.seed),
                    "group": .string(group.index), "task": .int(task),
                    "stages": .map(Dictionary(uniqueKeysWithValues: cell.stages.map { ($0.kind.rawValue, ConfigValue.string($0.key)) })),
                    "config": cell.config,
                ]))
            }
        }
        let manifest = ConfigValue.map([
            "run": .string(runID),
            "created": .string(ISO8601DateFormatter().string(from: created)),
            "working_directory": .string(scripts.workingDirectory),
            "selection": .list(scripts.selection.map(ConfigValue.string)),
            "slake": .string(scripts.slake), "rad": scripts.rad.map(ConfigValue.string) ?? .string(""), "cache": .string(scripts.cache),
            "sbatch": scripts.options.configValue,
            "groups": .list(groups.map { .map(["name": .string($0.index), "base": .string($0.baseKey), "cells": .int($0.cells.count),
                                                "base_job": .bool($0.needsBase)]) }),
            "cells": .list(cells),
        ])
        return manifest.prettyJSON() + "\n"
    }

    /// The manifest's shared arguments and data paths, for `mile status` and `--resubmit`.
    public struct Frozen: Sendable {
        public let runID: String
        public let workingDirectory: String
        public let selection: [String]
        public let slake: String
        public let rad: String?
        public let cache: String
        public let cellIDs: [String]
        /// The submission's sbatch options (nil in a manifest written before they were kept).
        public let options: SlurmOptions?
    }

    public static func read(_ path: String) throws -> Frozen {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw HarnessError.input("\(path): no manifest (pass a run folder that `mile submit --slurm` wrote, runs/<id>)")
        }
        let value = try ConfigValue.fromJSON(text)
        func string(_ key: String) throws -> String {
            guard let text = value[key]?.stringValue else { throw HarnessError.input("\(path): manifest without \(key)") }
            return text
        }
        let rad = try string("rad")
        return Frozen(runID: try string("run"), workingDirectory: try string("working_directory"),
                      selection: value["selection"]?.listValue?.compactMap(\.stringValue) ?? [], slake: try string("slake"),
                      rad: rad.isEmpty ? nil : rad, cache: try string("cache"),
                      cellIDs: value["cells"]?.listValue?.compactMap { $0["id"]?.stringValue } ?? [],
                      options: value["sbatch"].map(SlurmOptions.init(configValue:)))
    }
}

extension SlurmOptions {
    /// The options as the manifest keeps them (absent options left out).
    var configValue: ConfigValue {
        var map: [String: ConfigValue] = ["cpus": .int(cpus), "extra": .list(extra.map(ConfigValue.string))]
        let texts = ["partition": partition, "account": account, "qos": qos, "time": time, "memory": memory]
        for (key, text) in texts { if let text { map[key] = .string(text) } }
        if let timePerEpoch { map["time_per_epoch"] = .int(timePerEpoch) }
        if let maxParallel { map["max_parallel"] = .int(maxParallel) }
        if let requeueBefore { map["requeue_before"] = .int(requeueBefore); map["max_requeues"] = .int(maxRequeues) }
        return .map(map)
    }

    init(configValue value: ConfigValue) {
        self.init(partition: value["partition"]?.stringValue, account: value["account"]?.stringValue, qos: value["qos"]?.stringValue,
                  time: value["time"]?.stringValue, timePerEpoch: value["time_per_epoch"]?.intValue, cpus: value["cpus"]?.intValue ?? 1,
                  memory: value["memory"]?.stringValue, maxParallel: value["max_parallel"]?.intValue,
                  extra: value["extra"]?.listValue?.compactMap(\.stringValue) ?? [])
        requeueBefore = value["requeue_before"]?.intValue
        maxRequeues = value["max_requeues"]?.intValue ?? 3
    }
}
