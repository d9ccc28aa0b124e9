/// Bilinear resize the way PIL's `Image.resize(size, BILINEAR)` does it (what torchvision's `Resize` calls):
/// a separable triangle filter whose support widens with the scale factor when shrinking, so downscaling
/// averages over the covered pixels rather than sampling two. Horizontal pass first, then vertical, each
/// rounded to 8 bits like PIL.
public enum Resize {
    /// Resizes an RGB image to `width` x `height`.
    public static func bilinear(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        if image.width == width && image.height == height { return image }
        var current = image
        if current.width != width {
            current = horizontal(current, to: width)
        }
        if current.height != height {
            current = vertical(current, to: height)
        }
        return current
    }

    /// For each output position: the first input index and the normalised weights of the inputs it uses.
    struct Taps {
        var start: [Int] = []
        var weights: [[Float]] = []
    }

    static func taps(from inSize: Int, to outSize: Int) -> Taps {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale  // the triangle filter has support 1
        var taps = Taps()
        for x in 0..<outSize {
            let center = (Double(x) + 0.5) * scale
            let lo = max(Int(center - support + 0.5), 0)
            let hi = min(Int(center + support + 0.5), inSize)
            var weights: [Double] = []
            for i in lo..<max(hi, lo + 1) {
                let distance = (Double(i) - center + 0.5) / filterScale
                weights.append(max(0, 1 - abs(distance)))
            }
            let total = weights.reduce(0, +)
            taps.start.append(lo)
            taps.weights.append(weights.map { Float(total > 0 ? $0 / total : 0) })
        }
        return taps
    }

    private static func horizontal(_ image: RGBImage, to width: Int) -> RGBImage {
        let taps = taps(from: image.width, to: width)
        var out = [UInt8](repeating: 0, count: width * image.height * 3)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<image.height {
                    let row = y * image.width * 3
                    for x in 0..<width {
                        let start = taps.start[x]
                        let weights = taps.weights[x]
                        var r: Float = 0, g: Float = 0, b: Float = 0
                        for (k, w) in weights.enumerated() {
                            let p = row + (start + k) * 3
                            r += w * Float(src[p]); g += w * Float(src[p + 1]); b += w * Float(src[p + 2])
                        }
                        let o = (y * width + x) * 3
                        dst[o] = clamp8(r); dst[o + 1] = clamp8(g); dst[o + 2] = clamp8(b)
                    }
                }
            }
        }
        return RGBImage(width: width, height: image.height, pixels: out)
    }

    private static func vertical(_ image: RGBImage, to height: Int) -> RGBImage {
        let taps = taps(from: image.height, to: height)
        let stride = image.width * 3
        var out = [UInt8](repeating: 0, count: stride * height)
        var accumulator = [Float](repeating: 0, count: stride)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<height {
                    for i in 0..<stride { accumulator[i] = 0 }
                    for (k, w) in taps.weights[y].enumerated() {
                        let row = (taps.start[y] + k) * stride
                        for i in 0..<stride { accumulator[i] += w * Float(src[row + i]) }
                    }
                    for i in 0..<stride { dst[y * stride + i] = clamp8(accumulator[i]) }
                }
            }
        }
        return RGBImage(width: image.width, height: height, pixels: out)
    }

    @inline(__always) private static func clamp8(_ value: Float) -> UInt8 {
        UInt8(max(0, min(255, (value + 0.5).rounded(.down))))
    }
}
