import XCTest
@testable import MileData

final class AugmentTests: XCTestCase {
    /// The crop box covers 50-100 % of the area with aspect ratio in [3/4, 4/3] (up to rounding), inside the image.
    func testCropBoxes() {
        var random = SeededRandom(seed: 5)
        for _ in 0..<500 {
            let box = Augment.cropBox(size: 96, random: &random)
            XCTAssertTrue(box.x >= 0 && box.y >= 0 && box.x + box.w <= 96 && box.y + box.h <= 96)
            let area = Double(box.w * box.h) / Double(96 * 96), ratio = Double(box.w) / Double(box.h)
            XCTAssertTrue(area > 0.47 && area <= 1.0, "area \(area)")
            XCTAssertTrue(ratio > 0.72 && ratio < 1.39, "ratio \(ratio)")
        }
    }

    /// A crop of a left-dark / right-bright image keeps dark pixels on the left: no flip, positions kept.
    func testCropKeepsOrientation() {
        let s = 32
        var planes = [UInt8](repeating: 0, count: 3 * s * s)
        for c in 0..<3 { for y in 0..<s { for x in (s / 2)..<s { planes[c * s * s + y * s + x] = 255 } } }
        var random = SeededRandom(seed: 8)
        for _ in 0..<20 {
            let out = Augment.randomResizedCrop(planes, size: s, random: &random)
            XCTAssertEqual(out.count, planes.count)
            XCTAssertLessThanOrEqual(out[5 * s + 0], out[5 * s + s - 1], "left column brighter than right: flipped")
        }
    }
}
