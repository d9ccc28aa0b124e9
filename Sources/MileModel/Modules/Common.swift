import Engine

/// Shared random stream for dropout, LoRA dropout and stochastic depth (one per model, seeded).
public final class RandomSource {
    public var rng: RNG
    public init(_ rng: RNG) { self.rng = rng }
}

/// Children registered as "0", "1", ... (PyTorch's nn.ModuleList / nn.Sequential naming).
final class ModuleList<M: Module>: Module {
    private(set) var items: [M] = []
    init(_ items: [M]) {
        super.init()
        for (i, item) in items.enumerated() { self.items.append(register("\(i)", item)) }
    }
}

/// A module holding one parameter named `weight` (LoRA A/B factors, as peft's bias-free Linear/Conv2d).
final class WeightModule: Module {
    let weight: Tensor
    init(_ weight: Tensor) {
        self.weight = weight
        super.init()
        register(parameter: "weight", weight)
    }
}

/// Kaiming-uniform with a = sqrt(5) (PyTorch's default Linear/Conv init, peft's LoRA A init):
/// bound = 1 / sqrt(fan_in).
func kaimingUniform(_ shape: [Int], fanIn: Int, rng: inout RNG) -> Tensor {
    let bound = 1 / Float(fanIn).squareRoot()
    return Tensor.uniform(shape, low: -bound, high: bound, rng: &rng)
}

/// A Linear(in, out) with bias whose base weights keep upstream names (`weight`, `bias`) and that
/// can carry peft 0.7.1 adapters: LoRA (`lora_A.weight` [r, in], `lora_B.weight` [out, r]) or an IA3
/// vector (`ia3_l`, [1, in] scaling inputs for feed-forward targets, [out, 1] scaling outputs otherwise).
/// Base init: N(0, initializer_range) weight, zero bias (BERT's `_init_weights`; timm's ViT uses a
/// truncated normal of the same std).
final class AdaptedLinear: Module {
    let weight: Tensor
    let bias: Tensor
    private(set) var loraA: Tensor?
    private(set) var loraB: Tensor?
    private(set) var ia3: Tensor?
    private(set) var ia3Role: IA3Role = .scaleOutput
    private var loraScaling: Float = 0
    private var loraDropout: Float = 0
    /// True while B·A is folded into `weight` (the adapter path is then skipped).
    private(set) var merged = false
    let random: RandomSource

    init(_ inF: Int, _ outF: Int, std: Float, random: RandomSource) {
        self.random = random
        weight = Tensor.randn([outF, inF], std: std, rng: &random.rng)
        bias = Tensor.zeros([outF])
        super.init()
        register(parameter: "weight", weight)
        register(parameter: "bias", bias)
    }

    var inFeatures: Int { weight.shape[1] }
    var outFeatures: Int { weight.shape[0] }

    func addLoRA(rank: Int, alpha: Float, dropout: Float) {
        let a = kaimingUniform([rank, inFeatures], fanIn: inFeatures, rng: &random.rng)
        let b = Tensor.zeros([outFeatures, rank])
        register("lora_A", WeightModule(a))
        register("lora_B", WeightModule(b))
        loraA = a; loraB = b
        loraScaling = alpha / Float(rank)
        loraDropout = dropout
    }

    func addIA3(_ role: IA3Role) {
        let vector = Tensor.ones(role == .scaleInput ? [1, inFeatures] : [outFeatures, 1])
        register(parameter: "ia3_l", vector)
        ia3 = vector; ia3Role = role
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        if let l = ia3 {
            let vector = reshape(l, [-1])
            if ia3Role == .scaleInput { return linear(x * vector, weight: weight, bias: bias) }
            return linear(x, weight: weight, bias: bias) * vector
        }
        let out = linear(x, weight: weight, bias: bias)
        guard let a = loraA, let b = loraB, !merged else { return out }
        let dropped = dropout(x, p: loraDropout, rng: &random.rng, training: training)
        let update = linear(linear(dropped, weight: a, bias: nil), weight: b, bias: nil)
        return out + scale(update, loraScaling)
    }

    /// self(gelu(h)). A plain linear uses the fused op, which keeps h for its backward instead of gelu(h)
    /// as well; with an adapter the adapter's own ops read gelu(h).
    func callAsFunction(geluOf h: Tensor) -> Tensor {
        guard ia3 == nil, loraA == nil || merged else { return self(gelu(h)) }
        return geluLinear(h, weight: weight, bias: bias)
    }

    /// W += scaling · B·A (peft `merge`); forward then skips the adapter path.
    func mergeLoRA() { foldLoRA(sign: 1) }
    /// W -= scaling · B·A (peft `unmerge`).
    func unmergeLoRA() { foldLoRA(sign: -1) }

    private func foldLoRA(sign: Float) {
        guard let a = loraA, let b = loraB, merged == (sign < 0) else { return }
        withNoGrad {
            let delta = matmul(b.detached(), a.detached())  // [out, r] x [r, in]
            weight.copy(from: weight.detached() + scale(delta, sign * loraScaling))
        }
        merged = sign > 0
    }
}

/// Inverted dropout; a no-op for p = 0 (ViT) without touching the random stream.
/// `paddedRows`: x holds packed rows of a padded batch (see `PackedTokens`).
func drop(_ x: Tensor, _ p: Float, _ random: RandomSource, training: Bool, paddedRows: [Int]? = nil) -> Tensor {
    guard p > 0, training else { return x }
    return dropout(x, p: p, rng: &random.rng, training: true, paddedRows: paddedRows)
}
