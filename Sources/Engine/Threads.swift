import CWorkerPool
import Foundation

/// Thread count for engine kernels: all cores, or MILE_THREADS when set. OpenBLAS itself always runs
/// single-threaded; the engine splits products over its own worker pool (see `gemm`), so that one set of
/// threads owns the cores instead of two pools spinning against each other.
public enum Threads {
    public private(set) static var count: Int = defaultCount()

    /// Reads MILE_THREADS (falls back to all cores, with a message, when it is not a positive integer).
    public static func configure() {
        count = defaultCount()
        BLAS.setThreads(1)
    }

    /// Sets an explicit count (tests, benchmarks).
    public static func set(_ n: Int) {
        count = Swift.max(1, Swift.min(n, Int(mile_pool_max_tasks())))
        BLAS.setThreads(1)
    }

    static func defaultCount() -> Int {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        guard let text = ProcessInfo.processInfo.environment["MILE_THREADS"] else { return cores }
        guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n > 0 else {
            FileHandle.standardError.write(Data("MILE_THREADS='\(text)' is not a positive integer; using \(cores)\n".utf8))
            return cores
        }
        return Swift.min(n, Int(mile_pool_max_tasks()))
    }
}

/// Runs body(0) ... body(tasks - 1) in parallel on the engine's worker pool (body(0) on the calling
/// thread). A call made from inside a task runs its tasks one after another on that thread.
public func parallelTasks(_ tasks: Int, _ body: (Int) -> Void) {
    if tasks <= 1 { if tasks == 1 { body(0) }; return }
    withoutActuallyEscaping(body) { body in
        var job = body
        withUnsafeMutablePointer(to: &job) { ctx in
            mile_pool_run(Int32(tasks), { ctx, task in
                ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(task))
            }, ctx)
        }
    }
}

/// Runs `first` and `second` at the same time when the engine has exactly two threads (each then runs
/// single-threaded inside), else one after the other with all threads each.
func parallelPair(_ first: () -> Void, _ second: () -> Void) {
    guard Threads.count == 2 else { first(); second(); return }
    parallelTasks(2) { $0 == 0 ? first() : second() }
}

/// Splits 0..<n into at most Threads.count contiguous chunks of at least `grain` items and runs them
/// in parallel. Every item is computed by the same code whatever the split, so results do not depend
/// on the thread count.
@inline(__always)
func parallelFor(_ n: Int, grain: Int, _ body: (Range<Int>) -> Void) {
    let chunks = Swift.min(Threads.count, n / Swift.max(grain, 1))
    if chunks <= 1 { body(0..<n); return }
    parallelTasks(chunks) { c in body((c * n / chunks)..<((c + 1) * n / chunks)) }
}
