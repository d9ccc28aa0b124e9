import Foundation
import XCTest
@testable import MileData

/// Temporary folders and a shared synthetic dataset for the tests.
enum Fixtures {
    /// Every folder handed out, removed when the test process exits.
    nonisolated(unsafe) private static var created: [String] = []
    private static let lock = NSLock()
    private static let registerCleanup: Void = {
        atexit {
            for path in Fixtures.created { try? FileManager.default.removeItem(atPath: path) }
        }
    }()

    static func temporaryDirectory(_ name: String = #function) -> String {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("miledata-\(safe)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        lock.lock()
        _ = registerCleanup
        created.append(path)
        lock.unlock()
        return path
    }

    static func write(_ bytes: [UInt8], _ path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func write(_ text: String, _ path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// A gradient with some structure so that compression and resizing are exercised.
    static func grayPattern(width: Int, height: Int) -> [UInt8] {
        (0..<(width * height)).map { i in
            let x = i % width, y = i / width
            return UInt8((x * 255 / max(1, width - 1) + (y % 7) * 3) % 256)
        }
    }

    static func rgbPattern(width: Int, height: Int) -> [UInt8] {
        (0..<(width * height)).flatMap { i -> [UInt8] in
            let x = i % width, y = i / width
            return [UInt8(x * 255 / max(1, width - 1)), UInt8(y * 255 / max(1, height - 1)), UInt8((x + y) % 64 * 4)]
        }
    }

    /// One synthetic dataset per test run (generation takes well under a second).
    static let synthetic: (root: String, summary: SyntheticDataset.Summary) = {
        let root = temporaryDirectory("synthetic")
        let summary = try! SyntheticDataset.generate(out: root, seed: 7, images: 60)
        return (root, summary)
    }()
}
