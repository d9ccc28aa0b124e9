import ArgumentParser
import Engine
import Foundation
import MileData
import MileHarness
import MileModel

/// `mile base-check`: how much a pretrained base, or a fine-tuned cell (its base plus its fine-tune
/// checkpoint), uses the image, on the SLAKE English validation questions.
struct BaseCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "base-check",
        abstract: "VQA loss of a base model on SLAKE validate with true and with shuffled images.")

    @Option(help: "The base file (<cache>/bases/<key>.safetensors); its <key>.vocab.txt must sit beside it.")
    var base: String
    @Option(help: "Model family of the base: \(ModelFamilies.names.joined(separator: ", ")).")
    var family = "miss"
    @Option(help: "Model scale the base was built at.")
    var scale: ScaleName = .small
    @Option(help: "Slake1.0 folder (default: $SLAKE_DIR).")
    var slake: String?
    @Option(help: "Cache folder for decoded images.")
    var cache = Defaults.cache
    @Option(help: "A cell's fine-tune checkpoint (<cache>/cells/<key>/checkpoint.safetensors), loaded over the base.")
    var checkpoint: String?
    @Option(help: "The cell's modes with --checkpoint, one per module of the family, then the rank: e.g. T,T,lora,4 (MISS: ViT,JTM,Dec).")
    var cell = "T,T,T"

    func run() throws {
        Threads.configure()
        guard let root = slake ?? ProcessInfo.processInfo.environment["SLAKE_DIR"] else {
            throw ValidationError("give --slake or set SLAKE_DIR")
        }
        let vocabulary = (base as NSString).deletingPathExtension + ".vocab.txt"
        guard FileManager.default.fileExists(atPath: vocabulary) else {
            throw ValidationError("no vocabulary at \(vocabulary) (a base's vocabulary sits beside it as <key>.vocab.txt)")
        }
        let tokenizer = try Tokenizer(vocabFile: vocabulary)
        let family = try ModelFamilies.named(self.family)
        let ids = VocabularyIds(size: tokenizer.vocabularySize, pad: tokenizer.padId, begin: tokenizer.decId, end: tokenizer.sepId)
        let config = try family.config(scale: scale.rawValue, overrides: family.overrides(vocabulary: ids))
        let model = try family.build(config: config, assignment: try assignment(family), rng: RNG(seed: 0))
        try model.load(from: URL(fileURLWithPath: base), strict: true)
        if let checkpoint {
            let tensors = try Safetensors.read(URL(fileURLWithPath: checkpoint)).tensors
            for (name, tensor) in model.trainableParameters() {
                guard let stored = tensors[name], stored.shape == tensor.shape else {
                    throw ValidationError("\(checkpoint) has no tensor '\(name)' of shape \(tensor.shape): is --cell the checkpoint's cell?")
                }
                tensor.copy(from: stored)
            }
        }
        let samples = try Slake.load(root: root, split: .validate)
        let loader = ImageLoader(size: config.imageSize, cacheDirectory: URL(fileURLWithPath: cache).appendingPathComponent("image-cache"))
        let reliance = try ImageReliance.measure(model: model, samples: samples, tokenizer: tokenizer,
                                                 images: ImageStore(loader: loader))
        print("\(checkpoint ?? base): \(reliance.description)")
    }

    private func assignment(_ family: any ModelFamily) throws -> PEFTAssignment {
        let parts = cell.split(separator: ",").map(String.init)
        let n = family.slots.count
        let names = family.slots.map(\.header).joined(separator: ",")
        guard parts.count == n || parts.count == n + 1 else { throw ValidationError("--cell takes \(names)[,rank], got '\(cell)'") }
        let rank = parts.count == n + 1 ? Int(parts[n]) : 8
        guard let rank, rank > 0 else { throw ValidationError("--cell: rank '\(parts[n])' is not a positive integer") }
        return try PEFTAssignment(slots: family.slots, modes: parts.prefix(n).map(ModuleMode.init(flag:)), rank: rank)
    }
}
