import Foundation

/// A table's cells with their statuses, ready to print (`mile plan`).
public struct TablePlan: Sendable {
    public let table: ExperimentTable
    public let cells: [PlannedCell]
    public let statuses: [CellStatus]

    /// Plans every file: load strictly, expand, look up statuses. Any invalid file stops everything.
    public static func make(files: [String], overrides: [ConfigOverride], store: ResultsStore?,
                            versions: CurrentVersions = CurrentVersions()) throws -> [TablePlan] {
        let tables = try files.map { try ExperimentLoader.load(path: $0) }
        return try tables.map { table in
            let cells = try Planner.expand(table, overrides: overrides)
            let statuses = try cells.map { try Planner.status(of: $0, store: store, versions: versions) }
            return TablePlan(table: table, cells: cells, statuses: statuses)
        }
    }

    /// The plan with only the cells whose id is in `ids` (nil when none is).
    public func keeping(_ ids: Set<String>) -> TablePlan? {
        let kept = zip(cells, statuses).filter { ids.contains($0.0.id) }
        return kept.isEmpty ? nil : TablePlan(table: table, cells: kept.map(\.0), statuses: kept.map(\.1))
    }

    /// Distinct base keys with the number of cells sharing each, in first-use order.
    public var bases: [(key: String, cells: Int)] {
        var order: [String] = []
        var counts: [String: Int] = [:]
        for cell in cells {
            let key = cell.stage(.base).key
            if counts[key] == nil { order.append(key) }
            counts[key, default: 0] += 1
        }
        return order.map { ($0, counts[$0]!) }
    }

    public var text: String {
        var counts: [CellState: Int] = [:]
        for status in statuses { counts[status.state, default: 0] += 1 }
        let summary = [CellState.done, .pending, .running, .failed, .interrupted, .stale]
            .compactMap { state in counts[state].map { "\(state.rawValue) \($0)" } }.joined(separator: ", ")
        var lines = ["\(table.name) (\(table.file)): \(cells.count) cells, \(bases.count) base\(bases.count == 1 ? "" : "s") — \(summary)"]
        for base in bases {
            let dataKey = cells.first { $0.stage(.base).key == base.key }!.stage(.data).key
            lines.append("  stages: data \(dataKey.prefix(12)) -> base \(base.key.prefix(12)) (shared by \(base.cells) cell\(base.cells == 1 ? "" : "s")) -> finetune -> evaluate")
        }
        let labelWidth = max(cells.map(\.label.count).max() ?? 0, 3)
        lines.append("  " + pad("ID", 12) + "  " + pad("ROW", labelWidth) + "  " + pad("SEED", 4) + "  " + pad("STATUS", 11) + "  REASON")
        for (cell, status) in zip(cells, statuses) {
            lines.append("  " + cell.shortID + "  " + pad(cell.label, labelWidth) + "  " + pad(String(cell.seed), 4) + "  "
                         + (status.reason.map { pad(status.state.rawValue, 11) + "  " + $0 } ?? status.state.rawValue))
        }
        return lines.joined(separator: "\n")
    }

    public var json: ConfigValue {
        .map([
            "table": .string(table.name),
            "title": .string(table.title),
            "file": .string(table.file),
            "bases": .list(bases.map { .map(["key": .string($0.key), "cells": .int($0.cells)]) }),
            "cells": .list(zip(cells, statuses).map { TablePlan.json(cell: $0, status: $1) }),
        ])
    }

    static func json(cell: PlannedCell, status: CellStatus) -> ConfigValue {
        var fields: [String: ConfigValue] = [
            "id": .string(cell.id),
            "short_id": .string(cell.shortID),
            "label": .string(cell.label),
            "seed": .int(cell.seed),
            "status": .string(status.state.rawValue),
            "stages": .map(Dictionary(uniqueKeysWithValues: cell.stages.map { ($0.kind.rawValue, ConfigValue.string($0.key)) })),
            "config": cell.config,
            "source": .string("\(cell.row.position)"),
        ]
        if let reason = status.reason { fields["reason"] = .string(reason) }
        if let run = status.runID { fields["run_id"] = .int(Int(run)) }
        if let published = cell.published { fields["published"] = json(published) }
        return .map(fields)
    }

    static func json(_ published: PublishedNumbers) -> ConfigValue {
        var fields: [String: ConfigValue] = [:]
        let numbers: [(String, Double?)] = [("params", published.params), ("memory_gb", published.memoryGB),
                                            ("opened", published.opened), ("closed", published.closed), ("global", published.global)]
        for (key, value) in numbers { if let value { fields[key] = .double(value) } }
        if let note = published.note { fields["note"] = .string(note) }
        return .map(fields)
    }

    func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }
}
