import Foundation

/// A malformed or unsupported safetensors file; the message names the file and the problem.
public struct SafetensorsError: Error, CustomStringConvertible, LocalizedError {
    public let file: String
    public let problem: String
    public var description: String { "\(file): \(problem)" }
    public var errorDescription: String? { description }
}

/// safetensors (the format of PyTorch/HF checkpoints): u64 little-endian header length, JSON header
/// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then raw little-endian data.
/// Writes F32; reads F32, F16, BF16 and F64 (converted to Float).
public enum Safetensors {
    public static func write(_ tensors: [(name: String, tensor: Tensor)], to url: URL,
                             metadata: [String: String] = [:]) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for (name, t) in tensors {
            check(!t.isMeta, "Safetensors.write: '\(name)' is a meta tensor")
            guard header[name] == nil else { throw SafetensorsError(file: url.path, problem: "duplicate tensor name '\(name)'") }
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + t.byteCount]] as [String: Any]
            offset += t.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }   // pad with spaces so the data is 8-byte aligned
        var head = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { head.append(contentsOf: $0) }
        head.append(json)
        // Stream tensor by tensor into a temporary file, then move it into place (no whole-file copy in memory).
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
        guard FileManager.default.createFile(atPath: tmp.path, contents: head), let handle = try? FileHandle(forWritingTo: tmp) else {
            throw SafetensorsError(file: url.path, problem: "cannot create \(tmp.path)")
        }
        do {
            defer { try? handle.close() }
            try handle.seekToEnd()
            for (_, t) in tensors {
                try handle.write(contentsOf: Data(bytesNoCopy: t.ptr, count: t.byteCount, deallocator: .none))
            }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw SafetensorsError(file: url.path, problem: "write failed (\(error.localizedDescription))")
        }
        _ = try? FileManager.default.removeItem(at: url)
        try FileManager.default.moveItem(at: tmp, to: url)
    }

    public static func read(_ url: URL) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        let fail = { (problem: String) in SafetensorsError(file: url.path, problem: problem) }
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw fail("cannot read file (\(error.localizedDescription))")
        }
        guard data.count >= 8 else { throw fail("file has \(data.count) bytes, shorter than the 8-byte header length") }
        let n = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard n <= UInt64(data.count - 8), n <= 100_000_000 else {
            throw fail("header length \(n) exceeds the file size \(data.count)")
        }
        let (header, metadata) = try parseHeader(data.subdata(in: 8..<(8 + Int(n))), fail)
        var tensors: [String: Tensor] = [:]
        try data.withUnsafeBytes { raw in
            let body = UnsafeRawBufferPointer(rebasing: raw[(8 + Int(n))...])   // the data section, not copied
            for (name, value) in header {
                let e = try Entry(name, value, bodyCount: body.count, fail)
                let t = Tensor(empty: e.shape)
                if let d = t.data, e.count > 0 { e.decode(body.baseAddress! + e.begin, into: d) }
                tensors[name] = t
            }
        }
        return (tensors, metadata)
    }

    /// The header's `__metadata__` only: no tensor is read.
    public static func metadata(_ url: URL) throws -> [String: String] {
        let fail = { (problem: String) in SafetensorsError(file: url.path, problem: problem) }
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw fail("cannot read file (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size >= 8 else { throw fail("file shorter than the 8-byte header length") }
        var n64: UInt64 = 0
        try readExactly(fd, &n64, 8, at: 0, fail)
        let n = UInt64(littleEndian: n64)
        guard n <= UInt64(info.st_size - 8), n <= 100_000_000 else { throw fail("header length \(n) exceeds the file size \(info.st_size)") }
        var headerBytes = Data(count: Int(n))
        try headerBytes.withUnsafeMutableBytes { try readExactly(fd, $0.baseAddress!, Int(n), at: 8, fail) }
        return try parseHeader(headerBytes, fail).1
    }

    /// Reads the file tensor by tensor into storage chosen by `destination` (name, shape) -> tensor of
    /// that shape, or nil to skip it; returns every tensor name in the file. Unlike `read`, nothing but
    /// the destinations holds the data: no mapped file and no intermediate tensors, so loading weights into
    /// an existing model costs one tensor's worth of transient memory instead of twice the file size.
    /// Same validation and errors as `read`.
    @discardableResult
    public static func read(_ url: URL, into destination: (String, [Int]) throws -> Tensor?) throws -> [String] {
        let fail = { (problem: String) in SafetensorsError(file: url.path, problem: problem) }
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw fail("cannot read file (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw fail("cannot read file (fstat failed)") }
        let size = Int(info.st_size)
        guard size >= 8 else { throw fail("file has \(size) bytes, shorter than the 8-byte header length") }
        var n64: UInt64 = 0
        try readExactly(fd, &n64, 8, at: 0, fail)
        let n = UInt64(littleEndian: n64)
        guard n <= UInt64(size - 8), n <= 100_000_000 else { throw fail("header length \(n) exceeds the file size \(size)") }
        var headerBytes = Data(count: Int(n))
        try headerBytes.withUnsafeMutableBytes { try readExactly(fd, $0.baseAddress!, Int(n), at: 8, fail) }
        let (header, _) = try parseHeader(headerBytes, fail)
        let bodyStart = 8 + Int(n), bodyCount = size - bodyStart
        // Validate every entry first, then read in file order: sequential reads, and a deterministic
        // order for the destination's errors (the file's, i.e. the writer's parameter order).
        let entries = try header.map { (name: $0.key, entry: try Entry($0.key, $0.value, bodyCount: bodyCount, fail)) }
            .sorted { ($0.entry.begin, $0.name) < ($1.entry.begin, $1.name) }
        for (name, e) in entries {
            guard let t = try destination(name, e.shape), let d = t.data, e.count > 0 else { continue }
            check(t.shape == e.shape, "Safetensors.read(into:): destination for '\(name)' has shape \(t.shape), file has \(e.shape)")
            if e.size == 4 {
                try readExactly(fd, d, e.count * 4, at: bodyStart + e.begin, fail)   // little-endian host, as decode
            } else {
                let bytes = UnsafeMutableRawPointer.allocate(byteCount: e.count * e.size, alignment: 8)
                defer { bytes.deallocate() }
                try readExactly(fd, bytes, e.count * e.size, at: bodyStart + e.begin, fail)
                e.decode(bytes, into: d)
            }
        }
        return entries.map(\.name)
    }

    private static func readExactly(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ count: Int, at offset: Int,
                                    _ fail: (String) -> SafetensorsError) throws {
        var done = 0
        while done < count {
            let r = pread(fd, p + done, count - done, off_t(offset + done))
            guard r > 0 else { throw fail("cannot read \(count) bytes at offset \(offset)") }
            done += r
        }
    }

    /// The JSON header as name -> entry, without "__metadata__", and the metadata.
    private static func parseHeader(_ bytes: Data, _ fail: (String) -> SafetensorsError) throws
        -> (header: [String: Any], metadata: [String: String]) {
        guard let object = try? JSONSerialization.jsonObject(with: bytes), var header = object as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        if let value = header.removeValue(forKey: "__metadata__") {
            guard let m = value as? [String: String] else { throw fail("__metadata__ is not a string-to-string map") }
            metadata = m
        }
        return (header, metadata)
    }

    /// One validated header entry: dtype, shape and byte range inside the data section.
    private struct Entry {
        let dtype: String, shape: [Int], begin: Int, count: Int, size: Int

        init(_ name: String, _ value: Any, bodyCount: Int, _ fail: (String) -> SafetensorsError) throws {
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
                throw fail("tensor '\(name)': entry needs dtype (string), shape (integers) and data_offsets ([begin, end])")
            }
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("tensor '\(name)': negative dimension in shape \(shape)") }
            let sizes = ["F32": 4, "F16": 2, "BF16": 2, "F64": 8]
            guard let size = sizes[dtype] else { throw fail("tensor '\(name)': unsupported dtype \(dtype) (F32, F16, BF16, F64)") }
            let (begin, end) = (offsets[0], offsets[1])
            let count = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }
            guard begin >= 0, begin <= end, end <= bodyCount else {
                throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] outside the \(bodyCount) data bytes")
            }
            guard end - begin == count * size else {
                throw fail("tensor '\(name)': \(end - begin) bytes for shape \(shape) of \(dtype) (expected \(count * size))")
            }
            (self.dtype, self.shape, self.begin, self.count, self.size) = (dtype, shape, begin, count, size)
        }

        /// Converts `count` stored values at src to Float.
        func decode(_ src: UnsafeRawPointer, into d: UnsafeMutablePointer<Float>) {
            if dtype == "F32" {
                UnsafeMutableRawPointer(d).copyMemory(from: src, byteCount: count * 4)
            } else {
                for i in 0..<count { d[i] = convert(src + i * size, dtype) }
            }
        }
    }

    @inline(__always)
    private static func convert(_ p: UnsafeRawPointer, _ dtype: String) -> Float {
        switch dtype {
        case "F32": return Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
        case "F64": return Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))))
        case "BF16": return Float(bitPattern: UInt32(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))) << 16)
        default: return Float(Float16(bitPattern: UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))))
        }
    }
}
