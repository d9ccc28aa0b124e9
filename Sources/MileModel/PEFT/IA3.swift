import Engine

/// How an IA3 vector acts on a linear (peft 0.7.1): feed-forward targets scale the input features
/// (vector [1, in]); the others scale the output features (vector [out, 1]).
public enum IA3Role: Sendable { case scaleInput, scaleOutput }

/// peft's IA3 on one linear: the vector `ia3_l` (ones) registered on the host layer as an adapter parameter.
struct IA3 {
    let vector: Tensor
    let role: IA3Role

    init(host: Module, inFeatures: Int, outFeatures: Int, role: IA3Role) {
        vector = Tensor.ones(role == .scaleInput ? [1, inFeatures] : [outFeatures, 1])
        self.role = role
        host.register(adapter: "ia3_l", vector)
    }

    /// The host's `layer(x)` with the input or the output scaled.
    func callAsFunction(_ x: Tensor, layer: (Tensor) -> Tensor) -> Tensor {
        let v = reshape(vector, [-1])
        return role == .scaleInput ? layer(x * v) : layer(x) * v
    }
}
