import XCTest
@testable import MileHarness

final class FindingsTests: XCTestCase {
    static let rows = """
        rows:
          - {vit: F, jtm: T, dec: lora, rank: 4, published: {opened: 47.76, closed: 70.70, global: 55.53}}
          - {vit: T, jtm: lora, dec: lora, rank: 4, published: {opened: 68.14, closed: 50.70, global: 62.29}}
          - {vit: T, jtm: T, dec: lora, rank: 4, published: {opened: 78.52, closed: 79.44, global: 78.83}}
        """

    func tableFile(_ dir: String, findings: String) throws -> String {
        let text = "table: judged\ntitle: \"findings test\"\nextends: \(TestSupport.experiment("defaults.yaml"))\n\(Self.rows)\nfindings:\n\(findings)\n"
        return try TestSupport.write(text, to: dir, name: "judged.yaml")
    }

    /// 100 yes/no and 100 open questions.
    static let questions: [TestQuestion] = (0..<200).map { i in
        i < 100 ? TestQuestion(qid: i, question: "Is it \(i)?", answer: i % 2 == 0 ? "yes" : "no", answerType: "CLOSED")
                : TestQuestion(qid: i, question: "Which \(i)?", answer: "organ \(i)", answerType: "OPEN")
    }

    /// Predictions right on exactly the questions `right` accepts.
    static func scored(_ right: (Int) -> Bool) throws -> (Scores, [QuestionScore]) {
        let predictions = questions.map { q -> Prediction in
            let truth = right(q.qid)
            if q.qid < 100 { return Prediction(qid: q.qid, answer: truth ? q.answer : (q.answer == "yes" ? "no" : "yes")) }
            return Prediction(qid: q.qid, answer: truth ? q.answer : "wrong")
        }
        return try Scorer.score(questions: questions, predictions: predictions)
    }

    func complete(_ cell: PlannedCell, store: ResultsStore, right: (Int) -> Bool) throws {
        guard case let .claimed(id) = try store.claim(ClaimRequest(cell: cell, provenance: Provenance())) else { throw HarnessError.store("claim") }
        let (scores, items) = try Self.scored(right)
        let results = RunResults(runScale: ParamCounts(trainable: 1, total: 10), paperScale: nil, peakEngineBytes: nil,
                                 peakRSSBytes: nil, predictedPaperBytes: nil, scores: scores)
        try store.complete(runID: id, results: results, predictions: items)
    }

    /// A constructed database: T T LoRA right on 90 %, F T LoRA on 5 %, T LoRA LoRA = T T LoRA but one
    /// more open question wrong. Each kind of verdict comes out of it.
    func testVerdictsOnAConstructedDatabase() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try tableFile(dir, findings: """
              - {claim: "T T LoRA > F T LoRA", kind: greater, metric: global, a: "T T LoRA r4", b: "F T LoRA r4"}
              - {claim: "F T LoRA > T T LoRA", kind: greater, metric: global, a: "F T LoRA r4", b: "T T LoRA r4"}
              - {claim: "T T LoRA > T LoRA LoRA", kind: greater, metric: opened, a: "T T LoRA r4", b: "T LoRA LoRA r4"}
              - {claim: "T T LoRA ≈ T LoRA LoRA", kind: equivalent, metric: global, a: "T T LoRA r4", b: "T LoRA LoRA r4", margin: 5}
              - {claim: "F T LoRA fails", kind: near_zero, metric: global, a: "F T LoRA r4", margin: 15}
              - {claim: "T T LoRA Closed below always-no", kind: below, metric: closed, a: "T T LoRA r4", value: 50.70}
              - {claim: "T T LoRA beats the blind baseline", kind: greater, metric: global, a: "T T LoRA r4", b: "blind-train-prior"}
            """)
        let table = try ExperimentLoader.load(path: file)
        XCTAssertEqual(table.findings.count, 7)
        let cells = try Planner.expand(table, overrides: [ConfigOverride("recipe.seeds=[1, 2]")])
        let store = try ResultsStore(path: dir + "/r.db")
        let cell = { (label: String, seed: Int) in cells.first { $0.label == label && $0.seed == seed }! }
        let good = { (qid: Int) in qid % 100 < 90 }
        for seed in [1, 2] {
            try complete(cell("T T LoRA r4", seed), store: store, right: good)
            try complete(cell("F T LoRA r4", seed), store: store) { $0 % 100 < 5 }
        }
        try complete(cell("T LoRA LoRA r4", 1), store: store) { good($0) && $0 != 150 }
        let (blindScores, blindItems) = try Self.scored { $0 % 2 == 1 && $0 < 100 }   // always "no"
        let blind = ReferenceResult(kind: .blind, key: "k", settingsJSON: "{}", datasetHashes: [:], scores: blindScores,
                                    predictions: blindItems)

        let report = try ReportRenderer.render(table, cells: cells, store: store, references: [blind])
        XCTAssertEqual(report.verdicts.map(\.verdict), [.reproduced, .contradicted, .inconclusive, .reproduced, .reproduced,
                                                        .contradicted, .reproduced], report.verdicts.map(\.test).joined(separator: "\n"))
        let first = report.verdicts[0]
        XCTAssertEqual(try XCTUnwrap(first.effect), 85, accuracy: 1e-9, "90 % − 5 %")
        XCTAssertTrue(first.test.contains("McNemar exact p"), first.test)
        XCTAssertTrue(first.test.contains("340 vs 0 discordant, 2 seed pairs"), first.test)
        XCTAssertEqual(try XCTUnwrap(report.verdicts[2].effect), 1, accuracy: 1e-9, "one open question of 100")
        XCTAssertTrue(report.verdicts[2].test.contains("1 seed pair)"),
                      "T LoRA LoRA has seed 1 only: seed 2 of T T LoRA is not paired with it again: \(report.verdicts[2].test)")
        XCTAssertTrue(report.verdicts[6].test.contains("2 seed pairs"), "a reference row goes with every seed: \(report.verdicts[6].test)")
        XCTAssertEqual(try XCTUnwrap(report.verdicts[5].effect), 90 - 50.70, accuracy: 1e-9)

        XCTAssertTrue(report.markdown.contains("## The paper's findings, judged"))
        XCTAssertTrue(report.markdown.contains("| T T LoRA > F T LoRA | T T LoRA r4 > F T LoRA r4 | global | +85.00 |"), report.markdown)
        XCTAssertTrue(report.markdown.contains("**inconclusive**"))
        // Spearman over the three rows: ours 5, 89.5, 90 (Global) against the paper's 55.53, 62.29, 78.83: same
        // order; Closed: ours 5, 90, 90 (tie) against 70.70, 50.70, 79.44.
        XCTAssertEqual(report.correlation.rows, 3)
        XCTAssertEqual(try XCTUnwrap(report.correlation.global), 1, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(report.correlation.closed), try XCTUnwrap(Spearman.rho([1, 2.5, 2.5], [2, 1, 3])), accuracy: 1e-12)
        XCTAssertTrue(report.markdown.contains("*reference: blind train-prior (no image)*"))
        XCTAssertTrue(ReportRenderer.summary([report]).contains("| [judged](judged.md) | 4 | 2 | 1 |"), ReportRenderer.summary([report]))
    }

    func testARowWithoutARunIsInconclusive() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let file = try tableFile(dir, findings: "  - {claim: c, kind: greater, metric: closed, a: \"T T LoRA r4\", b: \"F T LoRA r4\"}")
        let table = try ExperimentLoader.load(path: file)
        let report = try ReportRenderer.render(table, cells: Planner.expand(table), store: nil)
        XCTAssertEqual(report.verdicts.map(\.verdict), [.inconclusive])
        XCTAssertEqual(report.verdicts[0].test, "no finished run of T T LoRA r4")
    }

    func testStrictParsingWithPositions() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let cases: [(String, String)] = [
            ("  - {claim: c, kind: greater, metric: global, a: \"T T LoRA r8\", b: \"F T LoRA r4\"}",
             "judged.yaml:9:50: error: finding 1 'a': 'T T LoRA r8' is not a row of this table"),
            ("  - {claim: c, kind: equivalent, metric: global, a: \"T T LoRA r4\", b: \"F T LoRA r4\"}",
             "judged.yaml:9:5: error: finding 1: kind equivalent needs key 'margin'"),
            ("  - {claim: c, kind: greater, metric: global, a: \"T T LoRA r4\", b: \"F T LoRA r4\", value: 3}",
             "judged.yaml:9:83: error: finding 1: kind greater takes no 'value'"),
            ("  - {claim: c, kind: bigger, metric: global, a: \"T T LoRA r4\"}",
             "judged.yaml:9:22: error: finding 1 'kind': unknown value 'bigger'"),
            ("  - {claim: c, kind: near_zero, metric: accuracy, a: \"T T LoRA r4\", margin: 1}",
             "judged.yaml:9:41: error: finding 1 'metric': unknown value 'accuracy'"),
            ("  - {claim: c, kind: below, metric: closed, a: \"T T LoRA r4\", value: high}",
             "judged.yaml:9:70: error: finding 1 'value': expected a number"),
            ("  - {claim: c, kind: below, metric: closed, a: \"T T LoRA r4\", value: 50.7, note: x}",
             "judged.yaml:9:76: error: finding 1: unknown key 'note'"),
            ("  - {kind: below, metric: closed, a: \"T T LoRA r4\", value: 50.7}",
             "judged.yaml:9:5: error: finding 1: missing key 'claim'"),
        ]
        for (findings, expected) in cases {
            let file = try tableFile(dir, findings: findings)
            XCTAssertThrowsError(try ExperimentLoader.load(path: file), findings) { error in
                let text = "\(error)".replacingOccurrences(of: dir + "/", with: "")
                XCTAssertTrue(text.hasPrefix(expected), "\(text)\n  expected prefix: \(expected)")
            }
        }
    }

    /// The repository's table files parse, and every finding names rows of its table.
    func testRepositoryTablesListFindings() throws {
        for name in ["table1.yaml", "table2.yaml", "table3.yaml", "table4.yaml"] {
            let table = try ExperimentLoader.load(path: TestSupport.experiment(name))
            XCTAssertGreaterThanOrEqual(table.findings.count, 3, name)
        }
    }
}
