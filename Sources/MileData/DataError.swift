import Foundation

/// Every failure in MileData is one of these, and each message names the file (and the record) involved.
public enum DataError: Error, CustomStringConvertible, Equatable {
    /// A file or folder that should exist does not.
    case missingFile(path: String, usedBy: String)
    /// A file exists but cannot be read.
    case unreadable(path: String, reason: String)
    /// An image could not be decoded (corrupt, truncated, or not JPEG/PNG).
    case badImage(path: String, reason: String)
    /// A JSON file is not valid JSON or has the wrong top-level shape.
    case badJSON(path: String, reason: String)
    /// A record lacks a field or has the wrong type. `record` names it (index and qid when known).
    case badRecord(path: String, record: String, reason: String)
    /// A vocabulary file is malformed.
    case badVocabulary(path: String, reason: String)
    /// Anything else that is wrong with the input (bad argument, failed write).
    case invalid(String)

    public var description: String {
        switch self {
        case .missingFile(let path, let usedBy):
            return usedBy.isEmpty ? "\(path): file not found" : "\(path): file not found (used by \(usedBy))"
        case .unreadable(let path, let reason): return "\(path): cannot read: \(reason)"
        case .badImage(let path, let reason): return "\(path): bad image: \(reason)"
        case .badJSON(let path, let reason): return "\(path): bad JSON: \(reason)"
        case .badRecord(let path, let record, let reason): return "\(path): \(record): \(reason)"
        case .badVocabulary(let path, let reason): return "\(path): bad vocabulary: \(reason)"
        case .invalid(let message): return message
        }
    }
}

/// Why a file cannot be read, in plain words: missing, a folder, or the system's reason (permissions).
public func unreadableReason(_ path: String) -> String {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { return "no such file" }
    if isFolder.boolValue { return "it is a folder, not a file" }
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return String(cString: strerror(errno)) }
    close(fd)
    return "it cannot be read"
}
