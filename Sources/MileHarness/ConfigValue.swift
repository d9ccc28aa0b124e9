import MileData
import Foundation

/// A resolved configuration value. Maps are unordered; the canonical form sorts their keys, so the same
/// settings always serialise (and hash) the same way whatever order a file wrote them in.
public indirect enum ConfigValue: Equatable, Sendable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case list([ConfigValue])
    case map([String: ConfigValue])

    /// Canonical JSON: sorted keys, no whitespace, shortest round-trip doubles (always with a '.' or
    /// exponent, so 1.0 stays distinct from the integer 1 where the schema says double).
    public var canonicalJSON: String {
        switch self {
        case let .string(text): return jsonQuoted(text)
        case let .int(value): return String(value)
        case let .double(value): return ConfigValue.canonicalDouble(value)
        case let .bool(value): return value ? "true" : "false"
        case let .list(items): return "[" + items.map(\.canonicalJSON).joined(separator: ",") + "]"
        case let .map(fields):
            let body = fields.keys.sorted().map { jsonQuoted($0) + ":" + fields[$0]!.canonicalJSON }
            return "{" + body.joined(separator: ",") + "}"
        }
    }

    /// A short human form for plan output and stale reasons.
    public var display: String {
        switch self {
        case let .string(text): return text
        case let .double(value): return ConfigValue.canonicalDouble(value)
        case let .list(items): return "[" + items.map(\.display).joined(separator: ", ") + "]"
        default: return canonicalJSON
        }
    }

    static func canonicalDouble(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(format: "%.1f", value) }
        return "\(value)"
    }

    // MARK: access and editing by dotted key path

    public subscript(path: String) -> ConfigValue? {
        var current: ConfigValue? = self
        for part in path.split(separator: ".") {
            guard case let .map(fields)? = current else { return nil }
            current = fields[String(part)]
        }
        return current
    }

    public var stringValue: String? { if case let .string(v) = self { return v }; return nil }
    public var intValue: Int? { if case let .int(v) = self { return v }; return nil }
    public var doubleValue: Double? {
        switch self {
        case let .double(v): return v
        case let .int(v): return Double(v)
        default: return nil
        }
    }
    /// Equal, with an integer and a double of the same number the same (`1` and `1.0`).
    public func sameValue(as other: ConfigValue) -> Bool {
        if let a = doubleValue, let b = other.doubleValue { return a == b }
        return self == other
    }
    public var boolValue: Bool? { if case let .bool(v) = self { return v }; return nil }
    public var listValue: [ConfigValue]? { if case let .list(v) = self { return v }; return nil }
    public var mapValue: [String: ConfigValue]? { if case let .map(v) = self { return v }; return nil }

    /// Deep merge: maps merge key by key, anything else is replaced by `other`.
    public func merged(with other: ConfigValue) -> ConfigValue {
        guard case var .map(base) = self, case let .map(top) = other else { return other }
        for (key, value) in top {
            base[key] = base[key].map { $0.merged(with: value) } ?? value
        }
        return .map(base)
    }

    /// Sets `value` at a dotted path, creating intermediate maps.
    public func setting(_ path: [String], to value: ConfigValue) -> ConfigValue {
        guard let head = path.first else { return value }
        var fields = mapValue ?? [:]
        let child = fields[head] ?? .map([:])
        fields[head] = child.setting(Array(path.dropFirst()), to: value)
        return .map(fields)
    }

    /// Removes the value at a dotted path (no-op when absent).
    public func removing(_ path: [String]) -> ConfigValue {
        guard let head = path.first, case var .map(fields) = self else { return self }
        if path.count == 1 {
            fields[head] = nil
        } else if let child = fields[head] {
            fields[head] = child.removing(Array(path.dropFirst()))
        }
        return .map(fields)
    }

    /// The leaves of a (partial) config as "key.path=value", sorted by path: `recipe.lr=0.0001`.
    public func leafSettings(prefix: String = "") -> [String] {
        guard case let .map(fields) = self else { return ["\(prefix)=\(display)"] }
        return fields.keys.sorted().flatMap { key in
            fields[key]!.leafSettings(prefix: prefix.isEmpty ? key : prefix + "." + key)
        }
    }

    /// Leaf-level differences between two configs, as "key.path: old -> new" (sorted by path).
    public static func differences(from old: ConfigValue, to new: ConfigValue, prefix: String = "") -> [String] {
        if case let .map(a) = old, case let .map(b) = new {
            var out: [String] = []
            for key in Set(a.keys).union(b.keys).sorted() {
                let path = prefix.isEmpty ? key : prefix + "." + key
                switch (a[key], b[key]) {
                case let (x?, y?): out += differences(from: x, to: y, prefix: path)
                case let (x?, nil): out.append("\(path): \(x.display) -> (absent)")
                case let (nil, y?): out.append("\(path): (absent) -> \(y.display)")
                default: break
                }
            }
            return out
        }
        return old == new ? [] : ["\(prefix): \(old.display) -> \(new.display)"]
    }

    /// Parses JSON text (as stored in the results database) back into a config value. A small parser of our
    /// own keeps the int/double distinction of the canonical form ("0.0" stays a double), which Foundation's
    /// JSONSerialization loses.
    public static func fromJSON(_ text: String) throws -> ConfigValue {
        var parser = JSONTextParser(Array(text.utf8))
        let value = try parser.parseValue()
        parser.skipSpace()
        guard parser.atEnd else { throw parser.error("trailing characters") }
        return value
    }
}

/// Minimal JSON reader for stored configs (objects, arrays, strings, numbers, booleans).
struct JSONTextParser {
    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { index >= bytes.count }

    func error(_ message: String) -> HarnessError {
        HarnessError.input("stored config JSON: \(message) at byte \(index)")
    }

    mutating func skipSpace() {
        while index < bytes.count, [0x20, 0x0a, 0x0d, 0x09].contains(bytes[index]) { index += 1 }
    }

    mutating func parseValue() throws -> ConfigValue {
        skipSpace()
        guard index < bytes.count else { throw error("unexpected end") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        default: return try parseNumber()
        }
    }

    private mutating func expect(_ word: String) throws {
        let chars = Array(word.utf8)
        guard index + chars.count <= bytes.count, Array(bytes[index..<index + chars.count]) == chars else {
            throw error("expected \(word)")
        }
        index += chars.count
    }

    private mutating func parseObject() throws -> ConfigValue {
        index += 1
        var fields: [String: ConfigValue] = [:]
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .map(fields) }
        while true {
            skipSpace()
            let key = try parseString()
            skipSpace()
            try expect(":")
            fields[key] = try parseValue()
            skipSpace()
            guard index < bytes.count else { throw error("unterminated object") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            try expect("}")
            return .map(fields)
        }
    }

    private mutating func parseArray() throws -> ConfigValue {
        index += 1
        var items: [ConfigValue] = []
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .list(items) }
        while true {
            items.append(try parseValue())
            skipSpace()
            guard index < bytes.count else { throw error("unterminated array") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            try expect("]")
            return .list(items)
        }
    }

    private mutating func parseString() throws -> String {
        try expect("\"")
        var out: [UInt8] = []
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if byte == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
            guard byte == UInt8(ascii: "\\") else { out.append(byte); continue }
            guard index < bytes.count else { break }
            let escaped = bytes[index]
            index += 1
            switch escaped {
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                guard index + 4 <= bytes.count,
                      let code = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16),
                      let scalar = Unicode.Scalar(code) else { throw error("bad \\u escape") }
                index += 4
                out += Array(String(Character(scalar)).utf8)
            default: out.append(escaped)
            }
        }
        throw error("unterminated string")
    }

    private mutating func parseNumber() throws -> ConfigValue {
        let start = index
        while index < bytes.count, "+-0123456789.eE".utf8.contains(bytes[index]) { index += 1 }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if !text.contains(where: { ".eE".contains($0) }), let value = Int(text) { return .int(value) }
        guard let value = Double(text) else { throw error("bad number '\(text)'") }
        return .double(value)
    }
}

extension ConfigValue {
    /// Indented JSON with sorted keys (for `--json` outputs meant to be read).
    public func prettyJSON(indent: Int = 0) -> String {
        let pad = String(repeating: "  ", count: indent + 1)
        let closing = String(repeating: "  ", count: indent)
        switch self {
        case let .list(items) where !items.isEmpty:
            let body = items.map { pad + $0.prettyJSON(indent: indent + 1) }.joined(separator: ",\n")
            return "[\n" + body + "\n" + closing + "]"
        case let .map(fields) where !fields.isEmpty:
            let body = fields.keys.sorted().map { pad + jsonQuoted($0) + ": " + fields[$0]!.prettyJSON(indent: indent + 1) }
            return "{\n" + body.joined(separator: ",\n") + "\n" + closing + "}"
        default:
            return canonicalJSON
        }
    }
}
