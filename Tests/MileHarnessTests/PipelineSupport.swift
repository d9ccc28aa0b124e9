import Foundation
import XCTest
@testable import MileHarness
import MileData

/// A synthetic dataset and tiny table files at `smoke` scale for the pipeline tests.
enum PipelineFixture {
    /// Synthetic SLAKE (60 images: 336 train and 72 test questions) generated once per test process.
    static let synthetic: String = {
        let path = NSTemporaryDirectory() + "mile-pipeline-synth-" + UUID().uuidString
        _ = try? SyntheticDataset.generate(out: path, seed: 3, images: 60)
        return path
    }()

    static let rowTTLoRA = """
          - vit: T
            jtm: T
            dec: lora
            rank: 4
            published: {params: 61.887, memory_gb: 27.60, opened: 78.52, closed: 79.44, global: 78.83}
        """
    static let rowFLoRALoRA = """
          - vit: F
            jtm: lora
            dec: lora
            rank: 4
            published: {params: 0.163, memory_gb: 5.19, opened: 3.57, closed: 50.70, global: 20.34}
        """
    static let rowTIA3IA3 = """
          - vit: T
            jtm: ia3
            dec: ia3
            published: {params: 23.924, memory_gb: 26.83, opened: 76.84, closed: 49.58, global: 67.74}
        """
    static let rowFPrefixPrefix = """
          - vit: F
            jtm: prefix
            dec: prefix
            published: {params: 7.556, memory_gb: 4.67, opened: 3.57, closed: 32.95, global: 13.38}
        """

    /// A table file at smoke scale on the synthetic data (SLAKE only), extending the repository defaults.
    static func table(in dir: String, name: String = "tiny", epochs: Int = 2, rows: [String]) throws -> String {
        let text = """
            table: \(name)
            title: "pipeline test"
            extends: \(TestSupport.experiment("defaults.yaml"))
            set:
              model: {scale: smoke}
              pretraining: {corpus: [slake-train-captions], epochs: 1, batch: 16, lr: 1.0e-3}
              data: {instruction_sources: [slake-train]}
              recipe: {epochs: \(epochs), batch: 16, lr: 1.0e-3}
            rows:
            \(rows.joined(separator: "\n"))

            """
        return try TestSupport.write(text, to: dir, name: name + ".yaml")
    }

    /// The `mile` executable built next to the test bundle (`swift build --build-tests` builds it).
    static var mileBinary: String {
        let candidates = [Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("mile").path,
                          TestSupport.root + "/.build/debug/mile"]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
    }

    /// Starts `mile run` as a child process with its output in `dir/<tag>.log`.
    static func startRun(_ arguments: [String], dir: String, tag: String, environment extra: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mileBinary)
        process.arguments = ["run"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: dir)
        var environment = ProcessInfo.processInfo.environment
        environment["MILE_THREADS"] = "2"     // same thread count in every run: bit-identical arithmetic
        environment.merge(extra) { $1 }
        process.environment = environment
        let log = dir + "/\(tag).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    static func log(_ dir: String, _ tag: String) -> String {
        (try? String(contentsOfFile: dir + "/\(tag).log", encoding: .utf8)) ?? ""
    }

    static func runArguments(table: String, dir: String, db: String, cache: String) -> [String] {
        [table, "--slake", synthetic, "--db", dir + "/" + db, "--cache", dir + "/" + cache, "--out", dir + "/results-" + db]
    }
}
