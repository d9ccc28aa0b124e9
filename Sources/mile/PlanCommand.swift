import ArgumentParser
import Foundation
import MileHarness

/// Options shared by every command that takes table files (plan, run, report, export, baselines): the
/// files, the database, overrides, scale and seeds.
struct ExperimentOptions: ParsableArguments {
    @Argument(help: "Table files (e.g. experiments/table1.yaml).")
    var files: [String] = []

    /// Every command but `submit --resubmit` (which reads a run's frozen files) needs at least one file.
    func requireFiles() throws {
        guard !files.isEmpty else { throw ValidationError("give at least one table file (e.g. experiments/table1.yaml)") }
        if let setting = files.first(where: { $0.contains("=") && !FileManager.default.fileExists(atPath: $0) }) {
            throw ValidationError("'\(setting)' is not a file; to override a setting write --set \(setting)")
        }
    }

    @Option(name: .long, help: "Results database (created by `mile run`).")
    var db: String = Defaults.database

    @Option(name: .customLong("set"), help: "Override a config key for every cell: key.path=value (repeatable).")
    var overrides: [String] = []

    @Option(name: .long, help: "Every row once per value: key.path=v1,v2,... (repeatable: the product). The value shows in the row's label, e.g. 'F T LoRA r4 [recipe.lr=0.0001]'.")
    var sweep: [String] = []

    @Option(name: .long, help: "A Slake1.0 folder (default: $SLAKE_DIR). Runs on other data show as stale.")
    var slake: String?

    @Option(name: .long, help: "Model scale (same as --set model.scale=S).")
    var scale: ScaleName?

    @Option(name: .long, help: "Number of seeds per cell, counting up from the first configured seed.")
    var seeds: Int?

    @Option(name: .long, help: "A quick try: only the first N test questions, training records and base samples (= --set data.limit=N; its own cells, marked not comparable in reports).")
    var limit: Int?

    @Option(name: .long, help: "Only this cell: an id prefix (4+ hex digits) or a row label such as 'F LoRA LoRA r4' (repeatable).")
    var cell: [String] = []

    @Option(name: .long, help: "Only the cells of this row label (e.g. 'T T LoRA r4'); the same as --cell LABEL (repeatable).")
    var row: [String] = []

    /// The cells every `--cell` and `--row` select together, in plan order (all without any).
    func select(_ cells: [PlannedCell]) throws -> [PlannedCell] {
        let selectors = cell + row
        guard !selectors.isEmpty else { return cells }
        let chosen = Set(try selectors.flatMap { try Planner.select(cells, cell: $0) }.map(\.id))
        return cells.filter { chosen.contains($0.id) }
    }

    /// The plans restricted to the selected cells; tables without one are left out.
    func select(_ plans: [TablePlan]) throws -> [TablePlan] {
        let chosen = Set(try select(plans.flatMap(\.cells)).map(\.id))
        return plans.compactMap { $0.keeping(chosen) }
    }

    var selectsCells: Bool { !(cell.isEmpty && row.isEmpty) }

    /// `--set` values, then `--scale` and `--seeds` as the overrides they stand for: every command that
    /// takes table files selects the same cells from them.
    func parsedOverrides() throws -> [ConfigOverride] {
        var parsed = try overrides.map(ConfigOverride.init) + sweep.map(ConfigOverride.sweep)
        if let scale { parsed.append(try ConfigOverride("model.scale=\(scale.rawValue)")) }
        if let limit {
            guard limit >= 1 else { throw HarnessError.input("--limit \(limit): expected 1 or more (leave it out for the whole data)") }
            parsed.append(try ConfigOverride("data.limit=\(limit)"))
        }
        if let seeds {
            guard (1...Limits.seeds).contains(seeds) else {
                throw HarnessError.input("--seeds \(seeds): expected 1 to \(Limits.seeds) (each seed is a full fine-tuning run of every cell)")
            }
            let first = try files.first.map { try ExperimentLoader.load(path: $0) }?
                .config["recipe.seeds"]?.listValue?.first?.intValue ?? 42
            let list = (0..<seeds).map { String(first + $0) }.joined(separator: ", ")
            parsed.append(try ConfigOverride("recipe.seeds=[\(list)]"))
        }
        return parsed
    }

    /// The store if the database exists; planning never creates one. `readOnly`: opened without changing it.
    func existingStore(readOnly: Bool = false) throws -> ResultsStore? {
        FileManager.default.fileExists(atPath: db) ? try ResultsStore(path: db, readOnly: readOnly) : nil
    }

    /// The store of a command that needs finished runs (report, export): a missing database is an error,
    /// never an empty result.
    func requiredStore(readOnly: Bool) throws -> ResultsStore {
        guard let store = try existingStore(readOnly: readOnly) else {
            throw HarnessError.input("no results database at \(db) (`mile run` creates it); nothing written")
        }
        return store
    }

    /// Current dataset hashes of --slake (or SLAKE_DIR) when it points at data, so runs on other or changed
    /// data show as stale.
    func currentVersions() throws -> CurrentVersions {
        let environment = ProcessInfo.processInfo.environment
        guard let dir = slake ?? environment["SLAKE_DIR"], FileManager.default.fileExists(atPath: dir) else {
            return CurrentVersions()
        }
        let radDir = environment["RAD_DIR"].flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
        return CurrentVersions(datasetHashes: try ProvenanceCollector.datasetHashes(files: ProvenanceCollector.datasetFiles(slakeDir: dir, radDir: radDir)))
    }
}

/// Runs a command body, printing harness errors as `file:line:column: error: ...` and exiting with 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as HarnessError {
        FileHandle.standardError.write(Data((error.description + "\n").utf8))
        throw ExitCode(1)
    } catch let error as CocoaError {
        FileHandle.standardError.write(Data(("error: " + fileErrorText(error) + "\n").utf8))
        throw ExitCode(1)
    }
}

/// A Foundation file error in plain words with the path it concerns (`--out` naming a file, an
/// unwritable `--cache`), instead of the raw `NSCocoaErrorDomain` dump.
func fileErrorText(_ error: CocoaError) -> String {
    let path = error.filePath ?? error.url?.path ?? "a file"
    let underlying = (error.userInfo[NSUnderlyingErrorKey] as? NSError).map { String(cString: strerror(Int32($0.code))) }
    if let file = fileInTheWay(of: path) { return "\(file) exists and is not a folder: pass a folder path" }
    switch error.code {
    case .fileWriteFileExists: return "\(path) exists and is not a folder: pass a folder path"
    case .fileWriteNoPermission, .fileReadNoPermission: return "\(path): permission denied"
    case .fileNoSuchFile, .fileReadNoSuchFile: return "\(path): no such file or folder"
    default: return "\(path): " + (underlying ?? error.localizedDescription)
    }
}

/// The nearest existing ancestor of `path` (or the path itself) when it is a file, not a folder: why a folder
/// could not be made there.
func fileInTheWay(of path: String) -> String? {
    var candidate = path
    while !candidate.isEmpty && candidate != "/" && candidate != "." {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: candidate, isDirectory: &isFolder) { return isFolder.boolValue ? nil : candidate }
        candidate = (candidate as NSString).deletingLastPathComponent
    }
    return nil
}

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Expand experiment files into cells and show each cell's id, row and status.",
        discussion: "Statuses come from the results database: done, pending, running, failed, interrupted, or stale (with the config key, code or data version that changed).")

    @OptionGroup var experiments: ExperimentOptions

    func validate() throws { try experiments.requireFiles() }

    @Flag(name: .long, help: "Print JSON (cells with resolved configs and stage keys).")
    var json = false

    func run() throws {
        try reportingErrors {
            let plans = try experiments.select(TablePlan.make(files: experiments.files, overrides: experiments.parsedOverrides(),
                                                              store: experiments.existingStore(readOnly: true),
                                                              versions: experiments.currentVersions()))
            if json {
                let database: ConfigValue = FileManager.default.fileExists(atPath: experiments.db) ? .string(experiments.db) : .string("")
                print(ConfigValue.map(["database": database, "tables": .list(plans.map(\.json))]).prettyJSON())
            } else {
                print(plans.map(\.text).joined(separator: "\n\n"))
            }
        }
    }
}
