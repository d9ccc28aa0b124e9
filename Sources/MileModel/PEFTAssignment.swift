/// What happens to one of the three modules (table columns ViT / JTM / Dec) during fine-tuning.
/// Flag spellings are the seed train script's: F, T, lora, ia3, prefix, ptv2 (case-insensitive).
public enum ModuleMode: String, CaseIterable, Codable, Sendable, CustomStringConvertible {
    /// Frozen: every base parameter has requires_grad = False.
    case frozen = "F"
    /// Trained: the module is left untouched, fully trainable.
    case trained = "T"
    /// LoRA (peft 0.7.1 defaults as MILE uses them): base frozen, adapters trained.
    case lora
    /// IA3: base frozen, scaling vectors trained.
    case ia3
    /// Prefix tuning with the reparameterising MLP: base frozen, prompt encoder trained.
    case prefix
    /// P-tuning v2: prefix tuning without the projection.
    case ptv2

    public init(flag: String) throws {
        guard let mode = ModuleMode.allCases.first(where: { $0.rawValue.lowercased() == flag.lowercased() }) else {
            throw ConfigError("unknown module mode '\(flag)' (expected one of: \(ModuleMode.spellings.joined(separator: ", ")))")
        }
        self = mode
    }

    /// The spelling used in the paper's tables (F, T, LoRA, IA3, Prefix, PTV2).
    public var description: String {
        switch self {
        case .frozen: return "F"
        case .trained: return "T"
        case .lora: return "LoRA"
        case .ia3: return "IA3"
        case .prefix: return "Prefix"
        case .ptv2: return "PTV2"
        }
    }

    /// The spelling of the paper's tables.
    public var display: String { description }
    /// The spellings experiment files and flags use.
    public static var spellings: [String] { allCases.map(\.rawValue) }

    /// True for the four PEFT methods (base frozen, adapters trained).
    public var isMethod: Bool { self != .frozen && self != .trained }
    /// True when the base weights of the module receive gradients.
    public var trainsBase: Bool { self == .trained }
    public var isPrompt: Bool { self == .prefix || self == .ptv2 }
}

/// One cell of the grid: the mode of each module and the LoRA rank.
public struct PEFTAssignment: Equatable, Codable, Sendable, CustomStringConvertible {
    public var vit: ModuleMode
    public var jtm: ModuleMode
    public var dec: ModuleMode
    /// LoRA rank r (used only where a module is `lora`).
    public var rank: Int

    /// Throws when the combination is not defined: a non-positive rank, or prompt tuning on the ViT
    /// (the paper never applies prefix/PTV2 to the ViT, and peft's prompt learning needs a text model).
    public init(vit: ModuleMode, jtm: ModuleMode, dec: ModuleMode, rank: Int = 8) throws {
        if rank <= 0 { throw ConfigError("LoRA rank must be > 0, got \(rank)") }
        if vit.isPrompt {
            throw ConfigError("\(vit) on the ViT is not supported: prompt tuning applies to the BERT modules (JTM, Dec) only")
        }
        self.vit = vit; self.jtm = jtm; self.dec = dec; self.rank = rank
    }

    enum CodingKeys: String, CodingKey { case vit, jtm, dec, rank }

    /// Decoding goes through the validating initialiser.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(vit: c.decode(ModuleMode.self, forKey: .vit), jtm: c.decode(ModuleMode.self, forKey: .jtm),
                      dec: c.decode(ModuleMode.self, forKey: .dec), rank: c.decodeIfPresent(Int.self, forKey: .rank) ?? 8)
    }

    /// All modules trained (used to pretrain the base model).
    public static let full = try! PEFTAssignment(vit: .trained, jtm: .trained, dec: .trained)

    public var description: String {
        let usesLoRA = [vit, jtm, dec].contains(.lora)
        return "\(vit) \(jtm) \(dec)" + (usesLoRA ? " r\(rank)" : "")
    }
}
