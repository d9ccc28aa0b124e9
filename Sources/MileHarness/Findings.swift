import Foundation
import Yams

/// One of the paper's qualitative claims, as a table file's `findings:` lists it. Findings are table-level
/// data: they are not part of any cell's config or id.
public struct Finding: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        /// a's metric is higher than b's.
        case greater
        /// a's and b's metric differ by less than `margin` points.
        case equivalent
        /// a's metric is within `margin` points of 0 (the method fails).
        case nearZero = "near_zero"
        /// a's metric is below `value` (e.g. always-no Closed 50.70).
        case below
        /// a's metric is above `value`.
        case above
    }

    public let position: SourcePosition
    public let claim: String
    public let kind: Kind
    public let metric: Metric
    /// A row label of the table (`T T LoRA r4`).
    public let a: String
    /// A row label or a reference row (`blind-train-prior`, `nearest-image`); greater/equivalent only.
    public let b: String?
    public let margin: Double?
    public let value: Double?
}

/// Strict parsing of `findings:` (file:line:column errors, like the rest of the table file).
enum FindingParser {
    static let keys = ["claim", "kind", "metric", "a", "b", "margin", "value"]

    /// Which of b / margin / value each kind needs (all others are errors).
    static func needs(_ kind: Finding.Kind) -> Set<String> {
        switch kind {
        case .greater: return ["b"]
        case .equivalent: return ["b", "margin"]
        case .nearZero: return ["margin"]
        case .below, .above: return ["value"]
        }
    }

    static func parse(_ node: Node, labels: [String], reader: NodeReader) throws -> [Finding] {
        let items = try reader.sequence(node, context: "'findings'", expected: "finding mappings")
        return try items.enumerated().map { try parseOne($1, index: $0 + 1, labels: labels, reader: reader) }
    }

    static func parseOne(_ node: Node, index: Int, labels: [String], reader: NodeReader) throws -> Finding {
        let context = "finding \(index)"
        let pairs = try reader.mapping(node, context: context, allowed: keys)
        let field = { (name: String) in pairs.first { $0.key == name } }
        func required(_ key: String, _ hint: String) throws -> Node {
            guard let pair = field(key) else { throw reader.fail(node, "\(context): missing key '\(key)' (\(hint))") }
            return pair.value
        }
        let claim = try reader.string(required("claim", "the paper's claim in words"), context: "\(context) 'claim'")
        let kindText = try reader.string(required("kind", "one of " + Finding.Kind.allCases.map(\.rawValue).joined(separator: ", ")),
                                         context: "\(context) 'kind'", allowed: Finding.Kind.allCases.map(\.rawValue))
        let kind = Finding.Kind(rawValue: kindText)!
        let metricText = try reader.string(required("metric", "opened, closed or global"), context: "\(context) 'metric'",
                                           allowed: Metric.allCases.map(\.rawValue))
        let a = try label(required("a", "a row label of this table"), key: "a", context: context, allowed: labels, reader: reader)
        let need = needs(kind)
        for key in ["b", "margin", "value"] {
            if need.contains(key), field(key) == nil {
                throw reader.fail(node, "\(context): kind \(kind.rawValue) needs key '\(key)'")
            }
            if !need.contains(key), let pair = field(key) {
                throw reader.fail(pair.keyNode, "\(context): kind \(kind.rawValue) takes no '\(key)' (it uses \(need.sorted().joined(separator: ", ")))")
            }
        }
        let b = try field("b").map {
            try label($0.value, key: "b", context: context, allowed: labels + ReferenceKind.allCases.map(\.rawValue), reader: reader)
        }
        let margin = try field("margin").map { try reader.double($0.value, context: "\(context) 'margin'", min: 0) }
        let value = try field("value").map { try reader.double($0.value, context: "\(context) 'value'", min: 0) }
        return Finding(position: reader.position(node), claim: claim, kind: kind, metric: Metric(rawValue: metricText)!,
                       a: a, b: b, margin: margin, value: value)
    }

    static func label(_ node: Node, key: String, context: String, allowed: [String], reader: NodeReader) throws -> String {
        let text = try reader.string(node, context: "\(context) '\(key)'")
        guard allowed.contains(text) else {
            throw reader.fail(node, "\(context) '\(key)': '\(text)' is not a row of this table (rows: \(allowed.joined(separator: ", ")))")
        }
        return text
    }
}

/// What a finding is judged on: every done seed's per-question scores of each row label, and the
/// reference rows'.
public struct FindingEvidence: Sendable {
    /// Row label -> one score list per done seed, ordered by seed; and those seeds.
    public var runs: [String: [(seed: Int, scores: [QuestionScore])]]

    public init(runs: [String: [(seed: Int, scores: [QuestionScore])]]) {
        self.runs = runs
    }
}

public enum Verdict: String, Sendable {
    case reproduced, contradicted, inconclusive
}

public struct FindingVerdict: Sendable {
    public let finding: Finding
    public let verdict: Verdict
    /// a − b (greater, equivalent), a (near_zero), a − value (below, above), in points.
    public let effect: Double?
    /// 95 % bootstrap CI of the effect.
    public let interval: Interval?
    /// The test and its numbers, or why there is none.
    public let test: String
}

/// Judges findings with 95 % bootstrap CIs over questions (seeds pooled per question): a claim is
/// reproduced when the whole CI is on its side, contradicted when the whole CI is on the other side,
/// inconclusive otherwise (or when a row has no finished run).
public enum FindingJudge {
    public static func judge(_ finding: Finding, evidence: FindingEvidence, resamples: Int = Bootstrap.defaultResamples,
                             seed: UInt64 = Bootstrap.defaultSeed) -> FindingVerdict {
        func undecided(_ why: String) -> FindingVerdict {
            FindingVerdict(finding: finding, verdict: .inconclusive, effect: nil, interval: nil, test: why)
        }
        guard let a = evidence.runs[finding.a], !a.isEmpty, let sampleA = QuestionSample.pooled(a.map(\.scores)) else {
            return undecided("no finished run of \(finding.a)")
        }
        switch finding.kind {
        case .greater, .equivalent:
            guard let b = finding.b.flatMap({ evidence.runs[$0] }), !b.isEmpty, let sampleB = QuestionSample.pooled(b.map(\.scores)) else {
                return undecided("no finished run of \(finding.b ?? "?")")
            }
            return compared(finding, a: a, b: b, sampleA: sampleA, sampleB: sampleB, resamples: resamples, seed: seed)
        case .nearZero, .below, .above:
            return threshold(finding, runs: a.count, sample: sampleA, resamples: resamples, seed: seed)
        }
    }

    static func compared(_ finding: Finding, a: [(seed: Int, scores: [QuestionScore])], b: [(seed: Int, scores: [QuestionScore])],
                         sampleA: QuestionSample, sampleB: QuestionSample, resamples: Int, seed: UInt64) -> FindingVerdict {
        guard let interval = Bootstrap.pairedDifference(sampleA, sampleB, metric: finding.metric, resamples: resamples, seed: seed),
              let test = pooledMcNemar(a, b, metric: finding.metric) else {
            return FindingVerdict(finding: finding, verdict: .inconclusive, effect: nil, interval: nil,
                                  test: "\(finding.a) and \(finding.b ?? "?") were scored on different questions")
        }
        let effect = sampleA.metrics[finding.metric] - sampleB.metrics[finding.metric]
        let verdict: Verdict
        if finding.kind == .greater {
            verdict = interval.low > 0 ? .reproduced : interval.high < 0 ? .contradicted : .inconclusive
        } else {
            let m = finding.margin ?? 0
            verdict = interval.low > -m && interval.high < m ? .reproduced : (interval.low > m || interval.high < -m) ? .contradicted : .inconclusive
        }
        let text = String(format: "paired bootstrap; McNemar exact p = %.3g (%d vs %d discordant, %d seed pair%@)", test.result.pValue,
                          test.result.aOnly, test.result.bOnly, test.pairs, test.pairs == 1 ? "" : "s")
        return FindingVerdict(finding: finding, verdict: verdict, effect: effect, interval: interval, test: text)
    }

    static func threshold(_ finding: Finding, runs: Int, sample: QuestionSample, resamples: Int, seed: UInt64) -> FindingVerdict {
        let ci = Bootstrap.intervals(sample, resamples: resamples, seed: seed)[finding.metric]
        let value = sample.metrics[finding.metric]
        let verdict: Verdict, effect: Double, interval: Interval
        switch finding.kind {
        case .nearZero:
            let m = finding.margin ?? 0
            (effect, interval) = (value, ci)
            verdict = ci.high < m ? .reproduced : ci.low > m ? .contradicted : .inconclusive
        case .below:
            let v = finding.value ?? 0
            (effect, interval) = (value - v, Interval(low: ci.low - v, high: ci.high - v))
            verdict = interval.high < 0 ? .reproduced : interval.low > 0 ? .contradicted : .inconclusive
        default:
            let v = finding.value ?? 0
            (effect, interval) = (value - v, Interval(low: ci.low - v, high: ci.high - v))
            verdict = interval.low > 0 ? .reproduced : interval.high < 0 ? .contradicted : .inconclusive
        }
        return FindingVerdict(finding: finding, verdict: verdict, effect: effect, interval: interval,
                              test: "bootstrap CI over questions (\(runs) seed\(runs == 1 ? "" : "s") pooled)")
    }

    /// McNemar over seed pairs: the seeds both rows have are paired, and only those (reusing one run of b
    /// for several seeds of a would count its answers more than once and shrink the p-value). With no
    /// seed in common (a reference row, disjoint seed lists) the i-th seed of a goes with the (i mod n)-th
    /// of b. Only the metric's questions count. Nil when the two were scored on different questions.
    static func pooledMcNemar(_ a: [(seed: Int, scores: [QuestionScore])], _ b: [(seed: Int, scores: [QuestionScore])],
                              metric: Metric) -> (result: McNemar.Result, pairs: Int)? {
        let bySeed = Dictionary(b.map { ($0.seed, $0.scores) }, uniquingKeysWith: { first, _ in first })
        let common = a.compactMap { run in bySeed[run.seed].map { (run.scores, $0) } }
        let pairs = common.isEmpty ? a.enumerated().map { ($1.scores, b[$0 % b.count].scores) } : common
        var left: [Double] = [], right: [Double] = []
        for (mine, other) in pairs {
            let x = selected(mine, metric), y = selected(other, metric)
            guard x.map(\.qid) == y.map(\.qid) else { return nil }
            left += x.map(\.score)
            right += y.map(\.score)
        }
        return (McNemar.test(left, right), pairs.count)
    }

    static func selected(_ scores: [QuestionScore], _ metric: Metric) -> [QuestionScore] {
        let sorted = scores.sorted { $0.qid < $1.qid }
        switch metric {
        case .opened: return sorted.filter { $0.group == .opened }
        case .closed: return sorted.filter { $0.group == .closed }
        case .global: return sorted
        }
    }
}
