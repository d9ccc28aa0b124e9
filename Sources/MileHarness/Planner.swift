import MileData
import MileModel
import Foundation
import Yams

/// A command-line override `key.path=value` (the value is YAML: `recipe.seeds=[1,2]`, `model.scale=smoke`).
public struct ConfigOverride: Sendable, Equatable {
    public let path: [String]
    public let value: ConfigValue
    public let text: String
    /// A sweep (`--sweep key.path=v1,v2`): every row once per value, the value in the row's `set`.
    public private(set) var sweepValues: [ConfigValue]? = nil

    /// Parses and validates an override against the experiment schema.
    public init(_ text: String) throws {
        let origin = "--set \(text)"
        guard let equals = text.firstIndex(of: "=") else {
            throw HarnessError.invalid(SourcePosition(file: origin, line: 1, column: 1), "expected key.path=value")
        }
        let keyText = String(text[..<equals])
        let valueText = String(text[text.index(after: equals)...])
        let path = keyText.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        var schema = ExperimentSchema.config
        var column = 1
        for (index, part) in path.enumerated() {
            guard let child = schema.field(part) else {
                let allowed: String
                if case let .map(fields) = schema { allowed = fields.map(\.0).joined(separator: ", ") } else { allowed = "no further keys" }
                let prefix = path[..<index].joined(separator: ".")
                throw HarnessError.invalid(SourcePosition(file: origin, line: 1, column: column),
                                           "unknown key '\(part)'\(prefix.isEmpty ? "" : " in '\(prefix)'") (expected \(allowed))")
            }
            schema = child
            column += part.count + 1
        }
        let valueColumn = keyText.count + 2
        let node: Node
        do {
            guard let parsed = try Yams.compose(yaml: valueText) else {
                throw HarnessError.invalid(SourcePosition(file: origin, line: 1, column: valueColumn), "missing value (expected \(schema.expectation))")
            }
            node = parsed
        } catch let error as YamlError {
            throw HarnessError.invalid(SourcePosition(file: origin, line: 1, column: valueColumn), "cannot parse value: \(error)")
        }
        do {
            self.value = try NodeReader(file: origin).value(node, schema: schema, path: keyText, partial: false)
        } catch let HarnessError.invalid(position, message) {
            // Shift the value's own column to the column within the whole `key=value` text.
            throw HarnessError.invalid(SourcePosition(file: origin, line: 1, column: position.column + valueColumn - 1), message)
        }
        self.path = path
        self.text = text
    }
}

extension ConfigOverride {
    /// `key.path=v1,v2,...`: each value validated as `--set key.path=v` would be (commas inside brackets
    /// belong to the value: `data.prompts=[mile],[mile, plain]`).
    public static func sweep(_ text: String) throws -> ConfigOverride {
        guard let equals = text.firstIndex(of: "=") else {
            throw HarnessError.invalid(SourcePosition(file: "--sweep \(text)", line: 1, column: 1), "expected key.path=value1,value2")
        }
        let key = String(text[..<equals])
        let pieces = topLevelPieces(String(text[text.index(after: equals)...]))
        guard pieces.count >= 2, !pieces.contains(where: \.isEmpty) else {
            throw HarnessError.invalid(SourcePosition(file: "--sweep \(text)", line: 1, column: key.count + 2),
                                       "expected two or more comma-separated values (one value: use --set)")
        }
        let valuesText = String(text[text.index(after: equals)...])
        let values = try pieces.map { piece in
            do { return try ConfigOverride(key + "=" + piece) } catch let HarnessError.invalid(position, message) {
                // Name the sweep and the column of this value within it, not the `--set` it was checked as.
                let offset = valuesText.range(of: piece).map { valuesText.distance(from: valuesText.startIndex, to: $0.lowerBound) } ?? 0
                let column = position.column <= key.count + 1 ? position.column : position.column + offset
                throw HarnessError.invalid(SourcePosition(file: "--sweep \(text)", line: 1, column: column), message)
            }
        }
        var sweep = values[0]
        sweep.sweepValues = values.map(\.value)
        return sweep
    }

    /// Splits on the commas outside brackets and braces.
    static func topLevelPieces(_ text: String) -> [String] {
        var pieces: [String] = [], current = "", depth = 0
        for character in text {
            switch character {
            case "[", "{": depth += 1
            case "]", "}": depth -= 1
            case "," where depth == 0:
                pieces.append(current.trimmingCharacters(in: .whitespaces)); current = ""; continue
            default: break
            }
            current.append(character)
        }
        return pieces + [current.trimmingCharacters(in: .whitespaces)]
    }
}

/// The stages of a cell: data preparation -> pretrained base (shared) -> fine-tune -> evaluate.
public struct Stage: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case data, base, finetune, evaluate }
    public let kind: Kind
    /// Content key: SHA-256 of the config subset the stage depends on.
    public let key: String
    public let dependsOn: Kind?
}

/// One cell of a table: one row, one rank, one seed, with its fully resolved config.
public struct PlannedCell: Sendable {
    public let table: String
    public let file: String
    public let row: ExperimentRow
    public let assignment: ModuleAssignment
    public let seed: Int
    public let config: ConfigValue
    public let canonicalJSON: String
    /// SHA-256 of `canonicalJSON`: the cell id.
    public let id: String
    public let published: PublishedNumbers?
    public let stages: [Stage]
    /// The `baselines:` settings the cell was planned with (shuffle seed, bootstrap); not in its id.
    public var baselines = BaselineSettings()

    public var shortID: String { String(id.prefix(12)) }
    /// The row identity (`ExperimentRow.label(rank:)`): what reports group by and `--row` selects.
    /// The row's label; a limited cell (`--limit N`) is another cell of the row and says so, so the report,
    /// the selection and the stale check never mix it with the full one.
    public var label: String {
        let limit = config["data.limit"]?.intValue ?? 0
        return row.label(rank: assignment.rank) + (limit > 0 ? " [data.limit=\(limit)]" : "")
    }
    public func stage(_ kind: Stage.Kind) -> Stage { stages.first { $0.kind == kind }! }
}

/// Expands table files into cells and resolves their configs and stage keys.
public enum Planner {
    /// Expands one table: rows x ranks x seeds, in file order.
    public static func expand(_ table: ExperimentTable, overrides all: [ConfigOverride] = []) throws -> [PlannedCell] {
        var cells: [PlannedCell] = []
        let sweeps = all.filter { $0.sweepValues != nil }, overrides = all.filter { $0.sweepValues == nil }
        if let clash = sweeps.first(where: { sweep in overrides.contains { $0.path == sweep.path } }) {
            throw HarnessError.input("--set and --sweep both give \(clash.path.joined(separator: ".")); give it once")
        }
        for row in table.rows.flatMap({ $0.variants(sweeps) }) {
            var config = table.config
            if let rowSet = row.overrides { config = config.merged(with: rowSet) }
            for override in overrides { config = config.setting(override.path, to: override.value) }
            let seeds = try seedList(config, row: row)
            for rank in row.ranks {
                for seed in seeds {
                    cells.append(makeCell(table: table, row: row, rank: rank, seed: seed, shared: config))
                }
            }
        }
        try checkUnique(cells)
        try cells.forEach(checkRunnable)
        return cells
    }

    static func seedList(_ config: ConfigValue, row: ExperimentRow) throws -> [Int] {
        let seeds = config["recipe.seeds"]?.listValue?.compactMap(\.intValue) ?? []
        guard !seeds.isEmpty else { throw HarnessError.invalid(row.position, "recipe.seeds is empty for this row; give at least one seed") }
        guard Set(seeds).count == seeds.count else { throw HarnessError.invalid(row.position, "recipe.seeds lists a seed twice") }
        guard seeds.count <= Limits.seeds else {
            throw HarnessError.invalid(row.position, "recipe.seeds lists \(seeds.count) seeds; at most \(Limits.seeds) (each seed is a full fine-tuning run)")
        }
        return seeds
    }

    /// Two rows resolving to the same config would silently share one result; refuse that.
    static func checkUnique(_ cells: [PlannedCell]) throws {
        var seen: [String: PlannedCell] = [:]
        for cell in cells {
            if let other = seen[cell.id] {
                throw HarnessError.invalid(cell.row.position, "row '\(cell.label)' resolves to the same config as the row at line \(other.row.position.line) (cell \(cell.shortID))")
            }
            seen[cell.id] = cell
        }
    }

    static func makeCell(table: ExperimentTable, row: ExperimentRow, rank: Int?, seed: Int, shared: ConfigValue) -> PlannedCell {
        let assignment = row.assignment(rank: rank)
        let config = resolvedConfig(shared, assignment: assignment, seed: seed)
        let canonical = config.canonicalJSON
        return PlannedCell(table: table.name, file: table.file, row: row, assignment: assignment, seed: seed,
                           config: config, canonicalJSON: canonical, id: SHA256.hex(canonical),
                           published: row.published[rank], stages: stages(config, cellID: SHA256.hex(canonical)),
                           baselines: BaselineSettings(shared))
    }

    /// The config a cell runs with: one seed instead of the list, only the PEFT sections its modules use,
    /// and the module assignment itself. Table names, published numbers and the `baselines` section
    /// (reference rows, shuffle seed: they do not change the trained model) are not part of it, so the
    /// same experiment in two files is the same cell.
    public static func resolvedConfig(_ shared: ConfigValue, assignment: ModuleAssignment, seed: Int) -> ConfigValue {
        var config = shared.removing(["recipe", "seeds"]).removing(["baselines"]).setting(["recipe", "seed"], to: .int(seed))
        let used = Set(assignment.modes.filter(\.isMethod).map(\.rawValue))
        for method in ModuleMode.allCases where method.isMethod && !used.contains(method.rawValue) {
            config = config.removing(["peft", method.rawValue])
        }
        if used.isEmpty { config = config.removing(["peft"]) }
        for (path, neutral) in laterKeys where config[path.joined(separator: ".")]?.sameValue(as: neutral) == true {
            config = config.removing(path)
        }
        return config.setting(["cell"], to: assignment.configValue)
    }

    /// Keys added after results existed, with their neutral values: at those they stay out of the id, so the
    /// earlier cells stay done.
    static let laterKeys: [([String], ConfigValue)] = [
        (["decoding", "candidates"], .string("none")), (["model", "image_size"], .int(0)), (["data", "limit"], .int(0)),
        (["pretraining", "vision_lr_scale"], .double(1)), (["recipe", "vision_lr_scale"], .double(1)),
    ]

    /// Stage keys: data <- base <- finetune <- evaluate. The base key covers only what pretraining depends on,
    /// so every cell of a scale shares one base; the fine-tune key leaves out decoding, so a decoding change
    /// re-evaluates without retraining.
    /// `data.prompts` is left out of the data key: it changes only the fine-tuning prompts (the vocabulary
    /// and the base never see it), so cells with other prompt formats share one base.
    public static func stages(_ config: ConfigValue, cellID: String) -> [Stage] {
        let data = (config["data"] ?? .map([:])).removing(["prompts"])
        let dataKey = SHA256.hex(ConfigValue.map(["data": data]).canonicalJSON)
        let baseSubset = ConfigValue.map([
            "model": config["model"] ?? .map([:]),
            "pretraining": config["pretraining"] ?? .map([:]),
            "data_key": .string(dataKey),
        ])
        let baseKey = SHA256.hex(baseSubset.canonicalJSON)
        let finetuneKey = SHA256.hex(config.removing(["decoding"]).canonicalJSON)
        return [
            Stage(kind: .data, key: dataKey, dependsOn: nil),
            Stage(kind: .base, key: baseKey, dependsOn: .data),
            Stage(kind: .finetune, key: finetuneKey, dependsOn: .base),
            Stage(kind: .evaluate, key: cellID, dependsOn: .finetune),
        ]
    }
}

extension Planner {
    /// Cells selected by id prefix (at least 4 hex digits) or exact row label (`F LoRA LoRA r4`), for
    /// `mile run --cell` / `--row`. An unknown or ambiguous selector is an error naming the candidates.
    public static func select(_ cells: [PlannedCell], cell selector: String) throws -> [PlannedCell] {
        // Labels match ignoring case; a limited cell answers to its row's label too (`--row 'F T LoRA r4' --limit 20`).
        let wanted = selector.lowercased()
        let byLabel = cells.filter { $0.label.lowercased() == wanted || $0.row.label(rank: $0.assignment.rank).lowercased() == wanted }
        if !byLabel.isEmpty { return byLabel }
        let prefix = wanted
        guard prefix.count >= 4, prefix.allSatisfy(\.isHexDigit) else {
            let labels = Set(cells.map(\.label)).sorted()
            throw HarnessError.input("'\(selector)' is neither a row label nor a cell id prefix (4+ hex digits)\(Suggestion.phrase(for: selector, among: labels)); rows: \(labels.joined(separator: ", "))")
        }
        let matches = cells.filter { $0.id.hasPrefix(prefix) }
        guard !matches.isEmpty else { throw HarnessError.input("no cell id starts with \(prefix)") }
        guard Set(matches.map(\.id)).count == 1 else {
            throw HarnessError.input("cell id prefix \(prefix) is ambiguous: " + matches.map { "\($0.shortID) (\($0.label))" }.joined(separator: ", "))
        }
        return matches
    }
}
