import Engine

/// peft's PrefixEncoder: prefix tuning = Embedding(n, d) -> Linear(d, d) -> Tanh -> Linear(d, L·2·d);
/// P-tuning v2 = Embedding(n, L·2·d). Output row layout per token: [layer][key|value][head][head dim],
/// as peft's view(n, L·2, heads, head dim).permute(2, 0, 3, 1, 4).split(2).
final class PromptEncoder: Module {
    let embedding: Embedding
    /// transform.0 and transform.2 (index 1 is the parameter-free Tanh of peft's nn.Sequential).
    let transform: (first: Linear, second: Linear)?
    let tokens: Int
    let layers: Int
    let hidden: Int
    let heads: Int

    /// `tokens` virtual tokens for a BERT of `layers` layers, `hidden` wide with `heads` heads.
    init(tokens: Int, layers: Int, hidden d: Int, heads: Int, projection: Bool, random: RandomSource) {
        let out = layers * 2 * d
        self.tokens = tokens; self.layers = layers; hidden = d; self.heads = heads
        embedding = Embedding(tokens, projection ? d : out, rng: &random.rng)
        transform = projection ? (Linear(d, d, rng: &random.rng), Linear(d, out, rng: &random.rng)) : nil
        super.init()
        // peft's prompt embedding is a plain torch Embedding: N(0, 1), not BERT's N(0, 0.02).
        embedding.weight.copy(from: Tensor.randn(embedding.weight.shape, std: 1, rng: &random.rng))
        register("embedding", embedding)
        if let t = transform {
            let sequential = register("transform", Module())
            sequential.register("0", t.first)
            sequential.register("2", t.second)
        }
    }

    /// The prefix K/V of every layer, expanded over the batch.
    func prefixes(batch: Int) -> [LayerPrefix] {
        var table = embedding.weight                 // all n virtual tokens, in order
        if let t = transform { table = t.second(tanh(t.first(table))) }   // [n, L·2·d]
        let dh = hidden / heads
        let expand = Tensor.zeros([batch, heads, tokens, dh])
        func part(_ index: Int) -> Tensor {
            let cols = slice(table, axis: 1, range: (index * hidden)..<((index + 1) * hidden))   // [n, d]
            return permute(reshape(cols, [1, tokens, heads, dh]), [0, 2, 1, 3]) + expand
        }
        return (0..<layers).map { LayerPrefix(key: part(2 * $0), value: part(2 * $0 + 1)) }
    }
}
