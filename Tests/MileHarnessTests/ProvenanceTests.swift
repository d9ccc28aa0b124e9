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

    /// A scratch repository with one commit; nil when git is unavailable.
    func scratchRepository() throws -> String? {
        let dir = try TestSupport.temporaryDirectory(self)
        guard ProvenanceCollector.run(["git", "-C", dir, "init", "-q"]) != nil else { return nil }
        try TestSupport.write("a", to: dir, name: "f")
        _ = ProvenanceCollector.run(["git", "-C", dir, "add", "f"])
        _ = ProvenanceCollector.run(["git", "-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"])
        return dir
    }

    /// tools/buildinfo.sh (run by the BuildInfo plugin before each build) writes the checkout's commit and
    /// whether the compiled source differs from it, and nil for both outside a checkout.
    func testBuildInfoScript() throws {
        guard let repo = try scratchRepository() else { throw XCTSkip("git unavailable") }
        let commit = try XCTUnwrap(ProvenanceCollector.run(["git", "-C", repo, "rev-parse", "HEAD"])).trimmingCharacters(in: .whitespacesAndNewlines)
        let out = try TestSupport.temporaryDirectory(self)
        func generated(_ checkout: String) throws -> String {
            XCTAssertNotNil(ProvenanceCollector.run(["sh", TestSupport.root + "/tools/buildinfo.sh", checkout, out]))
            return try String(contentsOfFile: out + "/BuildInfo.swift", encoding: .utf8)
        }
        let clean = try generated(repo)
        XCTAssertTrue(clean.contains("commit: String? = \"\(commit)\""), clean)
        XCTAssertTrue(clean.contains("dirty: Bool? = false"), clean)
        try TestSupport.write("b", to: repo, name: "f")
        XCTAssertTrue(try generated(repo).contains("dirty: Bool? = false"), "a file outside the compiled source")
        try FileManager.default.createDirectory(atPath: repo + "/Sources", withIntermediateDirectories: true)
        try TestSupport.write("let x = 1", to: repo + "/Sources", name: "a.swift")
        _ = ProvenanceCollector.run(["git", "-C", repo, "add", "Sources/a.swift"])
        _ = ProvenanceCollector.run(["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "y"])
        XCTAssertTrue(try generated(repo).contains("dirty: Bool? = false"))
        try TestSupport.write("let x = 2", to: repo + "/Sources", name: "a.swift")
        XCTAssertTrue(try generated(repo).contains("dirty: Bool? = true"), "the compiled source changed")
        let none = try generated(try TestSupport.temporaryDirectory(self))
        XCTAssertTrue(none.contains("commit: String? = nil") && none.contains("dirty: Bool? = nil"), none)
    }

    /// The recorded commit is the build's, not the one of the repository the binary runs in.
    func testProvenanceIsTheBuildsNotTheWorkingDirectorys() throws {
        guard let repo = try scratchRepository() else { throw XCTSkip("git unavailable") }
        let scratchCommit = ProvenanceCollector.run(["git", "-C", repo, "rev-parse", "HEAD"])?.trimmingCharacters(in: .whitespacesAndNewlines)
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(repo))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        let provenance = ProvenanceCollector.collect(blasLibrary: nil, blasThreads: nil, datasetHashes: [:])
        XCTAssertEqual(provenance.gitCommit, BuildInfo.commit)
        XCTAssertEqual(provenance.gitDirty, BuildInfo.dirty)
        XCTAssertNotEqual(provenance.gitCommit, scratchCommit)
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
