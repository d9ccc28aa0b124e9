import XCTest
@testable import MileHarness

/// Table 5's answer_type split (`split: answer_type`): regrouping, scores, and the table key.
final class ScoreSplitTests: XCTestCase {
    /// Four questions: a yes/no CLOSED, a non-yes/no CLOSED ("left" vs "right"), two OPEN.
    let stored: [QuestionScore] = [
        QuestionScore(qid: 1, prediction: "yes", answer: "Yes", group: .closed, answerType: "CLOSED", score: 1, recall: 1),
        QuestionScore(qid: 2, prediction: "left", answer: "Left", group: .opened, answerType: "CLOSED", score: 1, recall: 1),
        QuestionScore(qid: 3, prediction: "lung", answer: "Liver", group: .opened, answerType: "OPEN", score: 0, recall: 0),
        QuestionScore(qid: 4, prediction: "ct", answer: "CT", group: .opened, answerType: "OPEN", score: 1, recall: 1),
    ]

    func testAnswerTypeRegroupsByTypeAndScoresExactMatch() {
        let regrouped = ScoreSplit.answerType.regroup(stored)
        XCTAssertEqual(regrouped.map(\.group), [.closed, .closed, .opened, .opened])
        XCTAssertEqual(regrouped.map(\.score), [1, 1, 0, 1])
        let scores = Scorer.aggregate(regrouped)
        XCTAssertEqual(scores.closed, 100, accuracy: 1e-9)    // 2 of 2 CLOSED
        XCTAssertEqual(scores.opened, 50, accuracy: 1e-9)     // 1 of 2 OPEN
        XCTAssertEqual(scores.global, 75, accuracy: 1e-9)
        XCTAssertEqual(ScoreSplit.yesNo.regroup(stored), stored)
    }

    /// A polarity-correct but not exactly matching yes/no answer counts under yes/no, not under answer_type.
    func testPolarityIsNotExactMatch() {
        let item = QuestionScore(qid: 1, prediction: "yes it is", answer: "Yes", group: .closed, answerType: "CLOSED", score: 1, recall: 1)
        XCTAssertEqual(ScoreSplit.answerType.regroup([item])[0].score, 0)
    }

    func testTableKey() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        try TestSupport.copyDefaults(into: dir)
        let rows = "rows:\n  - {vit: F, jtm: lora, dec: lora, rank: 4}\n"
        let ok = try TestSupport.write("table: t\nextends: defaults.yaml\nsplit: answer_type\n" + rows, to: dir, name: "ok.yaml")
        XCTAssertEqual(try ExperimentLoader.load(path: ok).split, .answerType)
        let plain = try TestSupport.write("table: t\nextends: defaults.yaml\n" + rows, to: dir, name: "plain.yaml")
        XCTAssertEqual(try ExperimentLoader.load(path: plain).split, .yesNo)
        let bad = try TestSupport.write("table: t\nextends: defaults.yaml\nsplit: open\n" + rows, to: dir, name: "bad.yaml")
        XCTAssertThrowsError(try ExperimentLoader.load(path: bad)) { error in
            guard case let HarnessError.invalid(position, message) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(position.line, 3)
            XCTAssertTrue(message.contains("answer_type"), message)
        }
    }
}
