import ArgumentParser
import Engine
import Foundation
import MileHarness

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run pending cells: pretrain the base (once per base key), fine-tune, evaluate on SLAKE test, store results.",
        discussion: """
            Finished cells are skipped (--force reruns them). Ctrl-C stops at the end of the current step and records \
            the cell as interrupted; running the same command again resumes it from its last finished epoch. \
            Data: --slake/--rad or SLAKE_DIR/RAD_DIR. Reports are written to --out at the end.
            """)

    @OptionGroup var experiments: ExperimentOptions

    func validate() throws {
        try experiments.requireFiles()
        guard (1...Limits.jobs).contains(jobs) else {
            throw ValidationError("--jobs \(jobs): expected 1 to \(Limits.jobs) (\(Limits.jobsReason))")
        }
    }

    @Flag(name: .long, help: "Rerun cells that are already done (their fine-tune checkpoints are discarded).")
    var force = false

    @Option(name: .long, help: "A VQA-RAD folder (default: $RAD_DIR).")
    var rad: String?

    @Option(name: .long, help: "Folder for bases, checkpoints, image cache and vocabularies.")
    var cache: String = Defaults.cache

    @Option(name: .long, help: "Report folder (results/<table>.md, .svg, README.md) written at the end.")
    var out: String = "results"

    @Flag(name: .long, help: "No progress lines (the summary is still printed).")
    var quiet = false

    @Option(name: .long, help: "Worker processes running cells in parallel on one database, each with MILE_THREADS = cores / jobs (default 1: this process runs the cells).")
    var jobs: Int = 1

    @Flag(name: .long, help: "Print what would run (cells, bases to pretrain, time from recorded seeds of the same rows) and exit.")
    var dryRun = false

    @Flag(name: .long, help: .hidden)
    var worker = false

    /// Also the worker mode of the `--jobs` parent, and the base job of `mile submit --slurm`.
    @Flag(name: .long, help: "Only pretrain the missing bases of the selected cells (one per base key), then exit; status 2 when one failed.")
    var basesOnly = false

    @Flag(name: .long, help: "Do not compute reference rows or render reports at the end (SLURM array tasks; the merge job reports).")
    var noReport = false

    @Flag(name: .long, help: "--db is this process's own shard on a shared filesystem (a SLURM array task): rollback journal instead of WAL, and a running claim in it (an earlier, requeued attempt) is taken over at once.")
    var shard = false

    func run() throws {
        BLAS.reexecWithFasterKernelsIfNeeded()
        Threads.configure()
        installStopHandler()
        try reportingErrors {
            let overrides = try experiments.parsedOverrides()
            let plans = try TablePlan.make(files: experiments.files, overrides: overrides, store: nil)
            let cells = try selectedCells(plans.flatMap(\.cells))
            if dryRun {
                let lines = try DryRun.describe(cells, store: try experiments.existingStore(readOnly: true), versions: try experiments.currentVersions(),
                                                cacheDir: cache, force: force, jobs: jobs)
                return lines.forEach { print($0) }
            }
            let environment = ProcessInfo.processInfo.environment
            guard let slakeDir = experiments.slake ?? environment["SLAKE_DIR"] else {
                throw HarnessError.input("no SLAKE folder: pass --slake DIR or set SLAKE_DIR (SLAKE 1.0 from https://www.med-vqa.com/slake/; `mile data synth --out demo-data/synth` makes a synthetic one)")
            }
            let radDir = rad ?? environment["RAD_DIR"].flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
            if shard && jobs > 1 { throw HarnessError.input("--shard with --jobs: a shard has one writer; run one process per shard") }
            let store = try ResultsStore(path: experiments.db, journal: shard ? .rollback : .fromEnvironment)
            let started = Date()
            let outcomes: [CellOutcome]
            if jobs > 1 && !worker {
                if force { throw HarnessError.input("--force with --jobs: rerun the cells with --jobs 1 (two workers would each restart them)") }
                try ParallelRun.runWorkers(count: jobs, arguments: ParallelRun.workerArguments(Array(CommandLine.arguments.dropFirst())),
                                           store: store)
                outcomes = try cells.map { try CellOutcome.recorded($0, store: store) }
            } else {
                if worker { ParallelRun.watchParent() }
                let options = PipelineOptions(locations: DataLocations(slakeDir: slakeDir, radDir: radDir, cacheDir: cache), force: force,
                                              ownShard: shard)
                let runner = PipelineRunner(store: store, options: options, progress: ProgressPrinter(quiet: quiet, inPlace: !worker))
                if basesOnly {
                    let failures = try runner.pretrainBases(cells, recordFailures: shard)
                    if StopRequest.requested == SIGUSR1 { SelfRequeue.request() }
                    if StopRequest.isSet { throw ExitCode(130) }
                    // A failed base fails its SLURM job, so the cell array waiting on it is cancelled
                    // (`--kill-on-invalid-dep`); a `--jobs` parent leaves the failure to the cells.
                    if !failures.isEmpty && !worker {
                        FileHandle.standardError.write(Data("failed: \(failures.joined(separator: "; "))\n".utf8))
                        throw ExitCode(2)
                    }
                    return
                }
                outcomes = try runner.run(cells)
                if StopRequest.requested == SIGUSR1 && !worker { SelfRequeue.request() }
                if worker {
                    if StopRequest.isSet { throw ExitCode(130) }
                    return
                }
            }
            print(RunSummary.text(outcomes, seconds: Date().timeIntervalSince(started)))
            if !noReport { try report(plans, store: store, slakeDir: slakeDir) }
            try exitStatus(outcomes)
        }
    }

    /// Reference rows (computed when missing) and the rendered reports of every table in the files.
    private func report(_ plans: [TablePlan], store: ResultsStore, slakeDir: String) throws {
        let versions = try experiments.currentVersions()
        let references = try ReferenceBaselines.forReport(store: store, cells: plans.flatMap(\.cells), slakeDir: slakeDir,
                                                          cacheDir: cache)
        let reports = try plans.map {
            try ReportRenderer.render($0.table, cells: $0.cells, store: store, versions: versions, references: references,
                                          cacheDir: cache)
        }
        try ReportRenderer.write(reports, to: out)
        for report in reports { print("\(out)/\(report.table.name).md: \(report.doneCells)/\(report.totalCells) cells done") }
    }

    /// Exit 130 after a stop request, 2 when a cell failed, 3 when `--jobs` left cells unfinished.
    private func exitStatus(_ outcomes: [CellOutcome]) throws {
        let unfinished = outcomes.filter { $0.kind != .done && $0.kind != .failed }
        // Ctrl-C/SIGTERM always ends with 130 and names the cells that did not run, wherever it landed
        // (during a cell, between cells, while scoring and storing, while --jobs pretrained the bases).
        if StopRequest.isSet || outcomes.contains(where: { $0.kind == .interrupted && jobs == 1 }) {
            FileHandle.standardError.write(Data("stopped (\(StopRequest.cause)): \(RunSummary.list(unfinished)) did not run to the end; run the same command again to resume\n".utf8))
            throw ExitCode(130)
        }
        if outcomes.contains(where: { $0.kind == .failed }) { throw ExitCode(2) }
        if jobs > 1 && !worker, !unfinished.isEmpty {
            FileHandle.standardError.write(Data("incomplete: \(RunSummary.list(unfinished)) did not finish (a worker died and was not replaced, or another runner holds them); run the same command again\n".utf8))
            throw ExitCode(3)
        }
    }

    /// The selected cells, each cell id once (the same experiment in two tables is one cell).
    private func selectedCells(_ all: [PlannedCell]) throws -> [PlannedCell] {
        var seen = Set<String>()
        return try experiments.select(all).filter { seen.insert($0.id).inserted }
    }

    /// First Ctrl-C (or SIGTERM): stop at the end of the current step. A second one kills at once.
    private func installStopHandler() {
        let handler: @convention(c) (Int32) -> Void = { signal in
            StopRequest.requested = signal
            _ = Glibc.signal(signal, SIG_DFL)
        }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
        signal(SIGUSR1, handler)   // `mile submit --requeue-before`: SLURM's warning before the time limit
    }
}

/// The end-of-run table.
enum RunSummary {
    /// "2 cells (F T IA3 seed 42 1a2b3c4d5e6f, ...)" or "no cell".
    static func list(_ outcomes: [CellOutcome]) -> String {
        guard !outcomes.isEmpty else { return "no cell" }
        let names = outcomes.map { "\($0.cell.label) seed \($0.cell.seed) \($0.cell.shortID)" }.joined(separator: ", ")
        return "\(outcomes.count) cell\(outcomes.count == 1 ? "" : "s") (\(names))"
    }

    static func text(_ outcomes: [CellOutcome], seconds: Double) -> String {
        var lines = ["", "summary (\(outcomes.count) cells, \(ProgressPrinter.duration(seconds))):"]
        for o in outcomes {
            let scores = o.scores.map { String(format: "Opened %6.2f  Closed %6.2f  Global %6.2f", $0.opened, $0.closed, $0.global) } ?? ""
            let label = o.cell.label.padding(toLength: 18, withPad: " ", startingAt: 0)
            lines.append("  \(o.cell.shortID)  \(label) seed \(o.cell.seed)  \(o.kind.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) \(ProgressPrinter.duration(o.seconds).padding(toLength: 7, withPad: " ", startingAt: 0)) \(scores.isEmpty ? o.detail : scores)")
        }
        var counts: [String: Int] = [:]
        for o in outcomes { counts[o.kind.rawValue, default: 0] += 1 }
        lines.append("  " + counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}

/// A SLURM job warned of its time limit (`--signal=B:USR1@N`, `mile submit --requeue-before`): the cell is
/// recorded interrupted at its next step; then the job puts itself back in the queue, at most
/// MILE_MAX_REQUEUES times (SLURM_RESTART_COUNT counts them), and its next attempt resumes from the last
/// finished epoch.
enum SelfRequeue {
    static func request() {
        let environment = ProcessInfo.processInfo.environment
        guard let job = environment["SLURM_JOB_ID"] else {
            FileHandle.standardError.write(Data("SIGUSR1 outside a SLURM job: stopped, not requeued\n".utf8))
            return
        }
        let target = environment["SLURM_ARRAY_JOB_ID"].flatMap { array in environment["SLURM_ARRAY_TASK_ID"].map { "\(array)_\($0)" } } ?? job
        let restarts = Int(environment["SLURM_RESTART_COUNT"] ?? "") ?? 0
        let cap = Int(environment["MILE_MAX_REQUEUES"] ?? "") ?? 3
        guard restarts < cap else {
            FileHandle.standardError.write(Data("time limit near: job \(target) already restarted \(restarts) times (MILE_MAX_REQUEUES \(cap)): not requeued; `mile submit --resubmit` picks the cell up\n".utf8))
            return
        }
        do {
            _ = try Sbatch.output(["scontrol", "requeue", target])
            print("time limit near: requeued job \(target) (restart \(restarts + 1) of at most \(cap)); it resumes from the last finished epoch")
        } catch {
            FileHandle.standardError.write(Data("time limit near: requeueing \(target) failed: \(error)\n".utf8))
        }
    }
}
