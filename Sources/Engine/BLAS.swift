import CBLAS
import Foundation

/// Thin entry points to OpenBLAS, so the rest of the engine never imports CBLAS directly.
public enum BLAS {
    /// Name and build options of the linked BLAS library (recorded with every result).
    public static var configuration: String {
        guard let cstr = openblas_get_config() else { return "unknown" }
        return String(cString: cstr)
    }

    public static var threads: Int { Int(openblas_get_num_threads()) }

    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

    /// Kernel family a DYNAMIC_ARCH OpenBLAS picked at load time (e.g. "Haswell", "SkylakeX", "Prescott").
    public static var coreName: String {
        let words = configuration.split(separator: " ")
        guard let i = words.firstIndex(where: { $0.hasPrefix("MAX_THREADS") }), i > 0 else { return "unknown" }
        return String(words[i - 1])
    }

    /// Best OpenBLAS core type for this CPU from /proc/cpuinfo flags (Linux x86-64), nil when unknown.
    public static func recommendedCoreType() -> String? {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(line.split(separator: " ").map(String.init))
        if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512dq", "avx512vl"]) { return "SkylakeX" }
        if flags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    /// Generic kernels OpenBLAS falls back to when it does not recognise the CPU model (common in VMs,
    /// where it picks "Prescott" (SSE3) on an AVX-512 machine and runs GEMMs several times slower).
    static let fallbackCores: Set<String> = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai"]

    /// For executables, first thing in main: when OpenBLAS picked a fallback kernel although the CPU has
    /// AVX2/AVX-512 and OPENBLAS_CORETYPE is unset, re-executes the process with OPENBLAS_CORETYPE set
    /// (the variable is read when the library loads, so it cannot be changed in-process). Returns normally
    /// when nothing needs doing or when the re-exec fails.
    public static func reexecWithFasterKernelsIfNeeded() {
        guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil,
              fallbackCores.contains(coreName), let core = recommendedCoreType() else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        unsetenv("OPENBLAS_CORETYPE")   // exec failed: carry on with the fallback kernels
    }
}
