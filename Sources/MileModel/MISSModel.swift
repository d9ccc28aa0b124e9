import Engine
import Foundation

/// MISS as fine-tuned by MILE: `visual_encoder` (ViT) -> `text_encoder` (JTM, cross-attends to all
/// image tokens) -> `text_decoder` (causal BERT, cross-attends to the JTM output) with PEFT applied
/// per module by `PEFTAssignment`. Parameter names are upstream's module paths.
public final class MISSModel: Module {
    public let config: ModelConfig
    public let assignment: PEFTAssignment
    let visualEncoder: VisionTransformer
    let textEncoder: BertModel
    let textDecoder: BertLMHeadModel
    let encoderPrompt: PromptEncoder?
    let decoderPrompt: PromptEncoder?
    let random: RandomSource

    public init(config: ModelConfig, assignment: PEFTAssignment, rng: RNG) throws {
        try config.validate()
        self.config = config
        self.assignment = assignment
        random = RandomSource(rng)
        visualEncoder = VisionTransformer(config.vision, random: random)
        textEncoder = BertModel(config.text, layers: config.textLayers, crossWidth: config.visionWidth,
                                causal: false, random: random)
        textDecoder = BertLMHeadModel(config.text, layers: config.decoderLayers, random: random)
        encoderPrompt = Self.promptEncoder(config, layers: config.textLayers, mode: assignment.jtm, random: random)
        decoderPrompt = Self.promptEncoder(config, layers: config.decoderLayers, mode: assignment.dec, random: random)
        super.init()
        register("visual_encoder", visualEncoder)
        register("text_encoder", textEncoder)
        register("text_decoder", textDecoder)
        if let p = encoderPrompt { textEncoder.register(adapter: "prompt_encoder", p) }
        if let p = decoderPrompt { textDecoder.register(adapter: "prompt_encoder", p) }
        try applyAdapters()
    }

    private static func promptEncoder(_ c: ModelConfig, layers: Int, mode: ModuleMode,
                                      random: RandomSource) -> PromptEncoder? {
        guard mode.isPrompt else { return nil }
        return PromptEncoder(tokens: c.prefixTokens, layers: layers, hidden: c.textHidden, heads: c.textHeads,
                             projection: mode == .prefix, random: random)
    }

    // MARK: PEFT wiring (spec §3)

    /// The three modules with their slot names, in the order adapters are added.
    var slots: [(name: String, module: Module, mode: ModuleMode, targets: PEFTTargets)] {
        let modules: [(Module, PEFTTargets)] = [(visualEncoder, .vit(ia3: config.vitIA3Target)), (textEncoder, .bert),
                                                (textDecoder, .bert)]
        return zip(assignment.slots, zip(assignment.modes, modules)).map { ($0.key, $1.1.0, $1.0, $1.1.1) }
    }

    private func applyAdapters() throws {
        let lora = LoRASettings(rank: assignment.rank, alpha: config.loraAlpha, dropout: config.loraDropout)
        for slot in slots {
            try PEFTInjection.inject(slot.mode, into: slot.module, targets: slot.targets, lora: lora, slot: slot.name)
        }
        for slot in slots { PEFTInjection.applyTrainability(slot.mode, to: slot.module) }
    }

    /// Folds every LoRA update into its base weight (peft `merge_adapter`), or undoes it.
    public func mergeLoRA(_ on: Bool) { PEFTInjection.mergeLoRA(on, in: self) }

    // MARK: Forward

    /// The loss runs the JTM without the question padding (`PackedTokens`) unless the JTM carries a prompt
    /// (whose keys sit in front of every item's tokens), and the decoder cross-attends to those rows only.
    /// Real positions get the same values either way (tests compare the two); off only to measure or test
    /// the padded path.
    public var packQuestions = true

    /// JTM states [B, Tq, h] for the question, cross-attending to all image tokens, at every question
    /// position, padding included: generation's decoder attends to all of them, as upstream.
    func encode(images: Tensor, question: TokenBatch) throws -> Tensor {
        try encode(images: images, question: question, pack: false).states
    }

    /// The JTM states the loss uses: without the question padding when packing applies (`packed` is then
    /// the layout of the returned rows [rows, h]), else all [B, Tq, h] positions. The loss's decoder masks
    /// the padding out, so it never needs those states.
    func encodeForLoss(images: Tensor, question: TokenBatch) throws -> (states: Tensor, packed: PackedTokens?) {
        try encode(images: images, question: question, pack: packQuestions && encoderPrompt == nil)
    }

    private func encode(images: Tensor, question: TokenBatch, pack: Bool) throws -> (states: Tensor, packed: PackedTokens?) {
        try check(images: images, batch: question.batch)
        return try encode(imageTokens: visualEncoder(images), question: question, pack: pack)
    }

    private func encode(imageTokens: Tensor, question: TokenBatch, pack: Bool) throws -> (states: Tensor, packed: PackedTokens?) {
        try checkPositions(question.length, mode: assignment.jtm, what: "question")
        if pack, let packed = PackedTokens(ids: question.ids, mask: question.mask, batch: question.batch, length: question.length) {
            return (textEncoder(packed: packed, memory: imageTokens), packed)
        }
        return (textEncoder(ids: question.ids, mask: question.mask, batch: question.batch, length: question.length,
                            memory: imageTokens, memoryMask: nil, prefixes: encoderPrompt?.prefixes(batch: question.batch)), nil)
    }

    /// Decoder hidden states [B, T, h]; `memoryMask` over the question tokens (nil = all ones), or
    /// `packedMemory`: memory holds only the real question tokens, laid out as these.
    func decode(_ tokens: TokenBatch, memory: Tensor, memoryMask: Tensor?, cachedMemory: [LayerPrefix]? = nil,
                packedMemory: PackedTokens? = nil) throws -> Tensor {
        try checkPositions(tokens.length, mode: assignment.dec, what: "answer")
        return textDecoder.bert(ids: tokens.ids, mask: tokens.mask, batch: tokens.batch, length: tokens.length,
                                memory: memory, memoryMask: memoryMask,
                                prefixes: decoderPrompt?.prefixes(batch: tokens.batch), cachedMemory: cachedMemory,
                                packedMemory: packedMemory)
    }

    /// The training loss (mile_vqa.py): answer `[DEC] a [SEP]` teacher-forced, PAD targets ignored,
    /// cross-entropy with label smoothing 0.1 on the shifted sequence, summed per sequence, then
    /// summed over the batch and divided by the batch size. The decoder cross-attends with the real
    /// question mask. images [B, 3, S, S].
    public func loss(images: Tensor, question: TokenBatch, answer: TokenBatch) throws -> Tensor {
        try check(images: images, batch: question.batch)
        return try loss(imageTokens: visualEncoder(images), question: question, answer: answer)
    }

    /// `loss` from the ViT's output [B, N, w], so that other objectives can share one ViT pass.
    func loss(imageTokens: Tensor, question: TokenBatch, answer: TokenBatch) throws -> Tensor {
        guard answer.batch == question.batch else {
            throw ConfigError("answer batch \(answer.batch) != question batch \(question.batch)")
        }
        guard answer.length >= 2 else { throw ConfigError("answers need at least [DEC] and one token") }
        let (memory, packed) = try encode(imageTokens: imageTokens, question: question,
                                          pack: packQuestions && encoderPrompt == nil)
        let hidden = packed == nil
            ? try decode(answer, memory: memory, memoryMask: paddingMask(question.mask, batch: question.batch, length: question.length))
            : try decode(answer, memory: memory, memoryMask: nil, packedMemory: packed)
        let b = answer.batch, t = answer.length
        var targets = [Int32]()   // position i of each row predicts token i + 1; PAD targets are ignored
        targets.reserveCapacity(b * (t - 1))
        for row in 0..<b {
            for i in 1..<t {
                let id = answer.ids[row * t + i]
                targets.append(id == config.padTokenId ? -100 : id)
            }
        }
        // The vocabulary head runs only on positions with a target: the last position predicts nothing and
        // an ignored target adds 0 to the loss and its gradients, so the [N, V] logits of those rows would
        // be pure waste (with short answers padded to the longest, often a third of the rows or more).
        let positions = reshape(slice(hidden, axis: 1, range: 0..<(t - 1)), [b * (t - 1), config.textHidden])
        let kept = targets.indices.filter { targets[$0] != -100 }
        let rows = kept.count == targets.count ? positions : selectRows(positions, kept)
        let perToken = crossEntropy(logits: textDecoder.logits(rows), targets: kept.map { targets[$0] },
                                    labelSmoothing: 0.1)
        return scale(sum(perToken), 1 / Float(b))
    }

    /// `loss` with row-major [B, T] id and mask arrays; B is the image batch, each T is count / B.
    public func loss(images: Tensor, questionIds: [Int32], questionMask: [Int32], answerIds: [Int32],
                     answerMask: [Int32]) throws -> Tensor {
        let b = images.shape.first ?? 0
        return try loss(images: images, question: Self.tokens(questionIds, questionMask, batch: b),
                        answer: Self.tokens(answerIds, answerMask, batch: b))
    }

    static func tokens(_ ids: [Int32], _ mask: [Int32], batch: Int) throws -> TokenBatch {
        guard batch > 0, ids.count % batch == 0 else {
            throw ConfigError("\(ids.count) token ids do not split into \(batch) rows")
        }
        return try TokenBatch(ids: ids, mask: mask, batch: batch, length: ids.count / batch)
    }

    private func check(images: Tensor, batch: Int) throws {
        let s = config.imageSize
        guard images.shape == [batch, 3, s, s] else {
            throw ConfigError("images must have shape [\(batch), 3, \(s), \(s)], got \(images.shape)")
        }
    }

    private func checkPositions(_ length: Int, mode: ModuleMode, what: String) throws {
        let offset = mode.isPrompt ? config.prefixTokens : 0
        guard length + offset <= config.maxPositions else {
            throw ConfigError("\(what) of \(length) tokens (+\(offset) prefix) exceeds max_positions \(config.maxPositions)")
        }
    }

    // MARK: Parameters and state

    /// Every parameter by upstream name (tied weights once), registration order.
    public func parameters() -> [(name: String, tensor: Tensor)] { namedParameters() }

    public var imageSize: Int { config.imageSize }
}
