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

/// A Linear(in, out) with bias whose base weights keep upstream names (`weight`, `bias`) and that can carry
/// a peft 0.7.1 adapter (`LoRA`, `IA3`). Base init: N(0, initializer_range) weight, zero bias (BERT's
/// `_init_weights`; timm's ViT uses a truncated normal of the same std).
final class AdaptedLinear: Module, AdaptableLayer {
    let weight: Tensor
    let bias: Tensor
    private(set) var lora: LoRA?
    private(set) var ia3: IA3?
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
        lora = LoRA(host: self, aShape: [rank, inFeatures], outFeatures: outFeatures, alpha: alpha, dropout: dropout,
                    rng: &random.rng)
    }

    func addIA3(_ role: IA3Role) {
        ia3 = IA3(host: self, inFeatures: inFeatures, outFeatures: outFeatures, role: role)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        if let ia3 { return ia3(x) { linear($0, weight: weight, bias: bias) } }
        let out = linear(x, weight: weight, bias: bias)
        guard let lora, !lora.merged else { return out }
        return out + lora.update(x, random: random, training: training) { linear($0, weight: $1, bias: nil) }
    }

    /// self(gelu(h)). A plain linear uses the fused op, which keeps h for its backward instead of gelu(h)
    /// as well; with an adapter the adapter's own ops read gelu(h).
    func callAsFunction(geluOf h: Tensor) -> Tensor {
        guard ia3 == nil, lora?.merged ?? true else { return self(gelu(h)) }
        return geluLinear(h, weight: weight, bias: bias)
    }
}

/// Inverted dropout; a no-op for p = 0 (ViT) without touching the random stream.
/// `paddedRows`: x holds packed rows of a padded batch (see `PackedTokens`).
func drop(_ x: Tensor, _ p: Float, _ random: RandomSource, training: Bool, paddedRows: [Int]? = nil) -> Tensor {
    guard p > 0, training else { return x }
    return dropout(x, p: p, rng: &random.rng, training: true, paddedRows: paddedRows)
}

/// Stochastic-depth rates rising linearly from 0 (first layer) to `rate` (last layer), as timm and fairseq.
func stochasticDepthRates(_ rate: Float, layers n: Int) -> [Float] {
    (0..<n).map { i in n > 1 ? rate * Float(i) / Float(n - 1) : 0 }
}
