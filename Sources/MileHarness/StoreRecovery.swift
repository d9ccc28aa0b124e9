import Foundation
import GRDB

/// Claims of processes that died without recording their cell (SIGKILL, the OOM killer, a crash).
extension ResultsStore {
    /// Marks one running run interrupted with `reason`, whoever owns it; for a claim whose process is
    /// known to be gone. Returns false when the run was no longer running (someone else got there first).
    @discardableResult
    public func releaseDeadClaim(runID: Int64, reason: String) throws -> Bool {
        let time = now().timeIntervalSince1970
        return try write { db in
            try db.execute(sql: """
                UPDATE runs SET status = 'interrupted', ended_at = ?, wall_seconds = ? - started_at, failure_reason = ?
                WHERE id = ? AND status = 'running'
                """, arguments: [time, time, reason, runID])
            return db.changesCount > 0
        }
    }

    /// Marks interrupted every running claim of process `pid` on this host (a `--jobs` worker that died),
    /// and returns those runs as they were.
    public func releaseClaims(ofProcess pid: Int32, reason: String) throws -> [RunRecord] {
        let prefix = "\(ProcessInfo.processInfo.hostName):\(pid):"
        let held = try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM runs WHERE status = 'running'").map(ResultsStore.record)
        }.filter { $0.runner.hasPrefix(prefix) }
        return try held.filter { try releaseDeadClaim(runID: $0.id, reason: reason) }
    }
}

/// A runner id `host:pid:uuid` whose process no longer exists on this host (so its claim is dead at once,
/// without waiting for the stale-claim timeout).
public func isDeadLocalRunner(_ runner: String) -> Bool {
    let parts = runner.split(separator: ":")
    guard parts.count >= 3, String(parts[0]) == ProcessInfo.processInfo.hostName, let pid = Int32(parts[1]) else { return false }
    return kill(pid, 0) != 0 && errno == ESRCH
}

/// The process id in a runner id `host:pid:uuid`.
public func runnerPID(_ runner: String) -> String {
    let parts = runner.split(separator: ":")
    return parts.count >= 3 ? String(parts[1]) : runner
}
