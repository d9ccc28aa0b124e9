/// Trainable and total parameter counts of one grid cell, computed from shapes only (no weights).
public struct ParameterCount: Equatable, Codable, Sendable {
    public let trainable: Int
    /// All parameters of the wrapped model, adapters included (peft's `print_trainable_parameters`).
    public let total: Int
    /// Adapter parameters only.
    public let adapters: Int

    /// 100 · trainable / total, the paper's "#Params" column.
    public var percent: Double { total == 0 ? 0 : 100 * Double(trainable) / Double(total) }
}

public enum ParameterAccounting {
    public static func count(config: ModelConfig, assignment: PEFTAssignment) -> ParameterCount {
        count(ParameterLayout.model(config, assignment))
    }

    public static func count(_ specs: [ParameterSpec]) -> ParameterCount {
        var trainable = 0, total = 0, adapters = 0
        for spec in specs {
            total += spec.count
            if spec.trainable { trainable += spec.count }
            if spec.isAdapter { adapters += spec.count }
        }
        return ParameterCount(trainable: trainable, total: total, adapters: adapters)
    }

    /// Total parameters of one top-level module ("visual_encoder", "text_encoder", "text_decoder").
    public static func moduleTotal(_ module: String, config: ModelConfig, assignment: PEFTAssignment) -> Int {
        ParameterLayout.model(config, assignment).filter { $0.name.hasPrefix(module + ".") }.reduce(0) { $0 + $1.count }
    }
}
