import XCTest
@testable import MileHarness

final class ScoringTests: XCTestCase {
    let questions = [
        TestQuestion(qid: 10, question: "Is this a CT?", answer: "Yes", answerType: "CLOSED"),
        TestQuestion(qid: 11, question: "Is the lung healthy?", answer: "No", answerType: "CLOSED"),
        TestQuestion(qid: 12, question: "Is there a tumor?", answer: "no", answerType: "CLOSED"),
        TestQuestion(qid: 13, question: "Does it show the brain?", answer: "yes", answerType: "OPEN"),   // yes/no decides, not answer_type
        TestQuestion(qid: 20, question: "Which organ?", answer: "Liver", answerType: "OPEN"),
        TestQuestion(qid: 21, question: "Where is the lesion?", answer: "Left Lung", answerType: "OPEN"),
        TestQuestion(qid: 22, question: "What modality?", answer: "X-Ray", answerType: "OPEN"),
        TestQuestion(qid: 23, question: "CT or MRI?", answer: "MRI", answerType: "CLOSED"),              // closed type, opened group
        TestQuestion(qid: 24, question: "Which organs?", answer: "Heart, Liver", answerType: "OPEN"),
    ]

    func predictions(_ answers: [Int: String]) -> [Prediction] { answers.map { Prediction(qid: $0.key, answer: $0.value) } }

    func testHandMadeSet() throws {
        let (scores, items) = try Scorer.score(questions: questions, predictions: predictions([
            10: "yes", 11: " no ", 12: "yes", 13: "yes, it does",
            20: "liver", 21: "lung", 22: "x - ray", 23: "ct", 24: "heart liver",
        ]))
        // Closed: 10 and 11 right; 12 wrong polarity; 13 not exactly "yes" (upstream ACC.py compares strings).
        XCTAssertEqual(scores.closedCount, 4)
        XCTAssertEqual(scores.closedCorrect, 2)
        XCTAssertEqual(scores.closed, 50.0, accuracy: 1e-9)
        // Opened exact match after normalisation: 20, 22, 24 right; 21, 23 wrong.
        XCTAssertEqual(scores.openedCount, 5)
        XCTAssertEqual(scores.openedCorrect, 3)
        XCTAssertEqual(scores.opened, 60.0, accuracy: 1e-9)
        // Recall: 20 1, 21 1/2 (lung of left lung), 22 1, 23 0, 24 1 -> 3.5 / 5.
        XCTAssertEqual(scores.openedRecall, 70.0, accuracy: 1e-9)
        XCTAssertEqual(scores.global, 100.0 * 5 / 9, accuracy: 1e-9)
        XCTAssertEqual(scores.globalRecall, 100.0 * (3.5 + 2) / 9, accuracy: 1e-9)
        // answer_type: OPEN = 13, 20, 21, 22, 24 -> exact 20, 22, 24 = 3/5; CLOSED = 10, 11, 12, 23 -> 10, 11 = 2/4.
        XCTAssertEqual(scores.openTypeCount, 5)
        XCTAssertEqual(scores.openTypeAccuracy!, 60.0, accuracy: 1e-9)
        XCTAssertEqual(scores.closedTypeAccuracy!, 50.0, accuracy: 1e-9)
        XCTAssertEqual(items.first { $0.qid == 13 }?.group, .closed)
        XCTAssertEqual(items.first { $0.qid == 23 }?.group, .opened)
        XCTAssertEqual(items.first { $0.qid == 21 }?.recall, 0.5)
    }

    func testNormalisationAndRecall() {
        XCTAssertEqual(Scorer.normalise("  Left,  LUNG. "), "left lung")
        XCTAssertEqual(Scorer.normalise("x - ray"), Scorer.normalise("X-Ray"))
        XCTAssertEqual(Scorer.tokenRecall(prediction: "lung lung", answer: "left lung"), 0.5)
        XCTAssertEqual(Scorer.tokenRecall(prediction: "the left lung", answer: "Left Lung"), 1.0)
        XCTAssertEqual(Scorer.tokenRecall(prediction: "lung", answer: "lung, lung"), 0.5, "multiset: one lung found of two")
        XCTAssertEqual(Scorer.polarity("Yes"), true)
        XCTAssertEqual(Scorer.polarity("NO"), false)
        XCTAssertNil(Scorer.polarity("yes."))
    }

    func testAllNoPredictionsScoreTheNoShare() throws {
        let answers = Dictionary(uniqueKeysWithValues: questions.map { ($0.qid, "no") })
        let (scores, _) = try Scorer.score(questions: questions, predictions: predictions(answers))
        XCTAssertEqual(scores.closedCorrect, 2)
        XCTAssertEqual(scores.opened, 0)
    }

    func testMissingUnknownAndDuplicateQIDsAreListed() {
        var answers = Dictionary(uniqueKeysWithValues: questions.map { ($0.qid, "no") })
        answers[20] = nil
        answers[21] = nil
        var list = predictions(answers)
        list.append(Prediction(qid: 999, answer: "x"))
        list.append(Prediction(qid: 10, answer: "yes"))
        XCTAssertThrowsError(try Scorer.score(questions: questions, predictions: list)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("2 question(s) without a prediction: 20, 21"), text)
            XCTAssertTrue(text.contains("1 predicted qid(s) not among the questions: 999"), text)
            XCTAssertTrue(text.contains("predicted more than once: 10"), text)
        }
    }

    /// A qid or answer outside Int's range (or a fraction, a boolean) is an error naming the file, the
    /// record and the value, never a trap (it was a SIGILL in `mile score`).
    func testOutOfRangeNumbersAreErrorsNamingFileRecordAndValue() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let predictions = try TestSupport.write(#"[{"qid": 1, "answer": "yes"}, {"qid": 99999999999999999999, "answer": "no"}]"#,
                                                to: dir, name: "pred.json")
        XCTAssertThrowsError(try ScoringFiles.loadPredictions(path: predictions)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("pred.json") && text.contains("record 2") && text.contains("'qid'")
                          && text.contains("outside the integer range"), text)
        }
        let questions = try TestSupport.write(#"[{"qid": -1e19, "answer": "yes", "q_lang": "en"}]"#, to: dir, name: "q.json")
        XCTAssertThrowsError(try ScoringFiles.loadQuestions(path: questions)) { error in
            XCTAssertTrue("\(error)".contains("q.json: record 1") && "\(error)".contains("outside the integer range"), "\(error)")
        }
        let stringQID = try TestSupport.write(#"[{"question_id": "123456789012345678901234", "answer": "no"}]"#, to: dir, name: "s.json")
        XCTAssertThrowsError(try ScoringFiles.loadPredictions(path: stringQID)) { error in
            XCTAssertTrue("\(error)".contains("'question_id'") && "\(error)".contains("123456789012345678901234"), "\(error)")
        }
        let fraction = try TestSupport.write(#"[{"qid": 1.5, "answer": "no"}]"#, to: dir, name: "f.json")
        XCTAssertThrowsError(try ScoringFiles.loadPredictions(path: fraction)) { XCTAssertTrue("\($0)".contains("1.5 is not a whole number"), "\($0)") }
        let boolean = try TestSupport.write(#"[{"qid": true, "answer": "no"}]"#, to: dir, name: "b.json")
        XCTAssertThrowsError(try ScoringFiles.loadPredictions(path: boolean)) { XCTAssertTrue("\($0)".contains("boolean"), "\($0)") }
        // A huge numeric answer is read as its text, not converted to Int.
        let huge = try TestSupport.write(#"[{"qid": 1, "answer": 1e300}, {"qid": 9223372036854775807, "answer": "x"}]"#, to: dir, name: "h.json")
        let loaded = try ScoringFiles.loadPredictions(path: huge)
        XCTAssertEqual(loaded.map(\.qid), [1, Int.max])
        XCTAssertFalse(loaded[0].answer.isEmpty)
    }

    func testFileFormats() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let test = try TestSupport.write("""
            [{"qid": 1, "question": "Is it a CT?", "answer": "Yes", "answer_type": "CLOSED ", "q_lang": "en"},
             {"qid": 2, "question": "这是CT吗", "answer": "是", "answer_type": "CLOSED", "q_lang": "zh"},
             {"qid": 3, "question": "How many?", "answer": 2, "answer_type": "OPEN", "q_lang": "en"}]
            """, to: dir, name: "test.json")
        let english = try ScoringFiles.loadQuestions(path: test)
        XCTAssertEqual(english.map(\.qid), [1, 3])
        XCTAssertEqual(english[1].answer, "2")
        XCTAssertEqual(english[0].answerType, "CLOSED")
        XCTAssertEqual(try ScoringFiles.loadQuestions(path: test, englishOnly: false).count, 3)

        let upstream = try TestSupport.write(#"[{"question_id": 1, "answer": "yes"}, {"question_id": "3", "answer": "2"}]"#, to: dir, name: "up.json")
        let ours = try TestSupport.write(#"[{"qid": 1, "prediction": "no"}, {"qid": 3, "answer": "two"}]"#, to: dir, name: "ours.json")
        XCTAssertEqual(try ScoringFiles.loadPredictions(path: upstream), [Prediction(qid: 1, answer: "yes"), Prediction(qid: 3, answer: "2")])
        XCTAssertEqual(try ScoringFiles.loadPredictions(path: ours).map(\.answer), ["no", "two"])
        let (scores, _) = try Scorer.score(questions: english, predictions: ScoringFiles.loadPredictions(path: upstream))
        XCTAssertEqual(scores.global, 100)

        let bad = try TestSupport.write(#"[{"answer": "yes"}]"#, to: dir, name: "bad.json")
        XCTAssertThrowsError(try ScoringFiles.loadPredictions(path: bad)) { XCTAssertTrue("\($0)".contains("record 1")) }
        let notJSON = try TestSupport.write("{", to: dir, name: "broken.json")
        XCTAssertThrowsError(try ScoringFiles.loadQuestions(path: notJSON)) { XCTAssertTrue("\($0)".contains("not valid JSON")) }
    }

    /// On the real SLAKE-en test set, always answering "no" gives Closed 50.70 (180/355), as in the paper.
    func testAllNoOnRealSLAKE() throws {
        guard let dir = ProcessInfo.processInfo.environment["SLAKE_DIR"] else { throw XCTSkip("SLAKE_DIR not set") }
        let test = try ScoringFiles.loadQuestions(path: dir + "/test.json")
        XCTAssertEqual(test.count, 1061)
        let (scores, _) = try Scorer.score(questions: test, predictions: test.map { Prediction(qid: $0.qid, answer: "no") })
        XCTAssertEqual(scores.closedCount, 355)
        XCTAssertEqual(scores.closedCorrect, 180)
        XCTAssertEqual(String(format: "%.2f", scores.closed), "50.70")
        XCTAssertEqual(scores.openedCount, 706)
    }
}
