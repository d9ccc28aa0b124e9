import CImageCodec
import Foundation

/// An 8-bit RGB image, row-major and interleaved (r, g, b, r, g, b, ...).
public struct RGBImage: Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "RGBImage needs width*height*3 bytes")
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// Decoding (JPEG through libjpeg, PNG through libpng) and encoding, through the CImageCodec wrappers so a
/// corrupt file becomes a `DataError.badImage` instead of a crash or an exit().
public enum ImageCodec {
    /// Decodes JPEG or PNG bytes (chosen by the file's signature, not its name) to RGB. Gray becomes three
    /// equal channels; alpha is dropped, as PIL's `convert('RGB')` does.
    public static func decode(_ data: [UInt8], name: String) throws -> RGBImage {
        if data.count >= 8 && data[0] == 0x89 && data[1] == 0x50 && data[2] == 0x4E && data[3] == 0x47 {
            return try decodeWith(mile_png_decode, data, name: name)
        }
        if data.count >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF {
            return try decodeWith(mile_jpeg_decode, data, name: name)
        }
        if data.isEmpty { throw DataError.badImage(path: name, reason: "empty file") }
        throw DataError.badImage(path: name, reason: "not a JPEG or PNG file (unknown signature)")
    }

    /// Reads and decodes an image file.
    public static func decodeFile(_ path: String) throws -> RGBImage {
        try decode(readBytes(path), name: path)
    }

    /// Encodes gray (channels 1) or RGB (channels 3) pixels as a baseline JPEG.
    public static func encodeJPEG(_ pixels: [UInt8], width: Int, height: Int, channels: Int,
                                  quality: Int = 92) throws -> [UInt8] {
        try checkSize(pixels, width, height, channels)
        return try encodeWith(name: "JPEG") { out, length, err in
            mile_jpeg_encode(pixels, Int32(width), Int32(height), Int32(channels), Int32(quality), out, length,
                             err, Int(MILE_CODEC_ERRLEN))
        }
    }

    /// Encodes gray (1), RGB (3) or RGBA (4) pixels as an 8-bit PNG.
    public static func encodePNG(_ pixels: [UInt8], width: Int, height: Int, channels: Int) throws -> [UInt8] {
        try checkSize(pixels, width, height, channels)
        return try encodeWith(name: "PNG") { out, length, err in
            mile_png_encode(pixels, Int32(width), Int32(height), Int32(channels), out, length, err,
                            Int(MILE_CODEC_ERRLEN))
        }
    }

    /// The whole file as bytes, or a `DataError` naming it.
    public static func readBytes(_ path: String) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw DataError.missingFile(path: path, usedBy: "")
        }
        do {
            return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw DataError.unreadable(path: path, reason: unreadableReason(path))
        }
    }

    private typealias Decoder = (UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?,
                                 UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int32>?,
                                 UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<CChar>?, Int) -> Int32

    private static func decodeWith(_ decoder: Decoder, _ data: [UInt8], name: String) throws -> RGBImage {
        var pixels: UnsafeMutablePointer<UInt8>?
        var width: Int32 = 0, height: Int32 = 0, channels: Int32 = 0
        var err = [CChar](repeating: 0, count: Int(MILE_CODEC_ERRLEN))
        let code = data.withUnsafeBufferPointer { buffer in
            decoder(buffer.baseAddress, buffer.count, &pixels, &width, &height, &channels, &err, err.count)
        }
        defer { mile_codec_free(pixels) }
        guard code == 0, let pixels else {
            throw DataError.badImage(path: name, reason: message(err))
        }
        return toRGB(pixels, width: Int(width), height: Int(height), channels: Int(channels))
    }

    private static func toRGB(_ source: UnsafeMutablePointer<UInt8>, width: Int, height: Int,
                              channels: Int) -> RGBImage {
        let count = width * height
        var rgb = [UInt8](repeating: 0, count: count * 3)
        rgb.withUnsafeMutableBufferPointer { out in
            for i in 0..<count {
                for c in 0..<3 {
                    // Gray repeats its one channel; RGBA drops alpha.
                    out[i * 3 + c] = source[i * channels + (channels == 1 ? 0 : c)]
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: rgb)
    }

    private static func encodeWith(name: String, _ body: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>,
                                                          UnsafeMutablePointer<Int>,
                                                          UnsafeMutablePointer<CChar>) -> Int32) throws -> [UInt8] {
        var out: UnsafeMutablePointer<UInt8>?
        var length = 0
        var err = [CChar](repeating: 0, count: Int(MILE_CODEC_ERRLEN))
        let code = err.withUnsafeMutableBufferPointer { body(&out, &length, $0.baseAddress!) }
        defer { mile_codec_free(out) }
        guard code == 0, let out else {
            throw DataError.invalid("\(name) encoding failed: \(message(err))")
        }
        return Array(UnsafeBufferPointer(start: out, count: length))
    }

    private static func checkSize(_ pixels: [UInt8], _ width: Int, _ height: Int, _ channels: Int) throws {
        guard width > 0, height > 0, pixels.count == width * height * channels else {
            throw DataError.invalid("image encoding: \(pixels.count) bytes do not match \(width)x\(height)x\(channels)")
        }
    }

    private static func message(_ err: [CChar]) -> String {
        let bytes = err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
