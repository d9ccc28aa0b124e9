import Engine
import Foundation

extension PEFTTargets {
    /// OFA / BiomedGPT (spec TABLE5 §c, translated from MILE's configs): LoRA on `q_proj` and `v_proj` (the
    /// bart default; by suffix both self- and cross-attention of every layer, never `*_pos_q_linear`); IA3
    /// on `k_proj`, `v_proj` (output scaling) and `fc2` (feed-forward: input scaling).
    public static let ofa = PEFTTargets(lora: ["q_proj", "v_proj"], ia3: ["k_proj", "v_proj", "fc2"],
                                        ia3FeedForward: ["fc2"])
}

/// BiomedGPT-Tiny = OFA-tiny (Table 5) as MILE would fine-tune it: `encoder` (ResNet stem + unified
/// Transformer encoder over [image tokens; question]) and `decoder` (answer decoder cross-attending to
/// the encoder), PEFT per slot (`enc`, `dec`). Parameter names are the HF port's (`encoder.embed_images.
/// layer1.0.conv1.weight`, `encoder.layers.0.self_attn.q_proj.weight`, `decoder.layers.0.cross_attn.
/// v_proj.weight`, ...), so converted checkpoints load by name.
///
/// The token table is one tensor shared by `encoder.embed_tokens`, `decoder.embed_tokens` and the output
/// projection; it is listed (and saved) once, as `encoder.embed_tokens.weight`, the first path that reaches
/// it. It is trainable only when both slots are `T`: an `F` slot freezes it (as MILE's freezing loop over
/// that module's parameters does) and a PEFT method freezes it (peft's `get_peft_model` freezes every base
/// parameter of the wrapped module, and the shared table is one of them) — the rule that reproduced every
/// MISS row, giving 38.77 / 39.72 / 38.66 / 38.69 % for enc T with decoder LoRA r8 / Prefix / IA3 / PTV2.
///
/// Token layout: questions as `MISSModel`'s (`[ENC] q [SEP]`, padding with mask 0; the whole row, first
/// token included, is the encoder's text); answers `[DEC] a [SEP]` then PAD: `[DEC]` plays OFA's bos, `[SEP]`
/// its eos, `[PAD]` its pad (the config's `bos_token_id`, `eos_token_id`, `pad_token_id`). The decoder
/// starts from bos and reads the answer only (BiomedGPT's `prompt_type prev_output` would put the question
/// in front of it again); see docs/MODEL.md for what else is simplified relative to OFA.
public final class OFAModel: Module, VQAModel {
    public static let moduleSlots = [ModuleSlot(key: "enc", header: "Encoder", path: "encoder", takesPrompts: false),
                                     ModuleSlot(key: "dec", header: "Decoder", path: "decoder", takesPrompts: true)]

    public let config: OFAConfig
    public let assignment: PEFTAssignment
    let sharedEmbedding: Embedding
    let encoder: OFAEncoder
    let decoder: OFADecoder
    let decoderPrompt: PromptEncoder?
    let random: RandomSource

    /// Candidate answers (token ids without bos/eos) that generation is constrained to, OFA's VQA trie
    /// (`tasks/mm_tasks/vqa_gen.py`): at every step only tokens continuing some candidate (or eos after a
    /// complete one) can be chosen. nil: unconstrained.
    public var allowedAnswers: [[Int32]]? {
        didSet { answerTrie = allowedAnswers.map { AnswerTrie($0, eos: config.eosTokenId) } }
    }
    private(set) var answerTrie: AnswerTrie?

    public func constrainAnswers(to candidates: [[Int32]]?) throws { allowedAnswers = candidates }

    public init(config: OFAConfig, assignment: PEFTAssignment, rng: RNG) throws {
        try config.validate()
        guard assignment.slots == Self.moduleSlots else {
            throw ConfigError("an OFA assignment needs the slots \(Self.moduleSlots.map(\.key).joined(separator: ", ")), got \(assignment.slots.map(\.key).joined(separator: ", "))")
        }
        self.config = config
        self.assignment = assignment
        random = RandomSource(rng)
        sharedEmbedding = fairseqEmbedding(config.vocabSize, config.dModel, padding: Int(config.padTokenId), random: random)
        encoder = OFAEncoder(config, embedTokens: sharedEmbedding, random: random)
        decoder = OFADecoder(config, embedTokens: sharedEmbedding, random: random)
        let decMode = assignment.mode("dec") ?? .frozen
        decoderPrompt = decMode.isPrompt
            ? PromptEncoder(tokens: config.prefixTokens, layers: config.decoderLayers, hidden: config.dModel,
                            heads: config.attentionHeads, projection: decMode == .prefix, random: random)
            : nil
        super.init()
        register("encoder", encoder)
        register("decoder", decoder)
        if let p = decoderPrompt { decoder.register(adapter: "prompt_encoder", p) }
        try applyAdapters()
    }

    // MARK: PEFT wiring

    /// The two slots with their modules and modes, in the order adapters are added.
    var slots: [(name: String, module: Module, mode: ModuleMode)] {
        zip(assignment.slots, zip(assignment.modes, [encoder as Module, decoder])).map { ($0.key, $1.1, $1.0) }
    }

    private func applyAdapters() throws {
        let lora = LoRASettings(rank: assignment.rank, alpha: config.loraAlpha, dropout: config.loraDropout)
        for slot in slots {
            try PEFTInjection.inject(slot.mode, into: slot.module, targets: .ofa, lora: lora, slot: slot.name)
        }
        for slot in slots { PEFTInjection.applyTrainability(slot.mode, to: slot.module) }
        sharedEmbedding.weight.isTrainable = slots.allSatisfy { $0.mode == .trained }
    }

    /// Folds every LoRA update into its base weight (peft `merge_adapter`), or undoes it.
    public func mergeLoRA(_ on: Bool) { PEFTInjection.mergeLoRA(on, in: self) }

    // MARK: Forward

    func encode(images: Tensor, question: TokenBatch) throws -> OFAEncoderOutput {
        let s = config.imageSize
        guard images.shape == [question.batch, 3, s, s] else {
            throw ConfigError("images must have shape [\(question.batch), 3, \(s), \(s)], got \(images.shape)")
        }
        guard question.length <= config.maxPositions else {
            throw ConfigError("question of \(question.length) tokens exceeds max_positions \(config.maxPositions)")
        }
        return encoder(images: images, ids: question.ids, keep: question.mask.map { $0 == 0 ? 0 : 1 },
                       batch: question.batch, length: question.length)
    }

    /// The decoder's prompt K/V per layer, [rows, n, d] each (nil without a prompt method).
    func promptKeyValues(rows: Int) -> [OFAKeyValues]? {
        guard let prompt = decoderPrompt else { return nil }
        let (n, d) = (prompt.tokens, config.dModel)
        func flat(_ t: Tensor) -> Tensor { reshape(permute(t, [0, 2, 1, 3]), [rows, n, d]) }   // [R, H, n, dh] -> [R, n, d]
        return prompt.prefixes(batch: rows).map { OFAKeyValues(key: flat($0.key), value: flat($0.value)) }
    }

    /// Teacher-forced decoder states [B, T, d] for decoder input ids [B, T].
    func decode(ids: [Int32], batch: Int, length: Int, encoder memory: OFAEncoderOutput) throws -> Tensor {
        guard length <= config.maxPositions else {
            throw ConfigError("answer of \(length) tokens exceeds max_positions \(config.maxPositions)")
        }
        return decoder(ids: ids, batch: batch, length: length, encoder: memory, prefixes: promptKeyValues(rows: batch))
    }

    /// The training loss: encoder input = image tokens + question; the decoder reads `[DEC] a [SEP]`
    /// without its last position and predicts it shifted by one (`a [SEP]`); targets that are PAD (or masked
    /// out) are ignored; label-smoothed cross entropy (smoothing 0.1) averaged over the kept target tokens
    /// (fairseq's per-token normalisation). images [B, 3, S, S].
    public func loss(images: Tensor, question: TokenBatch, answer: TokenBatch) throws -> Tensor {
        guard answer.batch == question.batch else {
            throw ConfigError("answer batch \(answer.batch) != question batch \(question.batch)")
        }
        guard answer.length >= 2 else { throw ConfigError("answers need at least [DEC] and one token") }
        let memory = try encode(images: images, question: question)
        let b = answer.batch, t = answer.length - 1
        var inputs = [Int32](), targets = [Int32]()
        inputs.reserveCapacity(b * t)
        targets.reserveCapacity(b * t)
        for row in 0..<b {
            for i in 0..<t {
                inputs.append(answer.ids[row * answer.length + i])
                let j = row * answer.length + i + 1
                targets.append(answer.ids[j] == config.padTokenId || answer.mask[j] == 0 ? -100 : answer.ids[j])
            }
        }
        let kept = targets.indices.filter { targets[$0] != -100 }
        guard !kept.isEmpty else { throw ConfigError("the answer batch has no target token (all PAD)") }
        let hidden = reshape(try decode(ids: inputs, batch: b, length: t, encoder: memory), [b * t, config.dModel])
        // The vocabulary projection only on rows with a target (an ignored row adds nothing to the loss).
        let rows = kept.count == targets.count ? hidden : selectRows(hidden, kept)
        let perToken = crossEntropy(logits: decoder.logits(rows), targets: kept.map { targets[$0] }, labelSmoothing: 0.1)
        return scale(sum(perToken), 1 / Float(kept.count))
    }

    /// Teacher-forced logits [B, T, vocab] of decoder input ids [B, T] (tests; no grad needed).
    func teacherForcedLogits(images: Tensor, question: TokenBatch, decoderIds: [Int32], length: Int) throws -> Tensor {
        let memory = try encode(images: images, question: question)
        return decoder.logits(try decode(ids: decoderIds, batch: question.batch, length: length, encoder: memory))
    }

    // MARK: Parameters and state

    /// Every parameter by HF name (the tied table once), registration order.
    public func parameters() -> [(name: String, tensor: Tensor)] { namedParameters() }

    public var imageSize: Int { config.imageSize }
    public var maxPositions: Int { config.maxPositions }

    // save(to:), load(from:strict:) and the counts are VQAModel's. A converted HF checkpoint's
    // `decoder.embed_tokens.weight` and `decoder.output_projection.weight` are the shared table again, and its
    // `num_batches_tracked` are not kept: `load` returns them as unexpected.

    /// Counts of a cell from a shape-only build (no weights allocated).
    public static func count(config: OFAConfig, assignment: PEFTAssignment) throws -> ParameterCount {
        try withShapeOnly { ParameterCount(try OFAModel(config: config, assignment: assignment, rng: RNG(seed: 0))) }
    }

    /// Total parameters of each slot (`enc`, `dec`), adapters included, from a shape-only build. The shared
    /// token table is counted in both (it belongs to both modules).
    public static func slotTotals(config: OFAConfig, assignment: PEFTAssignment) throws -> [String: Int] {
        try withShapeOnly {
            let model = try OFAModel(config: config, assignment: assignment, rng: RNG(seed: 0))
            return Dictionary(uniqueKeysWithValues: model.slots.map { ($0.name, ParameterCount($0.module).total) })
        }
    }
}

extension PEFTAssignment {
    /// An OFA cell: encoder and decoder modes.
    public init(enc: ModuleMode, dec: ModuleMode, rank: Int = 8) throws {
        try self.init(slots: OFAModel.moduleSlots, modes: [enc, dec], rank: rank)
    }
}
