import Foundation

extension Planner {
    /// Plan-time validation is the run-time validation: every planned cell's config must be one the
    /// pipeline can run (`RunSettings` reads and checks it the same way `mile run` does), so `mile plan`
    /// reports `recipe.lr: 0`, `decoding.min_length` above `max_length` or mismatched prompt lengths with the
    /// row's position instead of `mile run` failing later.
    static func checkRunnable(_ cell: PlannedCell) throws {
        do {
            _ = try RunSettings(cell.config, cell: "\(cell.label) (\(cell.shortID))")
        } catch let HarnessError.input(message) {
            throw HarnessError.invalid(cell.row.position, "row '\(cell.label)': \(message)")
        }
    }
}
