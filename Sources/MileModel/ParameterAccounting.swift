import Engine

/// Trainable and total parameter counts of one grid cell.
public struct ParameterCount: Equatable, Codable, Sendable {
    public let trainable: Int
    /// All parameters of the wrapped model, adapters included (peft's `print_trainable_parameters`).
    public let total: Int
    /// Adapter parameters only.
    public let adapters: Int

    /// 100 · trainable / total, the paper's "#Params" column.
    public var percent: Double { total == 0 ? 0 : 100 * Double(trainable) / Double(total) }

    public init(trainable: Int, total: Int, adapters: Int) {
        self.trainable = trainable; self.total = total; self.adapters = adapters
    }

    /// The counts of a built module: parameters by role (buffers are not parameters).
    public init(_ module: Module) {
        var trainable = 0, total = 0, adapters = 0
        for entry in module.namedTensors() where entry.role != .buffer {
            total += entry.tensor.count
            if entry.tensor.isTrainable { trainable += entry.tensor.count }
            if entry.role == .adapter { adapters += entry.tensor.count }
        }
        self.init(trainable: trainable, total: total, adapters: adapters)
    }
}

/// Counts come from the model itself, built shape-only (no weights are allocated or drawn), so the modules
/// are the one description of the parameters.
public enum ParameterAccounting {
    /// A MISS cell's counts (`ModelFamily.count` for any family).
    public static func count(config: ModelConfig, assignment: PEFTAssignment) throws -> ParameterCount {
        try MISSFamily().count(config: config, assignment: assignment)
    }

    /// Total parameters of each module slot (vit, jtm, dec), adapters included.
    public static func slotTotals(config: ModelConfig, assignment: PEFTAssignment) throws -> [String: Int] {
        try withShapeOnly {
            let model = try MISSModel(config: config, assignment: assignment, rng: RNG(seed: 0))
            return Dictionary(uniqueKeysWithValues: model.slots.map { ($0.name, ParameterCount($0.module).total) })
        }
    }
}
