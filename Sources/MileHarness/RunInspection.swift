import Foundation

/// `mile runs`, `mile show` and `mile diff`: the store's runs as a researcher reads them.
public enum RunInspection {
    /// One line per attempt: id, cell, row, seed, status, start, wall time, commit, failure.
    public static func attempts(_ records: [RunRecord]) -> [String] {
        let header = "RUN   CELL          ROW                          SEED  STATUS       STARTED (UTC)         WALL      COMMIT         REASON"
        return [header] + records.map { r in
            let wall = r.wallSeconds.map(duration) ?? "–"
            let reason = r.failureReason ?? ""
            return String(format: "%-5lld %@  %@ %-5d %@ %@  %@ %@  %@", r.id, String(r.cellID.prefix(12)),
                          pad(r.label, 28), r.seed, pad(r.status.rawValue, 12), timestamp(r.startedAt), pad(wall, 8),
                          pad(commit(r.provenance), 14), reason)
        }
    }

    /// Everything stored about one run: identity, provenance, resolved config, epochs, scores with CIs and the
    /// image-shuffle scores.
    public static func show(_ r: RunRecord, results: RunResults?, epochs: [EpochMetric], predictions: [QuestionScore],
                            shuffle: ShuffleResult?) throws -> String {
        let p = r.provenance
        var lines = ["run \(r.id) (\(r.uuid)): \(r.table) \(r.label), seed \(r.seed), \(r.status.rawValue)",
                     "cell \(r.cellID)",
                     "started \(timestamp(r.startedAt)), " + (r.endedAt.map { "ended \(timestamp($0))" } ?? "not ended")
                        + (r.wallSeconds.map { ", wall \(duration($0))" } ?? "") + ", runner \(r.runner)"]
        if let reason = r.failureReason { lines.append("reason: \(reason)") }
        lines += ["code \(p.codeVersion), git \(commit(p)), Swift \(p.swiftVersion), BLAS \(p.blasLibrary ?? "?") × \(p.blasThreads.map(String.init) ?? "?"), \(p.cpuModel ?? "unknown CPU"), host \(p.host ?? "?")",
                  "data: " + p.datasetHashes.keys.sorted().map { "\($0) \(p.datasetHashes[$0]!.prefix(16))" }.joined(separator: "; "),
                  "", "config:"]
        lines += try ConfigValue.fromJSON(r.configJSON).leafSettings().map { "  " + $0 }
        if !epochs.isEmpty {
            lines += ["", "fine-tuning epochs:"]
            lines += epochs.map { String(format: "  %d: loss %.4f, lr %.3g, %.0f s", $0.epoch + 1, $0.loss, $0.lr, $0.seconds) }
        }
        if let results {
            let s = results.scores
            lines += ["", String(format: "scores: Opened %.2f, Closed %.2f, Global %.2f (Opened recall %.2f)", s.opened, s.closed, s.global, s.openedRecall),
                      String(format: "#Params: %.3f %% at run scale", results.runScale.percent)
                        + (results.paperScale.map { String(format: ", %.3f %% at paper scale", $0.percent) } ?? "")]
            if !predictions.isEmpty {
                let ci = Bootstrap.intervals(QuestionSample(predictions))
                lines.append("95 % CI: " + Metric.allCases.map { "\($0.rawValue) [\(format(ci[$0].low)), \(format(ci[$0].high))]" }.joined(separator: ", "))
            }
            if let shuffle {
                lines.append(String(format: "shuffled images (seed %d): Opened %.2f, Closed %.2f, Global %.2f (drop %+.2f)", shuffle.shuffleSeed,
                                    shuffle.scores.opened, shuffle.scores.closed, shuffle.scores.global, shuffle.scores.global - s.global))
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Two runs side by side: the config keys that differ, the score differences a − b with a paired bootstrap
    /// CI and McNemar's test on the same questions, and the questions whose correctness flipped.
    public static func diff(_ a: RunRecord, _ b: RunRecord, scoresA: [QuestionScore], scoresB: [QuestionScore],
                            flips limit: Int) throws -> String {
        var lines = ["a = run \(a.id): \(a.table) \(a.label) seed \(a.seed); b = run \(b.id): \(b.table) \(b.label) seed \(b.seed)", "",
                     "config (a -> b):"]
        let changes = ConfigValue.differences(from: try ConfigValue.fromJSON(a.configJSON), to: try ConfigValue.fromJSON(b.configJSON))
        lines += changes.isEmpty ? ["  the same"] : changes.map { "  " + $0 }
        guard !scoresA.isEmpty, !scoresB.isEmpty else {
            return (lines + ["", "scores: a run has no stored per-question scores"]).joined(separator: "\n")
        }
        let byQid = Dictionary(uniqueKeysWithValues: scoresB.map { ($0.qid, $0) })
        let common = scoresA.filter { byQid[$0.qid] != nil }
        guard common.count == scoresA.count, common.count == scoresB.count else {
            return (lines + ["", "scores: the runs were scored on different questions; no paired comparison"]).joined(separator: "\n")
        }
        let sampleA = QuestionSample(scoresA), sampleB = QuestionSample(scoresB)
        let ma = sampleA.metrics, mb = sampleB.metrics
        lines += ["", "metric   a       b       a − b    paired 95 % CI     McNemar (a only / b only, p)"]
        for metric in Metric.allCases {
            let ci = Bootstrap.pairedDifference(sampleA, sampleB, metric: metric)
            let (xa, xb) = metric == .opened ? (sampleA.opened, sampleB.opened) : metric == .closed ? (sampleA.closed, sampleB.closed)
                : (sampleA.opened + sampleA.closed, sampleB.opened + sampleB.closed)
            let test = McNemar.test(xa, xb)
            lines.append(String(format: "%@ %6.2f  %6.2f  %+6.2f   %@   %d / %d, p = %.3g", pad(metric.rawValue, 8), ma[metric], mb[metric],
                                ma[metric] - mb[metric], pad(ci.map { "[\(format($0.low)), \(format($0.high))]" } ?? "n/a", 16),
                                test.aOnly, test.bOnly, test.pValue))
        }
        let flipped = scoresA.sorted { $0.qid < $1.qid }.filter { ($0.score >= 0.5) != (byQid[$0.qid]!.score >= 0.5) }
        lines += ["", "\(flipped.count) questions flipped" + (flipped.count > limit ? " (first \(limit) by qid)" : "") + ":"]
        for item in flipped.prefix(limit) {
            let other = byQid[item.qid]!
            lines.append("  qid \(item.qid) [\(item.group.rawValue)] answer '\(item.answer)': a '\(item.prediction)' \(mark(item.score)), b '\(other.prediction)' \(mark(other.score))")
        }
        return lines.joined(separator: "\n")
    }

    static func mark(_ score: Double) -> String { score >= 0.5 ? "right" : "wrong" }
    static func format(_ value: Double) -> String { String(format: "%.1f", value) }
    static func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text : text + String(repeating: " ", count: width - text.count) }
    static func commit(_ p: Provenance) -> String {
        (p.gitCommit.map { String($0.prefix(12)) } ?? "unknown") + (p.gitDirty == true ? "+dirty" : "")
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(String(format: "%02d", s % 3600 / 60))m" : "\(s / 60)m\(String(format: "%02d", s % 60))s"
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter.string(from: date)
    }
}
