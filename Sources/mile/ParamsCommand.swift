import ArgumentParser
import Foundation
import MileHarness
import MileModel

/// `mile params`: trainable / total parameters and "#Params %" of one grid cell, from shapes only.
struct Params: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print trainable and total parameters and #Params % for one cell (a mode per module of the family).",
        discussion: "MISS: --vit --jtm --dec. BiomedGPT: --enc --dec. A module not given is frozen (F).")

    @Option(help: "Model family: \(ModelFamilies.names.joined(separator: ", ")).")
    var family = "miss"
    @Option(help: "Model scale: paper, small or smoke.")
    var scale: String = "paper"
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
    @Option(help: "LoRA rank.")
    var rank: Int = 8
    @Flag(help: "Print {\"trainable\", \"total\", \"percent\"} as JSON.")
    var json = false

    func validate() throws {
        guard (1...Limits.rank).contains(rank) else {
            throw ValidationError("--rank \(rank): expected 1 to \(Limits.rank) (\(Limits.rankReason))")
        }
    }

    func run() throws {
        let family = try ModelFamilies.named(self.family)
        let model = try loadConfig(family)
        let count = try family.count(config: model, assignment: try assignment(family))
        if json {
            let object: [String: Any] = ["trainable": count.trainable, "total": count.total, "percent": count.percent]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("cell:      \(try assignment(family))")
            print("trainable: \(count.trainable)")
            print("total:     \(count.total)")
            print("percent:   \(String(format: "%.3f", count.percent))")
        }
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
        return try family.assignment(modes, rank: rank)
    }

    private func loadConfig(_ family: any ModelFamily) throws -> any FamilyConfig {
        guard let path = config else { return try family.config(scale: scale, overrides: [:]) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("cannot read model config file '\(path)'")
        }
        guard var object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ConfigError("\(path): not a JSON object")
        }
        let base = object.removeValue(forKey: "scale") as? String ?? scale
        return try family.config(scale: base, overrides: object)
    }
}
