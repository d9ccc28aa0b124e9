import ArgumentParser
import Foundation
import MileHarness

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a predictions file against test questions (Opened, Closed, Global as in the paper).",
        discussion: "Predictions: upstream eval_vqa.py output [{\"question_id\": ..., \"answer\": ...}] or ours [{\"qid\": ..., \"answer\": ...}].")

    @Option(name: .long, help: "Test questions in SLAKE format (e.g. Slake1.0/test.json).")
    var questions: String

    @Option(name: .long, help: "Predictions JSON.")
    var predictions: String

    @Flag(name: .long, help: "Keep questions in every language (default: q_lang == \"en\" only).")
    var allLanguages = false

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let test = try ScoringFiles.loadQuestions(path: questions, englishOnly: !allLanguages)
            let answers = try ScoringFiles.loadPredictions(path: predictions)
            let (scores, _) = try Scorer.score(questions: test, predictions: answers)
            print(json ? ScoreCommandOutput.json(scores) : ScoreCommandOutput.text(scores))
        }
    }
}

enum ScoreCommandOutput {
    static func text(_ s: Scores) -> String {
        var lines = [
            String(format: "Opened  %6.2f  (normalised exact match, %d/%d)", s.opened, s.openedCorrect, s.openedCount),
            String(format: "Opened recall %6.2f  (token recall of the ground truth, partial credit)", s.openedRecall),
            String(format: "Closed  %6.2f  (yes/no polarity, %d/%d)", s.closed, s.closedCorrect, s.closedCount),
            String(format: "Global  %6.2f  (count-weighted; with Opened recall: %.2f)", s.global, s.globalRecall),
        ]
        if let open = s.openTypeAccuracy { lines.append(String(format: "SLAKE answer_type OPEN   exact match %6.2f  (n=%d)", open, s.openTypeCount)) }
        if let closed = s.closedTypeAccuracy { lines.append(String(format: "SLAKE answer_type CLOSED exact match %6.2f  (n=%d)", closed, s.closedTypeCount)) }
        return lines.joined(separator: "\n")
    }

    static func json(_ s: Scores) -> String {
        var fields: [String: ConfigValue] = [
            "opened": .double(s.opened), "opened_recall": .double(s.openedRecall), "closed": .double(s.closed),
            "global": .double(s.global), "global_recall": .double(s.globalRecall),
            "opened_count": .int(s.openedCount), "closed_count": .int(s.closedCount),
            "opened_correct": .int(s.openedCorrect), "closed_correct": .int(s.closedCorrect),
            "open_type_count": .int(s.openTypeCount), "closed_type_count": .int(s.closedTypeCount),
        ]
        if let open = s.openTypeAccuracy { fields["open_type_accuracy"] = .double(open) }
        if let closed = s.closedTypeAccuracy { fields["closed_type_accuracy"] = .double(closed) }
        return ConfigValue.map(fields).prettyJSON()
    }
}
