import Engine
import Foundation

/// A BERT-style uncased WordPiece tokenizer (what `BertTokenizer` for bert-base-uncased does): clean the
/// text, split CJK characters, lower-case, strip accents, split on whitespace and punctuation, then break
/// each word into the longest vocabulary pieces, continuations marked `##`.
///
/// Ids: `[PAD]` is 0. A vocabulary built here starts with the seven specials; a standard BERT `vocab.txt`
/// keeps its own ids (`[UNK]` 100, `[CLS]` 101, `[SEP]` 102, `[MASK]` 103) and gets `[DEC]` and `[ENC]`
/// appended (30522, 30523), as upstream's `init_tokenizer` does.
public struct Tokenizer: Sendable {
    public static let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]
    /// Upstream's question limit, `[ENC]` and `[SEP]` included (spec §1.4).
    public static let questionMaxLength = 35

    public let tokens: [String]
    private let ids: [String: Int32]
    public let padId: Int32, unkId: Int32, clsId: Int32, sepId: Int32, maskId: Int32, decId: Int32, encId: Int32
    private let specialIds: Set<Int32>

    public var vocabularySize: Int { tokens.count }

    /// A tokenizer over `vocabulary` (line i is id i). `[DEC]` and `[ENC]` are appended when missing.
    public init(vocabulary: [String], source: String = "vocabulary") throws {
        var tokens = vocabulary
        for special in ["[DEC]", "[ENC]"] where !tokens.contains(special) { tokens.append(special) }
        var ids: [String: Int32] = [:]
        for (index, token) in tokens.enumerated() where ids[token] == nil {
            ids[token] = Int32(index)
        }
        guard ids["[PAD]"] == 0 else {
            throw DataError.badVocabulary(path: source, reason: "[PAD] must be the first token (id 0)")
        }
        for special in Tokenizer.specials where ids[special] == nil {
            throw DataError.badVocabulary(path: source, reason: "missing special token \(special)")
        }
        self.tokens = tokens
        self.ids = ids
        padId = 0
        unkId = ids["[UNK]"]!; clsId = ids["[CLS]"]!; sepId = ids["[SEP]"]!; maskId = ids["[MASK]"]!
        decId = ids["[DEC]"]!; encId = ids["[ENC]"]!
        specialIds = Set(Tokenizer.specials.map { ids[$0]! })
    }

    /// Loads a `vocab.txt` (one token per line), e.g. bert-base-uncased's.
    public init(vocabFile: String) throws {
        let bytes = try ImageCodec.readBytes(vocabFile)
        guard let text = String(bytes: bytes, encoding: .utf8) else {
            throw DataError.badVocabulary(path: vocabFile, reason: "not UTF-8 text")
        }
        var lines = text.components(separatedBy: "\n").map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
        if lines.last == "" { lines.removeLast() }
        if let blank = lines.firstIndex(of: "") {
            throw DataError.badVocabulary(path: vocabFile, reason: "line \(blank + 1) is empty")
        }
        try self.init(vocabulary: lines, source: vocabFile)
    }

    /// Writes `vocab.txt`, one token per line.
    public func save(to path: String) throws {
        do {
            try (tokens.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw DataError.invalid("\(path): cannot write: \(error.localizedDescription)")
        }
    }

    /// Builds a vocabulary from a training corpus, deterministically: the seven specials, every character
    /// seen and its `##` form (so no seen text maps to `[UNK]`), then whole words by falling count (ties in
    /// code-point order) while their count is at least `minCount`, up to `maxSize` entries in all.
    public static func buildVocabulary(corpus: [String], minCount: Int = 1, maxSize: Int = 30522) -> [String] {
        var counts: [String: Int] = [:]
        var characters: Set<String> = []
        for text in corpus {
            for word in basicTokens(text) {
                counts[word, default: 0] += 1
                for character in word { characters.insert(String(character)) }
            }
        }
        let chars = characters.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        var vocabulary = specials + chars + chars.map { "##" + $0 }
        var present = Set(vocabulary)
        let words = counts.filter { $0.value >= minCount && !present.contains($0.key) }.sorted {
            $0.value != $1.value ? $0.value > $1.value : $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars)
        }
        for (word, _) in words where vocabulary.count < maxSize && present.insert(word).inserted {
            vocabulary.append(word)
        }
        return vocabulary
    }

    /// Builds the vocabulary from `corpus` and returns its tokenizer.
    public static func build(corpus: [String], minCount: Int = 1, maxSize: Int = 30522) -> Tokenizer {
        // The built list always starts with the specials, so this cannot fail.
        try! Tokenizer(vocabulary: buildVocabulary(corpus: corpus, minCount: minCount, maxSize: maxSize))
    }

    public func id(of token: String) -> Int32? {
        ids[token]
    }

    /// WordPiece tokens of `text`, without specials.
    public func tokenize(_ text: String) -> [String] {
        Tokenizer.basicTokens(text).flatMap(wordPieces)
    }

    /// Ids of `text`, without specials.
    public func ids(_ text: String) -> [Int32] {
        tokenize(text).map { ids[$0] ?? unkId }
    }

    /// `[ENC] question [SEP]`, cut to `maxLength` ids by dropping question tokens from the end (the
    /// `[SEP]` stays), as `truncation=True, max_length=35` does upstream.
    public func encodeQuestion(_ question: String, maxLength: Int = Tokenizer.questionMaxLength) -> [Int32] {
        let body = ids(question)
        return [encId] + body.prefix(max(0, maxLength - 2)) + [sepId]
    }

    /// The untruncated length of `[ENC] question [SEP]`; greater than 35 means the question is cut.
    public func questionLength(_ question: String) -> Int {
        tokenize(question).count + 2
    }

    /// Longest pair text: a 35-token question plus a short answer.
    public static let pairMaxLength = 40

    /// `[CLS] question answer [SEP]`, the text of BLIP's contrastive and matching objectives (the caption
    /// of a pretraining pair), cut to `maxLength` ids like a question.
    public func encodePair(question: String, answer: String, maxLength: Int = Tokenizer.pairMaxLength) -> [Int32] {
        let body = ids(question + " " + answer)
        return [clsId] + body.prefix(max(0, maxLength - 2)) + [sepId]
    }

    /// `[DEC] answer [SEP]`, never truncated (spec §1.3).
    public func encodeAnswer(_ answer: String) -> [Int32] {
        [decId] + ids(answer) + [sepId]
    }

    /// Text of ids as `tokenizer.decode(skip_special_tokens=True)` gives it: specials and padding skipped,
    /// `##` pieces merged, spaces before punctuation removed the way transformers' clean-up does.
    public func decode(_ sequence: [Int32]) -> String {
        let pieces = sequence.compactMap { id -> String? in
            guard id >= 0, Int(id) < tokens.count, !specialIds.contains(id) else { return nil }
            return tokens[Int(id)]
        }
        var text = pieces.joined(separator: " ").replacingOccurrences(of: " ##", with: "")
        for (from, to) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                           (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            text = text.replacingOccurrences(of: from, with: to)
        }
        return text.lowercased()
    }

    /// Pads sequences to the longest with `[PAD]` (0).
    public func batch(_ sequences: [[Int32]]) -> TokenBatch {
        TokenBatch(padding: sequences, pad: padId)
    }

    /// How many of `questions` exceed `maxLength` after adding `[ENC]`/`[SEP]`.
    public func truncation(_ questions: [String], maxLength: Int = Tokenizer.questionMaxLength) -> TruncationStats {
        var stats = TruncationStats()
        for question in questions {
            let length = questionLength(question)
            stats.add(length: length, truncated: length > maxLength)
        }
        return stats
    }

    // MARK: BERT's basic tokenizer

    /// Whitespace and punctuation split of cleaned, lower-cased, accent-stripped text.
    static func basicTokens(_ text: String) -> [String] {
        var words: [String] = []
        var current = String.UnicodeScalarView()
        func flush() {
            if !current.isEmpty { words.append(String(current)); current = String.UnicodeScalarView() }
        }
        for scalar in normalize(text).unicodeScalars {
            if isWhitespace(scalar) {
                flush()
            } else if isPunctuation(scalar) || isCJK(scalar) {
                flush()
                words.append(String(scalar))
            } else {
                current.append(scalar)
            }
        }
        flush()
        return words
    }

    /// Drops control characters, lower-cases, then removes combining marks after NFD decomposition.
    private static func normalize(_ text: String) -> String {
        var cleaned = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar.value == 0 || scalar.value == 0xFFFD { continue }
            if isControl(scalar) { continue }
            cleaned.append(isWhitespace(scalar) ? " " : scalar)
        }
        let decomposed = String(cleaned).lowercased().decomposedStringWithCanonicalMapping
        var out = String.UnicodeScalarView()
        for scalar in decomposed.unicodeScalars where scalar.properties.generalCategory != .nonspacingMark {
            out.append(scalar)
        }
        return String(out)
    }

    private static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        if scalar == " " || scalar == "\t" || scalar == "\n" || scalar == "\r" { return true }
        return scalar.properties.generalCategory == .spaceSeparator
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        if scalar == "\t" || scalar == "\n" || scalar == "\r" { return false }
        switch scalar.properties.generalCategory {
        case .control, .format: return true
        default: return false
        }
    }

    /// BERT treats all non-alphanumeric ASCII as punctuation, plus Unicode category P*.
    private static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) {
            return true
        }
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    private static func isCJK(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        return (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B820...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }

    // MARK: WordPiece

    /// Greedy longest-match-first; a word with no full segmentation (or over 100 characters) is `[UNK]`.
    private func wordPieces(_ word: String) -> [String] {
        let characters = Array(word)
        if characters.count > 100 { return ["[UNK]"] }
        var pieces: [String] = []
        var start = 0
        while start < characters.count {
            var end = characters.count
            var found: String?
            while start < end {
                let piece = (start > 0 ? "##" : "") + String(characters[start..<end])
                if ids[piece] != nil { found = piece; break }
                end -= 1
            }
            guard let found else { return ["[UNK]"] }
            pieces.append(found)
            start = end
        }
        return pieces
    }
}

/// How often questions exceed the length limit.
public struct TruncationStats: Equatable, CustomStringConvertible, Sendable {
    public var total = 0
    public var truncated = 0
    public var lengths: [Int] = []

    public init() {}

    mutating func add(length: Int, truncated isTruncated: Bool) {
        total += 1
        if isTruncated { truncated += 1 }
        lengths.append(length)
    }

    public var rate: Double { total == 0 ? 0 : Double(truncated) / Double(total) }

    public var median: Int {
        let sorted = lengths.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }

    public var description: String {
        String(format: "%d of %d truncated (%.1f%%), median length %d, max %d", truncated, total, 100 * rate,
               median, lengths.max() ?? 0)
    }
}
