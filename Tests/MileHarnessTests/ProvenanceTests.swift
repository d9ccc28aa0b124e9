import XCTest
@testable import MileHarness
import MileData

final class ProvenanceTests: XCTestCase {
    func testProcFileParsing() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let cpuinfo = try TestSupport.write("processor\t: 0\nvendor_id\t: X\nmodel name\t: Test CPU @ 2.0GHz\n", to: dir, name: "cpuinfo")
        XCTAssertEqual(ProvenanceCollector.cpuModel(cpuinfo: cpuinfo), "Test CPU @ 2.0GHz")
        let status = try TestSupport.write("Name:\tmile\nVmPeak:\t  9999 kB\nVmHWM:\t    2048 kB\n", to: dir, name: "status")
        XCTAssertEqual(ProvenanceCollector.peakRSSBytes(status: status), 2048 * 1024)
        XCTAssertNil(ProvenanceCollector.peakRSSBytes(status: dir + "/missing"))
        #if os(Linux)
        XCTAssertGreaterThan(ProvenanceCollector.peakRSSBytes() ?? 0, 1_000_000, "this process has a real peak RSS")
        #endif
    }

    func testGitStateOfAScratchRepository() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        guard ProvenanceCollector.run(["git", "-C", dir, "init", "-q"]) != nil else { throw XCTSkip("git unavailable") }
        try TestSupport.write("a", to: dir, name: "f")
        _ = ProvenanceCollector.run(["git", "-C", dir, "add", "f"])
        _ = ProvenanceCollector.run(["git", "-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"])
        let clean = try XCTUnwrap(ProvenanceCollector.gitState(repository: dir))
        XCTAssertEqual(clean.commit.count, 40)
        XCTAssertFalse(clean.dirty)
        try TestSupport.write("b", to: dir, name: "f")
        XCTAssertEqual(ProvenanceCollector.gitState(repository: dir)?.dirty, true)
        XCTAssertNil(ProvenanceCollector.gitState(repository: dir + "/missing"))
    }

    func testDatasetHashes() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        try TestSupport.write("[]", to: dir, name: "test.json")
        let hashes = try ProvenanceCollector.datasetHashes(files: ProvenanceCollector.slakeFiles(slakeDir: dir))
        XCTAssertEqual(hashes, ["test.json": SHA256.hex("[]")], "missing splits are skipped")
    }
}

extension ProvenanceTests {
    /// Issue 18 (4): only SLAKE was hashed, so a changed VQA-RAD marked nothing stale.
    func testVQARadIsHashedWhenGiven() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        for name in ["train.json", "validate.json", "test.json"] { try "[]".write(toFile: dir + "/" + name, atomically: true, encoding: .utf8) }
        try FileManager.default.createDirectory(atPath: dir + "/rad", withIntermediateDirectories: true)
        try "[1]".write(toFile: dir + "/rad/VQA_RAD Dataset Public.json", atomically: true, encoding: .utf8)
        XCTAssertEqual(try ProvenanceCollector.datasetHashes(files: ProvenanceCollector.datasetFiles(slakeDir: dir, radDir: nil)).count, 3)
        let hashes = try ProvenanceCollector.datasetHashes(files: ProvenanceCollector.datasetFiles(slakeDir: dir, radDir: dir + "/rad"))
        XCTAssertEqual(hashes.keys.sorted(), ["VQA_RAD Dataset Public.json", "test.json", "train.json", "validate.json"])
        try "[2]".write(toFile: dir + "/rad/VQA_RAD Dataset Public.json", atomically: true, encoding: .utf8)
        let changed = try ProvenanceCollector.datasetHashes(files: ProvenanceCollector.datasetFiles(slakeDir: dir, radDir: dir + "/rad"))
        XCTAssertNotEqual(changed["VQA_RAD Dataset Public.json"], hashes["VQA_RAD Dataset Public.json"])
    }
}
