import Foundation
import Yams
import MileModel

/// The shape a YAML value must have. Used for the defaults file, for `set:` overrides and for `--set`.
public indirect enum Schema: Sendable {
    case string(allowed: [String]?)
    case int(min: Int)
    /// An integer within `range`; `reason` says why the bounds are there (shown in the error).
    case bounded(ClosedRange<Int>, reason: String)
    case double(min: Double)
    case bool
    case list(Schema)
    /// A mapping with a fixed, ordered set of keys.
    case map([(String, Schema)])

    var expectation: String {
        switch self {
        case let .string(allowed?): return "one of " + allowed.joined(separator: ", ")
        case .string: return "a string"
        case let .int(min): return "an integer >= \(min)"
        case let .bounded(range, _): return "an integer from \(range.lowerBound) to \(range.upperBound)"
        case let .double(min): return "a number >= \(ConfigValue.canonicalDouble(min))"
        case .bool: return "true or false"
        case let .list(item): return "a list of \(item.expectation)"
        case let .map(fields): return "a mapping with keys " + fields.map(\.0).joined(separator: ", ")
        }
    }

    func field(_ name: String) -> Schema? {
        guard case let .map(fields) = self else { return nil }
        return fields.first { $0.0 == name }?.1
    }
}

/// Reads Yams nodes strictly, turning every problem into a `HarnessError.invalid` with the node's position.
struct NodeReader {
    let file: String

    func position(_ node: Node?) -> SourcePosition {
        let mark = node?.mark
        return SourcePosition(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1)
    }

    func fail(_ node: Node?, _ message: String) -> HarnessError {
        HarnessError.invalid(position(node), message)
    }

    /// The pairs of a mapping node, checking every key against `allowed`.
    func mapping(_ node: Node, context: String, allowed: [String]) throws -> [(key: String, keyNode: Node, value: Node)] {
        guard case let .mapping(mapping) = node else {
            throw fail(node, "\(context): expected a mapping with keys \(allowed.joined(separator: ", ")), found \(kind(node))")
        }
        var pairs: [(key: String, keyNode: Node, value: Node)] = []
        for (keyNode, value) in mapping {
            guard case let .scalar(scalar) = keyNode else {
                throw fail(keyNode, "\(context): keys must be plain names")
            }
            guard allowed.contains(scalar.string) else {
                throw fail(keyNode, "\(context): unknown key '\(scalar.string)' (expected one of \(allowed.joined(separator: ", ")))")
            }
            pairs.append((scalar.string, keyNode, value))
        }
        return pairs
    }

    /// The resolved tag (plain scalars get int/float/bool/null/str from the YAML 1.1 resolver).
    func tagName(_ node: Node) -> Tag.Name { Tag.Name(rawValue: node.tag.rawValue) }

    func kind(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case let .scalar(scalar):
            switch tagName(node) {
            case .null: return "null"
            case .bool: return "a boolean (\(scalar.string))"
            case .int: return "an integer (\(scalar.string))"
            case .float: return "a number (\(scalar.string))"
            default: return "a string ('\(scalar.string)')"
            }
        }
    }

    func string(_ node: Node, context: String, allowed: [String]? = nil) throws -> String {
        guard case let .scalar(scalar) = node, tagName(node) == .str else {
            let expected = allowed.map { "one of " + $0.joined(separator: ", ") } ?? "a string"
            throw fail(node, "\(context): expected \(expected), found \(kind(node))")
        }
        if let allowed, !allowed.contains(scalar.string) {
            throw fail(node, "\(context): unknown value '\(scalar.string)'\(Suggestion.phrase(for: scalar.string, among: allowed)) (expected one of \(allowed.joined(separator: ", ")))")
        }
        return scalar.string
    }

    func int(_ node: Node, context: String, min: Int = Int.min) throws -> Int {
        let value = try anyInt(node, context: context)
        guard value >= min else { throw fail(node, "\(context): expected an integer >= \(min), found \(value)") }
        return value
    }

    /// An integer within `range`, the error saying why the bounds exist.
    func int(_ node: Node, context: String, range: ClosedRange<Int>, reason: String) throws -> Int {
        let value = try int(node, context: context, min: range.lowerBound)
        guard value <= range.upperBound else {
            throw fail(node, "\(context): \(value) is above the limit of \(range.upperBound) (\(reason))")
        }
        return value
    }

    private func anyInt(_ node: Node, context: String) throws -> Int {
        guard tagName(node) == .int else { throw fail(node, "\(context): expected an integer, found \(kind(node))") }
        guard let value = node.int else {
            throw fail(node, "\(context): the integer \(node.scalar?.string ?? "") is too large (at most \(Int.max))")
        }
        return value
    }

    /// Accepts integers too (0 for 0.0), but not strings or booleans.
    func double(_ node: Node, context: String, min: Double = -Double.infinity) throws -> Double {
        guard tagName(node) == .int || tagName(node) == .float, let value = node.float else {
            throw fail(node, "\(context): expected a number, found \(kind(node))")
        }
        guard value.isFinite else {
            throw fail(node, "\(context): expected a finite number, found \(node.scalar?.string ?? "\(value)")")
        }
        guard value >= min else {
            throw fail(node, "\(context): expected a number >= \(ConfigValue.canonicalDouble(min)), found \(value)")
        }
        return value
    }

    func bool(_ node: Node, context: String) throws -> Bool {
        guard tagName(node) == .bool, let value = node.bool else {
            throw fail(node, "\(context): expected true or false, found \(kind(node))")
        }
        return value
    }

    func sequence(_ node: Node, context: String, expected: String) throws -> [Node] {
        guard case let .sequence(sequence) = node else {
            throw fail(node, "\(context): expected a list of \(expected), found \(kind(node))")
        }
        return Array(sequence)
    }

    /// Converts a node into a config value of the given schema. With `partial`, mapping keys are optional
    /// (overrides); otherwise every key must be present (the defaults file defines the whole config).
    func value(_ node: Node, schema: Schema, path: String, partial: Bool) throws -> ConfigValue {
        let context = path.isEmpty ? "config" : "'\(path)'"
        switch schema {
        case let .string(allowed): return .string(try string(node, context: context, allowed: allowed))
        case let .int(min): return .int(try int(node, context: context, min: min))
        case let .bounded(range, reason): return .int(try int(node, context: context, range: range, reason: reason))
        case let .double(min): return .double(try double(node, context: context, min: min))
        case .bool: return .bool(try bool(node, context: context))
        case let .list(item):
            let items = try sequence(node, context: context, expected: item.expectation)
            return .list(try items.enumerated().map { try value($1, schema: item, path: "\(path)[\($0)]", partial: false) })
        case let .map(fields):
            let pairs = try mapping(node, context: context, allowed: fields.map(\.0))
            var out: [String: ConfigValue] = [:]
            for pair in pairs {
                let childPath = path.isEmpty ? pair.key : path + "." + pair.key
                out[pair.key] = try value(pair.value, schema: schema.field(pair.key)!, path: childPath, partial: partial)
            }
            if !partial, let missing = fields.map(\.0).first(where: { out[$0] == nil }) {
                throw fail(node, "\(context): missing key '\(missing)' (this file must give every setting)")
            }
            return .map(out)
        }
    }
}

/// Parses YAML text into a node, mapping Yams errors (syntax, duplicate keys) to positioned errors.
enum StrictYAML {
    static func compose(_ text: String, file: String) throws -> Node {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw HarnessError.invalid(SourcePosition(file: file, line: 1, column: 1), "the file is empty")
            }
            return node
        } catch let error as YamlError {
            throw convert(error, text: text, file: file)
        }
    }

    static func convert(_ error: YamlError, text: String, file: String) -> HarnessError {
        switch error {
        case let .duplicatedKeysInMapping(duplicates, context):
            let key = duplicates.first ?? "?"
            let first = context.mark
            let second = secondOccurrence(of: key, after: first, in: text)
            let position = SourcePosition(file: file, line: second?.line ?? first.line, column: second?.column ?? first.column)
            return .invalid(position, "duplicate key '\(key)' (first defined at line \(first.line), column \(first.column)); each key may appear once")
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            let at = SourcePosition(file: file, line: mark.line, column: mark.column)
            if character(at: mark, in: text) == "\t" { return .invalid(at, "YAML syntax: a tab character; YAML indents with spaces only") }
            guard let context, !context.text.contains("for the next token") else { return .invalid(at, "YAML syntax: \(problem)") }
            // An unfinished construct (an unclosed quote or bracket) is reported where libyaml gave up, often the
            // end of the file; the mistake is where it began, which libyaml gives as the context.
            let construct = context.text.replacingOccurrences(of: "while scanning ", with: "")
                .replacingOccurrences(of: "while parsing ", with: "")
            let begin = SourcePosition(file: file, line: context.mark.line, column: context.mark.column)
            if problem.contains("end of stream") {
                return .invalid(begin, "YAML syntax: \(construct) starts here and is never closed (libyaml: \(problem))")
            }
            return .invalid(at, "YAML syntax: \(problem) (in \(construct) that starts at line \(begin.line), column \(begin.column))")
        default:
            return .invalid(SourcePosition(file: file, line: 1, column: 1), "YAML: \(error)")
        }
    }

    /// The character at a 1-based line and column, if there is one.
    static func character(at mark: Mark, in text: String) -> Character? {
        let lines = text.components(separatedBy: "\n")
        guard mark.line >= 1, mark.line <= lines.count else { return nil }
        let line = Array(lines[mark.line - 1])
        return mark.column >= 1 && mark.column <= line.count ? line[mark.column - 1] : nil
    }

    /// Yams reports the first of two duplicate keys; the second one is where the mistake usually is. Look
    /// for the same key at the same column further down the same block, or later on the same line (flow style).
    static func secondOccurrence(of key: String, after mark: Mark, in text: String) -> (line: Int, column: Int)? {
        let lines = text.components(separatedBy: "\n")
        guard mark.line >= 1, mark.line <= lines.count else { return nil }
        let firstLine = Array(lines[mark.line - 1].unicodeScalars)
        let rest = firstLine.dropFirst(mark.column - 1 + key.unicodeScalars.count)
        if let range = String(String.UnicodeScalarView(rest)).range(of: key + ":") {
            let offset = String(String.UnicodeScalarView(rest))[..<range.lowerBound].unicodeScalars.count
            return (mark.line, mark.column + key.unicodeScalars.count + offset)
        }
        for index in mark.line..<lines.count {
            let scalars = Array(lines[index].unicodeScalars)
            let trimmed = lines[index].trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let indent = scalars.prefix { $0 == " " }.count
            if indent < mark.column - 1 { return nil }  // the mapping ended (dedent or next list item)
            let content = String(String.UnicodeScalarView(scalars.dropFirst(mark.column - 1)))
            if indent == mark.column - 1, content.hasPrefix(key + ":") || content.hasPrefix(key + " :") {
                return (index + 1, mark.column)
            }
        }
        return nil
    }
}

/// Upper bounds of the settings whose size drives allocations: an absurd value is refused when the file
/// is read, with the reason, instead of aborting a run after training (docs/HARNESS.md, "Limits").
public enum Limits {
    public static let rank = 768
    public static let rankReason = "a LoRA rank above the paper model's width of 768 adds no capacity; the paper uses 4 and 8"
    public static let epochs = 1000
    public static let epochsReason = "the paper fine-tunes for 130 epochs"
    public static let batch = 512
    public static let batchReason = "one step holds the activations of the whole batch; the paper uses 20"
    public static let virtualTokens = 128
    public static let virtualTokensReason = "every layer attends to each virtual token; the paper uses 10"
    public static let beams = 16
    public static let beamsReason = "beam search keeps beams x 100 hypotheses per batch; upstream uses 3"
    public static let answerLength = 64
    public static let answerLengthReason = "SLAKE answers are at most 10 tokens and the smoke model has 64 positions"
    public static let seeds = 100
    public static let jobs = 64
    public static let jobsReason = "each worker is a process with its own model and data; more workers than cores only slow each other"
}
