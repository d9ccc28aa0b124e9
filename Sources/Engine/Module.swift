import Foundation

/// Container of named parameters and child modules (mlx-swift style, explicit registration so that
/// dotted names match upstream checkpoint keys, e.g. "blocks.3.attn.qkv.weight").
open class Module {
    public private(set) var training = true
    private var children: [(name: String, module: Module)] = []
    private var parameters: [(name: String, tensor: Tensor)] = []

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

    /// Adds (or replaces) a parameter and marks it trainable (like nn.Parameter's requires_grad=True).
    @discardableResult
    public func register(parameter name: String, _ t: Tensor) -> Tensor {
        t.isTrainable = true
        if let i = parameters.firstIndex(where: { $0.name == name }) { parameters[i].tensor = t }
        else { parameters.append((name, t)) }
        return t
    }

    /// Replaces a registered child (PEFT wraps it), keeping its position and name.
    public func replace(child name: String, with new: Module) {
        guard let i = children.firstIndex(where: { $0.name == name }) else {
            fatalError("replace(child: \"\(name)\"): no such child in \(type(of: self))")
        }
        children[i].module = new
    }

    public func child(_ name: String) -> Module? { children.first { $0.name == name }?.module }
    public func namedChildren() -> [(name: String, module: Module)] { children }
    public func localParameters() -> [(name: String, tensor: Tensor)] { parameters }

    /// Dotted paths in registration order (own parameters first, then children's). A tensor reachable by
    /// two paths (tied weights) appears once, under its first path.
    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        var seen = Set<ObjectIdentifier>(), out: [(name: String, tensor: Tensor)] = []
        for (path, m) in namedModules() {
            for (n, t) in m.parameters where seen.insert(ObjectIdentifier(t)).inserted {
                out.append((path.isEmpty ? n : path + "." + n, t))
            }
        }
        return out
    }

    /// This module (path "") and all descendants, depth first in registration order. A module reachable
    /// twice appears once.
    public func namedModules() -> [(name: String, module: Module)] {
        var seen = Set<ObjectIdentifier>(), out: [(name: String, module: Module)] = []
        func visit(_ m: Module, _ path: String) {
            guard seen.insert(ObjectIdentifier(m)).inserted else { return }
            out.append((path, m))
            for c in m.children { visit(c.module, path.isEmpty ? c.name : path + "." + c.name) }
        }
        visit(self, "")
        return out
    }

    /// Marks all parameters below this module trainable or frozen.
    public func setTrainable(_ on: Bool) {
        for (_, t) in namedParameters() { t.isTrainable = on }
    }

    /// Number of scalars in all (deduplicated) parameters, and in the trainable ones.
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
