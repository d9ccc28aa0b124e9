import XCTest
@testable import Engine

final class CheckpointTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("engine-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testRoundTripKeepsNamesShapesValuesAndMetadata() throws {
        var rng = RNG(seed: 1)
        let model = TinyBlock(8, heads: 2, rng: &rng)
        let url = dir.appendingPathComponent("block.safetensors")
        try Safetensors.write(model.namedParameters(), to: url, metadata: ["format": "pt", "step": "3"])
        let (tensors, meta) = try Safetensors.read(url)
        XCTAssertEqual(meta, ["format": "pt", "step": "3"])
        XCTAssertEqual(Set(tensors.keys), Set(model.namedParameters().map(\.name)))
        XCTAssertTrue(tensors.keys.contains("qkv.weight"))
        for (name, t) in model.namedParameters() {
            XCTAssertEqual(tensors[name]?.shape, t.shape, name)
            XCTAssertEqual(tensors[name]?.scalars, t.scalars, name)
        }
        let size = try Data(contentsOf: url).count
        let headerLength = try Data(contentsOf: url).prefix(8).withUnsafeBytes { Int($0.loadUnaligned(as: UInt64.self)) }
        XCTAssertEqual(headerLength % 8, 0)
        XCTAssertEqual(size, 8 + headerLength + model.namedParameters().reduce(0) { $0 + $1.tensor.byteCount })
    }

    func testEmptyTensorsOverwriteAndUnwritableDirectory() throws {
        let url = dir.appendingPathComponent("e.safetensors")
        try Safetensors.write([("empty", Tensor.zeros([0, 3])), ("one", Tensor.ones([1]))], to: url)
        try Safetensors.write([("empty", Tensor.zeros([0, 3])), ("two", Tensor.full([2], 2))], to: url)   // replaces
        let t = try Safetensors.read(url).tensors
        XCTAssertEqual(t["empty"]?.shape, [0, 3])
        XCTAssertEqual(t["two"]?.scalars, [2, 2])
        XCTAssertNil(t["one"])
        let missing = dir.appendingPathComponent("no/such/dir/x.safetensors")
        XCTAssertThrowsError(try Safetensors.write([("a", Tensor.ones([1]))], to: missing)) { error in
            XCTAssertTrue("\(error)".contains("cannot create"), "\(error)")
        }
        let duplicate = dir.appendingPathComponent("d.safetensors")
        XCTAssertThrowsError(try Safetensors.write([("a", Tensor.ones([1])), ("a", Tensor.ones([1]))], to: duplicate))
    }

    /// Builds a file from a header string and a data blob.
    private func file(_ header: String, _ data: [UInt8] = [], lengthOverride: UInt64? = nil) throws -> URL {
        let h = Data(header.utf8)
        var bytes = Data()
        withUnsafeBytes(of: (lengthOverride ?? UInt64(h.count)).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(h); bytes.append(contentsOf: data)
        let url = dir.appendingPathComponent("f\(UUID().uuidString).safetensors")
        try bytes.write(to: url)
        return url
    }

    /// Both readers (whole file, and streaming into destinations) reject the file with the message.
    private func expectError(_ url: URL, _ fragment: String, line: UInt = #line) {
        let check = { (error: Error) in
            let text = "\(error)"
            XCTAssertTrue(text.contains(fragment), "'\(text)' lacks '\(fragment)'", line: line)
            XCTAssertTrue(text.contains(url.lastPathComponent), "error names the file", line: line)
        }
        XCTAssertThrowsError(try Safetensors.read(url), line: line, check)
        XCTAssertThrowsError(try Safetensors.read(url) { _, shape in Tensor.zeros(shape) }, line: line, check)
    }

    /// read(into:) fills the given tensors with the stored values (F32 and converted dtypes), skips
    /// names mapped to nil and lists every name in the file.
    func testReadIntoDestinations() throws {
        var rng = RNG(seed: 2)
        let model = TinyBlock(8, heads: 2, rng: &rng)
        let url = dir.appendingPathComponent("into.safetensors")
        try Safetensors.write(model.namedParameters(), to: url)
        var filled: [String: Tensor] = [:]
        let names = try Safetensors.read(url) { name, shape -> Tensor? in
            if name == "qkv.weight" { return nil }
            let t = Tensor.zeros(shape); filled[name] = t; return t
        }
        XCTAssertEqual(Set(names), Set(model.namedParameters().map(\.name)))
        XCTAssertNil(filled["qkv.weight"])
        for (name, t) in model.namedParameters() where name != "qkv.weight" {
            XCTAssertEqual(filled[name]?.scalars, t.scalars, name)
        }
        let half = try file(#"{"b": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}, "h": {"dtype": "F16", "shape": [1], "data_offsets": [2, 4]}}"#,
                            [0xC0, 0x3F, 0x00, 0xC0])
        let b = Tensor.zeros([1]), h = Tensor.zeros([1])
        try Safetensors.read(half) { name, _ in name == "b" ? b : h }
        XCTAssertEqual(b.scalars, [1.5])
        XCTAssertEqual(h.scalars, [-2])
    }

    func testMalformedFilesGiveClearErrors() throws {
        let short = dir.appendingPathComponent("short.safetensors")
        try Data([1, 2, 3]).write(to: short)
        expectError(short, "shorter than")
        expectError(dir.appendingPathComponent("missing.safetensors"), "cannot read")
        expectError(try file("{}", lengthOverride: 1 << 40), "exceeds the file size")
        expectError(try file("{not json"), "not a JSON object")
        expectError(try file("[1, 2]"), "not a JSON object")
        expectError(try file(#"{"a": {"dtype": "F32", "shape": [2]}}"#), "data_offsets")
        expectError(try file(#"{"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}"#, Array(repeating: 0, count: 8)), "unsupported dtype I64")
        expectError(try file(#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#, [0, 0, 0]), "outside")
        expectError(try file(#"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#, Array(repeating: 0, count: 8)), "expected 12")
        expectError(try file(#"{"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}"#, Array(repeating: 0, count: 8)), "negative")
        expectError(try file(#"{"__metadata__": {"k": 1}}"#), "__metadata__")
    }

    func testReadsHalfPrecisionDtypes() throws {
        // 1.5 in BF16 is 0x3FC0; -2.0 in F16 is 0xC000 (little endian).
        let url = try file(#"{"b": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}, "h": {"dtype": "F16", "shape": [1], "data_offsets": [2, 4]}}"#,
                           [0xC0, 0x3F, 0x00, 0xC0])
        let (t, _) = try Safetensors.read(url)
        XCTAssertEqual(t["b"]?.scalars, [1.5])
        XCTAssertEqual(t["h"]?.scalars, [-2])
    }

    func testOptimizerStateRoundTrip() throws {
        var rng = RNG(seed: 2)
        let l = Linear(3, 2, rng: &rng)
        let opt = AdamW(parameters: l.namedParameters(), lr: 0.1)
        sum(l(rand([4, 3], &rng))).backward()
        opt.step()
        let url = dir.appendingPathComponent("opt.safetensors")
        try Safetensors.write(opt.stateTensors(), to: url)
        XCTAssertEqual(opt.stateTensors().map(\.name), ["exp_avg.weight", "exp_avg_sq.weight", "exp_avg.bias", "exp_avg_sq.bias"])
        let other = AdamW(parameters: l.namedParameters(), lr: 0.1)
        try other.loadState(try Safetensors.read(url).tensors, step: opt.stepCount)
        XCTAssertEqual(other.stepCount, 1)
        XCTAssertEqual(other.stateTensors().map { $0.tensor.scalars }, opt.stateTensors().map { $0.tensor.scalars })
        XCTAssertThrowsError(try other.loadState(["exp_avg.weight": Tensor.zeros([5])], step: 1))
        XCTAssertThrowsError(try other.loadState(["exp_avg.nothing": Tensor.zeros([1]), "exp_avg_sq.nothing": Tensor.zeros([1])], step: 1))
    }
}
