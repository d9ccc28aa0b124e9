import ArgumentParser
import Foundation
import MileHarness
import MileModel

/// `mile params`: trainable / total parameters and "#Params %" of one grid cell, from shapes only, and the
/// cell's Memory at paper scale and batch 20 (engine prediction, PyTorch-equivalent, published).
struct Params: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print trainable and total parameters, #Params % and paper-scale Memory for one cell (a mode per module of the family).",
        discussion: "MISS: --vit --jtm --dec. BiomedGPT: --enc --dec. A module not given is frozen (F). Memory (GB = 10⁹ bytes) is at paper scale and batch 20, with the --config overrides: the engine's shape-only prediction, the PyTorch-equivalent measurement of bench/memory_pytorch.json (null for a cell or config not measured) and the paper's value from the experiment tables (null for a cell that is not a paper row).")

    @Option(help: "Model family: \(ModelFamilies.names.joined(separator: ", ")).")
    var family = "miss"
    @Option(help: "Model scale.")
    var scale: ScaleName = .paper
    @Option(help: "Optional JSON file of model config overrides (flat snake_case keys, may set \"scale\").")
    var config: String?
    @Option(help: "ViT mode (MISS): F, T, lora, ia3.")
    var vit: String?
    @Option(help: "JTM mode (MISS): F, T, lora, ia3, prefix, ptv2.")
    var jtm: String?
    @Option(help: "Encoder mode (BiomedGPT): F, T, lora, ia3.")
    var enc: String?
    @Option(help: "Decoder mode: F, T, lora, ia3, prefix, ptv2.")
    var dec: String?
    @Option(help: "LoRA rank (default 8; only for a cell with a LoRA module).")
    var rank: Int?
    @Flag(help: "Print {\"trainable\", \"total\", \"percent\", \"memory_gb\": {\"engine\", \"pytorch\", \"published\"}} as JSON.")
    var json = false
    @Option(help: "The PyTorch memory measurements (default: bench/memory_pytorch.json of the checkout the binary was built from).")
    var pytorchMemory: String?
    @Option(help: "The folder of the experiment tables with the published Memory (default: the checkout's experiments/).")
    var experiments: String?

    var rankGiven: Bool { rank != nil }

    func validate() throws {
        if let rank, !(1...Limits.rank).contains(rank) {
            throw ValidationError("--rank \(rank): expected 1 to \(Limits.rank) (\(Limits.rankReason))")
        }
        if let family = try? ModelFamilies.named(self.family) { _ = try assignment(family) }   // the rows' rules, with this usage
    }

    func run() throws {
        let family = try ModelFamilies.named(self.family)
        let cell = try assignment(family)
        let count = try family.count(config: try loadConfig(family), assignment: cell)
        let memory = try memoryGB(family, cell)
        if json {
            let gb: [String: Any] = ["engine": memory.engine, "pytorch": memory.pytorch ?? NSNull(), "published": memory.published ?? NSNull()]
            let object: [String: Any] = ["trainable": count.trainable, "total": count.total, "percent": count.percent, "memory_gb": gb]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            let shown = { (gb: Double?) in gb.map { String(format: "%.2f", $0) } ?? "–" }
            print("cell:      \(cell)")
            print("trainable: \(count.trainable)")
            print("total:     \(count.total)")
            print("percent:   \(String(format: "%.3f", count.percent))")
            print("memory GB: engine \(shown(memory.engine)), PyTorch \(shown(memory.pytorch)), paper \(shown(memory.published)) (paper scale, batch 20)")
        }
    }

    /// Memory in GB at paper scale and batch 20: the engine's prediction (question 35, answer 6 tokens, as
    /// the pipeline's), the committed PyTorch measurement of this config, and the paper's number.
    private func memoryGB(_ family: any ModelFamily, _ cell: PEFTAssignment) throws -> (engine: Double, pytorch: Double?, published: Double?) {
        let paper = try loadConfig(family, forcedScale: "paper")
        let engine = try MemoryPrediction.predict(family: family, config: paper, assignment: cell, batch: 20,
                                                  questionLength: 35, answerLength: 6).peakBytes
        let measured = try pytorchMemory.map { try PyTorchMemory.load(path: $0) } ?? PyTorchMemory.committed
        let pytorch = measured?.peakBytes(label: cell.description, config: paper)
        // The default folder may be absent (a binary moved off its checkout); a folder named on the command line must exist.
        let committed = FileManager.default.fileExists(atPath: PublishedMemory.committedDirectory) ? PublishedMemory.committedDirectory : nil
        let published = try (experiments ?? committed).flatMap {
            try PublishedMemory.gigabytes(label: cell.description, family: family.name, experiments: $0)
        }
        let gb = { (bytes: Int) in (Double(bytes) / 1e6).rounded() / 1e3 }
        return (gb(engine), pytorch.map(gb), published)
    }

    /// The modes given on the command line, each checked against the family's module slots.
    private func assignment(_ family: any ModelFamily) throws -> PEFTAssignment {
        let given = [("vit", vit), ("jtm", jtm), ("enc", enc), ("dec", dec)].compactMap { key, flag in flag.map { (key, $0) } }
        let keys = family.slots.map(\.key)
        if let (key, _) = given.first(where: { !keys.contains($0.0) }) {
            throw ValidationError("--\(key): the \(family.name) family has no such module (its modules: \(keys.map { "--" + $0 }.joined(separator: ", ")))")
        }
        var modes: [String: ModuleMode] = [:]
        for (key, flag) in given { modes[key] = try ModuleMode(flag: flag) }
        let all = family.slots.map { modes[$0.key] ?? .frozen }
        if let (slot, problem) = ExperimentLoader.assignmentProblem(slots: family.slots, modes: all) {
            throw ValidationError((slot.map { "--\($0.key) \(modes[$0.key]!.rawValue): " } ?? "") + problem)
        }
        if rankGiven && !all.contains(.lora) { throw ValidationError("--rank applies only to lora, and no module of this cell uses lora") }
        return try family.assignment(modes, rank: rank ?? 8)
    }

    /// The family's config with the --config overrides, at the file's "scale" (else --scale), or at
    /// `forcedScale` (the paper-scale memory).
    private func loadConfig(_ family: any ModelFamily, forcedScale: String? = nil) throws -> any FamilyConfig {
        guard let path = config else { return try family.config(scale: forcedScale ?? scale.rawValue, overrides: [:]) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("cannot read model config file '\(path)'")
        }
        guard var object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ConfigError("\(path): not a JSON object")
        }
        let named = object.removeValue(forKey: "scale") as? String
        return try family.config(scale: forcedScale ?? named ?? scale.rawValue, overrides: object)
    }
}
