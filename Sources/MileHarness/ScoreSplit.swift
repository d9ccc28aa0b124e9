import Foundation

/// How a table splits the test questions into Opened and Closed (`split:` in a table file).
///
/// Tables 1-4 fit MILE's ACC.py: Closed is the questions whose ground truth is yes/no, scored by polarity.
/// Table 5's Global is ≈ 0.611 · Opened + 0.389 · Closed, which is SLAKE's own `answer_type` split (645 OPEN /
/// 416 CLOSED), not the yes/no one (TABLE5_SPEC §b.5): its rows are reported on that split, each group scored by
/// normalised exact match, and the yes/no split is shown beside them.
public enum ScoreSplit: String, CaseIterable, Sendable {
    case yesNo = "yes_no"
    case answerType = "answer_type"

    /// The per-question scores regrouped by this split (the yes/no split is how they are stored).
    public func regroup(_ scores: [QuestionScore]) -> [QuestionScore] {
        guard self == .answerType else { return scores }
        return scores.map { item in
            let closed = item.answerType?.uppercased() == "CLOSED"
            let exact = Scorer.normalise(item.prediction) == Scorer.normalise(item.answer)
            return QuestionScore(qid: item.qid, prediction: item.prediction, answer: item.answer,
                                 group: closed ? .closed : .opened, answerType: item.answerType,
                                 score: exact ? 1 : 0, recall: item.recall)
        }
    }

    /// The aggregate scores of a prediction set on this split; `stored` when the split is the stored one or
    /// no per-question scores exist.
    public func scores(_ stored: Scores, predictions: [QuestionScore]) -> Scores {
        guard self == .answerType, !predictions.isEmpty else { return stored }
        return Scorer.aggregate(regroup(predictions))
    }

    /// The report's definitions of Opened and Closed under this split.
    func definitions(closedCount: String, openedCount: String) -> [String] {
        switch self {
        case .yesNo:
            return ["- **Closed**: as upstream ACC.py: over the test questions whose ground truth is yes/no\(closedCount), correct when the prediction has the same polarity.",
                    "- **Opened** (primary): normalised exact match (lower case, punctuation as spaces) over the other questions\(openedCount). Upstream's Opened code is unpublished and its figures are not whole counts, so **Opened recall** (secondary) gives partial credit: the fraction of the ground truth's tokens found in the prediction."]
        case .answerType:
            return ["- **Split**: SLAKE's `answer_type` (CLOSED\(closedCount) / OPEN\(openedCount)), because the published Global of this table is ≈ 0.611 · Opened + 0.389 · Closed, the answer_type proportions, not the yes/no split of Tables 1–4 (../shared/spec/TABLE5_SPEC.md §b.5). The same runs on the yes/no split are in the section below the table.",
                    "- **Closed** and **Opened**: normalised exact match (lower case, punctuation as spaces) of the prediction with the ground truth, over the CLOSED and the OPEN questions. **Opened recall** gives partial credit: the fraction of the ground truth's tokens found in the prediction."]
        }
    }
}

extension ReportedRun {
    /// The run with its scores, per-question scores and image-shuffle scores on `split`; the stored (yes/no)
    /// scores stay in `storedScores`.
    func regrouped(_ split: ScoreSplit) -> ReportedRun {
        guard split != .yesNo else { return self }
        var run = self
        run.storedScores = results.scores
        run.results.scores = split.scores(results.scores, predictions: predictions)
        run.predictions = split.regroup(predictions)
        if let shuffle {
            run.shuffle = ShuffleResult(runID: shuffle.runID, shuffleSeed: shuffle.shuffleSeed,
                                        scores: split.scores(shuffle.scores, predictions: shuffle.predictions),
                                        predictions: split.regroup(shuffle.predictions))
        }
        return run
    }
}

extension ReferenceResult {
    /// The reference row's scores on `split`.
    func regrouped(_ split: ScoreSplit) -> ReferenceResult {
        guard split != .yesNo else { return self }
        return ReferenceResult(kind: kind, key: key, settingsJSON: settingsJSON, datasetHashes: datasetHashes,
                               scores: split.scores(scores, predictions: predictions), predictions: split.regroup(predictions))
    }
}
