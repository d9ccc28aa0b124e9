import MileModel
import MileData

/// Experiment files, planner, results store, scoring and reports live in this module.
public enum MileHarnessInfo {
    public static let name = "harness"
}
