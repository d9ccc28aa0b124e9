import Foundation

/// What a registered tensor is to its module.
public enum TensorRole: Sendable {
    /// Base weights (frozen or trained by the assignment).
    case weight
    /// PEFT adapter state (LoRA factors, IA3 vectors, prompt encoders): discovered structurally, so freezing
    /// and counting need no name patterns.
    case adapter
    /// Module state that is not a parameter (BatchNorm running statistics): checkpointed, never trained,
    /// never given to the optimizer.
    case buffer
}

/// One registered tensor by dotted path.
public struct NamedTensor {
    public let name: String
    public let tensor: Tensor
    public let role: TensorRole
}

/// Container of named parameters and child modules (mlx-swift style, explicit registration so that
/// dotted names match upstream checkpoint keys, e.g. "blocks.3.attn.qkv.weight").
open class Module {
    public private(set) var training = true
    /// True for a module that is an adapter as a whole (LoRA factor, prompt encoder): every tensor below
    /// it has the role `.adapter`.
    public private(set) var isAdapter = false
    private var children: [(name: String, module: Module)] = []
    private var tensors: [(name: String, tensor: Tensor, role: TensorRole)] = []

    public init() {}

    /// Sets training mode on this module and all descendants.
    public func train(_ on: Bool) {
        training = on
        for c in children { c.module.train(on) }
    }

    /// Adds (or replaces) a child module.
    @discardableResult
    public func register<M: Module>(_ name: String, _ child: M) -> M {
        if let i = children.firstIndex(where: { $0.name == name }) { children[i].module = child }
        else { children.append((name, child)) }
        return child
    }

    /// Adds a child that is an adapter as a whole (its parameters get the role `.adapter`).
    @discardableResult
    public func register<M: Module>(adapter name: String, _ child: M) -> M {
        child.isAdapter = true
        return register(name, child)
    }

    /// Adds (or replaces) a parameter and marks it trainable (like nn.Parameter's requires_grad=True).
    @discardableResult
    public func register(parameter name: String, _ t: Tensor) -> Tensor {
        store(name, t, role: .weight)
    }

    /// Adds an adapter parameter of this module (peft keeps e.g. IA3's `ia3_l` on the adapted layer).
    @discardableResult
    public func register(adapter name: String, _ t: Tensor) -> Tensor {
        store(name, t, role: .adapter)
    }

    /// Adds a buffer (torch's `register_buffer`): saved and loaded with the parameters, never trainable.
    @discardableResult
    public func register(buffer name: String, _ t: Tensor) -> Tensor {
        store(name, t, role: .buffer)
    }

    private func store(_ name: String, _ t: Tensor, role: TensorRole) -> Tensor {
        t.isTrainable = role != .buffer
        if let i = tensors.firstIndex(where: { $0.name == name }) { tensors[i] = (name, t, role) }
        else { tensors.append((name, t, role)) }
        return t
    }

    public func child(_ name: String) -> Module? { children.first { $0.name == name }?.module }
    public func namedChildren() -> [(name: String, module: Module)] { children }
    public func localParameters() -> [(name: String, tensor: Tensor)] {
        tensors.filter { $0.role != .buffer }.map { ($0.name, $0.tensor) }
    }

    /// Every parameter and buffer by dotted path, registration order (own tensors first, then children's).
    /// A tensor reachable by two paths (tied weights) appears once, under its first path.
    public func namedTensors() -> [NamedTensor] {
        var seen = Set<ObjectIdentifier>(), out: [NamedTensor] = []
        for (path, m, insideAdapter) in modulesWithAdapterFlag() {
            for (n, t, role) in m.tensors where seen.insert(ObjectIdentifier(t)).inserted {
                let effective: TensorRole = insideAdapter && role == .weight ? .adapter : role
                out.append(NamedTensor(name: path.isEmpty ? n : path + "." + n, tensor: t, role: effective))
            }
        }
        return out
    }

    /// Parameters (weights and adapters, no buffers) by dotted path; see `namedTensors`.
    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        namedTensors().filter { $0.role != .buffer }.map { ($0.name, $0.tensor) }
    }

    /// Buffers by dotted path.
    public func namedBuffers() -> [(name: String, tensor: Tensor)] {
        namedTensors().filter { $0.role == .buffer }.map { ($0.name, $0.tensor) }
    }

    /// This module (path "") and all descendants, depth first in registration order. A module reachable
    /// twice appears once.
    public func namedModules() -> [(name: String, module: Module)] {
        modulesWithAdapterFlag().map { ($0.name, $0.module) }
    }

    private func modulesWithAdapterFlag() -> [(name: String, module: Module, insideAdapter: Bool)] {
        var seen = Set<ObjectIdentifier>(), out: [(name: String, module: Module, insideAdapter: Bool)] = []
        func visit(_ m: Module, _ path: String, _ inside: Bool) {
            guard seen.insert(ObjectIdentifier(m)).inserted else { return }
            let adapter = inside || m.isAdapter
            out.append((path, m, adapter))
            for c in m.children { visit(c.module, path.isEmpty ? c.name : path + "." + c.name, adapter) }
        }
        visit(self, "", false)
        return out
    }

    /// Marks all parameters below this module trainable or frozen (buffers stay untrainable).
    public func setTrainable(_ on: Bool) {
        for (_, t) in namedParameters() { t.isTrainable = on }
    }

    /// Number of scalars in all (deduplicated) parameters, and in the trainable ones. Buffers are not counted.
    public func parameterCount() -> (total: Int, trainable: Int) {
        namedParameters().reduce((0, 0)) { ($0.0 + $1.tensor.count, $0.1 + ($1.tensor.isTrainable ? $1.tensor.count : 0)) }
    }
}

/// y = x W^T + b. PyTorch default init: W, b ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt 5).
open class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let inFeatures: Int
    public let outFeatures: Int

    public init(_ inF: Int, _ outF: Int, bias: Bool = true, rng: inout RNG) {
        let bound = 1 / Float(inF).squareRoot()
        inFeatures = inF
        outFeatures = outF
        weight = Tensor.uniform([outF, inF], low: -bound, high: bound, rng: &rng)
        self.bias = bias ? Tensor.uniform([outF], low: -bound, high: bound, rng: &rng) : nil
        super.init()
        register(parameter: "weight", weight)
        if let b = self.bias { register(parameter: "bias", b) }
    }

    open func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight: weight, bias: bias) }
}

/// Layer norm over the last axis; weight ones, bias zeros.
public final class LayerNorm: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float

    public init(_ d: Int, eps: Float) {
        weight = Tensor.ones([d])
        bias = Tensor.zeros([d])
        self.eps = eps
        super.init()
        register(parameter: "weight", weight)
        register(parameter: "bias", bias)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight, bias: bias, eps: eps) }
}

/// Lookup table [V, D], initialised N(0, 0.02) as BERT does.
public final class Embedding: Module {
    public let weight: Tensor

    public init(_ v: Int, _ d: Int, rng: inout RNG) {
        weight = Tensor.randn([v, d], std: 0.02, rng: &rng)
        super.init()
        register(parameter: "weight", weight)
    }

    public func callAsFunction(ids: [Int32], shape: [Int]) -> Tensor { embedding(ids: ids, shape: shape, table: weight) }
}

// MARK: Checkpoints

extension Module {
    /// Writes the parameters and buffers by dotted name. `onlyTrainable` keeps the trainable parameters and
    /// every buffer (running statistics change while a module trains, and they are small).
    public func saveState(to url: URL, onlyTrainable: Bool = false, metadata: [String: String] = [:]) throws {
        let kept = namedTensors().filter { !onlyTrainable || $0.role == .buffer || $0.tensor.isTrainable }
        try Safetensors.write(kept.map { ($0.name, $0.tensor) }, to: url, metadata: metadata)
    }

    /// Reads tensors by name straight into this module's parameters and buffers (no intermediate copy).
    /// A shape mismatch is an error naming the tensor. Returns this module's tensors absent from the file
    /// (with their roles, so a caller can tell fresh adapters from missing weights) and the file's names
    /// this module does not have.
    @discardableResult
    public func loadState(from url: URL) throws -> (missing: [NamedTensor], unexpected: [String]) {
        let own = namedTensors()
        let byName = Dictionary(own.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        let inFile = try Safetensors.read(url) { name, shape -> Tensor? in
            guard let tensor = byName[name] else { return nil }
            guard shape == tensor.shape else {
                throw SafetensorsError(file: url.path, problem: "tensor '\(name)' has shape \(shape), model expects \(tensor.shape)")
            }
            return tensor
        }
        let fileNames = Set(inFile)
        return (own.filter { !fileNames.contains($0.name) }, inFile.filter { byName[$0] == nil }.sorted())
    }
}
