import Foundation
import XCTest
@testable import MileHarness

/// Issue 18 (10): `mile cache ls|gc` see which bases and checkpoints the database's runs refer to.
final class CacheInventoryTests: XCTestCase {
    func touch(_ path: String, bytes: Int) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(count: bytes).write(to: URL(fileURLWithPath: path))
    }

    func testOnlyWhatNoRunRefersToIsCollected() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let cache = dir + "/cache"
        for key in ["base1", "base2", "base3"] { try touch("\(cache)/bases/\(key).safetensors", bytes: 100) }
        try touch(cache + "/bases/base1.vocab.txt", bytes: 10)
        for key in ["tune1", "tune2"] { try touch("\(cache)/cells/\(key)/checkpoint.safetensors", bytes: 50) }
        try touch(cache + "/image-cache/a.bin", bytes: 7)
        let store = try ResultsStore(path: dir + "/r.db")
        var request = ClaimRequest(cellID: "cell", table: "t", label: "F T IA3", seed: 42, configJSON: "{}",
                                   provenance: Provenance(host: "h", datasetHashes: [:]))
        request.stageKeys = ["data": "d", "base": "base1", "finetune": "tune1", "evaluate": "cell"]
        guard case let .claimed(runID) = try store.claim(request) else { return XCTFail("no claim") }
        try store.fail(runID: runID, reason: "NaN")   // a failed run still needs its files to resume

        // base2 is being pretrained: its lock is held.
        let fd = open(cache + "/bases/base2.lock", O_CREAT | O_RDWR, 0o644)
        XCTAssertEqual(flock(fd, LOCK_EX), 0)
        defer { close(fd) }

        let inventory = try CacheInventory.read(cacheDir: cache, store: store)
        XCTAssertEqual(inventory.entries.map(\.key), ["base1", "base2", "base3", "tune1", "tune2", ""])
        XCTAssertEqual(inventory.entries[0].bytes, 110, "weights and vocabulary")
        XCTAssertEqual(inventory.entries[0].usedBy, ["t F T IA3 seed 42 (failed)"])
        XCTAssertEqual(inventory.unreferenced.map(\.key), ["base3", "tune2"])
        XCTAssertEqual(try inventory.collect(), 150)
        for gone in ["/bases/base3.safetensors", "/cells/tune2"] { XCTAssertFalse(FileManager.default.fileExists(atPath: cache + gone)) }
        for kept in ["/bases/base1.safetensors", "/bases/base2.safetensors", "/cells/tune1", "/image-cache/a.bin"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: cache + kept), kept)
        }
    }
}
