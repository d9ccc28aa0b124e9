import Foundation

/// Reading JSON records with errors that name the file and the record, and writing JSON with a fixed key
/// order (so generated files are byte-for-byte deterministic).
enum JSONFile {
    /// Parses a file whose top level must be a list of objects.
    static func readList(_ path: String) throws -> [[String: Any]] {
        let bytes = try ImageCodec.readBytes(path)
        let value: Any
        do {
            value = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            throw DataError.badJSON(path: path, reason: "not valid JSON (\(jsonErrorText(error, data: Data(bytes))))")
        }
        guard let list = value as? [Any] else {
            throw DataError.badJSON(path: path, reason: "the top level must be a list of records")
        }
        return try list.enumerated().map { index, item in
            guard let object = item as? [String: Any] else {
                throw DataError.badRecord(path: path, record: "record \(index)", reason: "not a JSON object")
            }
            return object
        }
    }

}

/// A JSON parse error in plain words, with the line and column where Foundation reports "character N".
public func jsonErrorText(_ error: Error, data: Data) -> String {
    let ns = error as NSError
    guard let detail = ns.userInfo["NSDebugDescription"] as? String else { return ns.localizedDescription }
    guard let range = detail.range(of: #"character \d+"#, options: .regularExpression),
          let offset = Int(detail[range].dropFirst("character ".count)) else { return detail }
    let prefix = data.prefix(offset)
    let line = prefix.filter { $0 == UInt8(ascii: "\n") }.count + 1
    let column = offset - (prefix.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0) + 1
    let what = detail.replacingOccurrences(of: " around " + detail[range], with: "").trimmingCharacters(in: CharacterSet(charactersIn: "."))
    return "\(what) at line \(line), column \(column)"
}

/// One JSON object being read: typed field access with errors naming file, record index and qid.
struct RecordReader {
    let path: String
    let index: Int
    let object: [String: Any]

    var label: String {
        if let qid = object["qid"] { return "record \(index) (qid \(qid))" }
        return "record \(index)"
    }

    func fail(_ reason: String) -> DataError {
        DataError.badRecord(path: path, record: label, reason: reason)
    }

    func raw(_ key: String) throws -> Any {
        guard let value = object[key], !(value is NSNull) else { throw fail("missing field \"\(key)\"") }
        return value
    }

    func string(_ key: String) throws -> String {
        guard let text = try raw(key) as? String else { throw fail("field \"\(key)\" must be a string") }
        return text
    }

    /// A string, or a number written as its decimal text (VQA-RAD and the instruction files hold a few
    /// integer answers; upstream uses `str(answer)`).
    func text(_ key: String) throws -> String {
        let value = try raw(key)
        if let text = value as? String { return text }
        if let number = value as? NSNumber, !isBool(number) {
            let double = number.doubleValue
            if double == double.rounded() && abs(double) < 1e15 { return String(Int64(double)) }
            return number.stringValue
        }
        throw fail("field \"\(key)\" must be a string or a number")
    }

    /// An integer, or a string holding one (VQA-RAD writes most qids as strings), checked by `JSONInteger`.
    func integer(_ key: String) throws -> Int {
        let value = try raw(key)
        do {
            return try JSONInteger.convert(value)
        } catch let problem as JSONInteger.Problem {
            throw fail("field \"\(key)\" must be an integer: \(problem)")
        }
    }

    func optionalString(_ key: String) throws -> String? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let text = value as? String else { throw fail("field \"\(key)\" must be a string") }
        return text
    }

    func stringList(_ key: String) throws -> [String] {
        guard let list = try raw(key) as? [Any] else { throw fail("field \"\(key)\" must be a list") }
        return try list.map { item in
            guard let text = item as? String else { throw fail("field \"\(key)\" must hold only strings") }
            return text
        }
    }

    private func isBool(_ number: NSNumber) -> Bool { JSONInteger.isBool(number) }
}

/// The one checked conversion of a JSON value to `Int`, for every integer field read from a data,
/// question or predictions file: a number without a fraction, or a string holding one. Numbers outside
/// Int's range, fractions, booleans and other strings are a `Problem` naming the value (callers add the
/// file, record and field), never a trap or a wrapped-around value.
public enum JSONInteger {
    public struct Problem: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    public static func convert(_ value: Any) throws -> Int {
        if let text = value as? String {
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if let parsed = Int(trimmed) { return parsed }
            let digits = trimmed.drop { $0 == "-" || $0 == "+" }
            if !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) {
                throw Problem(description: "\"\(text)\" is outside the integer range \(Int.min)...\(Int.max)")
            }
            throw Problem(description: "\"\(text)\" is not an integer")
        }
        guard let number = value as? NSNumber else {
            throw Problem(description: "found \(kind(value)), not a number")
        }
        if isBool(number) { throw Problem(description: "found the boolean \(number.boolValue), not a number") }
        let type = String(cString: number.objCType)
        if type == "Q" || type == "L" {                       // unsigned 64-bit
            guard number.uint64Value <= UInt64(Int.max) else { throw outOfRange(number) }
            return Int(number.uint64Value)
        }
        if ["c", "s", "i", "l", "q", "C", "S", "I"].contains(type) { return Int(number.int64Value) }
        let double = number.doubleValue                         // d, f, or a decimal number
        guard double.isFinite, double == double.rounded() else {
            throw Problem(description: "\(number.stringValue) is not a whole number")
        }
        guard let exact = Int(exactly: double) else { throw outOfRange(number) }
        return exact
    }

    static func outOfRange(_ number: NSNumber) -> Problem {
        Problem(description: "\(number.stringValue) is outside the integer range \(Int.min)...\(Int.max)")
    }

    public static func isBool(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c" && (number == NSNumber(value: true) || number == NSNumber(value: false))
    }

    static func kind(_ value: Any) -> String {
        switch value {
        case is [Any]: return "a list"
        case is [String: Any]: return "an object"
        case is NSNull: return "null"
        default: return "\(type(of: value))"
        }
    }
}

/// A JSON value with ordered object keys, written by hand so output is deterministic.
enum JSONValue {
    case string(String)
    case int(Int)
    case list([JSONValue])
    case object([(String, JSONValue)])

    /// One record per line inside a top-level list, which keeps large files readable and diffable.
    static func writeList(_ items: [JSONValue], to path: String) throws {
        var text = "[\n"
        for (index, item) in items.enumerated() {
            text += "  " + item.encoded() + (index + 1 < items.count ? ",\n" : "\n")
        }
        text += "]\n"
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw DataError.invalid("\(path): cannot write: \(error.localizedDescription)")
        }
    }

    func encoded() -> String {
        switch self {
        case .string(let text): return JSONValue.quote(text)
        case .int(let value): return String(value)
        case .list(let items): return "[" + items.map { $0.encoded() }.joined(separator: ", ") + "]"
        case .object(let pairs):
            return "{" + pairs.map { JSONValue.quote($0.0) + ": " + $0.1.encoded() }.joined(separator: ", ") + "}"
        }
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// A JSON string literal for `text` (quotes, backslashes and control characters escaped); shared with
/// the harness's canonical config serialisation so both layers escape the same way.
public func jsonQuoted(_ text: String) -> String { JSONValue.quote(text) }
