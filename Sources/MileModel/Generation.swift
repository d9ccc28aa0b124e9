import Engine
import Foundation

/// Answer generation as upstream evaluates (mile_vqa.py with transformers 4.26 `generate`): decoding
/// starts from `[DEC]`, `maxLength` counts `[DEC]`, `[SEP]` ends a sequence, the decoder cross-attends
/// to every question token (mask all ones, padding included), and there is no KV cache (each step
/// recomputes the prefix, which gives the same tokens).
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
    /// with greedy decoding).
    func generate(images: Tensor, question: TokenBatch, beams: Int, maxLength: Int, minLength: Int,
                  greedyForOneBeam: Bool) throws -> [[Int32]] {
        guard beams >= 1, maxLength >= 2 else {
            throw ConfigError("generation needs beams >= 1 and maxLength >= 2, got \(beams) and \(maxLength)")
        }
        try checkGenerationLength(maxLength)
        let wasTraining = training
        train(false)
        defer { train(wasTraining) }
        return try withNoGrad {
            let memory = try encode(images: images, question: question)
            let sequences = beams == 1 && greedyForOneBeam
                ? try greedy(memory: memory, maxLength: maxLength, minLength: minLength)
                : try beamSearch(memory: memory, batch: question.batch, beams: beams,
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

    /// repeat_interleave over the batch axis.
    private func repeatRows(_ x: Tensor, _ times: Int) -> Tensor {
        let rows = (0..<x.shape[0]).flatMap { b in
            Array(repeating: slice(x, axis: 0, range: b..<(b + 1)), count: times)
        }
        return concat(rows, axis: 0)
    }

    /// Cross-attention keys/values of every decoder layer for the JTM output, each row repeated
    /// `times` (repeat_interleave for beams). They are constant over decoding steps, so they are
    /// computed once instead of at every step as upstream does (same values).
    func crossAttentionCache(_ memory: Tensor, times: Int) -> [LayerPrefix] {
        textDecoder.bert.encoder.layers.items.map { layer in
            let kv = layer.crossAttention.selfAttention.memoryKeyValues(memory)
            return times == 1 ? kv : LayerPrefix(key: repeatRows(kv.key, times), value: repeatRows(kv.value, times))
        }
    }

    /// Next-token logits [rows, vocab], for equally long sequences (attention mask all ones). Returned as
    /// the tensor (read in place) rather than an array copy of rows x 30524 floats per decoding step.
    private func nextLogits(_ sequences: [[Int32]], memory: Tensor, cache: [LayerPrefix]) throws -> Tensor {
        let length = sequences[0].count, rows = sequences.count
        let tokens = try TokenBatch(ids: sequences.flatMap { $0 }, mask: Array(repeating: 1, count: rows * length),
                                    batch: rows, length: length)
        let hidden = try decode(tokens, memory: memory, memoryMask: nil, cachedMemory: cache)
        return textDecoder.logits(slice(hidden, axis: 1, range: (length - 1)..<length))
    }

    private func greedy(memory: Tensor, maxLength: Int, minLength: Int) throws -> [[Int32]] {
        let batch = memory.shape[0], v = config.vocabSize, sep = Int(config.sepTokenId)
        let cache = crossAttentionCache(memory, times: 1)
        var sequences = Array(repeating: [config.decTokenId], count: batch)
        var finished = Array(repeating: false, count: batch)
        while sequences[0].count < maxLength {
            let logits = try nextLogits(sequences, memory: memory, cache: cache)
            for b in 0..<batch {
                if finished[b] { sequences[b].append(config.padTokenId); continue }
                let ban = sequences[b].count < minLength
                // First maximum of the row, [SEP] excluded while the answer is shorter than minLength.
                let token: Int32 = logits.withUnsafeScalars { l in
                    let row = l.baseAddress! + b * v
                    var best = ban && sep == 0 ? 1 : 0
                    for t in best..<v where row[t] > row[best] && !(ban && t == sep) { best = t }
                    return Int32(best)
                }
                sequences[b].append(token)
                if token == config.sepTokenId { finished[b] = true }
            }
            if !finished.contains(false) { break }
        }
        return sequences
    }

    private func beamSearch(memory: Tensor, batch: Int, beams: Int, maxLength: Int,
                            minLength: Int) throws -> [[Int32]] {
        let eos = config.sepTokenId, v = config.vocabSize
        let cache = crossAttentionCache(memory, times: beams)
        var sequences = Array(repeating: [config.decTokenId], count: batch * beams)
        // Only the first beam is live at the start (HF: other beams start at -1e9).
        var beamScores = (0..<(batch * beams)).map { $0 % beams == 0 ? Float(0) : -1e9 }
        var hypotheses = Array(repeating: BeamHypotheses(beams: beams), count: batch)
        var done = Array(repeating: false, count: batch)
        while true {
            let curLen = sequences[0].count
            let logits = try nextLogits(sequences, memory: memory, cache: cache)
            let rowBest = rowCandidates(logits: logits, scores: beamScores, rows: batch * beams, vocab: v,
                                        keep: 2 * beams, banEOS: curLen < minLength)
            var nextSequences: [[Int32]] = [], nextScores: [Float] = []
            for b in 0..<batch {
                if done[b] {
                    for _ in 0..<beams { nextSequences.append(sequences[b * beams] + [config.padTokenId]); nextScores.append(0) }
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
                        kept += 1
                    }
                    if kept == beams { break }
                }
                done[b] = done[b] || hypotheses[b].isDone(bestSum: candidates[0].score, curLen: curLen)
            }
            sequences = nextSequences
            beamScores = nextScores
            if !done.contains(false) || sequences[0].count >= maxLength { break }
        }
        return (0..<batch).map { b in
            if !done[b] {
                for k in 0..<beams { hypotheses[b].add(sequences[b * beams + k], score: beamScores[b * beams + k]) }
            }
            return hypotheses[b].best
        }
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
        let sep = Int(config.sepTokenId)
        var result = Array(repeating: [Candidate](), count: rows)
        logits.withUnsafeScalars { l in
            result.withUnsafeMutableBufferPointer { out in
                let base = l.baseAddress!, slots = out.baseAddress!
                DispatchQueue.concurrentPerform(iterations: Swift.min(Threads.count, rows)) { chunk in
                    let chunks = Swift.min(Threads.count, rows)
                    for row in (chunk * rows / chunks)..<((chunk + 1) * rows / chunks) {
                        let x = base + row * vocab, lse = logSumExp(x, count: vocab), beamScore = scores[row]
                        var best: [Candidate] = []
                        best.reserveCapacity(keep + 1)
                        for t in 0..<vocab {
                            let score = banEOS && t == sep ? -Float.infinity : (x[t] - lse) + beamScore
                            if best.count == keep, score <= best[keep - 1].score { continue }
                            insertCandidate(Candidate(score: score, token: Int32(t), beam: row), into: &best, keep: keep)
                        }
                        slots[row] = best
                    }
                }
            }
        }
        return result
    }
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
