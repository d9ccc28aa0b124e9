import CBLAS

/// Thin entry points to OpenBLAS, so the rest of the engine never imports CBLAS directly.
public enum BLAS {
    /// Name and build options of the linked BLAS library (recorded with every result).
    public static var configuration: String {
        guard let cstr = openblas_get_config() else { return "unknown" }
        return String(cString: cstr)
    }

    public static var threads: Int { Int(openblas_get_num_threads()) }

    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}
