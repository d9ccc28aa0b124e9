import Foundation
import GRDB

/// What a cache folder holds (`mile cache ls`) and which of it no run of a database refers to
/// (`mile cache gc`): bases (`bases/<key>.*`), fine-tune checkpoints (`cells/<finetune key>/`), decoded
/// images (`image-cache/`).
public struct CacheInventory: Sendable {
    public enum Kind: String, Sendable { case base, checkpoint, images = "image cache" }

    public struct Entry: Sendable, Equatable {
        public let kind: Kind
        /// The base or fine-tune key ("" for the image cache).
        public let key: String
        /// Every file of the entry (a base's weights, vocabulary and lock; a checkpoint's folder).
        public let paths: [String]
        public let bytes: Int
        /// The runs that refer to it: "table row seed N (status)".
        public var usedBy: [String]
    }

    public let entries: [Entry]

    /// Lists `cacheDir`, each entry with the runs of `store` whose stage keys name it.
    public static func read(cacheDir: String, store: ResultsStore?) throws -> CacheInventory {
        let users = try store.map(runsByKey) ?? [:]
        var entries = baseEntries(cacheDir) + checkpointEntries(cacheDir)
        for index in entries.indices { entries[index].usedBy += users[entries[index].key] ?? [] }
        let images = (cacheDir as NSString).appendingPathComponent("image-cache")
        if FileManager.default.fileExists(atPath: images) {
            entries.append(Entry(kind: .images, key: "", paths: [images], bytes: size(images), usedBy: []))
        }
        return CacheInventory(entries: entries)
    }

    /// Bases and checkpoints no run refers to (the image cache is rebuilt on demand and never collected).
    public var unreferenced: [Entry] { entries.filter { $0.kind != .images && $0.usedBy.isEmpty } }

    /// Removes the unreferenced entries; returns the bytes freed.
    public func collect() throws -> Int {
        for entry in unreferenced { for path in entry.paths { try FileManager.default.removeItem(atPath: path) } }
        return unreferenced.reduce(0) { $0 + $1.bytes }
    }

    /// Stage key -> the runs planned with it (recorded keys, or keys derived from the stored config for runs
    /// from before they were recorded).
    static func runsByKey(_ store: ResultsStore) throws -> [String: [String]] {
        var users: [String: [String]] = [:]
        for run in try store.allRuns() {
            var keys = run.stageKeys
            if keys.isEmpty, let config = try? ConfigValue.fromJSON(run.configJSON) {
                keys = Dictionary(uniqueKeysWithValues: Planner.stages(config, cellID: run.cellID).map { ($0.kind.rawValue, $0.key) })
            }
            let name = "\(run.table) \(run.label) seed \(run.seed) (\(run.status.rawValue))"
            for kind in ["base", "finetune"] { if let key = keys[kind] { users[key, default: []].append(name) } }
        }
        return users
    }

    static func baseEntries(_ cacheDir: String) -> [Entry] {
        let folder = (cacheDir as NSString).appendingPathComponent("bases")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
        let keys = Set(names.map { String($0.prefix { $0 != "." }) })
        return keys.sorted().map { key in
            let paths = names.filter { $0.hasPrefix(key + ".") }.map { (folder as NSString).appendingPathComponent($0) }
            // A base being pretrained has no run yet (cells are claimed after it); its lock says it is in use.
            let lock = (folder as NSString).appendingPathComponent(key + ".lock")
            let busy = isLocked(lock) ? ["a process pretraining it (its lock is held)"] : []
            return Entry(kind: .base, key: key, paths: paths, bytes: paths.reduce(0) { $0 + size($1) }, usedBy: busy)
        }
    }

    static func checkpointEntries(_ cacheDir: String) -> [Entry] {
        let folder = (cacheDir as NSString).appendingPathComponent("cells")
        let keys = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
        return keys.map { key in
            let path = (folder as NSString).appendingPathComponent(key)
            return Entry(kind: .checkpoint, key: key, paths: [path], bytes: size(path), usedBy: [])
        }
    }

    /// Whether another process holds the lock file (a base stage holds it while it pretrains).
    static func isLocked(_ path: String) -> Bool {
        let fd = open(path, O_RDWR)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) != 0
    }

    /// Bytes of a file, or of every file under a folder.
    static func size(_ path: String) -> Int {
        let manager = FileManager.default
        var isFolder: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isFolder) else { return 0 }
        guard isFolder.boolValue else { return ((try? manager.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0 }
        let files = manager.enumerator(atPath: path)?.compactMap { $0 as? String } ?? []
        return files.reduce(0) { total, name in
            total + (((try? manager.attributesOfItem(atPath: (path as NSString).appendingPathComponent(name)))?[.size] as? Int) ?? 0)
        }
    }
}

extension ResultsStore {
    /// Every run of the database, in id order.
    public func allRuns() throws -> [RunRecord] {
        try read { db in try Row.fetchAll(db, sql: "SELECT * FROM runs ORDER BY id").map(ResultsStore.record) }
    }
}
