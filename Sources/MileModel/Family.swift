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
}

/// A model family the harness can count, build and fine-tune (lm-evaluation-harness's model registry).
public protocol ModelFamily: Sendable {
    /// `model.family` in experiment files.
    var name: String { get }
    /// The module slots, in table-column order; a cell assigns one mode to each.
    var slots: [ModuleSlot] { get }
    /// `model.scale` values.
    var scales: [String] { get }
    /// Parameter counts of a cell, from a shape-only build.
    func count(config: ModelConfig, assignment: PEFTAssignment) throws -> ParameterCount
    /// Builds the wrapped model of a cell.
    func build(config: ModelConfig, assignment: PEFTAssignment, rng: RNG) throws -> any VQAModel
}

/// The families `model.family` can name.
public enum ModelFamilies {
    public static let all: [any ModelFamily] = [MISSFamily()]
    public static var names: [String] { all.map(\.name) }

    public static func named(_ name: String) throws -> any ModelFamily {
        guard let family = all.first(where: { $0.name == name }) else {
            throw ConfigError("unknown model family '\(name)' (known: \(names.joined(separator: ", ")))")
        }
        return family
    }
}

/// MISS (Tables 1-4): ViT, JTM, answer decoder.
public struct MISSFamily: ModelFamily {
    public init() {}
    public var name: String { "miss" }
    public var slots: [ModuleSlot] { Self.moduleSlots }
    static let moduleSlots = [ModuleSlot(key: "vit", header: "ViT", path: "visual_encoder", takesPrompts: false),
                              ModuleSlot(key: "jtm", header: "JTM", path: "text_encoder", takesPrompts: true),
                              ModuleSlot(key: "dec", header: "Dec", path: "text_decoder", takesPrompts: true)]
    public var scales: [String] { ModelConfig.presetNames }

    public func count(config: ModelConfig, assignment: PEFTAssignment) throws -> ParameterCount {
        try ParameterAccounting.count(config: config, assignment: assignment)
    }

    public func build(config: ModelConfig, assignment: PEFTAssignment, rng: RNG) throws -> any VQAModel {
        try MISSModel(config: config, assignment: assignment, rng: rng)
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
    func save(to url: URL, onlyTrainable: Bool, metadata: [String: String]) throws
    @discardableResult
    func load(from url: URL, strict: Bool) throws -> (missing: [String], unexpected: [String])
}

extension MISSModel: VQAModel {}
