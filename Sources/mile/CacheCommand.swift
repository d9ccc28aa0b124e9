import ArgumentParser
import Foundation
import MileHarness

/// `mile cache ls|gc`: what the cache holds and which of it no recorded run refers to.
struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache", abstract: "List the cache (bases, fine-tune checkpoints, decoded images) or remove what no run refers to.",
        subcommands: [CacheList.self, CacheCollect.self])
}

struct CacheLocation: ParsableArguments {
    @Option(name: .long, help: "Cache folder (default: $MILE_CACHE or .mile).") var cache: String = Defaults.cache
    @Option(name: .long, help: "Results database whose runs refer to cache entries (default: $MILE_DB or results/mile.db).")
    var db: String = Defaults.database

    func inventory() throws -> CacheInventory {
        guard FileManager.default.fileExists(atPath: cache) else { throw HarnessError.input("no cache folder at \(cache)") }
        let store = FileManager.default.fileExists(atPath: db) ? try ResultsStore(path: db, readOnly: true) : nil
        if store == nil { print("(no database at \(db): every base and checkpoint counts as unreferenced)") }
        return try CacheInventory.read(cacheDir: cache, store: store)
    }
}

func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }

struct CacheList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the cache's entries with their size and the runs that use them.")
    @OptionGroup var location: CacheLocation

    func run() throws {
        try reportingErrors {
            let inventory = try location.inventory()
            for entry in inventory.entries { print(line(entry)) }
            let total = inventory.entries.reduce(0) { $0 + $1.bytes }
            let loose = inventory.unreferenced.reduce(0) { $0 + $1.bytes }
            print("\(inventory.entries.count) entries, \(megabytes(total)); \(inventory.unreferenced.count) unreferenced (\(megabytes(loose)); `mile cache gc` removes them)")
        }
    }
}

/// `base        43afc8ad9cd3  29.6 MB  used by table1 T T LoRA r4 seed 42 (done), ... and 2 more`.
private func line(_ entry: CacheInventory.Entry) -> String {
    func padded(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
    var users = ""
    if entry.kind != .images {
        let more = entry.usedBy.count > 3 ? " and \(entry.usedBy.count - 3) more" : ""
        users = entry.usedBy.isEmpty ? "  unreferenced" : "  used by " + entry.usedBy.prefix(3).joined(separator: ", ") + more
    }
    return "\(padded(entry.kind.rawValue, 11)) \(padded(String(entry.key.prefix(12)), 12))  \(megabytes(entry.bytes))\(users)"
}

struct CacheCollect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc", abstract: "Remove the bases and fine-tune checkpoints that no run of the database refers to.",
        discussion: "A run refers to its base and fine-tune checkpoint through its stage keys, whatever its status (a failed or interrupted run resumes from them). Decoded images are kept. Refuses without a database unless --all.")
    @OptionGroup var location: CacheLocation
    @Flag(help: "Show what would be removed.") var dryRun = false
    @Flag(help: "Without a database, remove every base and checkpoint.") var all = false

    func run() throws {
        try reportingErrors {
            if !FileManager.default.fileExists(atPath: location.db) && !all {
                throw HarnessError.input("no database at \(location.db): without its runs every entry looks unused; pass --db, or --all to empty the cache")
            }
            let inventory = try location.inventory()
            for entry in inventory.unreferenced { print("\(dryRun ? "would remove" : "removing") \(entry.kind.rawValue) \(entry.key.prefix(12)) (\(megabytes(entry.bytes)))") }
            let bytes = dryRun ? inventory.unreferenced.reduce(0) { $0 + $1.bytes } : try inventory.collect()
            print("\(dryRun ? "would free" : "freed") \(megabytes(bytes)) in \(inventory.unreferenced.count) entries")
        }
    }
}
