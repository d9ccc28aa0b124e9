import ArgumentParser
import Engine
import Foundation
import MileData
import MileHarness
import MileModel

/// `mile base-check`: how much a pretrained base (or any MISS checkpoint with all its tensors) uses the
/// image, on the SLAKE English validation questions.
struct BaseCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "base-check",
        abstract: "VQA loss of a base model on SLAKE validate with true and with shuffled images.")

    @Option(help: "The base file (<cache>/bases/<key>.safetensors); its <key>.vocab.txt must sit beside it.")
    var base: String
    @Option(help: "Model scale the base was built at (paper, small, smoke).")
    var scale = "small"
    @Option(help: "Slake1.0 folder (default: $SLAKE_DIR).")
    var slake: String?
    @Option(help: "Cache folder for decoded images.")
    var cache = ".mile"

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
        let overrides: [String: Any] = ["vocab_size": tokenizer.vocabularySize, "pad_token_id": Int(tokenizer.padId),
                                        "dec_token_id": Int(tokenizer.decId), "sep_token_id": Int(tokenizer.sepId)]
        let config = try ModelConfig.preset(scale).applying(overrides)
        let model = try MISSModel(config: config, assignment: .full, rng: RNG(seed: 0))
        try model.load(from: URL(fileURLWithPath: base), strict: true)
        let samples = try Slake.load(root: root, split: .validate)
        let loader = ImageLoader(size: config.imageSize, cacheDirectory: URL(fileURLWithPath: cache).appendingPathComponent("image-cache"))
        let reliance = try ImageReliance.measure(model: model, samples: samples, tokenizer: tokenizer,
                                                 images: ImageStore(loader: loader))
        print("\(base): \(reliance.description)")
    }
}
