import Foundation
import MileData

/// Per-question scores of one prediction set (or of several seeds averaged per question), split by the
/// paper's two groups. The unit of every resampling below: a question.
public struct QuestionSample: Sendable, Equatable {
    /// Scores of the questions whose ground truth is yes/no (Closed), each in [0, 1].
    public var closed: [Double]
    /// Scores of the other questions (Opened), each in [0, 1].
    public var opened: [Double]

    public init(closed: [Double], opened: [Double]) {
        self.closed = closed
        self.opened = opened
    }

    /// From stored per-question scores, in qid order.
    public init(_ scores: [QuestionScore]) {
        let sorted = scores.sorted { $0.qid < $1.qid }
        closed = sorted.filter { $0.group == .closed }.map(\.score)
        opened = sorted.filter { $0.group == .opened }.map(\.score)
    }

    /// The per-question mean over several seeds' score sets of the same questions (nil when the seeds do
    /// not score the same qids). Pools seeds so a row's CI covers question sampling with seed noise averaged.
    public static func pooled(_ runs: [[QuestionScore]]) -> QuestionSample? {
        guard let first = runs.first else { return nil }
        let qids = first.map(\.qid).sorted()
        var sums: [Int: Double] = [:]
        for run in runs {
            guard run.map(\.qid).sorted() == qids else { return nil }
            for item in run { sums[item.qid, default: 0] += item.score }
        }
        let averaged = first.map { item in
            QuestionScore(qid: item.qid, prediction: "", answer: item.answer, group: item.group, answerType: item.answerType,
                          score: sums[item.qid]! / Double(runs.count), recall: 0)
        }
        return QuestionSample(averaged)
    }

    /// Opened, Closed, Global in percent (Global count-weighted, as `Scorer`).
    public var metrics: MetricTriple {
        let openedSum = opened.reduce(0, +), closedSum = closed.reduce(0, +)
        return MetricTriple(opened: Self.percent(openedSum, opened.count), closed: Self.percent(closedSum, closed.count),
                            global: Self.percent(openedSum + closedSum, opened.count + closed.count))
    }

    static func percent(_ sum: Double, _ count: Int) -> Double { count == 0 ? 0 : 100 * sum / Double(count) }
}

/// The paper's three accuracy columns, in percent.
public struct MetricTriple: Sendable, Equatable {
    public var opened: Double
    public var closed: Double
    public var global: Double

    public init(opened: Double, closed: Double, global: Double) {
        self.opened = opened
        self.closed = closed
        self.global = global
    }

    public subscript(metric: Metric) -> Double {
        switch metric {
        case .opened: return opened
        case .closed: return closed
        case .global: return global
        }
    }
}

/// Which accuracy column a CI, test or finding is about.
public enum Metric: String, Sendable, CaseIterable, Codable {
    case opened, closed, global
}

/// A two-sided percentile interval.
public struct Interval: Sendable, Equatable {
    public let low: Double
    public let high: Double

    public init(low: Double, high: Double) {
        self.low = low
        self.high = high
    }

    public func contains(_ value: Double) -> Bool { low <= value && value <= high }
}

/// A 95 % CI for each of the three columns.
public struct MetricIntervals: Sendable, Equatable {
    public let opened: Interval
    public let closed: Interval
    public let global: Interval

    public subscript(metric: Metric) -> Interval {
        switch metric {
        case .opened: return opened
        case .closed: return closed
        case .global: return global
        }
    }
}

/// Bootstrap over questions, stratified by the Closed/Opened groups (each group resampled with its own
/// size, so every resample has the test set's 706/355 split and Global stays the count-weighted mean
/// the paper uses). Seeded: the same inputs give the same interval on every machine.
public enum Bootstrap {
    public static let defaultResamples = 1000
    public static let defaultSeed: UInt64 = 20240311

    /// 95 % percentile CIs of Opened, Closed and Global for one sample.
    public static func intervals(_ sample: QuestionSample, resamples: Int = defaultResamples,
                                 seed: UInt64 = defaultSeed) -> MetricIntervals {
        var rng = SeededRandom(seed: seed)
        var values: [Metric: [Double]] = [:]
        for _ in 0..<resamples {
            let opened = resampledSum(sample.opened, &rng), closed = resampledSum(sample.closed, &rng)
            let triple = MetricTriple(
                opened: QuestionSample.percent(opened, sample.opened.count),
                closed: QuestionSample.percent(closed, sample.closed.count),
                global: QuestionSample.percent(opened + closed, sample.opened.count + sample.closed.count))
            for metric in Metric.allCases { values[metric, default: []].append(triple[metric]) }
        }
        func ci(_ metric: Metric) -> Interval { percentileInterval(values[metric] ?? [], level: 0.95) }
        return MetricIntervals(opened: ci(.opened), closed: ci(.closed), global: ci(.global))
    }

    /// Paired bootstrap of the difference a − b (percentage points) on the same questions: each resample
    /// draws question indices once and scores both cells on them, so the per-question correlation of the
    /// two cells (same easy and hard questions) is kept. Both samples must list the same questions in the
    /// same order.
    public static func pairedDifference(_ a: QuestionSample, _ b: QuestionSample, metric: Metric,
                                        resamples: Int = defaultResamples, seed: UInt64 = defaultSeed) -> Interval? {
        guard a.opened.count == b.opened.count, a.closed.count == b.closed.count else { return nil }
        let openedDiff = zip(a.opened, b.opened).map { $0 - $1 }
        let closedDiff = zip(a.closed, b.closed).map { $0 - $1 }
        let differences = QuestionSample(closed: closedDiff, opened: openedDiff)
        return intervals(differences, resamples: resamples, seed: seed)[metric]
    }

    /// The sum of `values` over one resample with replacement (same count).
    static func resampledSum(_ values: [Double], _ rng: inout SeededRandom) -> Double {
        guard !values.isEmpty else { return 0 }
        var sum = 0.0
        for _ in 0..<values.count { sum += values[rng.below(values.count)] }
        return sum
    }

    /// The central `level` interval: linearly interpolated quantiles (R's type 7) at (1 ∓ level) / 2.
    public static func percentileInterval(_ values: [Double], level: Double) -> Interval {
        let sorted = values.sorted()
        let tail = (1 - level) / 2
        return Interval(low: quantile(sorted, tail), high: quantile(sorted, 1 - tail))
    }

    /// Quantile `p` of ascending `sorted` values, interpolated between neighbours (type 7).
    public static func quantile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let position = p * Double(sorted.count - 1)
        let below = Int(position.rounded(.down)), above = min(below + 1, sorted.count - 1)
        let fraction = position - Double(below)
        return sorted[below] + fraction * (sorted[above] - sorted[below])
    }
}

/// Exact McNemar test on paired 0/1 outcomes: only the discordant pairs carry information.
public enum McNemar {
    public struct Result: Sendable, Equatable {
        /// Pairs where a is right and b wrong.
        public let aOnly: Int
        /// Pairs where b is right and a wrong.
        public let bOnly: Int
        /// Two-sided exact binomial p-value (discordant pairs ~ Binomial(n, 1/2) under no difference).
        public let pValue: Double
    }

    /// Pairs outcome i of `a` with outcome i of `b` (scores ≥ 0.5 count as correct).
    public static func test(_ a: [Double], _ b: [Double]) -> Result {
        var aOnly = 0, bOnly = 0
        for (x, y) in zip(a, b) {
            let left = x >= 0.5, right = y >= 0.5
            if left && !right { aOnly += 1 } else if right && !left { bOnly += 1 }
        }
        return Result(aOnly: aOnly, bOnly: bOnly, pValue: exactPValue(aOnly, bOnly))
    }

    /// 2 · P(X ≤ min(b, c)) for X ~ Binomial(b + c, 1/2), capped at 1; 1 when there is no discordant pair.
    public static func exactPValue(_ b: Int, _ c: Int) -> Double {
        let n = b + c
        guard n > 0 else { return 1 }
        let k = min(b, c)
        // Sum in log space: n can be in the thousands when seeds are pooled.
        var total = 0.0
        for i in 0...k { total += exp(logChoose(n, i) - Double(n) * log(2)) }
        return min(1, 2 * total)
    }

    static func logChoose(_ n: Int, _ k: Int) -> Double {
        lgamma(Double(n + 1)) - lgamma(Double(k + 1)) - lgamma(Double(n - k + 1))
    }
}

/// Spearman's rank correlation (ties get their average rank; Pearson correlation of the ranks).
public enum Spearman {
    public static func rho(_ x: [Double], _ y: [Double]) -> Double? {
        guard x.count == y.count, x.count >= 2 else { return nil }
        return pearson(ranks(x), ranks(y))
    }

    /// 1-based ranks, ties averaged.
    public static func ranks(_ values: [Double]) -> [Double] {
        let order = values.indices.sorted { values[$0] < values[$1] }
        var out = [Double](repeating: 0, count: values.count)
        var start = 0
        while start < order.count {
            var end = start
            while end + 1 < order.count && values[order[end + 1]] == values[order[start]] { end += 1 }
            let average = Double(start + end) / 2 + 1
            for index in start...end { out[order[index]] = average }
            start = end + 1
        }
        return out
    }

    static func pearson(_ x: [Double], _ y: [Double]) -> Double? {
        let n = Double(x.count)
        let mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for (a, b) in zip(x, y) {
            sxy += (a - mx) * (b - my)
            sxx += (a - mx) * (a - mx)
            syy += (b - my) * (b - my)
        }
        guard sxx > 0, syy > 0 else { return nil }
        return sxy / (sxx * syy).squareRoot()
    }
}
