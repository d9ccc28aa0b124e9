/// Where the PEFT methods go in one module, as data (peft's `TRANSFORMERS_MODELS_TO_*_TARGET_MODULES_MAPPING`
/// in `utils/constants.py`): layer names matched by suffix, `path == name || path.hasSuffix("." + name)`, over
/// the paths inside the module. A family lists one entry per module slot.
public struct PEFTTargets: Equatable, Sendable {
    public var lora: [String]
    public var ia3: [String]
    /// The IA3 targets that are feed-forward layers: their vector scales the input features.
    public var ia3FeedForward: [String]

    public init(lora: [String], ia3: [String], ia3FeedForward: [String]) {
        self.lora = lora; self.ia3 = ia3; self.ia3FeedForward = ia3FeedForward
    }

    /// peft's suffix rule (`check_target_module_exists` with a list of names).
    public static func matches(_ path: String, _ names: [String]) -> Bool {
        names.contains { path == $0 || path.hasSuffix("." + $0) }
    }

    /// peft 0.7.1's "bert" entries: LoRA on query and value; IA3 on key, value and output.dense, the latter
    /// feed-forward (by suffix it also catches the attention blocks' `output.dense`).
    public static let bert = PEFTTargets(lora: ["query", "value"], ia3: ["key", "value", "output.dense"],
                                         ia3FeedForward: ["output.dense"])

    /// BLIP's ViT: LoRA on every linear and, by suffix, the patch-embedding conv `patch_embed.proj`; IA3 on the
    /// configured target set (spec §2.2: the paper's count admits three, see `ViTIA3Target`).
    public static func vit(ia3 target: ViTIA3Target) -> PEFTTargets {
        PEFTTargets(lora: ["qkv", "proj", "fc1", "fc2"], ia3: target.layers, ia3FeedForward: target.feedForward)
    }
}

extension ViTIA3Target {
    /// The ViT layers that get an IA3 vector.
    public var layers: [String] {
        switch self {
        case .fc2: return ["mlp.fc2"]
        case .fc1: return ["mlp.fc1"]
        case .attn: return ["attn.qkv", "attn.proj"]
        }
    }

    /// The ones among them treated as feed-forward (scaled at the input).
    public var feedForward: [String] { self == .fc2 ? ["mlp.fc2"] : [] }
}
