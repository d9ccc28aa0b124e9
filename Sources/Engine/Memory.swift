import CHeap
import Foundation

// One allocator for every tensor buffer (parameters, activations, gradients, optimizer state and op
// scratch). It counts live bytes and a resettable peak, the equivalent of torch.cuda.max_memory_allocated.
// In shape-only (meta) mode buffers have no storage but are counted exactly the same way.

public enum Memory {
    public private(set) static var liveBytes = 0
    public private(set) static var peakBytes = 0

    /// Sets the peak to the current live bytes (torch.cuda.reset_peak_memory_stats).
    public static func resetPeak() {
        Buffer.lock.lock()
        peakBytes = liveBytes
        Buffer.lock.unlock()
    }

    static func didAllocate(_ bytes: Int) {
        liveBytes += bytes
        if liveBytes > peakBytes { peakBytes = liveBytes }
    }

    static func didFree(_ bytes: Int) { liveBytes -= bytes }
}

/// Storage of a tensor: `count` floats, or nothing (data == nil) for a meta tensor.
/// Freed (and uncounted) when the last tensor or saved reference to it goes away.
final class Buffer {
    let count: Int
    let data: UnsafeMutablePointer<Float>?

    /// Tensors may be created on other threads (data loading), so the counters are locked.
    static let lock = NSLock()

    init(count: Int, meta: Bool) {
        self.count = count
        if !meta { _ = Buffer.heapConfigured }
        data = meta ? nil : UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(count, 1))
        Buffer.lock.lock()
        Memory.didAllocate(count * MemoryLayout<Float>.size)
        Buffer.lock.unlock()
    }

    deinit {
        data?.deallocate()
        Buffer.lock.lock()
        Memory.didFree(count * MemoryLayout<Float>.size)
        Buffer.lock.unlock()
    }

    /// malloc serves every buffer from its heap and keeps freed memory there (`Sources/CHeap`). By default
    /// glibc maps large blocks (from 128 KB, a threshold that adapts as blocks are freed, up to 32 MB) and
    /// unmaps them on free, so a training step paid page faults and page zeroing for the same shapes every
    /// iteration (at paper scale 270 K faults per step, with a fixed 32 MB threshold still). A size-keyed
    /// block cache of our own avoided those faults but held blocks of sizes not wanted at the step's peak
    /// (full fine-tuning benchmark: peak RSS 467 MB with that cache, 414 MB with the heap, for a tensor
    /// peak of 386 MB). malloc's best fit with coalescing reuses freed memory across sizes; the heap is
    /// never trimmed, so its pages stay mapped.
    private static let heapConfigured = mile_heap_configure() == 1
}

/// Global execution modes (graph building is single-threaded; kernels may use threads internally).
enum Mode {
    static var gradEnabled = true
    static var shapeOnly = false
}

/// Runs `body` without recording any graph: op results never require grad (inference).
public func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
    let saved = Mode.gradEnabled
    Mode.gradEnabled = false
    defer { Mode.gradEnabled = saved }
    return try body()
}

/// Runs `body` in shape-only (meta) mode: every tensor created inside has a shape and is counted by
/// `Memory`, but has no storage and no op does arithmetic. The peak equals the real run's peak.
public func withShapeOnly<R>(_ body: () throws -> R) rethrows -> R {
    let saved = Mode.shapeOnly
    Mode.shapeOnly = true
    defer { Mode.shapeOnly = saved }
    return try body()
}

/// True while inside `withShapeOnly`.
public var isShapeOnly: Bool { Mode.shapeOnly }
