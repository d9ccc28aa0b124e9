import Foundation

/// Thread count for engine kernels and OpenBLAS: all cores, or MILE_THREADS when set.
public enum Threads {
    public private(set) static var count: Int = defaultCount()

    /// Reads MILE_THREADS (falls back to all cores, with a message, when it is not a positive integer)
    /// and applies the count to the engine and to OpenBLAS.
    public static func configure() {
        count = defaultCount()
        BLAS.setThreads(count)
    }

    /// Sets an explicit count (tests, benchmarks).
    public static func set(_ n: Int) {
        count = Swift.max(1, n)
        BLAS.setThreads(count)
    }

    static func defaultCount() -> Int {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        guard let text = ProcessInfo.processInfo.environment["MILE_THREADS"] else { return cores }
        guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n > 0 else {
            FileHandle.standardError.write(Data("MILE_THREADS='\(text)' is not a positive integer; using \(cores)\n".utf8))
            return cores
        }
        return n
    }
}

/// Splits 0..<n into at most Threads.count contiguous chunks of at least `grain` items and runs them
/// in parallel. Every item is computed by the same code whatever the split, so results do not depend
/// on the thread count.
@inline(__always)
func parallelFor(_ n: Int, grain: Int, _ body: (Range<Int>) -> Void) {
    let chunks = Swift.min(Threads.count, n / Swift.max(grain, 1))
    if chunks <= 1 { body(0..<n); return }
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        body((c * n / chunks)..<((c + 1) * n / chunks))
    }
}
