import Foundation
import ArgumentParser
import Engine
import MileHarness

@main
struct Mile: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mile",
        abstract: "Reproduce the MILE (MICCAI 2024) PEFT grid on medical VQA, cell by cell.",
        version: BuildDescription.line,
        subcommands: [Info.self, DataCommand.self, Params.self, Plan.self, Run.self, Runs.self, Show.self, Diff.self, Submit.self, Merge.self, Status.self, Score.self, Report.self, Baselines.self,
                      BaseCheck.self, Export.self, CacheCommand.self]
    )
}

/// One prefix for every error, the argument parser's usage errors and mile's own alike (each subcommand
/// reports its own usage errors).
extension ParsableCommand {
    static var _errorPrefix: String { "error: " }
}

/// The build as `mile --version` and `mile info` print it.
enum BuildDescription {
    static var commit: String {
        guard let commit = BuildInfo.commit else { return "unknown commit (not built from a git checkout)" }
        return commit + (BuildInfo.dirty == true ? " (dirty: built with uncommitted changes)" : "")
    }
    static var line: String { "mile \(HarnessVersion.code), git \(commit), Swift \(HarnessVersion.swift)" }
}

/// Prints the build (commit, code version) and the engine facts (BLAS library, kernel set and threads).
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the build's commit and code version, the BLAS library and thread count.")
    func run() throws {
        BLAS.reexecWithFasterKernelsIfNeeded()
        Threads.configure()
        print("build: git \(BuildDescription.commit); code version \(HarnessVersion.code) (runs recorded under another code version show stale); Swift \(HarnessVersion.swift)")
        print("BLAS: \(BLAS.configuration) (kernels: \(BLAS.coreName))")
        print("threads: \(Threads.count) (the engine splits products over its threads; each OpenBLAS call runs on one)")
    }
}

/// Defaults of `--cache` and `--db`, overridable for a whole shell session by MILE_CACHE and MILE_DB.
enum Defaults {
    static var cache: String { ProcessInfo.processInfo.environment["MILE_CACHE"] ?? ".mile" }
    static var database: String { ProcessInfo.processInfo.environment["MILE_DB"] ?? "results/mile.db" }
}

/// `--scale`: the model presets (ModelFamilies.scales), listed in `--help` and offered by shell completion.
enum ScaleName: String, ExpressibleByArgument, CaseIterable {
    case paper, small, smoke
}
