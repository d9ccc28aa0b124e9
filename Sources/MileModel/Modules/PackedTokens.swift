import Engine

/// A padded token batch without its padding: the positions whose mask is 1, item after item. Padded to the
/// longest question, a batch of SLAKE questions is about a third padding; the text encoder on packed rows
/// skips that share of its linears, layer norms and attention (`BertModel.callAsFunction(packed:memory:)`).
struct PackedTokens {
    let batch: Int
    /// Padded length T.
    let length: Int
    /// Rows of each item in the packed layout.
    let segments: Segments
    /// Packed row -> its row b·T + t in the padded [B·T] layout.
    let paddedRows: [Int]
    /// Token id and position t of each packed row.
    let ids: [Int32]
    let positions: [Int32]

    var rows: Int { paddedRows.count }

    /// nil when packing would not help or does not apply: no position is padding, or some row's mask is
    /// not ones followed by zeros (a hole), or a row is empty.
    init?(ids: [Int32], mask: [Int32], batch: Int, length: Int) {
        guard ids.count == batch * length, mask.count == ids.count, mask.contains(0) else { return nil }
        var lengths: [Int] = [], rows: [Int] = []
        for b in 0..<batch {
            let row = mask[(b * length)..<((b + 1) * length)]
            let n = row.prefix { $0 != 0 }.count
            guard n >= 1, row.dropFirst(n).allSatisfy({ $0 == 0 }) else { return nil }
            lengths.append(n)
            rows += (b * length)..<(b * length + n)
        }
        self.batch = batch
        self.length = length
        segments = Segments(lengths: lengths)
        paddedRows = rows
        self.ids = rows.map { ids[$0] }
        positions = rows.map { Int32($0 % length) }
    }
}

/// The query and key segments of an attention over packed rows, with the padded lengths that place each
/// probability in the padded [B, H, T, S] layout for its dropout bit.
struct AttentionSegments {
    let queries: Segments
    let paddedQueries: Int
    let keys: Segments
    let paddedKeys: Int

    /// The JTM's self-attention: each item's tokens attend to each other.
    static func selfAttention(_ t: PackedTokens) -> AttentionSegments {
        AttentionSegments(queries: t.segments, paddedQueries: t.length, keys: t.segments, paddedKeys: t.length)
    }

    /// Packed queries attending to all `length` rows of each item's memory (the JTM's image tokens).
    static func packedQueries(_ t: PackedTokens, memoryLength: Int) -> AttentionSegments {
        AttentionSegments(queries: t.segments, paddedQueries: t.length,
                          keys: Segments(uniform: memoryLength, batch: t.batch), paddedKeys: memoryLength)
    }

    /// Dense queries, `length` per item (the decoder's answer tokens), attending to packed memory rows.
    static func packedMemory(_ t: PackedTokens, queryLength: Int) -> AttentionSegments {
        AttentionSegments(queries: Segments(uniform: queryLength, batch: t.batch), paddedQueries: queryLength,
                          keys: t.segments, paddedKeys: t.length)
    }
}
