import Foundation
import MileData

/// One test question with its ground truth (SLAKE fields; `answerType` is SLAKE's OPEN/CLOSED).
public struct TestQuestion: Sendable, Equatable {
    public let qid: Int
    public let question: String
    public let answer: String
    public let answerType: String?

    public init(qid: Int, question: String, answer: String, answerType: String?) {
        self.qid = qid
        self.question = question
        self.answer = answer
        self.answerType = answerType
    }
}

/// One model answer.
public struct Prediction: Sendable, Equatable {
    public let qid: Int
    public let answer: String

    public init(qid: Int, answer: String) {
        self.qid = qid
        self.answer = answer
    }
}

/// Which of the paper's two groups a question falls in.
public enum ScoreGroup: String, Sendable, Codable {
    /// Ground truth is yes or no (upstream ACC.py's "closed"; 355 of SLAKE-en test).
    case closed
    /// Every other question (706 of SLAKE-en test).
    case opened
}

/// The score of one question, kept so any table number can be recomputed from the database.
public struct QuestionScore: Sendable, Equatable {
    public let qid: Int
    public let prediction: String
    public let answer: String
    public let group: ScoreGroup
    public let answerType: String?
    /// 1 when correct under the group's primary rule (yes/no polarity, or normalised exact match).
    public let score: Double
    /// Token recall of the ground truth in the prediction (the secondary, partial-credit Opened score).
    public let recall: Double
}

/// All scores of one prediction set, in percent.
public struct Scores: Sendable, Equatable, Codable {
    public var opened: Double
    public var openedRecall: Double
    public var closed: Double
    public var global: Double
    public var globalRecall: Double
    /// SLAKE answer_type-based exact-match accuracies (nil when the questions carry no answer_type).
    public var openTypeAccuracy: Double?
    public var closedTypeAccuracy: Double?
    public var openedCount: Int
    public var closedCount: Int
    public var openedCorrect: Int
    public var closedCorrect: Int
    public var openTypeCount: Int
    public var closedTypeCount: Int

    public init(opened: Double, openedRecall: Double, closed: Double, global: Double, globalRecall: Double,
                openTypeAccuracy: Double?, closedTypeAccuracy: Double?, openedCount: Int, closedCount: Int,
                openedCorrect: Int, closedCorrect: Int, openTypeCount: Int, closedTypeCount: Int) {
        self.opened = opened
        self.openedRecall = openedRecall
        self.closed = closed
        self.global = global
        self.globalRecall = globalRecall
        self.openTypeAccuracy = openTypeAccuracy
        self.closedTypeAccuracy = closedTypeAccuracy
        self.openedCount = openedCount
        self.closedCount = closedCount
        self.openedCorrect = openedCorrect
        self.closedCorrect = closedCorrect
        self.openTypeCount = openTypeCount
        self.closedTypeCount = closedTypeCount
    }
}

/// Scoring as the paper's tables need it (spec §5).
public enum Scorer {
    /// Lower case, every non-alphanumeric character as a separator, single spaces. Generated answers are
    /// lower-cased BERT decodes ("x - ray", "liver , heart"), so punctuation spacing must not matter.
    public static func normalise(_ text: String) -> String {
        tokens(text).joined(separator: " ")
    }

    public static func tokens(_ text: String) -> [String] {
        let lowered = text.lowercased()
        var words: [String] = []
        var current = ""
        for character in lowered {
            if character.isLetter || character.isNumber {
                current.append(character)
            } else if !current.isEmpty {
                words.append(current)
                current = ""
            }
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    /// Upstream ACC.py's test: the ground truth is one of yes/Yes/no/No. (We compare case-insensitively
    /// after trimming, which is the same on SLAKE, whose answers use only those four spellings.)
    public static func polarity(_ text: String) -> Bool? {
        switch text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased() {
        case "yes": return true
        case "no": return false
        default: return nil
        }
    }

    /// Fraction of the ground truth's tokens found in the prediction (multiset; 0 when it has none).
    public static func tokenRecall(prediction: String, answer: String) -> Double {
        let truth = tokens(answer)
        guard !truth.isEmpty else { return normalise(prediction).isEmpty ? 1 : 0 }
        var available: [String: Int] = [:]
        for token in tokens(prediction) { available[token, default: 0] += 1 }
        var found = 0
        for token in truth where (available[token] ?? 0) > 0 {
            available[token]! -= 1
            found += 1
        }
        return Double(found) / Double(truth.count)
    }

    /// Scores predictions against questions. Every question needs exactly one prediction and every
    /// prediction must name a known question; otherwise the error lists the offending qids.
    public static func score(questions: [TestQuestion], predictions: [Prediction]) throws -> (Scores, [QuestionScore]) {
        let byQID = try predictionMap(predictions, questions: questions)
        let perQuestion = questions.map { question in
            scoreOne(question, prediction: byQID[question.qid]!)
        }
        return (aggregate(perQuestion), perQuestion)
    }

    static func predictionMap(_ predictions: [Prediction], questions: [TestQuestion]) throws -> [Int: String] {
        var byQID: [Int: String] = [:]
        var duplicated: [Int] = []
        for prediction in predictions {
            if byQID[prediction.qid] != nil { duplicated.append(prediction.qid) }
            byQID[prediction.qid] = prediction.answer
        }
        let known = Set(questions.map(\.qid))
        let unknown = byQID.keys.filter { !known.contains($0) }.sorted()
        let missing = questions.map(\.qid).filter { byQID[$0] == nil }
        var problems: [String] = []
        if !duplicated.isEmpty { problems.append("\(duplicated.count) qid(s) predicted more than once: \(listed(duplicated))") }
        if !unknown.isEmpty { problems.append("\(unknown.count) predicted qid(s) not among the questions: \(listed(unknown))") }
        if !missing.isEmpty { problems.append("\(missing.count) question(s) without a prediction: \(listed(missing))") }
        if !problems.isEmpty { throw HarnessError.input(problems.joined(separator: "; ")) }
        return byQID
    }

    static func listed(_ qids: [Int]) -> String {
        let shown = qids.prefix(20).map(String.init).joined(separator: ", ")
        return qids.count > 20 ? shown + ", ... (\(qids.count - 20) more)" : shown
    }

    static func scoreOne(_ question: TestQuestion, prediction: String) -> QuestionScore {
        let recall = tokenRecall(prediction: prediction, answer: question.answer)
        if let truth = polarity(question.answer) {
            let correct = polarity(prediction) == truth
            return QuestionScore(qid: question.qid, prediction: prediction, answer: question.answer, group: .closed,
                                 answerType: question.answerType, score: correct ? 1 : 0, recall: recall)
        }
        let exact = normalise(prediction) == normalise(question.answer)
        return QuestionScore(qid: question.qid, prediction: prediction, answer: question.answer, group: .opened,
                             answerType: question.answerType, score: exact ? 1 : 0, recall: recall)
    }

    static func aggregate(_ scores: [QuestionScore]) -> Scores {
        let closed = scores.filter { $0.group == .closed }
        let opened = scores.filter { $0.group == .opened }
        let closedCorrect = closed.filter { $0.score == 1 }.count
        let openedCorrect = opened.filter { $0.score == 1 }.count
        let openedRecallSum = opened.reduce(0) { $0 + $1.recall }
        let total = Double(max(scores.count, 1))
        let exactMatch = { (item: QuestionScore) in Scorer.normalise(item.prediction) == Scorer.normalise(item.answer) }
        let openType = scores.filter { $0.answerType?.uppercased() == "OPEN" }
        let closedType = scores.filter { $0.answerType?.uppercased() == "CLOSED" }
        return Scores(
            opened: percent(Double(openedCorrect), opened.count),
            openedRecall: percent(openedRecallSum, opened.count),
            closed: percent(Double(closedCorrect), closed.count),
            global: 100 * Double(openedCorrect + closedCorrect) / total,
            globalRecall: 100 * (openedRecallSum + Double(closedCorrect)) / total,
            openTypeAccuracy: openType.isEmpty ? nil : percent(Double(openType.filter(exactMatch).count), openType.count),
            closedTypeAccuracy: closedType.isEmpty ? nil : percent(Double(closedType.filter(exactMatch).count), closedType.count),
            openedCount: opened.count, closedCount: closed.count,
            openedCorrect: openedCorrect, closedCorrect: closedCorrect,
            openTypeCount: openType.count, closedTypeCount: closedType.count)
    }

    static func percent(_ value: Double, _ count: Int) -> Double { count == 0 ? 0 : 100 * value / Double(count) }
}

/// Reads question and prediction files.
public enum ScoringFiles {
    /// A SLAKE-format JSON list (`qid`, `answer`, optional `question`, `answer_type`, `q_lang`). With
    /// `englishOnly`, records whose `q_lang` is present and not "en" are skipped (SLAKE-en test: 1061).
    public static func loadQuestions(path: String, englishOnly: Bool = true) throws -> [TestQuestion] {
        let records = try jsonList(path)
        var out: [TestQuestion] = []
        var seen = Set<Int>()
        for (index, record) in records.enumerated() {
            if englishOnly, let lang = record["q_lang"] as? String, lang != "en" { continue }
            let place = "\(path): record \(index + 1)"
            let qid = try integer(record["qid"], place: place, field: "qid")
            guard let answer = text(record["answer"]) else { throw HarnessError.input("\(place) (qid \(qid)): missing 'answer'") }
            guard seen.insert(qid).inserted else { throw HarnessError.input("\(place): qid \(qid) appears twice") }
            out.append(TestQuestion(qid: qid, question: record["question"] as? String ?? "", answer: answer,
                                    answerType: (record["answer_type"] as? String)?.trimmingCharacters(in: .whitespaces)))
        }
        return out
    }

    /// Upstream's eval_vqa.py output (`[{"question_id": …, "answer": …}]`) or ours (`qid`, `answer` or
    /// `prediction`).
    public static func loadPredictions(path: String) throws -> [Prediction] {
        try jsonList(path).enumerated().map { index, record in
            let place = "\(path): record \(index + 1)"
            guard let raw = record["qid"] ?? record["question_id"] else {
                throw HarnessError.input("\(place): expected an integer 'qid' or 'question_id'")
            }
            let qid = try integer(raw, place: place, field: record["qid"] != nil ? "qid" : "question_id")
            guard let answer = text(record["answer"] ?? record["prediction"]) else {
                throw HarnessError.input("\(place) (qid \(qid)): expected a string 'answer' or 'prediction'")
            }
            return Prediction(qid: qid, answer: answer)
        }
    }

    static func jsonList(_ path: String) throws -> [[String: Any]] {
        guard let data = FileManager.default.contents(atPath: path) else { throw HarnessError.io("cannot read \(path): \(unreadableReason(path))") }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw HarnessError.input("\(path): not valid JSON (\(jsonErrorText(error, data: data)))")
        }
        guard let list = object as? [Any] else { throw HarnessError.input("\(path): expected a JSON list of records") }
        return try list.enumerated().map { index, item in
            guard let record = item as? [String: Any] else { throw HarnessError.input("\(path): record \(index + 1) is not an object") }
            return record
        }
    }

    /// Integers, or strings holding one (some tools write qids as strings), through MileData's one checked
    /// conversion; `place` and `field` name the record and field in the error.
    static func integer(_ value: Any?, place: String, field: String) throws -> Int {
        guard let value, !(value is NSNull) else { throw HarnessError.input("\(place): missing '\(field)'") }
        do {
            return try JSONInteger.convert(value)
        } catch let problem as JSONInteger.Problem {
            throw HarnessError.input("\(place): '\(field)' must be an integer: \(problem)")
        }
    }

    /// Answers are strings; a few upstream answers are bare numbers, read as their decimal text (whole
    /// numbers without a fraction, whatever their size).
    static func text(_ value: Any?) -> String? {
        if let string = value as? String { return string }
        guard let number = value as? NSNumber, !JSONInteger.isBool(number) else { return nil }
        if let int = try? JSONInteger.convert(number) { return String(int) }
        return number.stringValue
    }
}
