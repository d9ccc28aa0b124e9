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

    /// Returns the allocator's cache of freed blocks to the system (it does not change live or peak bytes).
    public static func releaseCachedBlocks() { BlockCache.clear() }

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

    /// Tensors may be created on other threads (data loading), so the counters and the cache are locked.
    static let lock = NSLock()

    init(count: Int, meta: Bool) {
        self.count = count
        Buffer.lock.lock()
        data = meta ? nil : BlockCache.take(count)
        Memory.didAllocate(count * MemoryLayout<Float>.size)
        Buffer.lock.unlock()
    }

    deinit {
        Buffer.lock.lock()
        if let data { BlockCache.give(data, count) }
        Memory.didFree(count * MemoryLayout<Float>.size)
        Buffer.lock.unlock()
    }
}

/// Keeps recently freed blocks (by exact size, bounded in total) for reuse: a training step allocates the
/// same shapes every iteration, and reusing blocks avoids the page faults of fresh large allocations.
/// Invisible to Memory's accounting, which counts live tensors like torch.cuda.max_memory_allocated.
enum BlockCache {
    static let limitBytes = 256 << 20
    private static var blocks: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private static var cachedBytes = 0

    static func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        if let p = blocks[count]?.popLast() {
            cachedBytes -= count * 4
            return p
        }
        return UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(count, 1))
    }

    static func give(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        guard count >= 1024, count * 4 <= limitBytes / 4 else { p.deallocate(); return }
        while cachedBytes + count * 4 > limitBytes, let (size, list) = blocks.first(where: { !$0.value.isEmpty }) {
            list.last!.deallocate()
            blocks[size]!.removeLast()
            cachedBytes -= size * 4
        }
        blocks[count, default: []].append(p)
        cachedBytes += count * 4
    }

    /// Returns every cached block to the system.
    static func clear() {
        Buffer.lock.lock()
        defer { Buffer.lock.unlock() }
        for (_, list) in blocks { for p in list { p.deallocate() } }
        blocks = [:]
        cachedBytes = 0
    }
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
