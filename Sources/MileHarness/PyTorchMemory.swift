import Foundation
import MileModel

/// The PyTorch-equivalent Memory of the paper's cells: the peak allocated bytes of one upstream-style MISS
/// training step at paper scale, measured with PyTorch by `make memory-peer` (bench/torch_memory.py) and
/// committed as bench/memory_pytorch.json. docs/MODEL.md ("Memory prediction") compares it with the paper.
public struct PyTorchMemory: Sendable {
    public struct Cell: Sendable, Equatable {
        /// The row label of the tables, e.g. `F LoRA LoRA r4`.
        public let label: String
        /// Peak at the measured shape (the longest training answer).
        public let peakBytes: Int
        /// forward, backward or step.
        public let peakPhase: String
        /// Peak with the engine prediction's typical answer length.
        public let typicalAnswerPeakBytes: Int
    }

    public let torchVersion: String
    public let batch: Int
    public let questionTokens: Int
    public let answerTokens: Int
    public let cells: [Cell]
    /// The model config of the measurement (the peer's paper preset, in the engine's snake_case keys).
    let config: [String: Scalar]

    /// A config value of the file: every key of the peer's preset is a number or a string.
    enum Scalar: Sendable, Equatable {
        case number(Double)
        case string(String)

        init?(_ value: Any?) {
            if let text = value as? String { self = .string(text) } else if let number = value as? NSNumber {
                self = .number(number.doubleValue)
            } else { return nil }
        }
    }

    private struct Malformed: Error { let reason: String }

    /// The committed file of the checkout this binary was built from, found through this source file's path
    /// as `BuildInfo` records that checkout's commit (a binary run from another directory still finds it).
    public static let committedPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("bench/memory_pytorch.json").path

    /// The committed measurements; nil when the file is absent or unreadable (reports then show "–").
    public static let committed: PyTorchMemory? = try? load(path: committedPath)

    public static func load(path: String) throws -> PyTorchMemory {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw HarnessError.input("\(path): cannot read the PyTorch memory measurements (make memory-peer writes them)")
        }
        do {
            return try PyTorchMemory(json: data)
        } catch let error as Malformed {
            throw HarnessError.input("\(path): \(error.reason)")
        }
    }

    init(json data: Data) throws {
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Malformed(reason: "not a JSON object")
        }
        guard let shape = root["shape"] as? [String: Any], let config = root["config"] as? [String: Any],
              let cells = root["cells"] as? [[String: Any]], let torch = root["torch"] as? String else {
            throw Malformed(reason: "missing one of torch, shape, config, cells")
        }
        torchVersion = torch
        batch = try Self.int(shape, "batch")
        questionTokens = try Self.int(shape, "question_tokens")
        answerTokens = try Self.int(shape, "answer_tokens")
        self.config = try config.mapValues { value in
            guard let scalar = Scalar(value) else { throw Malformed(reason: "config values must be numbers or strings") }
            return scalar
        }
        self.cells = try cells.map { cell in
            guard let label = cell["label"] as? String, let phase = cell["peak_phase"] as? String else {
                throw Malformed(reason: "a cell without label or peak_phase")
            }
            return Cell(label: label, peakBytes: try Self.int(cell, "peak_bytes"), peakPhase: phase,
                        typicalAnswerPeakBytes: try Self.int(cell, "typical_answer_peak_bytes"))
        }
    }

    private static func int(_ object: [String: Any], _ key: String) throws -> Int {
        guard let value = object[key] as? NSNumber else { throw Malformed(reason: "missing integer '\(key)'") }
        return value.intValue
    }

    public func cell(_ label: String) -> Cell? { cells.first { $0.label == label } }

    /// The measured peak of a cell, only when `config` is the model it was measured with (a cell whose
    /// ViT IA3 targets, prompt length, dropout or dimensions differ gets nil rather than another model's bytes).
    public func peakBytes(label: String, config: any FamilyConfig) -> Int? {
        guard let cell = cell(label), measured(config) else { return nil }
        return cell.peakBytes
    }

    func measured(_ config: any FamilyConfig) -> Bool {
        guard let model = config as? ModelConfig, let data = try? model.jsonData(),
              let ours = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        return self.config.allSatisfy { key, value in Self.same(value, Scalar(ours[key])) }
    }

    /// Numbers within float rounding (the engine keeps Float, the file Python's doubles), strings exactly.
    private static func same(_ a: Scalar, _ b: Scalar?) -> Bool {
        switch (a, b) {
        case let (.string(x), .string(y)?): return x == y
        case let (.number(x), .number(y)?): return abs(x - y) <= 1e-6 * max(abs(x), abs(y))
        default: return false
        }
    }
}

extension PyTorchMemory {
    /// The PyTorch-equivalent peak of a planned cell: its row label, at its paper-scale model config.
    public func peakBytes(of cell: PlannedCell) -> Int? {
        guard let settings = try? RunSettings(cell.config, cell: cell.id), settings.family.name == MISSFamily().name,
              let config = try? settings.modelConfig(scale: "paper", vocabulary: nil) else { return nil }
        return peakBytes(label: cell.assignment.label, config: config)
    }
}

/// The paper's Memory column as the experiment tables copy it (`published.memory_gb` of table*.yaml).
public enum PublishedMemory {
    /// The experiment tables of the checkout this binary was built from (see `PyTorchMemory.committedPath`).
    public static let committedDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("experiments").path

    /// The published GB of the row labelled `label` in a table of `family`; nil when no table row has it.
    public static func gigabytes(label: String, family: String, experiments directory: String) throws -> Double? {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasPrefix("table") && $0.hasSuffix(".yaml") }.sorted()
        for file in files {
            let table = try ExperimentLoader.load(path: (directory as NSString).appendingPathComponent(file))
            guard table.config["model.family"]?.stringValue == family else { continue }
            for row in table.rows {
                for rank in row.ranks where row.assignment(rank: rank).label == label {
                    if let gb = row.published[rank]?.memoryGB { return gb }
                }
            }
        }
        return nil
    }
}
