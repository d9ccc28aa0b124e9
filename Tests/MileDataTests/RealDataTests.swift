import Foundation
import XCTest
@testable import MileData

/// Counts on the real datasets (spec §5-§6). They run when SLAKE_DIR / RAD_DIR are set (.ci/run and the
/// Makefile set them when ../shared/data exists) and are skipped otherwise.
final class RealDataTests: XCTestCase {
    private func env(_ name: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
            throw XCTSkip("\(name) is not set")
        }
        guard FileManager.default.fileExists(atPath: value) else { throw XCTSkip("\(name)=\(value) does not exist") }
        return value
    }

    func testSlakeEnglishCounts() throws {
        let root = try env("SLAKE_DIR")
        XCTAssertEqual(try Slake.load(root: root, split: .train).count, 4919)
        XCTAssertEqual(try Slake.load(root: root, split: .validate).count, 1053)
        let test = try Slake.load(root: root, split: .test)
        XCTAssertEqual(test.count, 1061)
        let counts = SplitCounts(test)
        XCTAssertEqual(counts.yesNo, 355)
        XCTAssertEqual([counts.yes, counts.no], [175, 180])
        XCTAssertEqual(counts.open, 645)
        XCTAssertTrue(test.allSatisfy { FileManager.default.fileExists(atPath: $0.imagePath) })
    }

    func testVQARadOfficialTestSplit() throws {
        let root = try env("RAD_DIR")
        XCTAssertEqual(try VQARad.load(root: root, split: .test).count, 451)
        XCTAssertEqual(try VQARad.load(root: root, split: .all).count, 2248)
        XCTAssertTrue(try VQARad.load(root: root, split: .all).allSatisfy { ["OPEN", "CLOSED"].contains($0.answerType) })
    }

    /// Upstream's RAD instruction file, found beside RAD_DIR in ../shared/reference (or at RAD_INSTRUCTIONS).
    func testUpstreamRADInstructionFileLoads() throws {
        let root = try env("RAD_DIR")
        let file = ProcessInfo.processInfo.environment["RAD_INSTRUCTIONS"]
            ?? ((root as NSString).appendingPathComponent("../../reference/Instruction_dataset/RAD_instruction_data.json") as NSString).standardizingPath
        guard FileManager.default.fileExists(atPath: file) else { throw XCTSkip("\(file) not found") }
        let dataset = try InstructionDataset.load(file: file)
        XCTAssertEqual(dataset.records.count, 2233)
        XCTAssertEqual(dataset.records.map(\.qid).min(), 5924)
        XCTAssertEqual(dataset.records.map(\.qid).max(), 8156)
        XCTAssertEqual(dataset.records.filter { $0.questionPool.count == 6 }.count, 1295)
        XCTAssertEqual(Set(dataset.records.map(\.imageName)).count, 314)
    }

    func testRealImagesDecode() throws {
        let root = try env("SLAKE_DIR")
        let loader = ImageLoader(size: 480)
        let test = try Slake.load(root: root, split: .test)
        for path in Set(test.map(\.imagePath)).sorted().prefix(5) {
            XCTAssertEqual(try loader.load(path).count, 3 * 480 * 480)
        }
    }
}
