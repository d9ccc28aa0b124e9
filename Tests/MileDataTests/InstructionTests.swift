import Foundation
import XCTest
@testable import MileData

final class InstructionTests: XCTestCase {
    /// The `(a)X; (b)Y` list inside a prompt.
    private func options(in prompt: String) -> [String]? {
        guard let start = prompt.range(of: "Option:{"), let end = prompt.range(of: "}", range: start.upperBound..<prompt.endIndex)
        else { return nil }
        return prompt[start.upperBound..<end.lowerBound].components(separatedBy: "; ").map { String($0.dropFirst(3)) }
    }

    private func samples() throws -> [VQASample] {
        try Slake.load(root: Fixtures.synthetic.root, split: .train)
    }

    func testEveryAnswerIsAmongItsOptionsAndPoolsHaveTheRightSize() throws {
        let input = try samples()
        let records = InstructionBuilder(seed: 42).build(input, imagePrefix: "slake/", firstQid: 100)
        XCTAssertEqual(records.count, input.count)
        for (sample, record) in zip(input, records) {
            XCTAssertEqual(record.imageName, "slake/" + sample.imageName)
            XCTAssertEqual(record.answer, sample.answer)
            let closed = sample.answerType == "CLOSED"
            XCTAssertEqual(record.questionPool.count, closed ? 6 : 5)
            let listed = record.questionPool.compactMap(options)
            XCTAssertEqual(listed.count, 4)  // templates 1, 2, 4, 5 carry options
            XCTAssertEqual(Set(listed.map { $0 }).count, 1, "same options in every template")
            let opts = listed[0]
            XCTAssertTrue(opts.contains(sample.answer), "qid \(record.qid): \(sample.answer) not in \(opts)")
            XCTAssertEqual(Set(opts.map { $0.lowercased() }).count, opts.count, "duplicate options \(opts)")
            if sample.isYesNo { XCTAssertEqual(opts.count, 2) }
            for prompt in record.questionPool { XCTAssertTrue(prompt.hasPrefix("<image>")) }
            XCTAssertTrue(record.questionPool.last!.contains("\"{\(sample.question)}\""))
        }
        XCTAssertEqual(records.map(\.qid), Array(100..<(100 + input.count)))
        let openCounts = Set(zip(input, records).filter { $0.0.answerType == "OPEN" }.map { options(in: $0.1.questionPool[0])!.count })
        XCTAssertEqual(openCounts, [4])
    }

    func testDeterministicForASeedAndShuffled() throws {
        let input = try samples()
        let a = InstructionBuilder(seed: 5).build(input, imagePrefix: "slake/", firstQid: 0)
        XCTAssertEqual(a, InstructionBuilder(seed: 5).build(input, imagePrefix: "slake/", firstQid: 0))
        XCTAssertNotEqual(a, InstructionBuilder(seed: 6).build(input, imagePrefix: "slake/", firstQid: 0))
        // The answer is not always the first option.
        let positions = Set(a.compactMap { options(in: $0.questionPool[0])?.firstIndex(of: $0.answer) })
        XCTAssertGreaterThan(positions.count, 1)
    }

    func testWriteLoadRoundTripAndEpochDraws() throws {
        let folder = Fixtures.temporaryDirectory()
        let file = (folder as NSString).appendingPathComponent("instruction_data.json")
        let records = InstructionBuilder(seed: 1).build(try samples(), imagePrefix: "slake/", firstQid: 0)
        try InstructionDataset.write(records, to: file)
        let dataset = try InstructionDataset.load(file: file, seed: 9)
        XCTAssertEqual(dataset.records, records)
        XCTAssertEqual(dataset.imageRoot, (folder as NSString).appendingPathComponent("image"))
        let record = dataset.records[0]
        XCTAssertEqual(dataset.prompt(for: record, epoch: 3), dataset.prompt(for: record, epoch: 3))
        let drawn = Set((0..<40).map { dataset.prompt(for: record, epoch: $0) })
        XCTAssertGreaterThan(drawn.count, 2, "prompts should change across epochs")
        XCTAssertTrue(drawn.isSubset(of: Set(record.questionPool)))
        let epoch = dataset.samples(epoch: 2)
        XCTAssertEqual(epoch.count, records.count)
        XCTAssertEqual(epoch[0].imagePath, (folder as NSString).appendingPathComponent("image/" + record.imageName))
    }

    func testLoadErrorsNameTheRecord() throws {
        let folder = Fixtures.temporaryDirectory()
        let file = (folder as NSString).appendingPathComponent("i.json")
        try Fixtures.write(#"[{"img_name": "a.jpg", "qid": 4, "answer": 12, "question_pool": ["p"]}, {"img_name": "a.jpg", "qid": 5, "answer": "x", "question_pool": "p"}]"#, file)
        XCTAssertThrowsError(try InstructionDataset.load(file: file)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("record 1 (qid 5)") && text.contains("question_pool"), text)
        }
        try Fixtures.write(#"[{"img_name": "a.jpg", "qid": 4, "answer": 12, "question_pool": ["p"]}]"#, file)
        XCTAssertEqual(try InstructionDataset.load(file: file).records[0].answer, "12")  // str(answer)
    }
}
