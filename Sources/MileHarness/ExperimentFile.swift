import Foundation
import MileData
import MileModel
import Yams

/// The F/T/PEFT assignment of one cell: a mode per module slot of the model family (plus the LoRA rank
/// when a module uses LoRA).
public struct ModuleAssignment: Equatable, Sendable {
    public let slots: [ModuleSlot]
    public let modes: [ModuleMode]
    public let rank: Int?

    public init(slots: [ModuleSlot], modes: [ModuleMode], rank: Int?) {
        self.slots = slots
        self.modes = modes
        self.rank = rank
    }

    public var usesLoRA: Bool { modes.contains(.lora) }

    /// The row label of the tables, e.g. `F LoRA LoRA r4`.
    public var label: String {
        let base = modes.map(\.display).joined(separator: " ")
        return rank.map { base + " r\($0)" } ?? base
    }

    var configValue: ConfigValue {
        var fields = Dictionary(uniqueKeysWithValues: zip(slots.map(\.key), modes.map { ConfigValue.string($0.rawValue) }))
        if let rank { fields["rank"] = .int(rank) }
        return .map(fields)
    }
}

/// The paper's numbers for one cell, copied into the experiment file so comparisons need no other source.
public struct PublishedNumbers: Equatable, Sendable, Codable {
    /// #Params, in percent.
    public var params: Double?
    /// Memory in GB.
    public var memoryGB: Double?
    public var opened: Double?
    public var closed: Double?
    public var global: Double?
    /// Where the paper's own numbers are inconsistent.
    public var note: String?

    public init(params: Double? = nil, memoryGB: Double? = nil, opened: Double? = nil, closed: Double? = nil,
                global: Double? = nil, note: String? = nil) {
        self.params = params
        self.memoryGB = memoryGB
        self.opened = opened
        self.closed = closed
        self.global = global
        self.note = note
    }
}

/// One explicit row of a table file; `ranks` is the small product inside the row (`rank: [4, 8]`).
public struct ExperimentRow: Sendable {
    public let position: SourcePosition
    public let slots: [ModuleSlot]
    /// One mode per slot.
    public let modes: [ModuleMode]
    /// `[nil]` when no module uses LoRA.
    public let ranks: [Int?]
    /// Partial config applied to this row only.
    public let overrides: ConfigValue?
    /// Published numbers by rank (key nil when the row has no rank).
    public let published: [Int?: PublishedNumbers]
    public let note: String?
    /// The row's own name (`name:`), which replaces the derived label.
    public let name: String?

    public func assignment(rank: Int?) -> ModuleAssignment {
        ModuleAssignment(slots: slots, modes: modes, rank: rank)
    }

    /// The row's identity in tables, selection and the store: its `name` (plus the rank when the row lists
    /// several), otherwise the assignment label with the row's `set` values, so two rows that differ only
    /// by `set` never share a label: `F T LoRA r4 [recipe.lr=0.0001]`.
    public func label(rank: Int?) -> String {
        if let name { return ranks.count > 1 ? "\(name) r\(rank ?? 0)" : name }
        let base = assignment(rank: rank).label
        guard let settings = overrides?.leafSettings(), !settings.isEmpty else { return base }
        return base + " [" + settings.joined(separator: ", ") + "]"
    }

    /// Every label of the row, one per rank.
    public var labels: [String] { ranks.map { label(rank: $0) } }

    /// The row once per combination of the sweeps' values, each value in the row's `set` (a named row's
    /// name gains `[key=value, ...]`), so every variant has its own label and config.
    func variants(_ sweeps: [ConfigOverride]) -> [ExperimentRow] {
        guard !sweeps.isEmpty else { return [self] }
        let combinations = sweeps.reduce([[(path: [String], value: ConfigValue)]]([[]])) { combinations, sweep in
            combinations.flatMap { combination in (sweep.sweepValues ?? []).map { combination + [(sweep.path, $0)] } }
        }
        return combinations.map { combination in
            let settings = combination.map { "\($0.path.joined(separator: "."))=\($0.value.display)" }
            let set = combination.reduce(overrides ?? .map([:])) { $0.setting($1.path, to: $1.value) }
            return ExperimentRow(position: position, slots: slots, modes: modes, ranks: ranks, overrides: set, published: published,
                                 note: note, name: name.map { "\($0) [\(settings.joined(separator: ", "))]" })
        }
    }
}

/// A parsed table file with its defaults already merged in.
public struct ExperimentTable: Sendable {
    public let file: String
    public let name: String
    public let title: String
    public let notes: [String]
    public let defaultsFile: String
    /// Defaults merged with the table's own `set:` (rows and the command line apply on top).
    public let config: ConfigValue
    public let rows: [ExperimentRow]
    /// The paper's claims about this table (`findings:`), judged by the report.
    public var findings: [Finding] = []
    /// How the report splits Opened and Closed (`split:`; the yes/no split of MILE's ACC.py by default).
    public var split: ScoreSplit = .yesNo
}

/// The configuration keys every experiment resolves, with their types and allowed values.
public enum ExperimentSchema {
    public static let config: Schema = .map([
        ("model", .map([
            ("family", .string(allowed: ModelFamilies.names)),
            ("scale", .string(allowed: ModelFamilies.scales)),
            ("image_size", .int(min: 0)),
        ])),
        ("pretraining", .map([
            ("source", .string(allowed: ["own", "checkpoint"])),
            ("checkpoint", .string(allowed: nil)),
            ("corpus", .list(.string(allowed: PretrainCorpus.Part.allCases.map(\.configName)))),
            ("epochs", .bounded(0...Limits.epochs, reason: Limits.epochsReason)),
            ("lr", .double(min: 0)),
            ("batch", .bounded(1...Limits.batch, reason: Limits.batchReason)),
            ("seed", .int(min: 0)),
            ("objectives", .list(.string(allowed: PretrainObjective.allCases.map(\.rawValue)))),
            ("augment", .bool),
            ("vision_lr_scale", .double(min: 0)),
        ])),
        ("data", .map([
            ("instruction_sources", .list(.string(allowed: RunSettings.knownSources))),
            ("prompts", .list(.string(allowed: RunSettings.knownPrompts))),
            ("test", .string(allowed: ["slake-en-test"])),
            ("question_max_tokens", .int(min: 2)),
            ("double_divide_255", .bool),
            ("limit", .int(min: 0)),
        ])),
        ("peft", .map([
            ("lora", .map([("alpha", .double(min: 0)), ("dropout", .double(min: 0))])),
            ("ia3", .map([("vit_targets", .string(allowed: ViTIA3Target.allCases.map(\.rawValue)))])),
            ("prefix", .map([("virtual_tokens", .bounded(1...Limits.virtualTokens, reason: Limits.virtualTokensReason))])),
            ("ptv2", .map([("virtual_tokens", .bounded(1...Limits.virtualTokens, reason: Limits.virtualTokensReason))])),
        ])),
        ("recipe", .map([
            ("epochs", .bounded(1...Limits.epochs, reason: Limits.epochsReason)),
            ("lr", .double(min: 0)),
            ("batch", .bounded(1...Limits.batch, reason: Limits.batchReason)),
            ("weight_decay", .double(min: 0)),
            ("schedule", .string(allowed: ["cosine"])),
            ("warmup_epochs", .int(min: 0)),
            ("label_smoothing", .double(min: 0)),
            ("vision_lr_scale", .double(min: 0)),
            ("seeds", .list(.int(min: 0))),
        ])),
        ("decoding", .map([
            ("beams", .bounded(1...Limits.beams, reason: Limits.beamsReason)),
            ("max_length", .bounded(2...Limits.answerLength, reason: Limits.answerLengthReason)),
            ("min_length", .bounded(1...Limits.answerLength, reason: Limits.answerLengthReason)),
            ("candidates", .string(allowed: RunSettings.knownCandidates)),
        ])),
        // Reference rows, image shuffle and bootstrap settings: not part of a cell id (Planner.resolvedConfig).
        ("baselines", .map([
            ("thumbnail", .int(min: 1)),
            ("shuffle_seed", .int(min: 0)),
            ("resamples", .int(min: 100)),
        ])),
    ])

    static let tableKeys = ["table", "title", "extends", "set", "notes", "rows", "findings", "split"]
    /// Row keys besides the family's module slots (`vit`, `jtm`, `dec` for MISS).
    static let rowKeys = ["name", "rank", "set", "published", "note"]
    static let publishedKeys = ["rank", "params", "memory_gb", "opened", "closed", "global", "note"]
}

/// Loads experiment files strictly: the first problem stops loading with file:line:column.
public enum ExperimentLoader {
    /// Loads a table file and the defaults file it extends.
    public static func load(path: String) throws -> ExperimentTable {
        let text = try readText(path)
        let reader = NodeReader(file: path)
        let root = try StrictYAML.compose(text, file: path)
        let pairs = try reader.mapping(root, context: "table file", allowed: ExperimentSchema.tableKeys)
        let field = { (name: String) in pairs.first { $0.key == name } }

        guard let tableNode = field("table")?.value else {
            throw reader.fail(root, "missing key 'table' (the table's name, e.g. table1)")
        }
        let name = try reader.string(tableNode, context: "'table'")
        guard name.range(of: "^[A-Za-z0-9_-]+$", options: .regularExpression) != nil else {
            throw reader.fail(tableNode, "'table': expected a name of letters, digits, '-' or '_' (it names results/<table>.md)")
        }
        let title = try field("title").map { try reader.string($0.value, context: "'title'") } ?? name
        let notes = try field("notes").map { pair in
            try reader.sequence(pair.value, context: "'notes'", expected: "strings").map { try reader.string($0, context: "'notes' item") }
        } ?? []

        guard let extendsPair = field("extends") else {
            throw reader.fail(root, "missing key 'extends' (the defaults file, e.g. defaults.yaml)")
        }
        let relative = try reader.string(extendsPair.value, context: "'extends'")
        let defaultsPath = resolve(relative, besides: path)
        guard FileManager.default.fileExists(atPath: defaultsPath) else {
            throw reader.fail(extendsPair.value, "'extends': no such file \(defaultsPath)")
        }
        if (defaultsPath as NSString).standardizingPath == (path as NSString).standardizingPath {
            throw reader.fail(extendsPair.value, "'extends': names this file itself; it must name a defaults file (e.g. defaults.yaml)")
        }
        if (try? readText(defaultsPath))?.range(of: "(?m)^table:", options: .regularExpression) != nil {
            throw reader.fail(extendsPair.value, "'extends': \(defaultsPath) is a table file; extends names a defaults file (model, pretraining, data, ... keys), and table files cannot be chained")
        }
        var config = try loadDefaults(path: defaultsPath)
        if let setPair = field("set") {
            config = config.merged(with: try reader.value(setPair.value, schema: ExperimentSchema.config, path: "", partial: true))
        }

        guard let rowsPair = field("rows") else { throw reader.fail(root, "missing key 'rows' (the list of table rows)") }
        let rowNodes = try reader.sequence(rowsPair.value, context: "'rows'", expected: "row mappings")
        guard !rowNodes.isEmpty else { throw reader.fail(rowsPair.value, "'rows': expected at least one row") }
        let family = try modelFamily(config, at: reader.position(root))
        let rows = try rowNodes.enumerated().map { try parseRow($1, index: $0 + 1, family: family, reader: reader) }
        try checkDistinctLabels(rows, reader: reader, nodes: rowNodes)
        let labels = rows.flatMap(\.labels)
        let findings = try field("findings").map { try FindingParser.parse($0.value, labels: labels, reader: reader) } ?? []
        var table = ExperimentTable(file: path, name: name, title: title, notes: notes, defaultsFile: defaultsPath,
                                    config: config, rows: rows, findings: findings)
        if let pair = field("split") { table.split = try parseSplit(pair.value, reader: reader) }
        return table
    }

    static func parseSplit(_ node: Node, reader: NodeReader) throws -> ScoreSplit {
        let text = try reader.string(node, context: "'split'")
        guard let split = ScoreSplit(rawValue: text) else {
            throw reader.fail(node, "'split': expected one of \(ScoreSplit.allCases.map(\.rawValue).joined(separator: ", ")), got '\(text)'")
        }
        return split
    }

    /// Loads a defaults file: the whole config, every key present.
    public static func loadDefaults(path: String) throws -> ConfigValue {
        let text = try readText(path)
        let root = try StrictYAML.compose(text, file: path)
        return try NodeReader(file: path).value(root, schema: ExperimentSchema.config, path: "", partial: false)
    }

    static func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw HarnessError.io("cannot read experiment file \(path): \(unreadableReason(path))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw HarnessError.invalid(SourcePosition(file: path, line: 1, column: 1), "the file is not UTF-8 text")
        }
        return text
    }

    static func resolve(_ relative: String, besides path: String) -> String {
        if relative.hasPrefix("/") { return relative }
        let directory = (path as NSString).deletingLastPathComponent
        return directory.isEmpty ? relative : (directory as NSString).appendingPathComponent(relative)
    }

    // MARK: rows

    static func modelFamily(_ config: ConfigValue, at position: SourcePosition) throws -> any ModelFamily {
        do {
            return try ModelFamilies.named(config["model.family"]?.stringValue ?? "")
        } catch let error as ConfigError {
            throw HarnessError.invalid(position, "model.family: \(error)")
        }
    }

    static func parseRow(_ node: Node, index: Int, family: any ModelFamily, reader: NodeReader) throws -> ExperimentRow {
        let context = "row \(index)"
        let slots = family.slots
        let pairs = try reader.mapping(node, context: context, allowed: slots.map(\.key) + ExperimentSchema.rowKeys)
        let field = { (name: String) in pairs.first { $0.key == name } }
        func mode(_ key: String) throws -> ModuleMode {
            guard let pair = field(key) else {
                throw reader.fail(node, "\(context): missing key '\(key)' (one of \(ModuleMode.spellings.joined(separator: ", ")))")
            }
            let text = try reader.string(pair.value, context: "\(context) '\(key)'", allowed: ModuleMode.spellings)
            return try ModuleMode(flag: text)
        }
        let modes = try slots.map { try mode($0.key) }
        if let (slot, problem) = assignmentProblem(slots: slots, modes: modes) {
            throw reader.fail(slot.map { field($0.key)!.value } ?? node, "\(context)\(slot.map { " '\($0.key)'" } ?? ""): \(problem)")
        }
        let usesLoRA = modes.contains(.lora)
        let ranks = try parseRanks(field("rank"), usesLoRA: usesLoRA, rowNode: node, context: context, reader: reader)
        let overrides = try field("set").map {
            try reader.value($0.value, schema: ExperimentSchema.config, path: "", partial: true)
        }
        let published = try field("published").map {
            try parsePublished($0.value, ranks: ranks, context: context, reader: reader)
        } ?? [:]
        let note = try field("note").map { try reader.string($0.value, context: "\(context) 'note'") }
        let name = try field("name").map { pair in
            let text = try reader.string(pair.value, context: "\(context) 'name'")
            guard !text.trimmingCharacters(in: .whitespaces).isEmpty else { throw reader.fail(pair.value, "\(context) 'name': expected a non-empty row name") }
            return text
        }
        return ExperimentRow(position: reader.position(node), slots: slots, modes: modes, ranks: ranks,
                             overrides: overrides, published: published, note: note, name: name)
    }

    /// Reports group and commands select by label: two rows with one label would merge as if they were seeds.
    static func checkDistinctLabels(_ rows: [ExperimentRow], reader: NodeReader, nodes: [Node]) throws {
        var seen: [String: ExperimentRow] = [:]
        for (index, row) in rows.enumerated() {
            for label in row.labels {
                guard let first = seen[label] else { seen[label] = row; continue }
                let line = first.position.line
                if row.name == nil && first.name == nil {
                    throw reader.fail(nodes[index], "row \(index + 1) ('\(label)') resolves to the same config as the row at line \(line)")
                }
                throw reader.fail(nodes[index], "row \(index + 1): label '\(label)' is already the label of the row at line \(line); reports would merge the two rows as seeds of one, so give each row its own 'name:'")
            }
        }
    }

    /// What makes an assignment no cell: a prompt method on a module that takes none (with that slot), or
    /// every module frozen. Rows and `mile params` check the same rules.
    public static func assignmentProblem(slots: [ModuleSlot], modes: [ModuleMode]) -> (slot: ModuleSlot?, problem: String)? {
        for (slot, mode) in zip(slots, modes) where mode.isPrompt && !slot.takesPrompts {
            let text = slots.filter(\.takesPrompts).map(\.header).joined(separator: ", ")
            return (slot, "\(mode.rawValue) is a prompt method for the \(text) modules; the \(slot.header) takes \(orList(ModuleMode.allCases.filter { !$0.isPrompt }.map(\.rawValue)))")
        }
        if modes.allSatisfy({ $0 == .frozen }) { return (nil, "every module is frozen, so nothing would be trained") }
        return nil
    }

    /// "a, b or c".
    static func orList(_ items: [String]) -> String {
        items.count < 2 ? items.joined() : items.dropLast().joined(separator: ", ") + " or " + items.last!
    }

    static func parseRanks(_ pair: (key: String, keyNode: Node, value: Node)?, usesLoRA: Bool, rowNode: Node,
                           context: String, reader: NodeReader) throws -> [Int?] {
        guard let pair else {
            if usesLoRA { throw reader.fail(rowNode, "\(context): missing key 'rank' (this row uses lora: give rank: N or rank: [N, M])") }
            return [nil]
        }
        guard usesLoRA else {
            throw reader.fail(pair.keyNode, "\(context): 'rank' applies only to lora, and no module of this row uses lora")
        }
        if case .sequence = pair.value {
            let nodes = try reader.sequence(pair.value, context: "\(context) 'rank'", expected: "integers >= 1")
            guard !nodes.isEmpty else { throw reader.fail(pair.value, "\(context) 'rank': expected at least one rank") }
            var ranks: [Int] = []
            for item in nodes {
                let rank = try reader.int(item, context: "\(context) 'rank'", range: 1...Limits.rank, reason: Limits.rankReason)
                if ranks.contains(rank) { throw reader.fail(item, "\(context) 'rank': \(rank) is listed twice") }
                ranks.append(rank)
            }
            return ranks
        }
        return [try reader.int(pair.value, context: "\(context) 'rank'", range: 1...Limits.rank, reason: Limits.rankReason)]
    }

    /// A single mapping for a one-cell row, or a list with one entry per rank (each naming its `rank`).
    static func parsePublished(_ node: Node, ranks: [Int?], context: String, reader: NodeReader) throws -> [Int?: PublishedNumbers] {
        let entries: [Node]
        if case .sequence = node {
            entries = try reader.sequence(node, context: "\(context) 'published'", expected: "mappings")
        } else {
            guard ranks.count == 1 else {
                throw reader.fail(node, "\(context) 'published': this row has \(ranks.count) ranks; expected a list with one entry per rank, each with 'rank'")
            }
            entries = [node]
        }
        var out: [Int?: PublishedNumbers] = [:]
        for entry in entries {
            let (rank, numbers) = try parsePublishedEntry(entry, ranks: ranks, context: context, reader: reader)
            if out[rank] != nil { throw reader.fail(entry, "\(context) 'published': rank \(rank.map(String.init) ?? "-") is given twice") }
            out[rank] = numbers
        }
        if let missing = ranks.first(where: { out[$0] == nil }) {
            throw reader.fail(node, "\(context) 'published': no entry for rank \(missing.map(String.init) ?? "-")")
        }
        return out
    }

    static func parsePublishedEntry(_ node: Node, ranks: [Int?], context: String, reader: NodeReader) throws -> (Int?, PublishedNumbers) {
        let where_ = "\(context) 'published'"
        let pairs = try reader.mapping(node, context: where_, allowed: ExperimentSchema.publishedKeys)
        var numbers = PublishedNumbers()
        var rank: Int?? = nil
        for pair in pairs {
            let key = "\(where_) '\(pair.key)'"
            switch pair.key {
            case "rank":
                let value = try reader.int(pair.value, context: key, min: 1)
                guard ranks.contains(value) else {
                    throw reader.fail(pair.value, "\(key): \(value) is not one of this row's ranks (\(ranks.compactMap { $0 }.map(String.init).joined(separator: ", ")))")
                }
                rank = .some(value)
            case "params": numbers.params = try reader.double(pair.value, context: key, min: 0)
            case "memory_gb": numbers.memoryGB = try reader.double(pair.value, context: key, min: 0)
            case "opened": numbers.opened = try reader.double(pair.value, context: key, min: 0)
            case "closed": numbers.closed = try reader.double(pair.value, context: key, min: 0)
            case "global": numbers.global = try reader.double(pair.value, context: key, min: 0)
            default: numbers.note = try reader.string(pair.value, context: key)
            }
        }
        if let rank { return (rank, numbers) }
        guard ranks.count == 1 else { throw reader.fail(node, "\(where_): missing key 'rank' (this row has several ranks)") }
        return (ranks[0], numbers)
    }
}
