import Foundation
import XCTest
@testable import MileData

final class PretrainCorpusTests: XCTestCase {
    /// A SLAKE-shaped record as the official files write it (only the fields the corpus reads matter).
    private func record(_ qid: Int, _ image: String, _ question: String, _ answer: String, lang: String = "en",
                        modality: String = "CT", location: String = "Abdomen") -> String {
        """
        {"img_id": 0, "img_name": "\(image)", "question": "\(question)", "answer": "\(answer)", "q_lang": "\(lang)", \
        "location": "\(location)", "modality": "\(modality)", "answer_type": "OPEN", "content_type": "Organ", "qid": \(qid)}
        """
    }

    /// xmlab1 (train, detection with a repeated organ and a finding), xmlab2 (train, no detection.json),
    /// xmlab3 (test, but also named by a Chinese train record, as happens on the real SLAKE), xmlab4 (test).
    private func miniSlake() throws -> String {
        let root = Fixtures.temporaryDirectory()
        let train = [
            record(0, "xmlab1/source.jpg", "Which organ is this?", "Liver"),
            record(1, "xmlab2/source.jpg", "What modality?", "MRI", modality: "MRI", location: "Brain_Tissue"),
            record(2, "xmlab3/source.jpg", "这是什么?", "肝脏", lang: "zh", location: "Lung"),
            record(3, "xmlab1/source.jpg", "Is this CT?", "Yes"),
        ]
        let test = [record(4, "xmlab3/source.jpg", "Secret test question?", "secret answer", location: "Lung"),
                    record(5, "xmlab4/source.jpg", "Another test question?", "hidden", modality: "X-Ray")]
        try Fixtures.write("[" + train.joined(separator: ",\n") + "]", root + "/train.json")
        try Fixtures.write("[" + test.joined(separator: ",\n") + "]", root + "/test.json")
        try Fixtures.write("[]", root + "/validate.json")
        for folder in ["xmlab1", "xmlab2", "xmlab3", "xmlab4"] {
            try FileManager.default.createDirectory(atPath: root + "/imgs/" + folder, withIntermediateDirectories: true)
        }
        try Fixtures.write("""
            [{"Liver": [1.0, 2.0, 3.0, 4.0]}, {"Liver": [5.0, 6.0, 7.0, 8.0]}, {"Liver Cancer": [1, 1, 2, 2]}, \
            {"Spleen": [9.0, 9.0, 3.0, 3.0]}]
            """, root + "/imgs/xmlab1/detection.json")
        try Fixtures.write("[{\"Lung\": [1, 1, 1, 1]}]", root + "/imgs/xmlab3/detection.json")
        return root
    }

    func testCaptionsFromMetadataOfTrainingImagesOnly() throws {
        let root = try miniSlake()
        let corpus = try PretrainCorpus.build(slakeRoot: root, radRoot: nil)
        XCTAssertEqual(corpus.captionImages, 2)
        XCTAssertEqual(corpus.excludedImages, 1)
        XCTAssertEqual(Set(corpus.samples.map(\.imageName)), ["xmlab1/source.jpg", "xmlab2/source.jpg"])
        let first = corpus.samples.filter { $0.imageName == "xmlab1/source.jpg" }
        XCTAssertEqual(first.map(\.question), [
            PretrainCorpus.modalityQuestion, "is this a CT image?", "is this an MRI image?",
            PretrainCorpus.bodyPartQuestion, PretrainCorpus.organsQuestion, PretrainCorpus.abnormalitiesQuestion,
        ])
        XCTAssertEqual(first.map(\.answer), ["CT", "yes", "no", "Abdomen", "Liver, Spleen", "Liver Cancer"])
        // No detection.json: no organ questions; the location is spelled as SLAKE answers it.
        let second = corpus.samples.filter { $0.imageName == "xmlab2/source.jpg" }
        XCTAssertEqual(second.map(\.answer), ["MRI", "yes", "no", "Head"])
        XCTAssertEqual(corpus.samples.map(\.qid), Array(0..<corpus.samples.count))
        XCTAssertTrue(corpus.samples.allSatisfy { $0.imagePath == root + "/imgs/" + $0.imageName })
        XCTAssertFalse(corpus.samples.contains { $0.answer.contains("secret") || $0.question.contains("Secret") })
    }

    func testMalformedDetectionNamesTheFile() throws {
        let root = try miniSlake()
        try Fixtures.write("{\"Liver\": 3}", root + "/imgs/xmlab1/detection.json")
        XCTAssertThrowsError(try PretrainCorpus.build(slakeRoot: root, radRoot: nil)) { error in
            XCTAssertTrue("\(error)".contains("xmlab1/detection.json"), "\(error)")
        }
    }

    func testNeedsAFolder() {
        XCTAssertThrowsError(try PretrainCorpus.build(slakeRoot: nil, radRoot: nil))
    }

    func testPartsAreChosenByName() throws {
        XCTAssertEqual(try PretrainCorpus.parts("vqa-rad-train, slake-captions"), PretrainCorpus.defaultParts)
        XCTAssertThrowsError(try PretrainCorpus.parts("slake-test")) { error in
            XCTAssertTrue("\(error)".contains("slake-test") && "\(error)".contains("slake-captions"), "\(error)")
        }
        let root = Fixtures.synthetic.root
        XCTAssertThrowsError(try PretrainCorpus.build(parts: PretrainCorpus.defaultParts, slakeRoot: root, radRoot: nil)) { error in
            XCTAssertTrue("\(error)".contains("vqa-rad-train"), "\(error)")
        }
        XCTAssertThrowsError(try PretrainCorpus.build(parts: [], slakeRoot: root, radRoot: nil))
        let both = try PretrainCorpus.build(parts: [.slakeCaptions, .slakeTrain], slakeRoot: root, radRoot: nil)
        let captions = try PretrainCorpus.build(slakeRoot: root, radRoot: nil)
        let train = try Slake.load(root: root, split: .train)
        XCTAssertEqual(both.slakeTrainCount, train.count)
        XCTAssertEqual(both.samples.count, captions.samples.count + train.count)
        XCTAssertEqual(Array(both.samples.suffix(train.count)).map(\.question), train.map(\.question))
        XCTAssertEqual(both.samples.map(\.qid), Array(0..<both.samples.count))
        try assertNoSlakeTestLeak(both, slakeRoot: root)
    }

    func testVQARadTrainRowsOnly() throws {
        let root = Fixtures.temporaryDirectory()
        func row(_ qid: Int, _ phrase: String) -> String {
            """
            {"qid": "\(qid)", "image_name": "synpic\(qid).jpg", "question": "q\(qid)?", "answer": "a\(qid)", \
            "answer_type": "OPEN", "question_type": "PRES", "phrase_type": "\(phrase)"}
            """
        }
        try Fixtures.write("[" + [row(1, "freeform"), row(2, "test_freeform"), row(3, "para"), row(4, "test_para")]
            .joined(separator: ",") + "]", root + "/" + VQARad.fileName)
        let corpus = try PretrainCorpus.build(slakeRoot: nil, radRoot: root)
        XCTAssertEqual(corpus.samples.map(\.question), ["q1?", "q3?"])
        XCTAssertEqual(corpus.samples.map(\.answer), ["a1", "a3"])
        XCTAssertEqual(corpus.radCount, 2)
        XCTAssertEqual(corpus.captionCount, 0)
    }

    func testSyntheticCorpusMatchesTheScenes() throws {
        let root = Fixtures.synthetic.root
        let corpus = try PretrainCorpus.build(slakeRoot: root, radRoot: nil)
        let train = try Slake.load(root: root, split: .train)
        XCTAssertEqual(corpus.captionImages, Fixtures.synthetic.summary.imagesPerSplit["train"])
        XCTAssertEqual(corpus.excludedImages, 0)
        // Every image has modality, two yes/no, body part and organs (synthetic detection.json).
        XCTAssertEqual(corpus.samples.count, corpus.captionImages * 5)
        let modality = Dictionary(train.filter { $0.question.hasPrefix("What modality") }.map { ($0.imageName, $0.answer) },
                                  uniquingKeysWith: { a, _ in a })
        let organs = Dictionary(train.filter { $0.question == "Which organs appear in this image?" }
                                    .map { ($0.imageName, $0.answer) }, uniquingKeysWith: { a, _ in a })
        XCTAssertFalse(modality.isEmpty)
        XCTAssertFalse(organs.isEmpty)
        for sample in corpus.samples {
            if sample.question == PretrainCorpus.modalityQuestion, let truth = modality[sample.imageName] {
                XCTAssertEqual(sample.answer, truth)
            }
            if sample.question == PretrainCorpus.organsQuestion, let truth = organs[sample.imageName] {
                // The dataset lists organs sorted; detection.json in placement order.
                XCTAssertEqual(sample.answer.components(separatedBy: ", ").sorted().joined(separator: ", "), truth)
            }
        }
        let yes = corpus.samples.filter { $0.answer == "yes" }.count, no = corpus.samples.filter { $0.answer == "no" }.count
        XCTAssertEqual(yes, corpus.captionImages)
        XCTAssertEqual(no, corpus.captionImages)
    }

    func testNoSyntheticTestImageOrQuestion() throws {
        let root = Fixtures.synthetic.root
        let corpus = try PretrainCorpus.build(slakeRoot: root, radRoot: nil)
        try assertNoSlakeTestLeak(corpus, slakeRoot: root)
    }

    func testDeterministicAndSeeded() throws {
        let root = Fixtures.synthetic.root
        let a = try PretrainCorpus.build(slakeRoot: root, radRoot: nil, seed: 1)
        let b = try PretrainCorpus.build(slakeRoot: root, radRoot: nil, seed: 1)
        let c = try PretrainCorpus.build(slakeRoot: root, radRoot: nil, seed: 2)
        XCTAssertEqual(a.samples, b.samples)
        XCTAssertEqual(a.samples.count, c.samples.count)
        XCTAssertNotEqual(a.samples, c.samples, "the false modality of the 'no' questions follows the seed")
    }
}

/// No corpus image is named by any test.json record (any language), so no (image, question) pair of the
/// test set can be in the corpus. Generic question texts ("is this a CT image?") may also occur in the
/// test set; asked about a training image they reveal nothing about it.
func assertNoSlakeTestLeak(_ corpus: PretrainCorpus, slakeRoot: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let testImages = try PretrainCorpus.imageNames(slakeRoot: slakeRoot, split: .test)
    let testPaths = Set(testImages.map { (slakeRoot as NSString).appendingPathComponent("imgs/" + $0) })
    XCTAssertFalse(testImages.isEmpty, file: file, line: line)
    let leaked = corpus.samples.filter { testPaths.contains($0.imagePath) }
    XCTAssertEqual(leaked.count, 0, "test images in the corpus: \(leaked.prefix(3))", file: file, line: line)
    let testPairs = Set(try Slake.load(root: slakeRoot, split: .test, languages: nil)
        .map { $0.imagePath + "|" + $0.question.lowercased() })
    let shared = corpus.samples.filter { testPairs.contains($0.imagePath + "|" + $0.question.lowercased()) }
    XCTAssertEqual(shared.count, 0, "SLAKE test questions in the corpus: \(shared.prefix(3))", file: file, line: line)
}
