import Foundation
import MileData
import MileModel

/// The typed view of one cell's resolved config (experiments/defaults.yaml): what each stage reads.
/// Values the pipeline cannot honour (a schedule other than cosine, a label smoothing the model does not
/// use, ...) are errors naming the key, never silently ignored.
public struct RunSettings {
    public struct Pretraining: Sendable {
        public var source: String          // own | checkpoint
        public var checkpoint: String
        public var corpus: [String]        // vqa-rad, slake-train-captions
        public var epochs: Int
        public var lr: Double
        public var batch: Int
        public var seed: Int
        public var objectives: [String]    // lm, itc, itm (PretrainObjective)
        public var augment: Bool           // random resized crop of the base's training images
        public var visionLRScale: Double   // multiplier of lr for the image encoder

        /// The objectives as the model names them.
        public var objectiveSet: Set<PretrainObjective> { Set(objectives.compactMap(PretrainObjective.init(rawValue:))) }
    }

    public struct Recipe: Sendable {
        public var epochs: Int
        public var lr: Double
        public var batch: Int
        public var weightDecay: Double
        public var seed: Int
        public var visionLRScale: Double   // multiplier of lr for the image encoder
    }

    /// `model.family`: the model the cell builds.
    public var family: any ModelFamily
    public var scale: String
    /// `model.image_size`: the image side at the run's scale; 0 keeps the scale preset's.
    public var imageSize: Int
    public var pretraining: Pretraining
    public var instructionSources: [String]  // slake-train, slake-validate, vqa-rad-train
    public var prompts: [String]             // mile (the six templates), plain (the test's question form)
    public var doubleDivide255: Bool
    /// The first N test questions, training records and base samples only (0: all); `--limit N`.
    public var limit: Int
    public var recipe: Recipe
    public var beams: Int
    public var maxLength: Int
    public var minLength: Int
    /// `decoding.candidates`: none, or `slake-train-validate` (generation restricted to the answers of SLAKE's
    /// English train and validate questions, OFA's VQA trie; BiomedGPT's recipe).
    public var candidates: String
    /// peft.* settings as the family's model config keys (lora alpha/dropout, ViT IA3 targets, virtual tokens).
    public var modelOverrides: [String: Any]

    public static let knownSources = ["slake-train", "slake-validate", "vqa-rad-train"]
    public static let knownPrompts = ["mile", "plain"]
    public static let knownCandidates = ["none", "slake-train-validate"]

    public init(_ config: ConfigValue, cell: String) throws {
        func value(_ path: String) throws -> ConfigValue {
            guard let v = config[path] else { throw HarnessError.input("cell \(cell): config key \(path) is missing") }
            return v
        }
        func string(_ path: String) throws -> String {
            guard let s = try value(path).stringValue else { throw HarnessError.input("cell \(cell): \(path) must be a string") }
            return s
        }
        func int(_ path: String) throws -> Int {
            guard let i = try value(path).intValue else { throw HarnessError.input("cell \(cell): \(path) must be an integer") }
            return i
        }
        func double(_ path: String) throws -> Double {
            guard let d = try value(path).doubleValue else { throw HarnessError.input("cell \(cell): \(path) must be a number") }
            return d
        }
        func strings(_ path: String) throws -> [String] {
            guard let list = try value(path).listValue else { throw HarnessError.input("cell \(cell): \(path) must be a list") }
            return try list.map { item in
                guard let s = item.stringValue else { throw HarnessError.input("cell \(cell): \(path) must list strings") }
                return s
            }
        }
        do { family = try ModelFamilies.named(try string("model.family")) } catch let error as ConfigError {
            throw HarnessError.input("cell \(cell): model.family: \(error)")
        }
        scale = try string("model.scale")
        // Keys added after results existed are absent from those cells' ids at their neutral values.
        imageSize = config["model.image_size"]?.intValue ?? 0
        pretraining = Pretraining(source: try string("pretraining.source"), checkpoint: try string("pretraining.checkpoint"),
                                  corpus: try strings("pretraining.corpus"), epochs: try int("pretraining.epochs"),
                                  lr: try double("pretraining.lr"), batch: try int("pretraining.batch"),
                                  seed: try int("pretraining.seed"), objectives: try strings("pretraining.objectives"),
                                  augment: try value("pretraining.augment").boolValue ?? false,
                                  visionLRScale: config["pretraining.vision_lr_scale"]?.doubleValue ?? 1)
        instructionSources = try strings("data.instruction_sources")
        prompts = try strings("data.prompts")
        doubleDivide255 = try value("data.double_divide_255").boolValue ?? false
        limit = config["data.limit"]?.intValue ?? 0
        recipe = Recipe(epochs: try int("recipe.epochs"), lr: try double("recipe.lr"), batch: try int("recipe.batch"),
                        weightDecay: try double("recipe.weight_decay"), seed: try int("recipe.seed"),
                        visionLRScale: config["recipe.vision_lr_scale"]?.doubleValue ?? 1)
        beams = try int("decoding.beams")
        maxLength = try int("decoding.max_length")
        minLength = try int("decoding.min_length")
        candidates = config["decoding.candidates"]?.stringValue ?? "none"
        modelOverrides = family.overrides(peft: try Self.peftSettings(config))
        try validate(config, cell: cell, string: string, int: int, double: double)
    }

    private func validate(_ config: ConfigValue, cell: String, string: (String) throws -> String, int: (String) throws -> Int,
                          double: (String) throws -> Double) throws {
        func fail(_ text: String) -> HarnessError { HarnessError.input("cell \(cell): \(text)") }
        guard family.scales.contains(scale) else {
            throw fail("model.scale '\(scale)' is not one of the \(family.name) family's \(family.scales.joined(separator: ", "))")
        }
        guard ["own", "checkpoint"].contains(pretraining.source) else {
            throw fail("pretraining.source '\(pretraining.source)' must be own or checkpoint")
        }
        if pretraining.source == "checkpoint" && pretraining.checkpoint.isEmpty {
            throw fail("pretraining.source is checkpoint but pretraining.checkpoint is empty")
        }
        let corpora = PretrainCorpus.Part.allCases.map(\.configName)
        if let bad = pretraining.corpus.first(where: { !corpora.contains($0) }) {
            throw fail("pretraining.corpus: unknown corpus '\(bad)' (known: \(corpora.joined(separator: ", ")))")
        }
        let objectiveNames = PretrainObjective.allCases.map(\.rawValue)
        if let bad = pretraining.objectives.first(where: { !objectiveNames.contains($0) }) {
            throw fail("pretraining.objectives: unknown objective '\(bad)' (known: \(objectiveNames.joined(separator: ", ")))")
        }
        if pretraining.objectives.isEmpty { throw fail("pretraining.objectives: name at least one of \(objectiveNames.joined(separator: ", "))") }
        let supported = family.objectives.map(\.rawValue)
        if pretraining.source == "own", let bad = pretraining.objectives.first(where: { !supported.contains($0) }) {
            throw fail("pretraining.objectives: the \(family.name) family does not train '\(bad)' (it trains \(supported.joined(separator: ", ")))")
        }
        if let bad = instructionSources.first(where: { !Self.knownSources.contains($0) }) {
            throw fail("data.instruction_sources: unknown source '\(bad)' (known: \(Self.knownSources.joined(separator: ", ")))")
        }
        if prompts.isEmpty || prompts.contains(where: { !Self.knownPrompts.contains($0) }) {
            throw fail("data.prompts: name one or both of \(Self.knownPrompts.joined(separator: ", ")), got \(prompts)")
        }
        guard try string("data.test") == "slake-en-test" else { throw fail("data.test: only slake-en-test is supported") }
        guard try int("data.question_max_tokens") == 35 else { throw fail("data.question_max_tokens: only 35 (upstream) is supported") }
        guard try string("recipe.schedule") == "cosine" else { throw fail("recipe.schedule: only cosine (upstream) is supported") }
        guard try int("recipe.warmup_epochs") == 0 else { throw fail("recipe.warmup_epochs: only 0 (upstream) is supported") }
        guard abs(try double("recipe.label_smoothing") - 0.1) < 1e-12 else {
            throw fail("recipe.label_smoothing: the model's loss uses 0.1 (upstream); other values are not supported")
        }
        guard recipe.epochs >= 1, recipe.batch >= 1, pretraining.epochs >= 0, pretraining.batch >= 1 else {
            throw fail("recipe/pretraining epochs and batch must be positive")
        }
        guard recipe.lr > 0, pretraining.lr > 0 else { throw fail("recipe.lr and pretraining.lr must be positive") }
        guard recipe.visionLRScale > 0, pretraining.visionLRScale > 0 else {
            throw fail("recipe.vision_lr_scale and pretraining.vision_lr_scale must be positive (1 = the lr of the other modules; freeze a module with its mode F)")
        }
        guard beams >= 1, maxLength >= 2, minLength >= 0 else { throw fail("decoding: beams >= 1, max_length >= 2") }
        if candidates != "none" && !family.takesAnswerCandidates {
            throw fail("decoding.candidates: the \(family.name) family's generation cannot be restricted to candidate answers; use none")
        }
        guard minLength <= maxLength else {
            throw fail("decoding.min_length (\(minLength)) is above decoding.max_length (\(maxLength)): every answer would be cut off before it may end")
        }
        let preset = try family.config(scale: scale, overrides: [:])
        guard maxLength <= preset.maxPositions else {
            throw fail("decoding.max_length \(maxLength) exceeds the \(scale) model's \(preset.maxPositions) text positions")
        }
        do {
            _ = try family.config(scale: scale, overrides: modelOverrides)
        } catch {
            throw fail("peft settings: \(error)")
        }
        do {
            _ = try modelConfig(scale: scale, vocabulary: nil)
        } catch {
            throw fail("model.image_size \(imageSize): \(error)")
        }
    }

    /// The peft.* keys of the experiment schema. Only the sections a cell uses are in its config; the model's
    /// defaults (the same values) apply to the others.
    static func peftSettings(_ config: ConfigValue) throws -> PEFTSettings {
        let prefix = config["peft.prefix.virtual_tokens"]?.intValue, ptv2 = config["peft.ptv2.virtual_tokens"]?.intValue
        if let prefix, let ptv2, prefix != ptv2 {
            throw HarnessError.input("peft.prefix.virtual_tokens (\(prefix)) and peft.ptv2.virtual_tokens (\(ptv2)) differ; the model has one prompt length, so give both the same value")
        }
        return PEFTSettings(loraAlpha: config["peft.lora.alpha"]?.doubleValue, loraDropout: config["peft.lora.dropout"]?.doubleValue,
                            vitIA3Target: config["peft.ia3.vit_targets"]?.stringValue, virtualTokens: prefix ?? ptv2)
    }

    /// The model config of this cell at `scale`, with the run vocabulary's size and special ids (nil: the
    /// preset's own, as at paper scale).
    public func modelConfig(scale: String, vocabulary: VocabularyIds?) throws -> any FamilyConfig {
        var overrides = modelOverrides
        if let vocabulary { overrides.merge(family.overrides(vocabulary: vocabulary)) { $1 } }
        // The image size is a run-scale setting; the paper-scale counts and memory keep the paper's 480².
        if imageSize > 0 && scale == self.scale { overrides["image_size"] = imageSize }
        return try family.config(scale: scale, overrides: overrides)
    }
}

extension ModuleAssignment {
    /// The model layer's assignment (the harness and the model spell modes the same way).
    public func peft() throws -> PEFTAssignment {
        try PEFTAssignment(slots: slots, modes: modes, rank: rank ?? 8)
    }
}
