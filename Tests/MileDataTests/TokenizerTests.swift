import Foundation
import Engine
import XCTest
@testable import MileData

final class TokenizerTests: XCTestCase {
    /// A BERT-shaped vocabulary: [PAD] 0, a few unused slots, then [UNK]/[CLS]/[SEP]/[MASK] and pieces.
    private func bertStyle() throws -> Tokenizer {
        let vocabulary = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "want",
                          "##ed", "wa", "runn", "##ing", ",", "?", "'", "s", "what", "the", "cafe", "naive", "is",
                          "this", "organ", ".", "liver", "lung", "##s", "t", "don"]
        return try Tokenizer(vocabulary: vocabulary)
    }

    func testWordPieceGreedyLongestMatch() throws {
        let tokenizer = try bertStyle()
        XCTAssertEqual(tokenizer.tokenize("unaffable"), ["un", "##aff", "##able"])
        XCTAssertEqual(tokenizer.tokenize("UNwanted, running"), ["[UNK]", ",", "runn", "##ing"])
        XCTAssertEqual(tokenizer.tokenize("wanted"), ["want", "##ed"])
        XCTAssertEqual(tokenizer.tokenize("lungs"), ["lung", "##s"])
    }

    func testPunctuationAccentsCaseAndWhitespace() throws {
        let tokenizer = try bertStyle()
        XCTAssertEqual(tokenizer.tokenize("What's the ORGAN?"), ["what", "'", "s", "the", "organ", "?"])
        XCTAssertEqual(tokenizer.tokenize("  Café\tNAÏVE\n"), ["cafe", "naive"])
        // A no-break space separates; a zero-width space (format character) is dropped, as BERT does.
        XCTAssertEqual(Tokenizer.basicTokens("a-b (c)\u{00A0}d\u{200B}e"), ["a", "-", "b", "(", "c", ")", "de"])
        XCTAssertEqual(Tokenizer.basicTokens("肝脏 liver"), ["肝", "脏", "liver"])
    }

    func testUnknownWordsBecomeUNK() throws {
        let tokenizer = try bertStyle()
        XCTAssertEqual(tokenizer.ids("zebra liver"), [tokenizer.unkId, tokenizer.id(of: "liver")!])
        XCTAssertEqual(tokenizer.tokenize(String(repeating: "a", count: 101)), ["[UNK]"])
    }

    func testSpecialIdsOfABertVocabularyFile() throws {
        let folder = Fixtures.temporaryDirectory()
        let path = (folder as NSString).appendingPathComponent("vocab.txt")
        var lines = ["[PAD]"] + (1..<100).map { "[unused\($0)]" } + ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "liver"]
        try Fixtures.write(lines.joined(separator: "\n") + "\n", path)
        let tokenizer = try Tokenizer(vocabFile: path)
        XCTAssertEqual([tokenizer.padId, tokenizer.unkId, tokenizer.clsId, tokenizer.sepId, tokenizer.maskId],
                       [0, 100, 101, 102, 103])
        // [DEC] and [ENC] are appended, as upstream adds them after bert-base-uncased's 30522 tokens.
        XCTAssertEqual([tokenizer.decId, tokenizer.encId], [105, 106])
        XCTAssertEqual(tokenizer.encodeQuestion("Liver?"), [106, 104, 100, 102])

        lines.removeFirst()  // no [PAD] at 0
        try Fixtures.write(lines.joined(separator: "\n"), path)
        XCTAssertThrowsError(try Tokenizer(vocabFile: path)) { XCTAssertTrue("\($0)".contains(path)) }
    }

    func testQuestionTruncationKeepsEncAndSep() throws {
        let tokenizer = Tokenizer.build(corpus: ["is the liver normal"])
        let long = Array(repeating: "liver", count: 50).joined(separator: " ")
        let ids = tokenizer.encodeQuestion(long)
        XCTAssertEqual(ids.count, 35)
        XCTAssertEqual(ids.first, tokenizer.encId)
        XCTAssertEqual(ids.last, tokenizer.sepId)
        XCTAssertEqual(tokenizer.questionLength(long), 52)
        XCTAssertEqual(tokenizer.encodeQuestion("is the liver normal").count, 6)
        let stats = tokenizer.truncation([long, "is the liver normal", long])
        XCTAssertEqual(stats.truncated, 2)
        XCTAssertEqual(stats.total, 3)
        // Answers are never cut.
        XCTAssertEqual(tokenizer.encodeAnswer(long).count, 52)
        XCTAssertEqual(tokenizer.encodeAnswer(long).first, tokenizer.decId)
    }

    func testDecodeSkipsSpecialsMergesPiecesAndCleansSpaces() throws {
        let tokenizer = try bertStyle()
        let ids = tokenizer.encodeAnswer("Unaffable lungs, don't?") + [0, 0]
        XCTAssertEqual(tokenizer.decode(ids), "unaffable lungs, don't?")
        XCTAssertEqual(tokenizer.decode([tokenizer.decId, tokenizer.id(of: "liver")!, tokenizer.id(of: ".")!, tokenizer.sepId]),
                       "liver.")
    }

    func testBuiltVocabularyIsDeterministicAndCoversTheCorpus() throws {
        let corpus = ["Is the liver normal?", "Which organ is abnormal?", "liver", "Où est le cœur?"]
        let first = Tokenizer.buildVocabulary(corpus: corpus)
        XCTAssertEqual(first, Tokenizer.buildVocabulary(corpus: corpus.reversed()))
        XCTAssertEqual(Array(first.prefix(7)), Tokenizer.specials)
        let tokenizer = try Tokenizer(vocabulary: first)
        XCTAssertEqual(tokenizer.padId, 0)
        // Every seen word round-trips; an unseen word splits into character pieces instead of [UNK].
        XCTAssertEqual(tokenizer.decode(tokenizer.encodeQuestion("Is the liver normal?")), "is the liver normal?")
        XCTAssertEqual(tokenizer.tokenize("liverish"), ["liver", "##i", "##s", "##h"])
        XCTAssertFalse(tokenizer.ids("où est le cœur").contains(tokenizer.unkId))

        let folder = Fixtures.temporaryDirectory()
        let path = (folder as NSString).appendingPathComponent("vocab.txt")
        try tokenizer.save(to: path)
        XCTAssertEqual(try Tokenizer(vocabFile: path).tokens, tokenizer.tokens)
        // A minimum count drops rare words but keeps characters.
        let frequent = Tokenizer.buildVocabulary(corpus: corpus, minCount: 2)
        XCTAssertTrue(frequent.contains("liver"))
        XCTAssertFalse(frequent.contains("normal"))
    }

    func testBatchPadsToLongestWithMask() {
        let batch = TokenBatch(padding: [[5, 6, 7], [5], []])
        XCTAssertEqual(batch.batch, 3)
        XCTAssertEqual(batch.length, 3)
        XCTAssertEqual(batch.ids, [5, 6, 7, 5, 0, 0, 0, 0, 0])
        XCTAssertEqual(batch.mask, [1, 1, 1, 1, 0, 0, 0, 0, 0])
        XCTAssertEqual(batch.row(1), [5, 0, 0])
    }
}
