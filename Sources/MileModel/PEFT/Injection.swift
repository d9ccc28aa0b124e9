import Engine

/// A layer the PEFT methods can adapt (a linear, a conv).
protocol AdaptableLayer: Module {
    var weight: Tensor { get }
    var lora: LoRA? { get }
    func addLoRA(rank: Int, alpha: Float, dropout: Float)
    func addIA3(_ role: IA3Role) throws
}

/// LoRA settings shared by every adapted layer of a model (peft's `LoraConfig`).
public struct LoRASettings: Equatable, Sendable {
    public var rank: Int
    public var alpha: Float
    public var dropout: Float
}

enum PEFTInjection {
    /// Adds the adapters of `mode` to every layer below `module` that `targets` names, in registration order
    /// (the order the adapters draw their initial values). Prompt methods add no layer adapters; F and T add
    /// nothing. Throws when a method matches no layer, as peft does.
    static func inject(_ mode: ModuleMode, into module: Module, targets: PEFTTargets, lora: LoRASettings,
                       slot: String) throws {
        guard mode == .lora || mode == .ia3 else { return }
        let names = mode == .lora ? targets.lora : targets.ia3
        var adapted = 0
        for (path, layer) in module.namedModules() {
            guard let layer = layer as? AdaptableLayer, PEFTTargets.matches(path, names) else { continue }
            if mode == .lora {
                layer.addLoRA(rank: lora.rank, alpha: lora.alpha, dropout: lora.dropout)
            } else {
                try layer.addIA3(PEFTTargets.matches(path, targets.ia3FeedForward) ? .scaleInput : .scaleOutput)
            }
            adapted += 1
        }
        if adapted == 0 {
            throw ConfigError("\(mode) on \(slot): none of the target modules \(names) is a layer of the module")
        }
    }

    /// F freezes a module, T trains it, a method freezes its base weights and trains only its adapters
    /// (found by their role, not by name).
    static func applyTrainability(_ mode: ModuleMode, to module: Module) {
        module.setTrainable(mode.trainsBase)
        guard mode.isMethod else { return }
        for entry in module.namedTensors() where entry.role == .adapter { entry.tensor.isTrainable = true }
    }

    /// Folds every LoRA update below `module` into its base weight (peft `merge_adapter`), or undoes it.
    static func mergeLoRA(_ on: Bool, in module: Module) {
        for (_, m) in module.namedModules() {
            guard let layer = m as? AdaptableLayer, let lora = layer.lora else { continue }
            lora.fold(into: layer.weight, sign: on ? 1 : -1)
        }
    }
}
