// Reverse mode over a tape of nodes. A node exists only for an op result that requires grad, so
// backward visits only nodes on a path from a trainable leaf. Nodes reference their input *nodes*, never
// input tensors: only what a backward closure explicitly saves stays alive.

final class Node {
    let shape: [Int]
    let meta: Bool
    var inputs: [Node?]
    /// (node, its output gradient) -> accumulates (+=) into the inputs' gradients.
    var backwardFn: ((Node, Tensor) -> Void)?
    /// Gradient accumulated for the tensor this node produced (op nodes only).
    var grad: Tensor?
    /// Trainable leaf whose `.grad` receives the gradient (leaf nodes only).
    weak var leaf: Tensor?

    init(shape: [Int], meta: Bool, inputs: [Node?], backward: @escaping (Node, Tensor) -> Void) {
        self.shape = shape
        self.meta = meta
        self.inputs = inputs
        backwardFn = backward
    }

    init(leaf: Tensor) {
        shape = leaf.shape
        meta = leaf.isMeta
        inputs = []
        self.leaf = leaf
    }

    /// The gradient accumulated so far, nil before the first contribution. A leaf gradient left from a
    /// run in the other mode (meta vs real) does not count.
    private var existing: Tensor? {
        guard let leaf else { return grad }
        guard let g = leaf.grad, g.isMeta == meta else { return nil }
        check(g.count == leaf.count, "grad of shape \(g.shape) assigned to a tensor of shape \(leaf.shape)")
        return g
    }

    /// True once some gradient has been accumulated for this node's tensor.
    var hasGradient: Bool { existing != nil }

    private func install(_ g: Tensor) {
        if let leaf { leaf.grad = g } else { grad = g }
    }

    /// The gradient buffer of this node's tensor, created as zeros on first use (then += into it).
    func gradTensor() -> Tensor {
        if let g = existing { return g }
        let g = Tensor(empty: shape, meta: meta)
        if let d = g.data { fill(d, count: g.count, with: 0) }
        install(g)
        return g
    }

    /// The gradient buffer for a kernel that can either overwrite or accumulate (GEMM beta 0 or 1).
    /// `fresh`: the buffer is new and uninitialised, so the caller must overwrite every element.
    func gradForWrite() -> (tensor: Tensor, fresh: Bool) {
        if let g = existing { return (g, false) }
        let g = Tensor(empty: shape, meta: meta)
        install(g)
        return (g, true)
    }

    /// Accumulates `g` (same element count). On the first contribution the gradient becomes a view of g's
    /// buffer instead of a zeroed copy; valid because g is the exclusive gradient of the node being
    /// processed, which is released right after and never read again.
    func accumulate(adopting g: Tensor) {
        if let d = existing {
            if let dp = d.data, let gp = g.data {
                parallelFor(d.count, grain: 32768) { r in for i in r { dp[i] += gp[i] } }
            }
        } else {
            install(Tensor(shape: shape, buffer: g.buffer))
        }
    }
}

/// Counters for tests: how many op nodes the last backward() ran.
public enum Autograd {
    public internal(set) static var lastVisitedNodes = 0
}

/// True when an op on these inputs must record a node.
@inline(__always)
func needsGrad(_ xs: Tensor...) -> Bool {
    Mode.gradEnabled && xs.contains { $0.requiresGrad }
}

/// Output tensor of an op: meta when in shape-only mode or when any input is meta.
@inline(__always)
func output(_ shape: [Int], _ inputs: Tensor...) -> Tensor {
    Tensor(empty: shape, meta: inputs.contains { $0.isMeta })
}

extension Tensor {
    /// Records the node of this op result. Call only when needsGrad(inputs) is true. `inputs` order is
    /// the order of `ins` seen by the closure; an entry is nil when that input needs no gradient.
    func record(_ inputs: [Tensor], _ backward: @escaping (_ g: Tensor, _ ins: [Node?]) -> Void) {
        node = Node(shape: shape, meta: isMeta, inputs: inputs.map { $0.gradNode }) { n, g in
            backward(g, n.inputs)
        }
    }

    /// Seeds d(self)/d(self) = 1 and runs reverse mode. Consumes the graph (saved tensors are released
    /// as each node finishes, like PyTorch without retain_graph). `gradientDone` is called for each
    /// trainable leaf as soon as its gradient is final (every op that uses it has run its backward), so a
    /// caller can consume and drop the gradient while the rest of the backward pass runs.
    public func backward(gradientDone: ((Tensor) -> Void)? = nil) {
        check(count == 1, "backward() needs a single-element tensor, got shape \(shape)")
        guard let root = gradNode else { return }
        let savedGrad = Mode.gradEnabled, savedMeta = Mode.shapeOnly
        Mode.gradEnabled = false
        Mode.shapeOnly = isMeta
        defer { Mode.gradEnabled = savedGrad; Mode.shapeOnly = savedMeta }
        let seed = root.gradTensor()
        seed.data?[0] += 1
        let order = topologicalOrder(root)
        var users = gradientDone == nil ? [:] : leafUseCounts(order)
        var visited = 0
        for n in order.reversed() {
            if let fn = n.backwardFn, let g = n.grad {
                fn(n, g)
                visited += 1
            }
            if let gradientDone { finishLeaves(of: n, users: &users, gradientDone) }
            n.backwardFn = nil
            n.grad = nil
            n.inputs = []
        }
        Autograd.lastVisitedNodes = visited
    }
}

/// For each leaf node in `order`, how many op-node inputs refer to it.
private func leafUseCounts(_ order: [Node]) -> [ObjectIdentifier: Int] {
    var users: [ObjectIdentifier: Int] = [:]
    for n in order { for case let c? in n.inputs where c.leaf != nil { users[ObjectIdentifier(c), default: 0] += 1 } }
    return users
}

/// After node `n` ran: reports each leaf input of `n` whose last user this was and that has a gradient.
private func finishLeaves(of n: Node, users: inout [ObjectIdentifier: Int], _ done: (Tensor) -> Void) {
    for case let c? in n.inputs {
        guard let leaf = c.leaf else { continue }
        let id = ObjectIdentifier(c)
        users[id, default: 1] -= 1
        if users[id] == 0, leaf.grad != nil { done(leaf) }
    }
}

/// Post-order (inputs before users) of the nodes reachable from `root`, iterative.
func topologicalOrder(_ root: Node) -> [Node] {
    var order: [Node] = []
    var seen: Set<ObjectIdentifier> = [ObjectIdentifier(root)]
    var stack: [(Node, Int)] = [(root, 0)]
    while let (n, i) = stack.last {
        if i < n.inputs.count {
            stack[stack.count - 1].1 = i + 1
            if let c = n.inputs[i], seen.insert(ObjectIdentifier(c)).inserted { stack.append((c, 0)) }
        } else {
            stack.removeLast()
            order.append(n)
        }
    }
    return order
}
