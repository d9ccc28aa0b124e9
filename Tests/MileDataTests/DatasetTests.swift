import Foundation
import XCTest
@testable import MileData

final class SyntheticDatasetTests: XCTestCase {
    func testLoaderCountsMatchWhatWasGenerated() throws {
        let (root, summary) = Fixtures.synthetic
        XCTAssertEqual(summary.images, 60)
        XCTAssertGreaterThan(summary.jpeg, 0)
        XCTAssertGreaterThan(summary.png, 0)
        for split in Slake.Split.allCases {
            let samples = try Slake.load(root: root, split: split)
            let images = summary.imagesPerSplit[split.rawValue] ?? 0
            XCTAssertGreaterThan(images, 0, "\(split)")
            XCTAssertEqual(samples.count, SyntheticDataset.questionsPerImage * images, "\(split)")
            XCTAssertEqual(samples.count, summary.questions[split.rawValue])
            // The Chinese question per image is skipped by default and kept with languages: nil.
            XCTAssertEqual(try Slake.load(root: root, split: split, languages: nil).count, samples.count + images)
        }
        XCTAssertEqual(summary.imagesPerSplit.values.reduce(0, +), 60)
    }

    func testProportionsAndImagesDecode() throws {
        let root = Fixtures.synthetic.root
        let train = try Slake.load(root: root, split: .train)
        let counts = SplitCounts(train)
        let openShare = Double(counts.open) / Double(counts.total)
        XCTAssertTrue((0.55...0.7).contains(openShare), "open share \(openShare)")
        XCTAssertGreaterThan(counts.closed, counts.yesNo)  // some closed answers are left/right
        let yesShare = Double(counts.yes) / Double(counts.yesNo)
        XCTAssertTrue((0.35...0.65).contains(yesShare), "yes share \(yesShare)")
        XCTAssertEqual(Set(train.map(\.answerType)), ["OPEN", "CLOSED"])
        for path in Set(train.map(\.imagePath)).sorted().prefix(10) {
            XCTAssertNoThrow(try ImageCodec.decodeFile(path))
        }
    }

    func testDeterministicForASeed() throws {
        let a = Fixtures.temporaryDirectory(), b = Fixtures.temporaryDirectory(), c = Fixtures.temporaryDirectory()
        _ = try SyntheticDataset.generate(out: a, seed: 3, images: 12)
        _ = try SyntheticDataset.generate(out: b, seed: 3, images: 12)
        _ = try SyntheticDataset.generate(out: c, seed: 4, images: 12)
        let file = "train.json"
        let read = { (root: String) in try Data(contentsOf: URL(fileURLWithPath: (root as NSString).appendingPathComponent(file))) }
        XCTAssertEqual(try read(a), try read(b))
        XCTAssertNotEqual(try read(a), try read(c))
        let image = "imgs/xmlab5"
        let name = try FileManager.default.contentsOfDirectory(atPath: (a as NSString).appendingPathComponent(image))[0]
        let path = "\(image)/\(name)"
        XCTAssertEqual(try ImageCodec.readBytes((a as NSString).appendingPathComponent(path)),
                       try ImageCodec.readBytes((b as NSString).appendingPathComponent(path)))
    }

    /// Answers must follow from the image: the modality answer matches the record's modality, which is
    /// what the renderer draws, and the yes/no modality question agrees with it.
    func testAnswersAgreeWithTheScene() throws {
        let train = try Slake.load(root: Fixtures.synthetic.root, split: .train)
        let modality = Dictionary(train.filter { $0.question == "What modality is used to take this image?" }
            .map { ($0.imagePath, $0.answer) }, uniquingKeysWith: { a, _ in a })
        XCTAssertFalse(modality.isEmpty)
        for sample in train where sample.question.hasPrefix("Is this a") {
            guard let truth = modality[sample.imagePath] else { continue }
            let asked = sample.question.contains("CT") ? "CT" : (sample.question.contains("MRI") ? "MRI" : "X-Ray")
            XCTAssertEqual(sample.answer, asked == truth ? "Yes" : "No", "qid \(sample.qid)")
        }
    }
}

final class LoaderErrorTests: XCTestCase {
    private func slakeFolder(_ json: String) throws -> String {
        let root = Fixtures.temporaryDirectory()
        try Fixtures.write(json, (root as NSString).appendingPathComponent("train.json"))
        return root
    }

    func testMalformedJSONNamesTheFile() throws {
        let root = try slakeFolder("[{\"qid\": 1,")
        XCTAssertThrowsError(try Slake.load(root: root, split: .train)) { error in
            guard case DataError.badJSON(let path, _) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(path.hasSuffix("train.json"))
        }
        XCTAssertThrowsError(try Slake.load(root: try slakeFolder("{\"a\": 1}"), split: .train))
    }

    func testMissingFieldNamesTheQid() throws {
        let root = try slakeFolder(#"[{"qid": 17, "img_name": "x/source.jpg", "question": "q", "q_lang": "en", "answer_type": "OPEN"}]"#)
        XCTAssertThrowsError(try Slake.load(root: root, split: .train)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("train.json") && text.contains("qid 17") && text.contains("\"answer\""), text)
        }
    }

    /// A qid outside Int's range was read as Int.min and stored; now it is an error naming the value.
    func testOutOfRangeQidIsAnErrorNotIntMin() throws {
        let root = try slakeFolder(#"[{"qid": 99999999999999999999, "img_name": "x/source.jpg", "question": "q", "answer": "a", "q_lang": "en", "answer_type": "OPEN"}]"#)
        XCTAssertThrowsError(try Slake.load(root: root, split: .train)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("train.json") && text.contains("record 0") && text.contains("\"qid\"")
                          && text.contains("outside the integer range"), text)
        }
        XCTAssertEqual(try JSONInteger.convert(NSNumber(value: 42)), 42)
        XCTAssertEqual(try JSONInteger.convert(" 17 "), 17)
        XCTAssertEqual(try JSONInteger.convert(NSNumber(value: UInt64(Int.max))), Int.max)
        XCTAssertThrowsError(try JSONInteger.convert(NSNumber(value: UInt64.max)))
        XCTAssertThrowsError(try JSONInteger.convert(NSNumber(value: Double.infinity)))
        XCTAssertThrowsError(try JSONInteger.convert(NSNumber(value: 9.3e18)))
        XCTAssertThrowsError(try JSONInteger.convert("12a"))
    }

    func testWrongTypeIsAnError() throws {
        let root = try slakeFolder(#"[{"qid": 3, "img_name": 5, "question": "q", "answer": "a", "q_lang": "en", "answer_type": "OPEN"}]"#)
        XCTAssertThrowsError(try Slake.load(root: root, split: .train)) { error in
            XCTAssertTrue("\(error)".contains("img_name"), "\(error)")
        }
    }

    func testMissingSplitFile() {
        XCTAssertThrowsError(try Slake.load(root: Fixtures.temporaryDirectory(), split: .test)) { error in
            guard case DataError.missingFile(let path, _) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(path.hasSuffix("test.json"))
        }
    }

    func testVQARadTypesAndSplit() throws {
        let root = Fixtures.temporaryDirectory()
        let rows = #"""
        [{"qid": "0", "phrase_type": "freeform", "image_name": "a.jpg", "question": "Is it?", "answer": "Yes", "answer_type": "CLOSED ", "question_type": "PRES"},
         {"qid": 1, "phrase_type": "test_para", "image_name": "b.jpg", "question": "How many?", "answer": 2, "answer_type": "OPEN", "question_type": "COUNT"},
         {"qid": "2", "phrase_type": "test_freeform", "image_name": "b.jpg", "question": "Where?", "answer": "left", "answer_type": "OPEN", "question_type": "POS"}]
        """#
        try Fixtures.write(rows, (root as NSString).appendingPathComponent(VQARad.fileName))
        let train = try VQARad.load(root: root, split: .train)
        XCTAssertEqual(train.map(\.qid), [0])
        XCTAssertEqual(train[0].answerType, "CLOSED")
        let test = try VQARad.load(root: root, split: .test)
        XCTAssertEqual(test.map(\.answer), ["2", "left"])
        XCTAssertEqual(try VQARad.load(root: root, split: .all).count, 3)
    }
}

final class DataCheckTests: XCTestCase {
    func testCleanSyntheticSetPasses() {
        var checker = DataChecker()
        checker.checkSlake(root: Fixtures.synthetic.root)
        let report = checker.finish()
        XCTAssertTrue(report.ok, report.text())
        XCTAssertEqual(report.sections.count, 3)
        XCTAssertEqual(report.imagesDecoded, 60)
    }

    func testMissingAndCorruptImagesAreListedWithQids() throws {
        let root = Fixtures.temporaryDirectory()
        _ = try SyntheticDataset.generate(out: root, seed: 11, images: 6)
        let samples = try Slake.load(root: root, split: .train)
        let missing = samples[0].imagePath
        let corrupt = samples.first { $0.imagePath != missing }!.imagePath
        try FileManager.default.removeItem(atPath: missing)
        let bytes = try ImageCodec.readBytes(corrupt)
        try Fixtures.write(Array(bytes.prefix(bytes.count / 3)), corrupt)
        var checker = DataChecker()
        checker.checkSlake(root: root)
        let report = checker.finish()
        XCTAssertFalse(report.ok)
        XCTAssertEqual(report.problems.map(\.file).sorted(), [missing, corrupt].sorted())
        let missingProblem = report.problems.first { $0.file == missing }!
        XCTAssertEqual(missingProblem.qids, samples.filter { $0.imagePath == missing }.map(\.qid))
        XCTAssertTrue(report.text().contains("qids"))
        XCTAssertTrue(report.json().contains("\"ok\": false"))
    }

    /// Issue 20 (7): a duplicated qid passed the check, then every cell trained and failed on scoring.
    func testDuplicatedQidsAreAProblem() throws {
        let root = Fixtures.temporaryDirectory()
        _ = try SyntheticDataset.generate(out: root, seed: 11, images: 6)
        let file = (root as NSString).appendingPathComponent("test.json")
        var records = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [Any])
        records.append(records[0])
        try JSONSerialization.data(withJSONObject: records).write(to: URL(fileURLWithPath: file))
        var checker = DataChecker(decodeImages: false)
        checker.checkSlake(root: root)
        let report = checker.finish()
        XCTAssertFalse(report.ok)
        let problem = try XCTUnwrap(report.problems.first)
        XCTAssertEqual(problem.file, file)
        XCTAssertTrue(problem.message.contains("1 question ids appear more than once"), problem.message)
        XCTAssertEqual(problem.qids, [try Slake.load(root: root, split: .test)[0].qid])
    }

    func testBadJSONIsAProblemNotACrash() throws {
        let root = Fixtures.temporaryDirectory()
        for split in Slake.Split.allCases {
            try Fixtures.write(split == .validate ? "not json" : "[]", (root as NSString).appendingPathComponent("\(split.rawValue).json"))
        }
        var checker = DataChecker()
        checker.checkSlake(root: root)
        checker.checkRad(root: (root as NSString).appendingPathComponent("nowhere"))
        let report = checker.finish()
        XCTAssertEqual(report.problems.count, 2, report.text())
        XCTAssertTrue(report.problems[0].file.hasSuffix("validate.json"))
    }
}
