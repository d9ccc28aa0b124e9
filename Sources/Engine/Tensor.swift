import Foundation

/// fp32 tensor: row-major shape over one contiguous buffer. Leaves (parameters, inputs) may be marked
/// trainable; op results carry a graph node only when some input requires grad and grad mode is on.
public final class Tensor {
    public let shape: [Int]
    public let count: Int
    private(set) var buffer: Buffer
    /// Graph node of an op result that requires grad (nil otherwise).
    var node: Node?
    /// Gradient sink of a trainable leaf.
    private var leafNode: Node?
    /// Accumulated (+=) gradient of a trainable leaf; nil until backward reaches it.
    public var grad: Tensor?

    init(shape: [Int], buffer: Buffer) {
        check(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        self.shape = shape
        count = shape.reduce(1, *)
        check(buffer.count == count, "buffer of \(buffer.count) floats for shape \(shape)")
        self.buffer = buffer
    }

    /// Uninitialised tensor (meta when in shape-only mode or `meta`).
    init(empty shape: [Int], meta: Bool = false) {
        let n = shape.reduce(1, *)
        self.shape = shape
        count = n
        buffer = Buffer(count: n, meta: meta || Mode.shapeOnly)
    }

    public convenience init(shape: [Int], scalars: [Float]) {
        check(shape.reduce(1, *) == scalars.count,
                     "Tensor(shape: \(shape)) needs \(shape.reduce(1, *)) scalars, got \(scalars.count)")
        self.init(empty: shape)
        if let d = data, count > 0 { scalars.withUnsafeBufferPointer { d.update(from: $0.baseAddress!, count: count) } }
    }

    // MARK: storage access

    /// Storage pointer, nil for a meta tensor.
    var data: UnsafeMutablePointer<Float>? { buffer.data }
    /// Storage pointer of a real tensor.
    var ptr: UnsafeMutablePointer<Float> { buffer.data! }
    /// True for a shape-only tensor (no storage).
    public var isMeta: Bool { buffer.data == nil }
    /// Bytes of storage (also counted for meta tensors).
    public var byteCount: Int { count * MemoryLayout<Float>.size }

    // MARK: autograd flags

    public var requiresGrad: Bool { node != nil || leafNode != nil }

    /// Leaves only: true makes backward() accumulate into `grad`.
    public var isTrainable: Bool {
        get { leafNode != nil }
        set {
            check(node == nil, "isTrainable can only be set on a leaf tensor, not an op result")
            if newValue, leafNode == nil { leafNode = Node(leaf: self) }
            if !newValue { leafNode = nil; grad = nil }
        }
    }

    /// The node that receives this tensor's gradient (op node or leaf sink), nil if none.
    var gradNode: Node? { node ?? leafNode }

    // MARK: constructors

    public static func zeros(_ shape: [Int]) -> Tensor { full(shape, 0) }
    public static func ones(_ shape: [Int]) -> Tensor { full(shape, 1) }

    public static func full(_ shape: [Int], _ value: Float) -> Tensor {
        let t = Tensor(empty: shape)
        if let d = t.data { fill(d, count: t.count, with: value) }
        return t
    }

    public static func randn(_ shape: [Int], std: Float, rng: inout RNG) -> Tensor {
        let t = Tensor(empty: shape)
        if let d = t.data { for i in 0..<t.count { d[i] = rng.normal() * std } }
        return t
    }

    public static func uniform(_ shape: [Int], low: Float, high: Float, rng: inout RNG) -> Tensor {
        let t = Tensor(empty: shape)
        if let d = t.data { for i in 0..<t.count { d[i] = low + (high - low) * rng.nextFloat() } }
        return t
    }

    // MARK: values

    /// Copy of the values (precondition: not meta).
    public var scalars: [Float] {
        check(!isMeta, "scalars of a meta (shape-only) tensor")
        return Array(UnsafeBufferPointer(start: ptr, count: count))
    }

    /// Read-only access to the values in place, without the copy `scalars` makes (precondition: not meta).
    public func withUnsafeScalars<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        check(!isMeta, "values of a meta (shape-only) tensor")
        return try body(UnsafeBufferPointer(start: ptr, count: count))
    }

    /// The single element; 0 for a meta tensor so that training loops can run in shape-only mode.
    public func item() -> Float {
        check(count == 1, "item() on a tensor of shape \(shape)")
        return data?[0] ?? 0
    }

    /// Same values (shared storage), no graph.
    public func detached() -> Tensor { Tensor(shape: shape, buffer: buffer) }

    /// In-place value copy (loading weights). Counts must match.
    public func copy(from other: Tensor) {
        check(other.count == count, "copy(from:) \(other.shape) into \(shape)")
        if let d = data, let s = other.data { d.update(from: s, count: count) }
    }

    /// Another handle on the same storage without graph (used to save an op's own output without a cycle).
    func alias() -> Tensor { Tensor(shape: shape, buffer: buffer) }

    /// True when `t` is the only reference to its tensor and no other tensor shares its storage (no view,
    /// alias or detached copy), so nothing else can read the values: a backward may overwrite them.
    static func isExclusive(_ t: inout Tensor) -> Bool {
        isKnownUniquelyReferenced(&t) && isKnownUniquelyReferenced(&t.buffer)
    }
}

/// A tensor an op saves for its backward and hands over there (the box lets the backward drop the op's
/// own reference, so that it can tell whether anything else still holds the tensor).
final class SavedTensor {
    private var tensor: Tensor?
    init(_ t: Tensor) { tensor = t }
    func take() -> Tensor {
        defer { tensor = nil }
        return tensor!
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        if isMeta { return "Tensor(meta \(shape))" }
        let head = scalars.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
        return "Tensor(\(shape): [\(head)\(count > 8 ? ", ..." : "")])"
    }
}
