import Foundation
import XCTest
import GRDB
@testable import MileHarness

/// The bad-input corpus (issue 20, "Also"): each case is a mistake a user makes, run through the `mile`
/// executable against a database that holds a done cell. Every case must fail cleanly (status 1...127),
/// name its culprit, and leave the database byte-identical (read-only commands) or row-identical (`run`).
extension BadInputTests {
    struct BadInput {
        let arguments: [String]
        let naming: [String]
        var files: [String: String] = [:]
    }

    /// A table file line by line, extending the copied defaults.
    static func tableText(set: String = "", rows: String = "  - {vit: F, jtm: T, dec: ia3}\n") -> String {
        "table: t\nextends: defaults.yaml\n\(set)rows:\n\(rows)"
    }

    static let readOnlyCorpus: [BadInput] = [
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:4:19", "'jtm'", "'loraa'", "F, T, lora, ia3, prefix, ptv2"],
                 files: ["m.yaml": tableText(rows: "  - {vit: F, jtm: loraa, dec: ia3}\n")]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:4:5", "missing key 'dec'"],
                 files: ["m.yaml": tableText(rows: "  - {vit: F, jtm: T}\n")]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:4:32", "unknown key 'rnk'"],
                 files: ["m.yaml": tableText(rows: "  - {vit: F, jtm: T, dec: ia3, rnk: 4}\n")]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:3:6", "'rows'", "found null"], files: ["m.yaml": tableText(rows: "")]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml", "decoding.min_length (12) is above decoding.max_length (10)"],
                 files: ["m.yaml": tableText(set: "set: {decoding: {min_length: 12, max_length: 10}}\n")]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml", "recipe.lr and pretraining.lr must be positive"],
                 files: ["m.yaml": tableText(set: "set: {recipe: {lr: 0}}\n")]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:3:24", "'recipe.epochs'", "expected an integer, found a string ('two')"],
                 files: ["m.yaml": tableText(set: "set: {recipe: {epochs: two}}\n")]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:4:42", "'rank'", "expected an integer >= 1, found 0"],
                 files: ["m.yaml": tableText(rows: "  - {vit: F, jtm: lora, dec: lora, rank: 0}\n")]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:2:10", "no such file nothere.yaml"],
                 files: ["m.yaml": "table: t\nextends: nothere.yaml\nrows:\n  - {vit: F, jtm: T, dec: ia3}\n"]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:1:1", "the file is empty"], files: ["m.yaml": ""]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:2:1", "duplicate key 'table'"],
                 files: ["m.yaml": "table: t\ntable: u\nextends: defaults.yaml\nrows:\n  - {vit: F, jtm: T, dec: ia3}\n"]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:5:5", "row 2", "same config as the row at line 4"],
                 files: ["m.yaml": tableText(rows: "  - {vit: F, jtm: T, dec: ia3}\n  - {vit: F, jtm: T, dec: ia3}\n")]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:4:1", "a tab character"],
                 files: ["m.yaml": tableText(rows: "\t- {vit: F, jtm: T, dec: ia3}\n")]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:4:44", "'published'", "unknown key 'globl'"],
                 files: ["m.yaml": tableText(rows: "  - {vit: F, jtm: T, dec: ia3, published: {globl: 3}}\n")]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml", "biomedgpt family does not train 'itc'"],
                 files: ["m.yaml": tableText(set: "set: {model: {family: biomedgpt}}\n", rows: "  - {enc: T, dec: lora, rank: 8}\n")]),
        BadInput(arguments: ["plan", "t.yaml", "--set", "recipe.lrr=1"], naming: ["--set recipe.lrr=1", "unknown key 'lrr' in 'recipe'"]),
        BadInput(arguments: ["plan", "t.yaml", "--set", "recipe.epochs"], naming: ["recipe.epochs"]),
        BadInput(arguments: ["plan", "t.yaml", "--cell", "abcdef12"], naming: ["no cell id starts with abcdef12"]),
        BadInput(arguments: ["plan", "t.yaml", "--row", "T T LoRo r4"], naming: ["'T T LoRo r4'", "rows: F LoRA LoRA r4"]),
        BadInput(arguments: ["plan", "missing.yaml"], naming: ["missing.yaml: no such file"]),
        BadInput(arguments: ["plan", "data"], naming: ["data: it is a folder, not a file"]),
        BadInput(arguments: ["plan", "t.yaml", "--seeds", "0"], naming: ["--seeds 0", "expected 1 to 100"]),
        BadInput(arguments: ["plan", "t.yaml", "--scale", "huge"], naming: ["error: ", "'huge'", "'paper', 'small' or 'smoke'"]),
        BadInput(arguments: ["plan", "t.yaml", "--set", "model.scale=smal"], naming: ["'model.scale'", "did you mean 'small'?"]),
        BadInput(arguments: ["plan", "m.yaml"], naming: ["m.yaml:4:19", "unknown value 'loar' (did you mean 'lora'?)"],
                 files: ["m.yaml": tableText(rows: "  - {vit: F, jtm: loar, dec: ia3}\n")]),
        BadInput(arguments: ["plan", "t.yaml", "--row", "F LoRA LoRa r8"], naming: ["did you mean 'F LoRA LoRA r4'?"]),
        BadInput(arguments: ["params", "--vit", "loar", "--jtm", "T", "--dec", "ia3"], naming: ["error: unknown module mode 'loar' (did you mean 'lora'?)"]),
        BadInput(arguments: ["params", "--vit", "F", "--jtm", "F", "--dec", "F"], naming: ["every module is frozen", "Usage: mile params"]),
        BadInput(arguments: ["params", "--jtm", "T", "--dec", "ia3", "--rank", "4"], naming: ["--rank applies only to lora"]),
        BadInput(arguments: ["params", "--vit", "prefix", "--jtm", "T", "--dec", "ia3"], naming: ["--vit prefix: prefix is a prompt method"]),
        BadInput(arguments: ["export", "t.yaml", "--format", "xml"], naming: ["'xml'", "json", "csv", "jsonl"]),
        BadInput(arguments: ["export", "t.yaml", "--cell", "9999aaaa"], naming: ["no cell id starts with 9999aaaa"]),
        BadInput(arguments: ["report", "t.yaml", "--row", "F LoRA LoRA r4", "--out", "o"], naming: ["renders whole tables"]),
        BadInput(arguments: ["params", "--vit", "Q", "--jtm", "T", "--dec", "ia3"], naming: ["'Q'", "F, T, lora, ia3, prefix, ptv2"]),
        BadInput(arguments: ["params", "--rank", "0", "--jtm", "lora"], naming: ["--rank 0", "expected 1 to 768", "Usage: mile params"]),
        BadInput(arguments: ["score", "--predictions", "p.json", "--questions", "data/test.json"],
                 naming: ["p.json", "not valid JSON", "Unexpected end of file"], files: ["p.json": "[{\"qid\": 1, \"answer\": \"x\"}"]),
        BadInput(arguments: ["score", "--predictions", "p.json", "--questions", "data/test.json"],
                 naming: ["p.json", "Invalid value at line 2, column 11"], files: ["p.json": "[{\"qid\": 1, \n\"answer\": x}]"]),
        BadInput(arguments: ["score", "--predictions", "p.json", "--questions", "data/test.json"],
                 naming: ["p.json: record 1", "'qid'", "outside the integer range"],
                 files: ["p.json": "[{\"qid\": 99999999999999999999999, \"answer\": \"x\"}]"]),
        BadInput(arguments: ["score", "--predictions", "p.json", "--questions", "data/test.json"],
                 naming: ["p.json: record 1", "\"a1\" is not an integer"], files: ["p.json": "[{\"qid\": \"a1\", \"answer\": \"x\"}]"]),
        BadInput(arguments: ["score", "--predictions", "nothere.json", "--questions", "data/test.json"], naming: ["nothere.json: no such file"]),
        BadInput(arguments: ["score", "--predictions", "data", "--questions", "data/test.json"], naming: ["data: it is a folder, not a file"]),
        BadInput(arguments: ["data", "synth", "--out", "data"], naming: ["data is not empty", "--force"]),
    ]

    /// `mile run` mistakes: refused before any claim, so the database keeps exactly its rows.
    static let runCorpus: [BadInput] = [
        BadInput(arguments: ["run", "t.yaml", "--slake", "nodata"], naming: ["no SLAKE test set at nodata/test.json"]),
        BadInput(arguments: ["run", "t.yaml", "--jobs", "0"], naming: ["--jobs 0", "expected 1 to 64", "Usage: mile run"]),
        BadInput(arguments: ["run", "t.yaml", "--set", "recipe.foo=1"], naming: ["--set recipe.foo=1", "unknown key 'foo' in 'recipe'"]),
        BadInput(arguments: ["run", "t.yaml", "--seeds", "1000"], naming: ["--seeds 1000", "100"]),
        BadInput(arguments: ["run", "t.yaml", "--set", "decoding.beams=100000"], naming: ["decoding.beams", "limit of 16"]),
        BadInput(arguments: ["run", "t.yaml", "--set", "model.family=biomedgpt"], naming: ["t.yaml", "biomedgpt"]),
        BadInput(arguments: ["run", "t.yaml", "--cache", "afile"], naming: ["afile exists and is not a folder"], files: ["afile": "x"]),
    ]

    func testCorpusFailsCleanlyAndKeepsTheDatabase() throws {
        let database = try doneDatabase()
        for input in Self.readOnlyCorpus {
            let before = try databaseFiles(database)
            try check(input)
            XCTAssertEqual(try databaseFiles(database), before, "the database changed: \(input.arguments)")
        }
        for input in Self.runCorpus {
            let before = try rows(database)
            try check(input, extra: ["--slake", "data"].filter { _ in !input.arguments.contains("--slake") })
            XCTAssertEqual(try rows(database), before, "the database's rows changed: \(input.arguments)")
        }
    }

    /// A folder where a test image should be: named in plain words, before any training.
    func testAFolderInPlaceOfAnImageIsNamed() throws {
        let data = dir + "/data"
        try FileManager.default.copyItem(atPath: PipelineFixture.synthetic, toPath: data)
        let file = try PipelineFixture.table(in: dir, rows: [PipelineFixture.rowFLoRALoRA])
        let test = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: data + "/test.json"))) as? [[String: Any]])
        let image = data + "/imgs/" + (try XCTUnwrap(test[0]["img_name"] as? String))
        try FileManager.default.removeItem(atPath: image)
        try FileManager.default.createDirectory(atPath: image, withIntermediateDirectories: false)
        try assertRefused(["run", file, "--slake", data, "--db", dir + "/r.db", "--cache", dir + "/cache", "--quiet"],
                          naming: [image, "it is a folder, not a file"])
        try assertRefused(["data", "check", "--slake", data], naming: [image, "it is a folder, not a file"])
    }

    /// Runs one case in `dir` with its files written first, against `r.db`.
    private func check(_ input: BadInput, extra: [String] = []) throws {
        for (name, text) in input.files { try TestSupport.write(text, to: dir, name: name) }
        let takesDatabase = ["plan", "run", "export", "report"].contains(input.arguments[0])
        let arguments = input.arguments + extra + (takesDatabase ? ["--db", "r.db"] : [])
        try assertRefused(arguments, naming: input.naming)
        for name in input.files.keys { try? FileManager.default.removeItem(atPath: dir + "/" + name) }
    }

    /// `dir/r.db` with one done smoke cell of `dir/t.yaml` on a copy of the synthetic data in `dir/data`.
    private func doneDatabase() throws -> String {
        try FileManager.default.copyItem(atPath: PipelineFixture.synthetic, toPath: dir + "/data")
        _ = try PipelineFixture.table(in: dir, name: "t", epochs: 1, rows: [PipelineFixture.rowFLoRALoRA])
        let result = try mile(["run", "t.yaml", "--slake", "data", "--db", "r.db", "--cache", "cache", "--out", "out", "--quiet"], timeout: 300)
        XCTAssertEqual(result.status, 0, result.output)
        return dir + "/r.db"
    }

    /// The database file byte for byte, and the size of its write-ahead log. A read-only connection to a WAL
    /// database leaves an empty `-wal` and SQLite's shared-memory index `-shm` beside it; neither holds data.
    private func databaseFiles(_ path: String) throws -> [String: Data] {
        let wal = FileManager.default.contents(atPath: path + "-wal") ?? Data()
        return ["database": FileManager.default.contents(atPath: path) ?? Data(), "wal bytes": Data("\(wal.count)".utf8)]
    }

    /// Every row of every table, as text.
    private func rows(_ path: String) throws -> [String] {
        let queue = try DatabaseQueue(path: path, configuration: { var c = Configuration(); c.readonly = true; return c }())
        return try queue.read { db in
            let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            return try tables.flatMap { table in
                try Row.fetchAll(db, sql: "SELECT * FROM \"\(table)\"").map { "\(table): \($0)" }
            }
        }
    }
}
