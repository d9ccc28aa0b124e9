import Foundation
import XCTest
@testable import MileHarness

/// Paths and temporary files shared by the harness tests.
enum TestSupport {
    /// The package root (three levels above this file).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static func experiment(_ name: String) -> String { root + "/experiments/" + name }

    /// A fresh temporary directory, removed when the test ends.
    static func temporaryDirectory(_ test: XCTestCase) throws -> String {
        let path = NSTemporaryDirectory() + "mile-harness-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// Writes `text` to `dir/name` and returns the path.
    @discardableResult
    static func write(_ text: String, to dir: String, name: String) throws -> String {
        let path = dir + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The repository's defaults file copied into `dir` (so bad table files can extend it).
    static func copyDefaults(into dir: String) throws {
        let text = try String(contentsOfFile: experiment("defaults.yaml"), encoding: .utf8)
        try write(text, to: dir, name: "defaults.yaml")
    }
}
