import Foundation

/// A position in an experiment file (1-based line and column, as editors show them).
public struct SourcePosition: Equatable, Sendable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// `file:line:column`, or for a command-line override `--set key=value (column N)` (`--sweep` alike).
    public var description: String {
        file.hasPrefix("--set ") || file.hasPrefix("--sweep ") ? "\(file) (column \(column))" : "\(file):\(line):\(column)"
    }
}

/// Every error the harness reports. Messages name the file and position, or the cell, so a user can fix
/// the input without reading code.
public enum HarnessError: Error, Equatable, CustomStringConvertible {
    /// Invalid experiment file or override: where, and what was expected.
    case invalid(SourcePosition, String)
    /// Invalid input outside experiment files (scoring inputs, command-line values).
    case input(String)
    /// File-system or process problems.
    case io(String)
    /// Results-store misuse (completing a run that is not claimed, and the like).
    case store(String)

    public var description: String {
        switch self {
        case let .invalid(position, message): return "\(position): error: \(message)"
        case let .input(message): return "error: \(message)"
        case let .io(message): return "error: \(message)"
        case let .store(message): return "store error: \(message)"
        }
    }
}

extension HarnessError: LocalizedError {
    public var errorDescription: String? { description }
}

