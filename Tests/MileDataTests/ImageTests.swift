import Foundation
import XCTest
@testable import MileData

final class ImageCodecTests: XCTestCase {
    func testPNGGrayOddSizeRoundTripsExactly() throws {
        let gray = Fixtures.grayPattern(width: 37, height: 23)
        let png = try ImageCodec.encodePNG(gray, width: 37, height: 23, channels: 1)
        let image = try ImageCodec.decode(png, name: "gray.png")
        XCTAssertEqual(image.width, 37)
        XCTAssertEqual(image.height, 23)
        XCTAssertEqual(image.pixels, gray.flatMap { [$0, $0, $0] })
    }

    func testPNGRGBAndRGBARoundTrip() throws {
        let rgb = Fixtures.rgbPattern(width: 19, height: 31)
        let decoded = try ImageCodec.decode(try ImageCodec.encodePNG(rgb, width: 19, height: 31, channels: 3), name: "rgb.png")
        XCTAssertEqual(decoded.pixels, rgb)
        // Alpha is dropped, as PIL's convert('RGB') does.
        var rgba: [UInt8] = []
        for i in 0..<(19 * 31) { rgba += rgb[(i * 3)..<(i * 3 + 3)] + [UInt8(i % 256)] }
        let fromRGBA = try ImageCodec.decode(try ImageCodec.encodePNG(rgba, width: 19, height: 31, channels: 4), name: "rgba.png")
        XCTAssertEqual(fromRGBA.pixels, rgb)
    }

    func testJPEGGrayAndRGBDecodeCloseToSource() throws {
        let gray = Fixtures.grayPattern(width: 41, height: 17)
        let grayImage = try ImageCodec.decode(try ImageCodec.encodeJPEG(gray, width: 41, height: 17, channels: 1, quality: 95),
                                              name: "gray.jpg")
        XCTAssertEqual([grayImage.width, grayImage.height], [41, 17])
        XCTAssertLessThan(meanAbsoluteError(grayImage.pixels, gray.flatMap { [$0, $0, $0] }), 4)
        for i in 0..<(41 * 17) {  // a gray JPEG gives three equal channels
            XCTAssertEqual(grayImage.pixels[i * 3], grayImage.pixels[i * 3 + 2])
        }
        let rgb = Fixtures.rgbPattern(width: 33, height: 29)
        let rgbImage = try ImageCodec.decode(try ImageCodec.encodeJPEG(rgb, width: 33, height: 29, channels: 3, quality: 95),
                                             name: "rgb.jpg")
        XCTAssertEqual([rgbImage.width, rgbImage.height], [33, 29])
        XCTAssertLessThan(meanAbsoluteError(rgbImage.pixels, rgb), 6)
    }

    func testTruncatedJPEGIsAnErrorNamingTheFile() throws {
        let jpeg = try ImageCodec.encodeJPEG(Fixtures.rgbPattern(width: 64, height: 48), width: 64, height: 48, channels: 3)
        for cut in [jpeg.count / 2, jpeg.count - 10, 20] {
            XCTAssertThrowsError(try ImageCodec.decode(Array(jpeg.prefix(cut)), name: "cut.jpg")) { error in
                guard case DataError.badImage(let path, _) = error else { return XCTFail("wrong error \(error)") }
                XCTAssertEqual(path, "cut.jpg")
            }
        }
    }

    func testCorruptJPEGIsAnError() throws {
        var jpeg = try ImageCodec.encodeJPEG(Fixtures.grayPattern(width: 50, height: 50), width: 50, height: 50, channels: 1)
        // Keep the SOI marker, wreck the headers.
        for i in 3..<min(200, jpeg.count) { jpeg[i] = UInt8(truncatingIfNeeded: i &* 97) }
        XCTAssertThrowsError(try ImageCodec.decode(jpeg, name: "corrupt.jpg"))
    }

    func testTruncatedAndCorruptPNGAreErrors() throws {
        let png = try ImageCodec.encodePNG(Fixtures.rgbPattern(width: 40, height: 40), width: 40, height: 40, channels: 3)
        XCTAssertThrowsError(try ImageCodec.decode(Array(png.prefix(png.count / 2)), name: "cut.png"))
        XCTAssertThrowsError(try ImageCodec.decode(Array(png.prefix(30)), name: "header.png"))
        var corrupt = png
        for i in 40..<min(120, corrupt.count) { corrupt[i] ^= 0x5A }  // breaks the IDAT CRC / zlib stream
        XCTAssertThrowsError(try ImageCodec.decode(corrupt, name: "corrupt.png"))
    }

    func testNonImagesAndMissingFiles() throws {
        XCTAssertThrowsError(try ImageCodec.decode([], name: "empty.jpg"))
        XCTAssertThrowsError(try ImageCodec.decode(Array("hello, not an image".utf8), name: "text.jpg")) { error in
            XCTAssertTrue("\(error)".contains("text.jpg"))
        }
        XCTAssertThrowsError(try ImageCodec.decodeFile("/nonexistent/x.jpg")) { error in
            XCTAssertEqual(error as? DataError, .missingFile(path: "/nonexistent/x.jpg", usedBy: ""))
        }
    }

    private func meanAbsoluteError(_ a: [UInt8], _ b: [UInt8]) -> Double {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).reduce(0.0) { $0 + abs(Double($1.0) - Double($1.1)) } / Double(max(1, a.count))
    }
}

final class ResizeTests: XCTestCase {
    private func row(_ values: [UInt8]) -> RGBImage {
        RGBImage(width: values.count, height: 1, pixels: values.flatMap { [$0, $0, $0] })
    }

    // Reference values from PIL: Image.fromarray([[0, 100]]).resize((4, 1), BILINEAR) == [0, 25, 75, 100]
    // and [[0, 100, 200, 44]] -> (2, 1) == [71, 119].
    func testMatchesPILBilinear() {
        let up = Resize.bilinear(row([0, 100]), width: 4, height: 1)
        XCTAssertEqual(stride(from: 0, to: 12, by: 3).map { up.pixels[$0] }, [0, 25, 75, 100])
        let down = Resize.bilinear(row([0, 100, 200, 44]), width: 2, height: 1)
        XCTAssertEqual([down.pixels[0], down.pixels[3]], [71, 119])
    }

    func testConstantStaysConstantAndSizesAreRight() {
        let image = RGBImage(width: 13, height: 7, pixels: [UInt8](repeating: 77, count: 13 * 7 * 3))
        for (w, h) in [(5, 3), (30, 31), (13, 20)] {
            let resized = Resize.bilinear(image, width: w, height: h)
            XCTAssertEqual(resized.pixels.count, w * h * 3)
            XCTAssertTrue(resized.pixels.allSatisfy { $0 == 77 })
        }
    }
}

final class ImageLoaderTests: XCTestCase {
    func testCHWFloatsInUnitRangeAndDoubleScaleOption() throws {
        let folder = Fixtures.temporaryDirectory()
        let path = (folder as NSString).appendingPathComponent("a.png")
        try Fixtures.write(try ImageCodec.encodePNG(Fixtures.rgbPattern(width: 21, height: 9), width: 21, height: 9, channels: 3), path)
        let values = try ImageLoader(size: 16).load(path)
        XCTAssertEqual(values.count, 3 * 16 * 16)
        XCTAssertTrue(values.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertGreaterThan(values.max()!, 0.9)
        let upstream = try ImageLoader(size: 16, upstreamDoubleScale: true).load(path)
        for (a, b) in zip(values, upstream) { XCTAssertEqual(a / 255, b, accuracy: 1e-7) }
        // CHW: the red plane comes first and follows x, the green plane follows y.
        XCTAssertLessThan(values[0], values[15])
        XCTAssertLessThan(values[256], values[256 + 15 * 16])
    }

    func testCacheIsUsedAndKeyedByContent() throws {
        let folder = Fixtures.temporaryDirectory()
        let cache = URL(fileURLWithPath: (folder as NSString).appendingPathComponent("cache"))
        let path = (folder as NSString).appendingPathComponent("b.jpg")
        let first = try ImageCodec.encodeJPEG(Fixtures.grayPattern(width: 30, height: 30), width: 30, height: 30, channels: 1)
        try Fixtures.write(first, path)
        let loader = ImageLoader(size: 8, cacheDirectory: cache)
        let uncached = try ImageLoader(size: 8).load(path)
        XCTAssertEqual(try loader.load(path), uncached)
        let files = try FileManager.default.contentsOfDirectory(atPath: cache.path)
        XCTAssertEqual(files, ["\(SHA256.hex(first))-8.u8"])
        XCTAssertEqual(try loader.load(path), uncached)  // from the cache

        // New content at the same path gets a new key (a fresh loader: the memo is per process).
        let second = try ImageCodec.encodeJPEG([UInt8](repeating: 200, count: 900), width: 30, height: 30, channels: 1)
        try Fixtures.write(second, path)
        let reloaded = try ImageLoader(size: 8, cacheDirectory: cache).load(path)
        XCTAssertNotEqual(reloaded, uncached)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache.path).count, 2)
    }

    func testCorruptFileThroughLoaderNamesThePath() throws {
        let folder = Fixtures.temporaryDirectory()
        let path = (folder as NSString).appendingPathComponent("bad.jpg")
        try Fixtures.write([0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 1, 2, 3], path)
        XCTAssertThrowsError(try ImageLoader(size: 8, cacheDirectory: URL(fileURLWithPath: folder)).load(path)) { error in
            XCTAssertTrue("\(error)".contains(path), "\(error)")
        }
    }
}
