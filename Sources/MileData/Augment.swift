import Foundation

/// BLIP's training-time `RandomResizedCrop(image_size, scale=(0.5, 1.0))` on a square CHW 8-bit image:
/// a crop of 50-100 % of the area with aspect ratio in [3/4, 4/3], resized back to the full size with
/// the loader's bilinear filter. No horizontal flip: SLAKE asks left/right questions ("which side of the
/// lung is abnormal?"), and a mirrored image would carry the wrong answer. BLIP's RandAugment is left out.
public enum Augment {
    public static let minimumArea = 0.5

    /// The crop of `planes` (3·S·S bytes) drawn from `random`, resized to S×S.
    public static func randomResizedCrop(_ planes: [UInt8], size s: Int, random: inout SeededRandom) -> [UInt8] {
        let (x, y, w, h) = cropBox(size: s, random: &random)
        let area = s * s
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for row in 0..<h {
            for col in 0..<w {
                let source = (y + row) * s + x + col, target = (row * w + col) * 3
                for c in 0..<3 { pixels[target + c] = planes[c * area + source] }
            }
        }
        return ImageLoader.chw(Resize.bilinear(RGBImage(width: w, height: h, pixels: pixels), width: s, height: s))
    }

    /// torchvision's box sampling: up to 10 tries of (area, log-uniform ratio) that fit, else the whole image.
    static func cropBox(size s: Int, random: inout SeededRandom) -> (x: Int, y: Int, w: Int, h: Int) {
        let area = Double(s * s)
        for _ in 0..<10 {
            let target = area * (minimumArea + (1 - minimumArea) * random.unit())
            let ratio = Foundation.exp(Foundation.log(3.0 / 4) + (Foundation.log(4.0 / 3) - Foundation.log(3.0 / 4)) * random.unit())
            let w = Int((target * ratio).squareRoot().rounded()), h = Int((target / ratio).squareRoot().rounded())
            guard w > 0, h > 0, w <= s, h <= s else { continue }
            return (random.below(s - w + 1), random.below(s - h + 1), w, h)
        }
        return (0, 0, s, s)
    }
}
