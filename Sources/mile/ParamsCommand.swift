import ArgumentParser
import Foundation
import MileHarness
import MileModel

/// `mile params`: trainable / total parameters and "#Params %" of one grid cell, from shapes only.
struct Params: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print trainable and total parameters and #Params % for one ViT/JTM/Dec assignment.")

    @Option(help: "Model scale: paper, small or smoke.")
    var scale: String = "paper"
    @Option(help: "Optional JSON file of model config overrides (flat snake_case keys, may set \"scale\").")
    var config: String?
    @Option(help: "ViT mode: F, T, lora, ia3.")
    var vit: String = "F"
    @Option(help: "JTM mode: F, T, lora, ia3, prefix, ptv2.")
    var jtm: String = "F"
    @Option(help: "Decoder mode: F, T, lora, ia3, prefix, ptv2.")
    var dec: String = "F"
    @Option(help: "LoRA rank.")
    var rank: Int = 8
    @Flag(help: "Print {\"trainable\", \"total\", \"percent\"} as JSON.")
    var json = false

    func run() throws {
        guard (1...Limits.rank).contains(rank) else {
            throw ValidationError("--rank \(rank): expected 1 to \(Limits.rank) (\(Limits.rankReason))")
        }
        let model = try loadConfig()
        let assignment = try PEFTAssignment(vit: ModuleMode(flag: vit), jtm: ModuleMode(flag: jtm),
                                            dec: ModuleMode(flag: dec), rank: rank)
        let count = try ParameterAccounting.count(config: model, assignment: assignment)
        if json {
            let object: [String: Any] = ["trainable": count.trainable, "total": count.total, "percent": count.percent]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("cell:      \(assignment)")
            print("trainable: \(count.trainable)")
            print("total:     \(count.total)")
            print("percent:   \(String(format: "%.3f", count.percent))")
        }
    }

    private func loadConfig() throws -> ModelConfig {
        guard let path = config else { return try ModelConfig.preset(scale) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("cannot read model config file '\(path)'")
        }
        guard var object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ConfigError("\(path): not a JSON object")
        }
        let base = object.removeValue(forKey: "scale") as? String ?? scale
        return try ModelConfig.preset(base).applying(object)
    }
}
