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
            throw ConfigError("unknown module mode '\(flag)'\(Suggestion.phrase(for: flag, among: ModuleMode.spellings)) (expected one of: \(ModuleMode.spellings.joined(separator: ", ")))")
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

/// One cell of the grid: the mode of each module slot of the family, and the LoRA rank.
public struct PEFTAssignment: Equatable, Sendable, CustomStringConvertible {
    /// The family's slots, in table-column order.
    public let slots: [ModuleSlot]
    /// One mode per slot.
    public let modes: [ModuleMode]
    /// LoRA rank r (used only where a module is `lora`).
    public var rank: Int

    /// Throws when the combination is not defined: a mode count that is not the slot count, a non-positive
    /// rank, or a prompt method on a slot that takes none (peft's prompt learning needs a text model; the
    /// paper never applies prefix/PTV2 to the ViT).
    public init(slots: [ModuleSlot], modes: [ModuleMode], rank: Int = 8) throws {
        guard modes.count == slots.count else {
            throw ConfigError("\(modes.count) modes for the \(slots.count) modules \(slots.map(\.key).joined(separator: ", "))")
        }
        if rank <= 0 { throw ConfigError("LoRA rank must be > 0, got \(rank)") }
        for (slot, mode) in zip(slots, modes) where mode.isPrompt && !slot.takesPrompts {
            let text = slots.filter(\.takesPrompts).map(\.header).joined(separator: ", ")
            throw ConfigError("\(mode) on the \(slot.header) is not supported: prompt tuning applies to \(text) only")
        }
        self.slots = slots; self.modes = modes; self.rank = rank
    }

    /// A MISS cell.
    public init(vit: ModuleMode, jtm: ModuleMode, dec: ModuleMode, rank: Int = 8) throws {
        try self.init(slots: MISSFamily.moduleSlots, modes: [vit, jtm, dec], rank: rank)
    }

    /// The mode of the slot with this key (nil: the family has no such slot).
    public func mode(_ key: String) -> ModuleMode? { slots.firstIndex { $0.key == key }.map { modes[$0] } }

    /// All modules trained (used to pretrain the base model).
    public static let full = try! PEFTAssignment(vit: .trained, jtm: .trained, dec: .trained)

    public var description: String {
        modes.map(\.description).joined(separator: " ") + (modes.contains(.lora) ? " r\(rank)" : "")
    }
}

extension PEFTAssignment {
    // MISS's slots by name (MISSModel reads these; every MISS assignment has the three).
    var vit: ModuleMode { mode("vit") ?? .frozen }
    var jtm: ModuleMode { mode("jtm") ?? .frozen }
    var dec: ModuleMode { mode("dec") ?? .frozen }
}
