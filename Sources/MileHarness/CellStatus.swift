import Foundation

/// A cell's state as `mile plan` shows it.
public enum CellState: String, Sendable, Codable {
    case done, pending, running, failed, interrupted, stale
}

public struct CellStatus: Sendable, Equatable {
    public let state: CellState
    /// For stale: what changed; for failed/interrupted: the recorded reason; for running: the runner.
    public let reason: String?
    /// The run the state comes from, if any.
    public let runID: Int64?

    public init(state: CellState, reason: String? = nil, runID: Int64? = nil) {
        self.state = state
        self.reason = reason
        self.runID = runID
    }
}

/// What the current code and data are, to compare with recorded runs.
public struct CurrentVersions: Sendable {
    public var codeVersion: String
    /// Current dataset hashes (nil: unknown, so data changes are not checked).
    public var datasetHashes: [String: String]?

    public init(codeVersion: String = HarnessVersion.code, datasetHashes: [String: String]? = nil) {
        self.codeVersion = codeVersion
        self.datasetHashes = datasetHashes
    }

    /// The versions a runner with this provenance runs under.
    public init(_ provenance: Provenance) {
        self.init(codeVersion: provenance.codeVersion, datasetHashes: provenance.datasetHashes)
    }
}

extension Planner {
    /// Status of a cell from the store (no store: pending).
    public static func status(of cell: PlannedCell, store: ResultsStore?, versions: CurrentVersions = CurrentVersions()) throws -> CellStatus {
        guard let store else { return CellStatus(state: .pending) }
        if let latest = try store.latestRun(cellID: cell.id) {
            switch latest.status {
            case .running:
                let age = store.now().timeIntervalSince(latest.heartbeatAt)
                if age >= store.staleClaimTimeout {
                    return CellStatus(state: .interrupted, reason: "claim by \(latest.runner) went stale (no heartbeat for \(Int(age)) s)", runID: latest.id)
                }
                // A claim of this host whose process is gone (killed with SIGKILL) is not running, whatever its heartbeat.
                if isDeadLocalRunner(latest.runner) {
                    return CellStatus(state: .interrupted, reason: "process \(runnerPID(latest.runner)) of claim \(latest.runner) no longer exists (killed or crashed); the next `mile run` takes it over", runID: latest.id)
                }
                return CellStatus(state: .running, reason: "by \(latest.runner)", runID: latest.id)
            case .failed, .interrupted:
                if let done = try store.latestDoneRun(cellID: cell.id) {
                    return try doneStatus(done, versions: versions)
                }
                return CellStatus(state: latest.status == .failed ? .failed : .interrupted, reason: latest.failureReason, runID: latest.id)
            case .done:
                return try doneStatus(latest, versions: versions)
            }
        }
        // No run of this exact config: if the same row was done under another config, say what changed.
        if let previous = try store.latestDoneRun(table: cell.table, label: cell.label, seed: cell.seed) {
            let old = try ConfigValue.fromJSON(previous.configJSON)
            let changes = ConfigValue.differences(from: old, to: cell.config)
            let reason = changes.isEmpty ? "config serialisation changed" : "config changed: " + changes.joined(separator: "; ")
            return CellStatus(state: .stale, reason: reason + " (recorded run \(previous.id))", runID: previous.id)
        }
        return CellStatus(state: .pending)
    }

    static func doneStatus(_ run: RunRecord, versions: CurrentVersions) throws -> CellStatus {
        if run.provenance.codeVersion != versions.codeVersion {
            return CellStatus(state: .stale, reason: "code version \(run.provenance.codeVersion) -> \(versions.codeVersion)", runID: run.id)
        }
        if let current = versions.datasetHashes {
            let changed = current.keys.sorted().filter { key in
                run.provenance.datasetHashes[key].map { $0 != current[key] } ?? false
            }
            if !changed.isEmpty {
                let detail = changed.map { "\($0) \(run.provenance.datasetHashes[$0]!.prefix(12)) -> \(current[$0]!.prefix(12))" }
                return CellStatus(state: .stale, reason: "data changed: " + detail.joined(separator: "; "), runID: run.id)
            }
        }
        return CellStatus(state: .done, runID: run.id)
    }
}
