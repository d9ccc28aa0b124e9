import Foundation
import XCTest
@testable import MileData

final class VocabularyTests: XCTestCase {
    private let records = [
        InstructionRecord(imageName: "a.jpg", qid: 0, answer: "Liver",
                          questionPool: ["<image>Question:{Which organ?}Option:{(a)Liver; (b)Heart} Answer:"]),
        InstructionRecord(imageName: "b.jpg", qid: 1, answer: "Yes", questionPool: ["Is it abnormal?", "Abnormal?"]),
    ]
    private let samples = [
        VQASample(qid: 0, imagePath: "x", imageName: "x", question: "what modality is this image?", answer: "CT",
                  answerType: "OPEN", contentType: ""),
    ]

    func testBuiltFromTrainingTextsOnlyAndOrderFree() {
        let tokenizer = Vocabulary.build(instructions: records, samples: samples)
        for word in ["liver", "heart", "abnormal", "modality", "ct", "yes", "option", "<", "{"] {
            XCTAssertNotNil(tokenizer.id(of: word), word)
        }
        let reversed = Vocabulary.build(instructions: records.reversed(), samples: samples)
        XCTAssertEqual(tokenizer.tokens, reversed.tokens)
        XCTAssertEqual(Vocabulary.fingerprint(tokenizer), Vocabulary.fingerprint(reversed))
        XCTAssertEqual(Vocabulary.fingerprint(tokenizer).count, 64)
        // A word never seen in training is spelled from character pieces, not lost, and not a whole entry.
        XCTAssertNil(tokenizer.id(of: "livers"))
        XCTAssertEqual(tokenizer.tokenize("livers"), ["liver", "##s"])
        let coverage = Vocabulary.coverage(tokenizer, texts: ["Liver livers ☃"])
        XCTAssertEqual(coverage, Vocabulary.Coverage(words: 3, whole: 1, split: 1, unknown: 1))
    }

    func testPrepareWritesThenLoadsThenRefusesAChangedCorpus() throws {
        let file = Fixtures.temporaryDirectory() + "/run/vocab.txt"
        let written = try Vocabulary.prepare(file: file, instructions: records, samples: samples)
        XCTAssertTrue(FileManager.default.fileExists(atPath: file))
        let again = try Vocabulary.prepare(file: file, instructions: records, samples: samples)
        XCTAssertEqual(written.tokens, again.tokens)
        XCTAssertEqual(try Tokenizer(vocabFile: file).tokens, written.tokens)
        XCTAssertThrowsError(try Vocabulary.prepare(file: file, instructions: records, samples: [])) { error in
            XCTAssertTrue("\(error)".contains("vocab.txt"), "\(error)")
        }
    }

    func testSyntheticTestQuestionsAreCovered() throws {
        let root = Fixtures.synthetic.root
        let train = try Slake.load(root: root, split: .train)
        let corpus = try PretrainCorpus.build(slakeRoot: root, radRoot: nil)
        let records = InstructionBuilder().build(train, imagePrefix: "", firstQid: 0)
        let tokenizer = Vocabulary.build(instructions: records, samples: corpus.samples)
        let test = try Slake.load(root: root, split: .test)
        XCTAssertEqual(Vocabulary.coverage(tokenizer, texts: test.map(\.question)).unknown, 0)
    }
}
