import Engine

/// Answer generation: decoding starts from bos (`[DEC]`), `maxLength` counts it, eos (`[SEP]`) ends a
/// sequence; greedy for one beam, else the HF beam search of `BeamSearch` (length penalty 1, no early
/// stopping; BiomedGPT evaluates with beam 1 or 5). The decoder cross-attends to the encoder states with the
/// question padding masked (fairseq's `encoder_padding_mask`). Each step feeds only the newest token through
/// the decoder with a self-attention key/value cache; the cross-attention keys/values and the position biases
/// are computed once per call. `useCache: false` recomputes the whole prefix every step (the reference).
extension OFAModel {
    /// Per question, the generated token ids after bos up to (excluding) eos or PAD.
    public func generate(images: Tensor, question: TokenBatch, beams: Int = 3, maxLength: Int = 10,
                         minLength: Int = 1) throws -> [[Int32]] {
        try generate(images: images, question: question, beams: beams, maxLength: maxLength, minLength: minLength,
                     greedyForOneBeam: true)
    }

    /// `greedyForOneBeam: false` runs the beam-search code path even for one beam; `useCache: false`
    /// recomputes the whole prefix at every step.
    func generate(images: Tensor, question: TokenBatch, beams: Int, maxLength: Int, minLength: Int,
                  greedyForOneBeam: Bool, useCache: Bool = true) throws -> [[Int32]] {
        guard beams >= 1, maxLength >= 2 else {
            throw ConfigError("generation needs beams >= 1 and maxLength >= 2, got \(beams) and \(maxLength)")
        }
        guard maxLength <= config.maxPositions else {
            throw ConfigError("maxLength \(maxLength) exceeds max_positions \(config.maxPositions)")
        }
        let wasTraining = training
        train(false)
        defer { train(wasTraining) }
        return try withNoGrad {
            let memory = try encode(images: images, question: question)
            let greedy = beams == 1 && greedyForOneBeam
            var stepper = OFAStepDecoder(model: self, memory: memory, times: greedy ? 1 : beams, maxLength: maxLength,
                                         cached: useCache)
            let search = BeamSearch(vocab: config.vocabSize, start: config.bosTokenId, end: config.eosTokenId,
                                    pad: config.padTokenId)
            let sequences = greedy
                ? try search.greedy(&stepper, batch: question.batch, maxLength: maxLength, minLength: minLength)
                : try search.beamSearch(&stepper, batch: question.batch, beams: beams, maxLength: maxLength,
                                        minLength: minLength)
            return sequences.map { Array($0.dropFirst().prefix { $0 != config.eosTokenId && $0 != config.padTokenId }) }
        }
    }

    /// The decoder's self-attention K/V before any token, for `rows` rows: the prompt prefix or nothing.
    func initialDecoderCache(rows: Int) -> [OFAKeyValues?] {
        promptKeyValues(rows: rows)?.map { Optional($0) } ?? Array(repeating: nil, count: config.decoderLayers)
    }
}

/// OFA's VQA answer constraint: a trie over the candidate answers, each followed by eos.
struct AnswerTrie {
    private var next: [[Int32]: Set<Int32>] = [:]

    init(_ answers: [[Int32]], eos: Int32) {
        for answer in answers {
            let sequence = answer + [eos]
            for i in sequence.indices { next[Array(sequence[..<i]), default: []].insert(sequence[i]) }
        }
    }

    /// Tokens that may follow `prefix` (the tokens after bos); nil when no candidate starts with it.
    func allowed(after prefix: [Int32]) -> Set<Int32>? { next[prefix] }

    /// logits [R, V] with -inf on every token outside the trie's continuations of each row's prefix.
    func constrain(_ logits: Tensor, prefixes: [[Int32]], vocab: Int) -> Tensor {
        var mask = [Float](repeating: 0, count: prefixes.count * vocab)
        var any = false
        for (row, prefix) in prefixes.enumerated() {
            guard let ok = allowed(after: prefix) else { continue }
            any = true
            for t in 0..<vocab where !ok.contains(Int32(t)) { mask[row * vocab + t] = -.infinity }
        }
        return any ? logits + Tensor(shape: [prefixes.count, vocab], scalars: mask) : logits
    }
}

/// Next-token logits for equally long sequences, incrementally from a self-attention K/V cache that
/// `reorder` keeps aligned with the rows (or, `cached: false`, by recomputing the decoder over every row's
/// whole prefix).
struct OFAStepDecoder: IncrementalDecoder {
    let model: OFAModel
    let memory: OFAEncoderOutput
    let cached: Bool
    /// Cross-attention K/V per layer, one row per question / each row repeated per beam.
    private let crossSingle: [OFAKeyValues]
    private let crossRepeated: [OFAKeyValues]
    /// Question key masks [Q, 1, 1, L] / repeated per beam (nil: no padding).
    private let maskSingle: Tensor?
    private let maskRepeated: Tensor?
    /// Per layer the self-attention position bias of `maxLength` positions [1, H, M, M], and the
    /// cross-attention one [1, H, M, L]: a step reads its position's row.
    private let selfBias: [Tensor]
    private let crossBias: Tensor
    private var past: [OFAKeyValues?]?
    /// Sequence rows per cache row: `beams` after `firstLogits`.
    private var rowsPerCacheRow = 1

    init(model: OFAModel, memory: OFAEncoderOutput, times: Int, maxLength: Int, cached: Bool) {
        self.model = model
        self.memory = memory
        self.cached = cached
        let questions = memory.states.shape[0], length = memory.states.shape[1]
        let sources = (0..<(questions * times)).map { $0 / times }
        crossSingle = model.decoder.layers.items.map { $0.crossAttn.keysValues(memory.states) }
        crossRepeated = times == 1 ? crossSingle : crossSingle.map {
            OFAKeyValues(key: gatherRows($0.key, sources), value: gatherRows($0.value, sources))
        }
        maskSingle = memory.keyMask
        let repeatedKeep = sources.flatMap { memory.keep[($0 * length)..<(($0 + 1) * length)] }
        maskRepeated = times == 1 ? memory.keyMask : ofaKeyMask(repeatedKeep, batch: questions * times, length: length)
        (selfBias, crossBias) = model.decoder.positionBiases(length: maxLength, encoderPositions: memory.positions)
        past = cached ? model.initialDecoderCache(rows: questions * times) : nil
    }

    mutating func logits(_ sequences: [[Int32]]) throws -> Tensor {
        let length = sequences[0].count, rows = sequences.count
        let logits: Tensor
        if past != nil {
            logits = step(sequences.map { $0[length - 1] }, position: length - 1, cross: crossRepeated, mask: maskRepeated)
        } else {
            let questions = memory.states.shape[0]
            let sources = (0..<rows).map { $0 * questions / rows }
            let l = memory.states.shape[1]
            let repeated = OFAEncoderOutput(
                states: gatherRows(memory.states, sources), positions: memory.positions,
                keyMask: ofaKeyMask(sources.flatMap { memory.keep[($0 * l)..<(($0 + 1) * l)] }, batch: rows, length: l),
                keep: sources.flatMap { memory.keep[($0 * l)..<(($0 + 1) * l)] })
            let hidden = try model.decode(ids: sequences.flatMap { $0 }, batch: rows, length: length, encoder: repeated)
            logits = model.decoder.logits(slice(hidden, axis: 1, range: (length - 1)..<length))
        }
        let flat = reshape(logits, [rows, model.config.vocabSize])
        guard let trie = model.answerTrie else { return flat }
        return trie.constrain(flat, prefixes: sequences.map { Array($0.dropFirst()) }, vocab: model.config.vocabSize)
    }

    mutating func firstLogits(questions: Int, beams: Int) throws -> Tensor {
        guard cached else { throw ConfigError("firstLogits needs the cached decoder") }
        past = model.initialDecoderCache(rows: questions)
        let logits = step(Array(repeating: model.config.bosTokenId, count: questions), position: 0, cross: crossSingle,
                          mask: maskSingle)
        rowsPerCacheRow = beams
        let flat = reshape(logits, [questions, model.config.vocabSize])
        guard let trie = model.answerTrie else { return flat }
        return trie.constrain(flat, prefixes: Array(repeating: [], count: questions), vocab: model.config.vocabSize)
    }

    /// Logits [R, 1, V] of the newest tokens at `position`, extending the cache.
    private mutating func step(_ newest: [Int32], position p: Int, cross: [OFAKeyValues], mask: Tensor?) -> Tensor {
        guard var cache = past else { fatalError("step without a cache") }
        let heads = model.config.attentionHeads, prompt = model.decoderPrompt?.tokens ?? 0
        let selfRows = selfBias.map { bias -> Tensor in
            let row = slice(slice(bias, axis: 2, range: p..<(p + 1)), axis: 3, range: 0..<(p + 1))   // [1, H, 1, p + 1]
            return prompt > 0 ? concat([Tensor.zeros([1, heads, 1, prompt]), row], axis: 3) : row
        }
        let crossRow = slice(crossBias, axis: 2, range: p..<(p + 1))
        let hidden = model.decoder.step(ids: newest, past: &cache, cross: cross, selfBias: selfRows,
                                        crossBias: mask.map { crossRow + $0 } ?? crossRow)
        past = cache
        return model.decoder.logits(hidden)
    }

    mutating func reorder(_ sources: [Int]) {
        let rows = sources.map { $0 / rowsPerCacheRow }
        rowsPerCacheRow = 1
        guard let cache = past, rows != Array(rows.indices) else { return }
        past = cache.map { layer in
            layer.map { OFAKeyValues(key: gatherRows($0.key, rows), value: gatherRows($0.value, rows)) }
        }
    }
}
