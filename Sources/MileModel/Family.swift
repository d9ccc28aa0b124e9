import Engine
import Foundation

/// One module slot of a family: the experiment files' key (`vit`), the tables' column header (`ViT`) and the
/// module's checkpoint prefix (`visual_encoder`).
public struct ModuleSlot: Equatable, Sendable {
    public let key: String
    public let header: String
    public let path: String
    /// Whether prompt methods (prefix, P-tuning v2) apply: text modules only.
    public let takesPrompts: Bool

    public init(key: String, header: String, path: String, takesPrompts: Bool) {
        self.key = key; self.header = header; self.path = path; self.takesPrompts = takesPrompts
    }
}

/// A family's resolved model config (MISS: `ModelConfig`): what the pipeline reads of it without knowing
/// the family.
public protocol FamilyConfig: Sendable {
    /// Side of the square input images.
    var imageSize: Int { get }
    /// Text positions: the longest question or answer the model takes.
    var maxPositions: Int { get }
    var vocabSize: Int { get }
    var padTokenId: Int32 { get }
}

/// The run vocabulary's size and special ids; each family writes them into its own config keys.
public struct VocabularyIds: Equatable, Sendable {
    public let size: Int
    public let pad: Int32
    /// The id a generated answer starts with (`[DEC]`).
    public let begin: Int32
    /// The id that ends a sequence (`[SEP]`).
    public let end: Int32

    public init(size: Int, pad: Int32, begin: Int32, end: Int32) {
        self.size = size; self.pad = pad; self.begin = begin; self.end = end
    }
}

/// The experiment files' `peft.*` settings, before a family maps them to its config keys (nil: the
/// model's default).
public struct PEFTSettings: Equatable, Sendable {
    public var loraAlpha: Double?
    public var loraDropout: Double?
    /// `peft.ia3.vit_targets`: MISS's ViT only.
    public var vitIA3Target: String?
    public var virtualTokens: Int?

    public init(loraAlpha: Double? = nil, loraDropout: Double? = nil, vitIA3Target: String? = nil, virtualTokens: Int? = nil) {
        self.loraAlpha = loraAlpha; self.loraDropout = loraDropout; self.vitIA3Target = vitIA3Target
        self.virtualTokens = virtualTokens
    }
}

/// A model family the harness can count, build and fine-tune (lm-evaluation-harness's model registry).
public protocol ModelFamily: Sendable {
    /// `model.family` in experiment files.
    var name: String { get }
    /// The module slots, in table-column order; a cell assigns one mode to each.
    var slots: [ModuleSlot] { get }
    /// `model.scale` values.
    var scales: [String] { get }
    /// The base pretraining objectives the family's models can train.
    var objectives: [PretrainObjective] { get }
    /// Whether generation can be restricted to candidate answers (`VQAModel.constrainAnswers`).
    var takesAnswerCandidates: Bool { get }
    /// The checkpoint prefix of the image encoder's parameters, which `vision_lr_scale` applies to.
    var imageEncoderPrefix: String { get }
    /// The config of a scale with config-key overrides applied (unknown keys are errors naming the key).
    func config(scale: String, overrides: [String: Any]) throws -> any FamilyConfig
    /// The config keys that carry the experiment's peft settings.
    func overrides(peft: PEFTSettings) -> [String: Any]
    /// The config keys that carry the run vocabulary.
    func overrides(vocabulary: VocabularyIds) -> [String: Any]
    /// Builds the wrapped model of a cell.
    func build(config: any FamilyConfig, assignment: PEFTAssignment, rng: RNG) throws -> any VQAModel
}

extension ModelFamily {
    /// Parameter counts of a cell, from a shape-only build (the modules are the one description of the
    /// parameters).
    public func count(config: any FamilyConfig, assignment: PEFTAssignment) throws -> ParameterCount {
        try withShapeOnly { ParameterCount(try build(config: config, assignment: assignment, rng: RNG(seed: 0))) }
    }

    /// An assignment of this family's slots, modes given by slot key (missing keys: frozen).
    public func assignment(_ modes: [String: ModuleMode], rank: Int = 8) throws -> PEFTAssignment {
        try PEFTAssignment(slots: slots, modes: slots.map { modes[$0.key] ?? .frozen }, rank: rank)
    }

    /// Every module trained: the base pretraining's assignment.
    public func fullyTrained() throws -> PEFTAssignment {
        try PEFTAssignment(slots: slots, modes: slots.map { _ in .trained })
    }

    /// The family's concrete config type, or an error naming both families.
    func cast<C: FamilyConfig>(_ config: any FamilyConfig, to type: C.Type) throws -> C {
        guard let typed = config as? C else {
            throw ConfigError("the \(name) family needs a \(C.self), got a \(Swift.type(of: config))")
        }
        return typed
    }
}

/// The families `model.family` can name.
public enum ModelFamilies {
    public static let all: [any ModelFamily] = [MISSFamily(), BiomedGPTFamily()]
    public static var names: [String] { all.map(\.name) }
    /// Every family's scales, once each.
    public static var scales: [String] { all.flatMap(\.scales).reduce(into: []) { if !$0.contains($1) { $0.append($1) } } }

    public static func named(_ name: String) throws -> any ModelFamily {
        guard let family = all.first(where: { $0.name == name }) else {
            throw ConfigError("unknown model family '\(name)' (known: \(names.joined(separator: ", ")))")
        }
        return family
    }
}

extension ModelConfig: FamilyConfig {}

/// MISS (Tables 1-4): ViT, JTM, answer decoder.
public struct MISSFamily: ModelFamily {
    public init() {}
    public var name: String { "miss" }
    public var slots: [ModuleSlot] { Self.moduleSlots }
    static let moduleSlots = [ModuleSlot(key: "vit", header: "ViT", path: "visual_encoder", takesPrompts: false),
                              ModuleSlot(key: "jtm", header: "JTM", path: "text_encoder", takesPrompts: true),
                              ModuleSlot(key: "dec", header: "Dec", path: "text_decoder", takesPrompts: true)]
    public var scales: [String] { ModelConfig.presetNames }
    public var objectives: [PretrainObjective] { PretrainObjective.allCases }
    public var takesAnswerCandidates: Bool { false }
    public var imageEncoderPrefix: String { "visual_encoder." }

    public func config(scale: String, overrides: [String: Any]) throws -> any FamilyConfig {
        try ModelConfig.preset(scale).applying(overrides)
    }

    public func overrides(peft: PEFTSettings) -> [String: Any] {
        var out: [String: Any] = [:]
        if let alpha = peft.loraAlpha { out["lora_alpha"] = alpha }
        if let dropout = peft.loraDropout { out["lora_dropout"] = dropout }
        if let target = peft.vitIA3Target { out["vit_ia3_target"] = target }
        if let tokens = peft.virtualTokens { out["prefix_tokens"] = tokens }
        return out
    }

    public func overrides(vocabulary: VocabularyIds) -> [String: Any] {
        ["vocab_size": vocabulary.size, "pad_token_id": Int(vocabulary.pad), "dec_token_id": Int(vocabulary.begin),
         "sep_token_id": Int(vocabulary.end)]
    }

    public func build(config: any FamilyConfig, assignment: PEFTAssignment, rng: RNG) throws -> any VQAModel {
        try MISSModel(config: cast(config, to: ModelConfig.self), assignment: assignment, rng: rng)
    }
}

/// What the pipeline needs of a fine-tunable VQA model: the teacher-forced loss, answer generation, LoRA
/// merging, checkpoints and counts. The modules behind it are the family's own.
public protocol VQAModel: Module {
    /// Side of the square input images.
    var imageSize: Int { get }
    var parameterCount: ParameterCount { get }
    func trainableParameters() -> [(name: String, tensor: Tensor)]
    func loss(images: Tensor, question: TokenBatch, answer: TokenBatch) throws -> Tensor
    func generate(images: Tensor, question: TokenBatch, beams: Int, maxLength: Int, minLength: Int) throws -> [[Int32]]
    func mergeLoRA(_ on: Bool)
    /// Restricts generation to these answers (token ids without the begin and end ids), OFA's VQA trie; nil
    /// lifts the restriction. Families whose generation takes no constraint throw.
    func constrainAnswers(to candidates: [[Int32]]?) throws
    func save(to url: URL, onlyTrainable: Bool, metadata: [String: String]) throws
    @discardableResult
    func load(from url: URL, strict: Bool) throws -> (missing: [String], unexpected: [String])
}

extension VQAModel {
    public func constrainAnswers(to candidates: [[Int32]]?) throws {
        guard candidates == nil else { throw ConfigError("\(Self.self) generation takes no answer constraint (decoding.candidates)") }
    }

    public func trainableParameters() -> [(name: String, tensor: Tensor)] {
        namedParameters().filter { $0.tensor.isTrainable }
    }

    public var parameterCount: ParameterCount { ParameterCount(self) }

    /// Writes the parameters (and buffers) by upstream name; `onlyTrainable` for fine-tune checkpoints
    /// (trainable parameters and every buffer).
    public func save(to url: URL, onlyTrainable: Bool = false, metadata: [String: String] = [:]) throws {
        try saveState(to: url, onlyTrainable: onlyTrainable, metadata: metadata)
    }

    /// Loads tensors by name. Shape mismatches are errors. Returns the names of this model's tensors absent
    /// from the file (e.g. fresh adapters when loading a base checkpoint) and the names in the file this model
    /// does not have. With `strict`, any base (non-adapter) tensor missing from the file is an error.
    @discardableResult
    public func load(from url: URL, strict: Bool = true) throws -> (missing: [String], unexpected: [String]) {
        let (missing, unexpected) = try loadState(from: url)
        if strict, let base = missing.first(where: { $0.role != .adapter }) {
            throw ConfigError("\(url.path): base tensor '\(base.name)' is missing (\(missing.count) missing in total)")
        }
        return (missing.map(\.name), unexpected)
    }
}

extension MISSModel: VQAModel {}
