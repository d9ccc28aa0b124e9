import MileData
import Foundation

/// Version facts compiled into the harness.
public enum HarnessVersion {
    /// Bump when a change alters what a run computes (model, training, scoring). Done runs recorded under
    /// another code version show as stale in `mile plan`. Plain commits do not change it: the git commit
    /// is recorded for provenance only, so editing a README does not invalidate a table.
    public static let code = "mile-results-1"

    /// The compiler that built this binary (there may be no `swift` on the machine that runs it).
    public static var swift: String {
        #if compiler(>=6.4)
        return "6.4 or later"
        #elseif compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1)
        return "6.1"
        #else
        return "6.0"
        #endif
    }
}

/// Collects provenance: the build's git state, CPU model, peak RSS, dataset hashes.
public enum ProvenanceCollector {
    /// Builds a provenance record. BLAS facts come from the engine, so the caller passes them in. The commit is
    /// the one the binary was built from (`BuildInfo`, embedded at build time), never the one of the directory
    /// the binary runs in: that may be another checkout, another repository, or a pull not yet rebuilt.
    public static func collect(blasLibrary: String?, blasThreads: Int?, datasetHashes: [String: String]) -> Provenance {
        Provenance(gitCommit: BuildInfo.commit, gitDirty: BuildInfo.dirty, blasLibrary: blasLibrary, blasThreads: blasThreads,
                          cpuModel: cpuModel(), host: ProcessInfo.processInfo.hostName, datasetHashes: datasetHashes,
                          slurm: SlurmTask.fromEnvironment())
    }

    /// "model name" from /proc/cpuinfo (Linux); nil elsewhere.
    public static func cpuModel(cpuinfo path: String = "/proc/cpuinfo") -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }

    /// Peak resident set size of this process in bytes, from VmHWM in /proc/self/status (Linux).
    public static func peakRSSBytes(status path: String = "/proc/self/status") -> Int? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return parseKilobytes(field: "VmHWM", in: text).map { $0 * 1024 }
    }

    static func parseKilobytes(field: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if parts.count >= 2, let value = Int(parts[1]) { return value }
        }
        return nil
    }

    /// SHA-256 of each existing file, keyed by its last path component (e.g. the SLAKE json splits).
    public static func datasetHashes(files: [String]) throws -> [String: String] {
        var out: [String: String] = [:]
        for file in files where FileManager.default.fileExists(atPath: file) {
            out[(file as NSString).lastPathComponent] = try SHA256.hex(fileAt: file)
        }
        return out
    }

    /// The SLAKE files a run depends on (json splits only; hashing every image would take minutes).
    public static func slakeFiles(slakeDir: String) -> [String] {
        ["train.json", "validate.json", "test.json"].map { (slakeDir as NSString).appendingPathComponent($0) }
    }

    /// The files hashed into a run's provenance: SLAKE's json splits and, when a VQA-RAD folder is given,
    /// its one json file (instruction data and the pretraining corpus read it), so a changed VQA-RAD marks
    /// the runs that recorded its hash stale.
    public static func datasetFiles(slakeDir: String, radDir: String?) -> [String] {
        slakeFiles(slakeDir: slakeDir) + (radDir.map { [($0 as NSString).appendingPathComponent(VQARad.fileName)] } ?? [])
    }

    /// Runs a command and returns its standard output, or nil when it cannot run or fails.
    static func run(_ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(data: data, encoding: .utf8)
    }
}
