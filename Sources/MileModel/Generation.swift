import Engine
import Foundation

/// Answer generation as upstream evaluates (mile_vqa.py with transformers 4.26 `generate`): decoding
/// starts from `[DEC]`, `maxLength` counts `[DEC]`, `[SEP]` ends a sequence, the decoder cross-attends
/// to every question token (mask all ones, padding included). Upstream recomputes the whole prefix at every
/// step; here each step feeds only the newest token through the decoder with a self-attention key/value
/// cache (same tokens, scores equal up to float rounding; `useCache: false` keeps the recomputing path as
/// the reference).
extension MISSModel {
    /// Returns, per question, the generated token ids after `[DEC]` up to (excluding) `[SEP]`.
    /// `beams == 1` is greedy decoding; otherwise HF beam search (length penalty 1, no early stopping).
    public func generate(images: Tensor, question: TokenBatch, beams: Int = 3, maxLength: Int = 10,
                         minLength: Int = 1) throws -> [[Int32]] {
        try generate(images: images, question: question, beams: beams, maxLength: maxLength,
                     minLength: minLength, greedyForOneBeam: true)
    }

    /// `generate` with row-major [B, T] question ids and mask; B is the image batch.
    public func generate(images: Tensor, questionIds: [Int32], questionMask: [Int32], beams: Int = 3,
                         maxLength: Int = 10, minLength: Int = 1) throws -> [[Int32]] {
        try generate(images: images, question: Self.tokens(questionIds, questionMask, batch: images.shape.first ?? 0),
                     beams: beams, maxLength: maxLength, minLength: minLength)
    }

    /// `greedyForOneBeam: false` runs the beam-search code path even for one beam (tests compare it
    /// with greedy decoding); `useCache: false` recomputes the whole prefix every step (the reference).
    func generate(images: Tensor, question: TokenBatch, beams: Int, maxLength: Int, minLength: Int,
                  greedyForOneBeam: Bool, useCache: Bool = true) throws -> [[Int32]] {
        guard beams >= 1, maxLength >= 2 else {
            throw ConfigError("generation needs beams >= 1 and maxLength >= 2, got \(beams) and \(maxLength)")
        }
        try checkGenerationLength(maxLength)
        let wasTraining = training
        train(false)
        defer { train(wasTraining) }
        return try withNoGrad {
            let memory = try encode(images: images, question: question)
            let rows = beams == 1 && greedyForOneBeam ? 1 : beams
            var decoder = StepDecoder(model: self, memory: memory, times: rows, cached: useCache)
            let search = BeamSearch(vocab: config.vocabSize, start: config.decTokenId, end: config.sepTokenId,
                                    pad: config.padTokenId)
            let sequences = beams == 1 && greedyForOneBeam
                ? try search.greedy(&decoder, batch: question.batch, maxLength: maxLength, minLength: minLength)
                : try search.beamSearch(&decoder, batch: question.batch, beams: beams,
                                        maxLength: maxLength, minLength: minLength)
            return sequences.map(answerTokens)
        }
    }

    private func checkGenerationLength(_ maxLength: Int) throws {
        let offset = assignment.dec.isPrompt ? config.prefixTokens : 0
        guard maxLength + offset <= config.maxPositions else {
            throw ConfigError("maxLength \(maxLength) (+\(offset) prefix) exceeds max_positions \(config.maxPositions)")
        }
    }

    /// Tokens after [DEC], cut at the first [SEP] or PAD.
    private func answerTokens(_ sequence: [Int32]) -> [Int32] {
        Array(sequence.dropFirst().prefix { $0 != config.sepTokenId && $0 != config.padTokenId })
    }

    /// Cross-attention keys/values of every decoder layer for the JTM output, each row repeated
    /// `times` (repeat_interleave for beams). They are constant over decoding steps, so they are
    /// computed once instead of at every step as upstream does (same values).
    func crossAttentionCache(_ memory: Tensor, times: Int) -> [LayerPrefix] {
        let cache = textDecoder.bert.encoder.layers.items.map { $0.crossAttention.selfAttention.memoryKeyValues(memory) }
        return repeatInterleave(cache, times: times)
    }

    /// Self-attention keys/values of the decoder before any token, for `rows` rows: the layers' prompt
    /// prefixes (prefix tuning, P-tuning v2), or nothing.
    func initialDecoderCache(rows: Int) -> [LayerPrefix?] {
        decoderPrompt?.prefixes(batch: rows).map { Optional($0) }
            ?? Array(repeating: nil, count: config.decoderLayers)
    }

    /// Decoder hidden states [R, 1, h] of the newest token of each row (`length` tokens so far), extending
    /// the self-attention cache `past`. Positions count the prompt prefix as the full pass does.
    func decodeStep(_ newest: [Int32], length: Int, past: inout [LayerPrefix?],
                    cachedMemory: [LayerPrefix]) -> Tensor {
        let position = (decoderPrompt?.tokens ?? 0) + length - 1
        return textDecoder.bert.step(ids: newest, position: position, past: &past, cachedMemory: cachedMemory)
    }

}

/// What the search needs of a decoder: next-token logits [rows, vocab] for equally long sequences, the first
/// step from one row per question (cached decoders), and the reordering of its cache rows between steps.
protocol IncrementalDecoder {
    var cached: Bool { get }
    mutating func logits(_ sequences: [[Int32]]) throws -> Tensor
    mutating func firstLogits(questions: Int, beams: Int) throws -> Tensor
    mutating func reorder(_ sources: [Int])
}

/// Next-token logits during generation, for equally long sequences (attention mask all ones): either
/// by recomputing the decoder over every row's whole prefix (`cached: false`, upstream's way), or
/// incrementally from a self-attention key/value cache that `reorder` keeps aligned with the rows.
struct StepDecoder: IncrementalDecoder {
    let model: MISSModel
    let memory: Tensor
    let cached: Bool
    /// Cross-attention keys/values of the memory, one row per question.
    private let crossSingle: [LayerPrefix]
    /// The same with each row repeated once per beam.
    let crossCache: [LayerPrefix]
    /// Per decoder layer, the self-attention keys/values so far; nil when recomputing.
    private var past: [LayerPrefix?]?
    /// Sequence rows per cache row: `beams` after `firstLogits` (cache row b serves beams b·beams ..< (b+1)·beams).
    private var rowsPerCacheRow = 1

    init(model: MISSModel, memory: Tensor, times: Int, cached: Bool) {
        self.model = model
        self.memory = memory
        self.cached = cached
        crossSingle = model.crossAttentionCache(memory, times: 1)
        crossCache = repeatInterleave(crossSingle, times: times)
        past = cached ? model.initialDecoderCache(rows: memory.shape[0] * times) : nil
    }

    /// Logits [rows, vocab] of the token after each sequence; the head runs on the last position only.
    /// Returned as the tensor (read in place) rather than an array copy of rows x 30524 floats per step.
    mutating func logits(_ sequences: [[Int32]]) throws -> Tensor {
        let length = sequences[0].count, rows = sequences.count
        guard var cache = past else {
            let tokens = try TokenBatch(ids: sequences.flatMap { $0 }, mask: Array(repeating: 1, count: rows * length),
                                        batch: rows, length: length)
            let hidden = try model.decode(tokens, memory: memory, memoryMask: nil, cachedMemory: crossCache)
            return model.textDecoder.logits(slice(hidden, axis: 1, range: (length - 1)..<length))
        }
        let hidden = model.decodeStep(sequences.map { $0[length - 1] }, length: length, past: &cache,
                                      cachedMemory: crossCache)
        past = cache
        return model.textDecoder.logits(hidden)
    }

    /// Cached path only: logits [questions, vocab] after `[DEC]` alone, one row per question (the first
    /// beam-search step, where every beam of a question holds the same `[DEC]`). The cache then has one
    /// row per question until the next `reorder`.
    mutating func firstLogits(questions: Int, beams: Int) throws -> Tensor {
        guard cached else { throw ConfigError("firstLogits needs the cached decoder") }
        var cache = model.initialDecoderCache(rows: questions)
        let hidden = model.decodeStep(Array(repeating: model.config.decTokenId, count: questions), length: 1,
                                      past: &cache, cachedMemory: crossSingle)
        past = cache
        rowsPerCacheRow = beams
        return model.textDecoder.logits(hidden)
    }

    /// Row i of the cache becomes the one of old sequence row `sources[i]` (beam search's reordering,
    /// HF `_reorder_cache`).
    mutating func reorder(_ sources: [Int]) {
        let rows = sources.map { $0 / rowsPerCacheRow }
        rowsPerCacheRow = 1
        guard let cache = past, rows != Array(rows.indices) else { return }
        past = cache.map { layer in
            layer.map { LayerPrefix(key: gatherRows($0.key, rows), value: gatherRows($0.value, rows)) }
        }
    }
}

/// Each row of every key/value tensor repeated `times` in place (torch repeat_interleave, one row per beam).
func repeatInterleave(_ cache: [LayerPrefix], times: Int) -> [LayerPrefix] {
    guard times > 1, let rows = cache.first?.key.shape[0] else { return cache }
    let sources = (0..<(rows * times)).map { $0 / times }
    return cache.map { LayerPrefix(key: gatherRows($0.key, sources), value: gatherRows($0.value, sources)) }
}

/// x[sources[0]], x[sources[1]], ... along axis 0: an embedding lookup (one copy per row) in x viewed
/// as a [rows, rest] table, instead of a concatenation of one-row slices.
func gatherRows(_ x: Tensor, _ sources: [Int]) -> Tensor {
    let rest = Array(x.shape.dropFirst())
    let table = reshape(x, [x.shape[0], rest.reduce(1, *)])
    let rows = embedding(ids: sources.map { Int32($0) }, shape: [sources.count], table: table)
    return reshape(rows, [sources.count] + rest)
}

/// The `keep` best tokens of one logit row by (x - logsumexp(x)) + beamScore, best first, ties in token
/// order; token `banned` scores -inf. The first `keep` tokens enter unconditionally, then a token is
/// inserted only if it beats the current last entry (held in a local, so the scan stays a tight loop).
private func bestTokens(_ x: UnsafePointer<Float>, vocab: Int, beamScore: Float, keep: Int, banned: Int,
                        row: Int) -> [Candidate] {
    let lse = logSumExp(x, count: vocab)
    var best: [Candidate] = []
    best.reserveCapacity(keep + 1)
    func score(_ t: Int) -> Float { t == banned ? -Float.infinity : (x[t] - lse) + beamScore }
    let head = Swift.min(keep, vocab)
    for t in 0..<head { insertCandidate(Candidate(score: score(t), token: Int32(t), beam: row), into: &best, keep: keep) }
    var threshold = best[head - 1].score
    for t in head..<vocab {
        let s = score(t)
        if s <= threshold { continue }
        insertCandidate(Candidate(score: s, token: Int32(t), beam: row), into: &best, keep: keep)
        threshold = best[keep - 1].score
    }
    return best
}

struct Candidate {
    var score: Float
    var token: Int32
    var beam: Int
}

/// Inserts into a list sorted best first, after entries of equal score (earlier ones win ties), and
/// keeps at most `keep` entries.
private func insertCandidate(_ c: Candidate, into best: inout [Candidate], keep: Int) {
    if best.count == keep, c.score <= best[keep - 1].score { return }
    var i = best.count
    while i > 0, best[i - 1].score < c.score { i -= 1 }
    best.insert(c, at: i)
    if best.count > keep { best.removeLast() }
}

/// transformers 4.26 `BeamHypotheses` with length_penalty 1.0 and early_stopping False.
struct BeamHypotheses {
    let beams: Int
    private(set) var entries: [(score: Float, tokens: [Int32])] = []
    private var worstScore: Float = 1e9

    init(beams: Int) { self.beams = beams }

    /// Score = sum of log-probs / sequence length (the length counts [DEC], not the final [SEP]).
    mutating func add(_ tokens: [Int32], score sumLogProbs: Float) {
        let score = sumLogProbs / Float(tokens.count)
        guard entries.count < beams || score > worstScore else { return }
        entries.append((score, tokens))
        if entries.count > beams {
            let sorted = entries.indices.sorted { entries[$0].score < entries[$1].score }
            entries.remove(at: sorted[0])
            worstScore = entries.map(\.score).min()!
        } else {
            worstScore = min(score, worstScore)
        }
    }

    func isDone(bestSum: Float, curLen: Int) -> Bool {
        guard entries.count >= beams else { return false }
        return worstScore >= bestSum / Float(curLen)
    }

    /// Highest score; among equal scores the last added (Python's stable sort then pop()).
    var best: [Int32] {
        var bestIndex = 0
        for i in entries.indices where entries[i].score >= entries[bestIndex].score { bestIndex = i }
        return entries[bestIndex].tokens
    }
}

/// Greedy decoding and HF beam search (length penalty 1, no early stopping) over any incremental decoder:
/// sequences start with `start`, `end` finishes one, finished rows are padded with `pad`.
struct BeamSearch {
    let vocab: Int
    let start: Int32
    let end: Int32
    let pad: Int32

    func greedy<D: IncrementalDecoder>(_ decoder: inout D, batch: Int, maxLength: Int, minLength: Int) throws -> [[Int32]] {
        let v = vocab, sep = Int(end)
        var sequences = Array(repeating: [start], count: batch)
        var finished = Array(repeating: false, count: batch)
        while sequences[0].count < maxLength {
            let logits = try decoder.logits(sequences)
            for b in 0..<batch {
                if finished[b] { sequences[b].append(pad); continue }
                let ban = sequences[b].count < minLength
                // First maximum of the row, [SEP] excluded while the answer is shorter than minLength.
                let token: Int32 = logits.withUnsafeScalars { l in
                    let row = l.baseAddress! + b * v
                    var best = ban && sep == 0 ? 1 : 0
                    for t in best..<v where row[t] > row[best] && !(ban && t == sep) { best = t }
                    return Int32(best)
                }
                sequences[b].append(token)
                if token == end { finished[b] = true }
            }
            if !finished.contains(false) { break }
        }
        return sequences
    }

    func beamSearch<D: IncrementalDecoder>(_ decoder: inout D, batch: Int, beams: Int, maxLength: Int,
                            minLength: Int) throws -> [[Int32]] {
        let eos = end, v = vocab
        var sequences = Array(repeating: [start], count: batch * beams)
        // Only the first beam is live at the start (HF: other beams start at -1e9).
        var beamScores = (0..<(batch * beams)).map { $0 % beams == 0 ? Float(0) : -1e9 }
        var hypotheses = Array(repeating: BeamHypotheses(beams: beams), count: batch)
        var done = Array(repeating: false, count: batch)
        while true {
            let curLen = sequences[0].count
            let rowBest: [[Candidate]]
            if curLen == 1, decoder.cached, v > 2 * beams {
                rowBest = try firstStepCandidates(&decoder, batch: batch, beams: beams, banEOS: minLength > 1)
            } else {
                rowBest = rowCandidates(logits: try decoder.logits(sequences), scores: beamScores, rows: batch * beams,
                                        vocab: v, keep: 2 * beams, banEOS: curLen < minLength)
            }
            // `sources`: the row each new row continues (HF beam_idx), to reorder the decoder cache.
            var nextSequences: [[Int32]] = [], nextScores: [Float] = [], sources: [Int] = []
            for b in 0..<batch {
                if done[b] {
                    for _ in 0..<beams {
                        nextSequences.append(sequences[b * beams] + [pad]); nextScores.append(0)
                        sources.append(b * beams)
                    }
                    continue
                }
                let candidates = topCandidates(rowBest, batchIndex: b, beams: beams)
                var kept = 0
                for (rank, c) in candidates.enumerated() {
                    let source = b * beams + c.beam
                    if c.token == eos {
                        if rank < beams { hypotheses[b].add(sequences[source], score: c.score) }
                    } else {
                        nextSequences.append(sequences[source] + [c.token]); nextScores.append(c.score)
                        sources.append(source)
                        kept += 1
                    }
                    if kept == beams { break }
                }
                done[b] = done[b] || hypotheses[b].isDone(bestSum: candidates[0].score, curLen: curLen)
            }
            sequences = nextSequences
            beamScores = nextScores
            if !done.contains(false) || sequences[0].count >= maxLength { break }
            decoder.reorder(sources)
        }
        return (0..<batch).map { b in
            if !done[b] {
                for k in 0..<beams { hypotheses[b].add(sequences[b * beams + k], score: beamScores[b * beams + k]) }
            }
            return hypotheses[b].best
        }
    }

    /// `rowCandidates` of the first step from one decoder row per question: all beams hold only `[DEC]`
    /// and the non-first ones start at -1e9, so with more than 2·beams tokens none of their continuations
    /// can enter a question's top 2·beams (HF computes and discards them); their lists stay empty.
    private func firstStepCandidates<D: IncrementalDecoder>(_ decoder: inout D, batch: Int, beams: Int,
                                     banEOS: Bool) throws -> [[Candidate]] {
        let logits = try decoder.firstLogits(questions: batch, beams: beams)
        let first = rowCandidates(logits: logits, scores: Array(repeating: 0, count: batch), rows: batch,
                                  vocab: vocab, keep: 2 * beams, banEOS: banEOS)
        return (0..<(batch * beams)).map { $0 % beams == 0 ? first[$0 / beams] : [] }
    }

    /// The 2·beams best (beam, token) continuations of one batch entry by cumulative log-probability,
    /// best first; ties keep the flattened (beam, token) order as torch.topk over [beams·vocab]. Merges
    /// the per-row lists of `rowCandidates` in beam order, which gives the same list as one scan.
    private func topCandidates(_ rowBest: [[Candidate]], batchIndex b: Int,
                               beams: Int) -> [(score: Float, token: Int32, beam: Int)] {
        var best: [Candidate] = []
        for k in 0..<beams {
            for var c in rowBest[b * beams + k] { c.beam = k; insertCandidate(c, into: &best, keep: 2 * beams) }
        }
        return best.map { ($0.score, $0.token, $0.beam) }
    }

    /// Per row (batch entry · beam), the `keep` best tokens by cumulative score log_softmax(logits) + beam
    /// score, best first, ties in token order. Rows run in parallel; each row is scanned once in Float
    /// after one log-sum-exp pass, instead of materialising its log-softmax.
    private func rowCandidates(logits: Tensor, scores: [Float], rows: Int, vocab: Int, keep: Int,
                               banEOS: Bool) -> [[Candidate]] {
        let sep = Int(end)
        var result = Array(repeating: [Candidate](), count: rows)
        logits.withUnsafeScalars { l in
            result.withUnsafeMutableBufferPointer { out in
                let base = l.baseAddress!, slots = out.baseAddress!
                let chunks = Swift.min(Threads.count, rows)
                parallelTasks(chunks) { chunk in
                    for row in (chunk * rows / chunks)..<((chunk + 1) * rows / chunks) {
                        slots[row] = bestTokens(base + row * vocab, vocab: vocab, beamScore: scores[row], keep: keep,
                                                banned: banEOS ? sep : -1, row: row)
                    }
                }
            }
        }
        return result
    }
}
