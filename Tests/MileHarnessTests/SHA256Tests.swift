import XCTest
@testable import MileHarness

final class SHA256Tests: XCTestCase {
    // FIPS 180-4 / NIST example vectors.
    func testStandardVectors() {
        XCTAssertEqual(SHA256.hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
    }

    func testMillionAs() {
        XCTAssertEqual(SHA256.hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Padding edge cases: 55, 56 and 64 bytes need one or two final blocks.
    func testBlockBoundariesAndChunkedUpdates() {
        for length in [55, 56, 63, 64, 65, 119, 120] {
            let bytes = (0..<length).map { UInt8($0 % 251) }
            var chunked = SHA256()
            chunked.update(bytes[0..<length / 3])
            chunked.update(bytes[(length / 3)...])
            let hex = chunked.finalize().map { String(format: "%02x", $0) }.joined()
            XCTAssertEqual(hex, SHA256.hex(bytes), "length \(length)")
        }
        XCTAssertEqual(SHA256.hex(String(repeating: "a", count: 56)),
                       "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
    }

    func testFileHash() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let path = try TestSupport.write("abc", to: dir, name: "f.txt")
        XCTAssertEqual(try SHA256.hex(fileAt: path), SHA256.hex("abc"))
        XCTAssertThrowsError(try SHA256.hex(fileAt: dir + "/missing"))
    }
}
