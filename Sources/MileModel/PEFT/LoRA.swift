import Engine

/// peft's LoRA on one layer: `lora_A.weight` (kaiming-uniform) and `lora_B.weight` (zeros) registered on the
/// host layer as adapter children, scaling alpha / r, dropout on the layer's input. The host says how A reads
/// the input (a linear, or the patch conv), so linears and convs share this one piece: for a conv, A is a conv
/// with the host's kernel and B a 1x1 conv, as peft's `Conv2d` LoRA.
final class LoRA {
    /// [r, in] for a linear, [r, C, k, k] for a conv.
    let a: Tensor
    /// [out, r] for a linear, [out, r, 1, 1] for a conv.
    let b: Tensor
    let scaling: Float
    let dropout: Float
    /// True while B·A is folded into the host's weight (the adapter path is then skipped).
    private(set) var merged = false

    init(host: Module, aShape: [Int], outFeatures: Int, alpha: Float, dropout: Float, rng: inout RNG) {
        let rank = aShape[0], fanIn = aShape.dropFirst().reduce(1, *)
        a = kaimingUniform(aShape, fanIn: fanIn, rng: &rng)
        b = Tensor.zeros(aShape.count == 2 ? [outFeatures, rank] : [outFeatures, rank, 1, 1])
        scaling = alpha / Float(rank)
        self.dropout = dropout
        host.register(adapter: "lora_A", WeightModule(a))
        host.register(adapter: "lora_B", WeightModule(b))
    }

    /// scaling · B(A(dropout(x))); `down(x, a)` applies A the way the host applies its own weight.
    func update(_ x: Tensor, random: RandomSource, training: Bool, down: (Tensor, Tensor) -> Tensor) -> Tensor {
        let low = down(drop(x, dropout, random, training: training), a)
        return scale(linear(low, weight: matrix(b), bias: nil), scaling)
    }

    /// weight += sign · scaling · B·A (peft `merge` for +1, `unmerge` for -1); a repeated call is a no-op.
    func fold(into weight: Tensor, sign: Float) {
        guard merged == (sign < 0) else { return }
        withNoGrad {
            let delta = reshape(matmul(matrix(b.detached()), matrix(a.detached())), weight.shape)
            weight.copy(from: weight.detached() + scale(delta, sign * scaling))
        }
        merged = sign > 0
    }

    /// A factor as the matrix [rows, rest] it is as a linear map.
    private func matrix(_ t: Tensor) -> Tensor {
        t.shape.count == 2 ? t : reshape(t, [t.shape[0], t.count / t.shape[0]])
    }
}
