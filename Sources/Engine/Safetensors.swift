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
        let headerBytes = data.subdata(in: 8..<(8 + Int(n)))
        guard let object = try? JSONSerialization.jsonObject(with: headerBytes), let header = object as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        var tensors: [String: Tensor] = [:]
        try data.withUnsafeBytes { raw in
            let body = UnsafeRawBufferPointer(rebasing: raw[(8 + Int(n))...])   // the data section, not copied
            for (name, value) in header {
                if name == "__metadata__" {
                    guard let m = value as? [String: String] else { throw fail("__metadata__ is not a string-to-string map") }
                    metadata = m
                    continue
                }
                tensors[name] = try decode(name, value, body, fail)
            }
        }
        return (tensors, metadata)
    }

    private static func decode(_ name: String, _ value: Any, _ body: UnsafeRawBufferPointer,
                               _ fail: (String) -> SafetensorsError) throws -> Tensor {
        guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
              let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
            throw fail("tensor '\(name)': entry needs dtype (string), shape (integers) and data_offsets ([begin, end])")
        }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("tensor '\(name)': negative dimension in shape \(shape)") }
        let sizes = ["F32": 4, "F16": 2, "BF16": 2, "F64": 8]
        guard let size = sizes[dtype] else { throw fail("tensor '\(name)': unsupported dtype \(dtype) (F32, F16, BF16, F64)") }
        let (begin, end) = (offsets[0], offsets[1])
        let count = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }
        guard begin >= 0, begin <= end, end <= body.count else {
            throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] outside the \(body.count) data bytes")
        }
        guard end - begin == count * size else {
            throw fail("tensor '\(name)': \(end - begin) bytes for shape \(shape) of \(dtype) (expected \(count * size))")
        }
        let t = Tensor(empty: shape)
        guard let d = t.data else { return t }
        guard count > 0 else { return t }
        let src = body.baseAddress! + begin
        if dtype == "F32" {
            UnsafeMutableRawPointer(d).copyMemory(from: src, byteCount: count * 4)
        } else {
            for i in 0..<count { d[i] = convert(src + i * size, dtype) }
        }
        return t
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
