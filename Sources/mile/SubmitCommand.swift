import ArgumentParser
import Foundation
import MileData
import MileHarness

/// `mile submit FILE... --slurm`: the grid as SLURM job arrays (docs/SLURM.md). Planned and validated here,
/// on the login node; frozen in `runs/<id>/`; one base job and one cell array per base key, and a merge +
/// report job after all arrays.
struct Submit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit the pending cells to SLURM as job arrays (one shard database per task), then merge and report.",
        discussion: """
            The files are planned and validated before anything is queued. The run is frozen in --runs/<id>/ (manifest, \
            a copy of this mile binary and of the experiment files, batch scripts). Per base key: a base job (skipped \
            when the base exists), a cell array afterok on it, and one merge + report job afterany on all arrays. \
            --dry-run writes the scripts and prints the sbatch commands without running them. --resubmit RUN_DIR \
            submits the cells of a run that are not done.
            """)

    @OptionGroup var experiments: ExperimentOptions

    @Flag(name: .long, help: "Submit to SLURM (the only scheduler supported).")
    var slurm = false

    @Option(name: .long, help: "SLURM partition.") var partition: String?
    @Option(name: .long, help: "SLURM account.") var account: String?
    @Option(name: .long, help: "SLURM quality of service.") var qos: String?
    @Option(name: .long, help: "Time limit of each job (e.g. 4:00:00).") var time: String?
    @Option(name: .long, help: "Instead of --time: the wall time of one epoch on --cpus (e.g. 12:00); each job's limit is then 1.5 x its epochs x this + 15 min.")
    var timePerEpoch: String?
    @Option(name: .long, help: "CPUs per task (MILE_THREADS of each task; default 1).") var cpus: Int?
    @Option(name: .long, help: "Memory per task (e.g. 4G), or auto: 2 x each job's predicted engine peak + 1 GiB.") var mem: String?
    @Option(name: .long, help: "At most this many tasks of one array at once (--array=...%K).") var maxParallel: Int?
    @Option(name: .long, help: "Seconds before the time limit at which a job records its cell interrupted and requeues itself (--signal=B:USR1@N).")
    var requeueBefore: Int?
    @Option(name: .long, help: "With --requeue-before: at most this many self-requeues per job (default 3).") var maxRequeues: Int?
    @Option(name: .customLong("sbatch-arg"), help: "A further #SBATCH option, verbatim (repeatable).") var sbatchArgs: [String] = []

    @Option(name: .long, help: "A VQA-RAD folder (default: $RAD_DIR).") var rad: String?
    @Option(name: .long, help: "Cache folder for bases and checkpoints, on the shared filesystem.") var cache: String = Defaults.cache
    @Option(name: .long, help: "Folder of the run folders.") var runs: String = "runs"

    @Flag(name: .long, help: "Write the scripts and print what would be submitted, without calling sbatch.")
    var dryRun = false

    @Flag(name: .long, help: "Wait for the merge + report job to end (sbatch --wait) and exit with its status.")
    var wait = false

    @Option(name: .long, help: "A run folder (runs/<id>): merge its shards and submit only its cells that are not done (with its frozen files and options; the FILE arguments are not read).")
    var resubmit: String?

    func validate() throws {
        guard slurm else { throw ValidationError("pass --slurm (the only scheduler `mile submit` supports)") }
        if resubmit == nil {
            try experiments.requireFiles()
        } else if !experiments.files.isEmpty {
            throw ValidationError("--resubmit reads the run's frozen experiment files; give no FILE arguments")
        }
        if let cpus, !(1...256).contains(cpus) { throw ValidationError("--cpus \(cpus): expected 1 to 256") }
        if let maxParallel, maxParallel < 1 { throw ValidationError("--max-parallel \(maxParallel): expected 1 or more") }
        if let requeueBefore, !(30...86_400).contains(requeueBefore) {
            throw ValidationError("--requeue-before \(requeueBefore): expected 30 to 86400 seconds (SLURM sends the signal within a minute of the moment asked)")
        }
        if let maxRequeues, !(1...100).contains(maxRequeues) { throw ValidationError("--max-requeues \(maxRequeues): expected 1 to 100") }
        if time != nil && timePerEpoch != nil { throw ValidationError("--time and --time-per-epoch: give one of them") }
        if let timePerEpoch {
            do { _ = try SlurmResources.seconds(timePerEpoch) } catch { throw ValidationError("--time-per-epoch: \(error)") }
        }
    }

    /// The options of this command line over `base` (a resubmission's frozen options): what is given wins.
    func options(over base: SlurmOptions = SlurmOptions()) throws -> SlurmOptions {
        var options = base
        if let partition { options.partition = partition }
        if let account { options.account = account }
        if let qos { options.qos = qos }
        if let time { options.time = time; options.timePerEpoch = nil }
        if let timePerEpoch { options.timePerEpoch = try SlurmResources.seconds(timePerEpoch); options.time = nil }
        if let cpus { options.cpus = cpus }
        if let mem { options.memory = mem }
        if let maxParallel { options.maxParallel = maxParallel }
        if let requeueBefore { options.requeueBefore = requeueBefore }
        if let maxRequeues { options.maxRequeues = maxRequeues }
        if !sbatchArgs.isEmpty { options.extra = sbatchArgs }
        return options
    }

    func run() throws {
        try reportingErrors {
            if let resubmit { return try resubmitRun(resubmit) }
            let environment = ProcessInfo.processInfo.environment
            guard let slake = experiments.slake ?? environment["SLAKE_DIR"], FileManager.default.fileExists(atPath: slake + "/test.json") else {
                throw HarnessError.input("no SLAKE folder with test.json: pass --slake DIR or set SLAKE_DIR (`mile data synth --out DIR` makes a synthetic one)")
            }
            let plans = try TablePlan.make(files: experiments.files, overrides: experiments.parsedOverrides(),
                                           store: experiments.existingStore(readOnly: true), versions: experiments.currentVersions())
            let selected = try experiments.select(plans)
            var seen = Set<String>()
            let statuses = zip(selected.flatMap(\.cells), selected.flatMap(\.statuses)).filter { seen.insert($0.0.id).inserted }
            let cells = statuses.filter { $0.1.state != .done }.map(\.0)
            try SubmitSupport.validateSettings(cells)
            let done = statuses.count - cells.count
            if cells.isEmpty { print("nothing to submit: all \(statuses.count) selected cells are done in \(experiments.db)"); return }
            let folder = SlurmRunFolder(path: SubmitSupport.absolute(runs) + "/" + SubmitSupport.runID(cells))
            let frozenFiles = try SubmitSupport.freeze(files: experiments.files, binary: true, into: folder)
            let radDir = rad ?? environment["RAD_DIR"].flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
            let scripts = SlurmScripts(folder: folder, options: try options(), workingDirectory: FileManager.default.currentDirectoryPath,
                                       selection: frozenFiles + selectionArguments, slake: SubmitSupport.absolute(slake),
                                       rad: radDir.map(SubmitSupport.absolute), cache: SubmitSupport.absolute(cache))
            var groups = SlurmGroup.make(cells) { SlurmGroup.baseIsReady($0, cells: cells, cache: scripts.cache) }
            if scripts.options.memory == SlurmOptions.autoMemory {
                groups = try SubmitSupport.predictPeaks(groups, locations: DataLocations(slakeDir: scripts.slake, radDir: scripts.rad, cacheDir: scripts.cache))
            }
            try SubmitSupport.write(groups, scripts: scripts)
            try SlurmManifest.json(runID: (folder.path as NSString).lastPathComponent, created: Date(), scripts: scripts, groups: groups)
                .write(toFile: folder.manifest, atomically: true, encoding: .utf8)
            print("run folder \(folder.path): \(cells.count) cells in \(groups.count) array\(groups.count == 1 ? "" : "s")"
                  + (done > 0 ? " (\(done) selected cells already done, not submitted)" : ""))
            try SubmitSupport.submit(groups, scripts: scripts, dryRun: dryRun, wait: wait)
        }
    }

    /// The arguments that select the same cells from the frozen files: --set, --sweep, --scale, --limit, --seeds (a --cell or
    /// --row selection is already applied: the arrays hold exactly the chosen cells).
    var selectionArguments: [String] {
        var arguments = experiments.overrides.flatMap { ["--set", $0] }
        arguments += experiments.sweep.flatMap { ["--sweep", $0] }
        if let scale = experiments.scale { arguments += ["--scale", scale.rawValue] }
        if let limit = experiments.limit { arguments += ["--limit", String(limit)] }
        if let seeds = experiments.seeds { arguments += ["--seeds", String(seeds)] }
        return arguments
    }

    /// `--resubmit RUN_DIR`: the run's shards merged into its database, then its cells not done submitted
    /// again with the run's frozen binary, files and arguments (new scripts `cells-rN-*`).
    private func resubmitRun(_ path: String) throws {
        let folder = SlurmRunFolder(path: SubmitSupport.absolute(path))
        let frozen = try SlurmManifest.read(folder.manifest)
        let store = try ResultsStore(path: folder.merged, journal: .rollback)
        for summary in try SubmitSupport.mergeShards(folder, into: store) { print("merged \(summary.text)") }
        let selection = try ExperimentOptions.parse(frozen.selection + ["--db", folder.merged])
        let plans = try TablePlan.make(files: selection.files, overrides: selection.parsedOverrides(), store: store)
        let wanted = Set(frozen.cellIDs)
        var seen = Set<String>()
        let pairs = zip(plans.flatMap(\.cells), plans.flatMap(\.statuses)).filter { wanted.contains($0.0.id) && seen.insert($0.0.id).inserted }
        let remaining = pairs.filter { $0.1.state != .done }
        let cells = remaining.map(\.0)
        if cells.isEmpty { print("nothing to resubmit: all \(pairs.count) cells of \(folder.path) are done"); return }
        let round = "r" + String(SubmitSupport.nextRound(folder)) + "-"
        let scripts = SlurmScripts(folder: folder, options: try options(over: frozen.options ?? SlurmOptions()),
                                   workingDirectory: frozen.workingDirectory, selection: frozen.selection, slake: frozen.slake,
                                   rad: frozen.rad, cache: frozen.cache)
        var groups = SlurmGroup.make(cells, prefix: round) { SlurmGroup.baseIsReady($0, cells: cells, cache: frozen.cache) }
        if scripts.options.memory == SlurmOptions.autoMemory {
            groups = try SubmitSupport.predictPeaks(groups, locations: DataLocations(slakeDir: frozen.slake, radDir: frozen.rad, cacheDir: frozen.cache))
        }
        try SubmitSupport.write(groups, scripts: scripts)
        print("resubmitting \(cells.count) of \(pairs.count) cells of \(folder.path): "
              + remaining.map { "\($0.0.label) seed \($0.0.seed) \($0.0.shortID) (\($0.1.state.rawValue))" }.joined(separator: ", "))
        try SubmitSupport.submit(groups, scripts: scripts, dryRun: dryRun, wait: wait)
    }
}

/// The steps of a submission.
enum SubmitSupport {
    static func absolute(_ path: String) -> String {
        let url = URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath + "/"))
        return url.standardizedFileURL.path
    }

    /// `20261204-001500-1a2b3c`: the UTC time and the start of the hash of the cell ids.
    static func runID(_ cells: [PlannedCell]) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.locale = Locale(identifier: "en_US_POSIX")
        return formatter.string(from: Date()) + "-" + String(SHA256.hex(cells.map(\.id).joined(separator: ",")).prefix(6))
    }

    /// Configuration errors (unknown scale, unsupported schedule) found now, naming the cell, rather than in
    /// every task of an array.
    static func validateSettings(_ cells: [PlannedCell]) throws {
        for cell in cells { _ = try RunSettings(cell.config, cell: "\(cell.table) \(cell.label) seed \(cell.seed) (\(cell.shortID))") }
    }

    /// Copies this binary to `bin/mile` (a rebuild cannot change the code mid-grid) and the experiment files
    /// with every YAML file beside them (the files they extend) to `experiments/<n>/`; returns the copies'
    /// paths in the order given.
    static func freeze(files: [String], binary: Bool, into folder: SlurmRunFolder) throws -> [String] {
        let manager = FileManager.default
        for dir in [folder.path + "/bin", folder.experiments, folder.shards, folder.logs] {
            try manager.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        if binary {
            let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
            try manager.copyItem(atPath: executable, toPath: folder.binary)
        }
        var copies: [String] = []
        var directories: [String: String] = [:]
        for file in files {
            let source = (absolute(file) as NSString).deletingLastPathComponent
            let target = directories[source] ?? folder.experiments + "/\(directories.count + 1)"
            if directories[source] == nil {
                directories[source] = target
                try manager.createDirectory(atPath: target, withIntermediateDirectories: true)
                for name in try manager.contentsOfDirectory(atPath: source).sorted() where name.hasSuffix(".yaml") || name.hasSuffix(".yml") {
                    try manager.copyItem(atPath: source + "/" + name, toPath: target + "/" + name)
                }
            }
            copies.append(target + "/" + (file as NSString).lastPathComponent)
        }
        return copies
    }

    /// The batch scripts and cell lists of the groups, and the merge script.
    static func write(_ groups: [SlurmGroup], scripts: SlurmScripts) throws {
        let folder = scripts.folder
        for group in groups {
            try (group.cells.map(\.id).joined(separator: "\n") + "\n").write(toFile: folder.cellList(group), atomically: true, encoding: .utf8)
            if group.needsBase { try scripts.base(group).write(toFile: folder.baseScript(group), atomically: true, encoding: .utf8) }
            try scripts.cells(group).write(toFile: folder.cellScript(group), atomically: true, encoding: .utf8)
        }
        try scripts.merge(groups).write(toFile: folder.path + "/merge.sbatch", atomically: true, encoding: .utf8)
    }

    /// `--mem auto`: each group's base and cell peaks predicted at the run scale, with the vocabulary the run
    /// builds from the data (the data of each base is loaded once).
    static func predictPeaks(_ groups: [SlurmGroup], locations: DataLocations) throws -> [SlurmGroup] {
        try groups.map { group in
            var group = group
            let first = group.cells[0]
            let settings = try RunSettings(first.config, cell: "\(first.label) (\(first.shortID))")
            let config = try PipelineRunner.runScaleConfig(settings, cell: first, locations: locations)
            group.baseNeeds.peakBytes = try SlurmResources.basePeak(settings, config: config)
            group.cellNeeds.peakBytes = try group.cells.map { cell in
                try SlurmResources.cellPeak(cell, try RunSettings(cell.config, cell: "\(cell.label) (\(cell.shortID))"), config: config)
            }.max()
            print(String(format: "--mem auto, base %@: predicted engine peaks %.2f GB (base job), %.2f GB (heaviest cell)",
                         String(group.baseKey.prefix(12)), Double(group.baseNeeds.peakBytes ?? 0) / 1e9,
                         Double(group.cellNeeds.peakBytes ?? 0) / 1e9))
            return group
        }
    }

    /// Submits base jobs, arrays and the merge job in dependency order and prints their ids (with
    /// `dryRun`, the sbatch commands instead). A failed sbatch cancels what this call already queued.
    static func submit(_ groups: [SlurmGroup], scripts: SlurmScripts, dryRun: Bool, wait: Bool) throws {
        let folder = scripts.folder
        var queued: [String] = []
        var lines: [String] = []
        func sbatch(_ arguments: [String], placeholder: String) throws -> String {
            let command = ["sbatch", "--parsable"] + arguments
            if dryRun {
                print("would submit: " + command.map(Shell.quote).joined(separator: " "))
                return placeholder
            }
            do {
                let id = try Sbatch.run(command)
                queued.append(id)
                return id
            } catch {
                if !queued.isEmpty { _ = try? Sbatch.output(["scancel"] + queued) }
                throw error
            }
        }
        var arrays: [String] = []
        for group in groups {
            var dependency: [String] = []
            if group.needsBase {
                let base = try sbatch([folder.baseScript(group)], placeholder: "<base-\(group.index)>")
                dependency = ["--dependency=afterok:\(base)"]
                lines.append("base \(group.index) (\(group.baseKey.prefix(12))): job \(base)")
            }
            let array = try sbatch(dependency + [folder.cellScript(group)], placeholder: "<cells-\(group.index)>")
            arrays.append(array)
            lines.append("cells \(group.index): array job \(array) (\(group.cells.count) tasks)")
        }
        let all = (queued.isEmpty ? arrays : queued).joined(separator: ":")
        let mergeArguments = ["--dependency=afterany:\(all)", folder.path + "/merge.sbatch"]
        if wait && !dryRun {
            try recordJobs(queued, folder: folder)
            for line in lines { print(line) }
            print("merge + report: waiting (sbatch --wait) ...")
            try FileHandle.standardOutput.synchronize()
            let status = Sbatch.waitFor(["sbatch", "--wait"] + mergeArguments)
            print("merge + report job ended with status \(status); results in \(folder.results), database \(folder.merged)")
            if status != 0 { throw ExitCode(status) }
            return
        }
        let merge = try sbatch(mergeArguments, placeholder: "<merge>")
        lines.append("merge + report: job \(merge) (results in \(folder.results))")
        if dryRun { print("(dry run: nothing submitted; scripts in \(folder.path))"); return }
        for line in lines { print(line) }
        try recordJobs(queued, folder: folder)
    }

    /// Appends job ids to the run's `jobs.txt` (one per line), which `mile status` asks squeue about.
    static func recordJobs(_ ids: [String], folder: SlurmRunFolder) throws {
        let old = (try? String(contentsOfFile: folder.jobs, encoding: .utf8)) ?? ""
        try (old + ids.map { $0 + "\n" }.joined()).write(toFile: folder.jobs, atomically: true, encoding: .utf8)
    }

    /// Every shard of the run merged into `store`.
    static func mergeShards(_ folder: SlurmRunFolder, into store: ResultsStore) throws -> [MergeSummary] {
        try MergeInputs.shardFiles([folder.shards], excluding: folder.merged).map { try store.merge(shard: $0) }
    }

    /// 2 for the first resubmission, then 3, ...
    static func nextRound(_ folder: SlurmRunFolder) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        var round = 2
        while names.contains(where: { $0.hasPrefix("cells-r\(round)-") }) { round += 1 }
        return round
    }
}

/// Runs sbatch / scancel / squeue.
enum Sbatch {
    /// The job id `sbatch --parsable` prints ("123" or "123;cluster").
    static func run(_ command: [String]) throws -> String {
        let text = try output(command).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let id = text.split(separator: ";").first.map(String.init), !id.isEmpty, id.allSatisfy(\.isNumber) else {
            throw HarnessError.io("\(command.joined(separator: " ")): expected a job id, got '\(text)'")
        }
        return id
    }

    static func output(_ command: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch {
            throw HarnessError.io("cannot run \(command[0]): \(error.localizedDescription) (is SLURM's client installed on this node?)")
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let detail = errors.trimmingCharacters(in: .whitespacesAndNewlines)
            throw HarnessError.io("\(command.joined(separator: " ")) failed (status \(process.terminationStatus))" + (detail.isEmpty ? "" : ": \(detail)"))
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Runs a command with this process's output and returns its exit status.
    static func waitFor(_ command: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        do { try process.run() } catch { return 127 }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
