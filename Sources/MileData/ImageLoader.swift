import Foundation

/// Loads an image file as the model's input: decoded, converted to 3 channels, resized bilinearly to
/// `size` x `size`, as a `[Float]` of length 3*size*size in CHW order with values in [0, 1].
///
/// `upstreamDoubleScale` reproduces upstream's bug (spec §4): `ToTensor()` followed by another `/255`, so
/// values lie in [0, 1/255]. It is off by default.
///
/// With a `cacheDirectory`, the resized 8-bit pixels are stored as `<sha256 of the file>-<size>.u8`, so a
/// later run (or epoch) skips decoding; the key is the file's content, so a changed file is re-decoded.
/// Safe to use from several threads.
public final class ImageLoader: @unchecked Sendable {
    public let size: Int
    public let upstreamDoubleScale: Bool
    public let cacheDirectory: URL?

    private let lock = NSLock()
    /// path -> (file size, modification date, content hash), so a file is hashed once per process.
    private var hashes: [String: (Int, Date, String)] = [:]

    public init(size: Int, cacheDirectory: URL? = nil, upstreamDoubleScale: Bool = false) {
        precondition(size > 0, "image size must be positive")
        self.size = size
        self.cacheDirectory = cacheDirectory
        self.upstreamDoubleScale = upstreamDoubleScale
    }

    /// The image at `path` as a CHW float array of 3*size*size values.
    public func load(_ path: String) throws -> [Float] {
        let planes = try loadBytes(path)
        let scale = pixelScale
        return planes.map { Float($0) * scale }
    }

    /// What an 8-bit value is multiplied by: 1/255, or 1/255² with `upstreamDoubleScale`.
    public var pixelScale: Float {
        upstreamDoubleScale ? 1 / (255 * 255) : 1 / 255
    }

    /// The resized image as CHW bytes (3*size*size), from the cache when possible.
    public func loadBytes(_ path: String) throws -> [UInt8] {
        guard let cacheDirectory else {
            return try decodeResized(ImageCodec.readBytes(path), name: path)
        }
        let (bytes, key) = try contentKey(path)
        let cacheFile = cacheDirectory.appendingPathComponent("\(key)-\(size).u8")
        if let cached = readCache(cacheFile) { return cached }
        let planes = try decodeResized(bytes ?? ImageCodec.readBytes(path), name: path)
        writeCache(planes, to: cacheFile)
        return planes
    }

    /// Decodes and resizes, returning CHW bytes.
    public func decodeResized(_ data: [UInt8], name: String) throws -> [UInt8] {
        let image = try ImageCodec.decode(data, name: name)
        let resized = Resize.bilinear(image, width: size, height: size)
        return ImageLoader.chw(resized)
    }

    /// Interleaved RGB to planar CHW.
    static func chw(_ image: RGBImage) -> [UInt8] {
        let count = image.width * image.height
        var out = [UInt8](repeating: 0, count: count * 3)
        for i in 0..<count {
            out[i] = image.pixels[i * 3]
            out[count + i] = image.pixels[i * 3 + 1]
            out[2 * count + i] = image.pixels[i * 3 + 2]
        }
        return out
    }

    /// The content hash of the file (memoised by path, size and date); also returns the bytes when it had
    /// to read them, so a cache miss does not read the file twice.
    private func contentKey(_ path: String) throws -> ([UInt8]?, String) {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        let fileSize = (attributes?[.size] as? NSNumber)?.intValue ?? -1
        let date = attributes?[.modificationDate] as? Date ?? .distantPast
        lock.lock()
        let known = hashes[path]
        lock.unlock()
        if let known, known.0 == fileSize, known.1 == date { return (nil, known.2) }
        let bytes = try ImageCodec.readBytes(path)
        let key = SHA256.hex(bytes)
        lock.lock()
        hashes[path] = (fileSize, date, key)
        lock.unlock()
        return (bytes, key)
    }

    private static let magic = Array("MILEIMG1".utf8)

    private func readCache(_ url: URL) -> [UInt8]? {
        guard let data = try? Data(contentsOf: url) else { return nil }
        let expected = ImageLoader.magic.count + 4 + 3 * size * size
        guard data.count == expected, Array(data.prefix(8)) == ImageLoader.magic else { return nil }
        let header = Array(data[8..<12])
        let storedSize = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16 | Int(header[3]) << 24
        guard storedSize == size else { return nil }
        return Array(data.suffix(from: 12))
    }

    /// Best effort: a cache that cannot be written only costs time, so failures are ignored. Written to a
    /// temporary name and renamed, so a reader never sees half a file.
    private func writeCache(_ planes: [UInt8], to url: URL) {
        var data = Data(ImageLoader.magic)
        let s = UInt32(size)
        data.append(contentsOf: [UInt8(s & 0xFF), UInt8(s >> 8 & 0xFF), UInt8(s >> 16 & 0xFF), UInt8(s >> 24)])
        data.append(contentsOf: planes)
        let directory = url.deletingLastPathComponent()
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString)")
        do {
            try data.write(to: temporary)
            _ = try? FileManager.default.removeItem(at: url)
            try FileManager.default.moveItem(at: temporary, to: url)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
        }
    }
}
