import Foundation
import XCTest
@testable import Engine

final class WorkerPoolTests: XCTestCase {
    override func tearDown() { Threads.configure() }

    /// Every task runs exactly once, also when a task starts tasks of its own (those run on its thread).
    func testEveryTaskRunsOnceAndNestedCallsComplete() {
        Threads.set(4)
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: 4 * 8)
        defer { counts.deallocate() }
        counts.initialize(repeating: 0, count: 32)
        for _ in 0..<200 {
            parallelTasks(4) { outer in
                parallelTasks(8) { inner in counts[outer * 8 + inner] += 1 }
            }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: counts, count: 32)), Array(repeating: 200, count: 32))
    }

    /// Two threads using the pool at once: one gets the workers, the other runs its tasks itself.
    func testConcurrentCallersBothFinish() {
        Threads.set(2)
        let sums = UnsafeMutablePointer<Int>.allocate(capacity: 2 * 4)
        defer { sums.deallocate() }
        sums.initialize(repeating: 0, count: 8)
        DispatchQueue.concurrentPerform(iterations: 2) { caller in
            for _ in 0..<500 { parallelTasks(4) { t in sums[caller * 4 + t] += 1 } }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: sums, count: 8)), Array(repeating: 500, count: 8))
    }

    /// A worker that slept (idle longer than its spin time) wakes up for the next job.
    func testWorkersWakeAfterSleeping() {
        Threads.set(2)
        var seen = [0, 0]
        parallelTasks(2) { seen[$0] += 1 }
        Thread.sleep(forTimeInterval: 0.02)
        parallelTasks(2) { seen[$0] += 1 }
        XCTAssertEqual(seen, [2, 2])
    }

    /// Products large enough to be split over threads (rows, or columns when C is wide), forward and
    /// backward, through linear and matmul, and x·xᵀ (both gradient products into one buffer, which must
    /// not run at the same time): bit-identical with 1, 2 and 3 threads.
    func testSplitProductsDoNotDependOnThreadCount() {
        func run(threads: Int) -> [[Float]] {
            Threads.set(threads)
            var rng = RNG(seed: 23)
            let x = rand([300, 96], &rng), w = rand([160, 96], &rng), b = rand([160], &rng)
            let wide = rand([40, 96], &rng), v = rand([3, 50, 40], &rng)
            for t in [x, w, b, wide, v] { t.isTrainable = true }
            let h = linear(x, weight: w, bias: b)                                   // [300, 160]
            let tall = matmul(h, x, transposeA: true)                              // [160, 96], K = 300
            let flat = matmul(wide, matmul(x, wide, transposeB: true), transposeA: true, transposeB: true) // [96, 300]
            let batched = matmul(v, matmul(wide, x, transposeB: true))             // [3, 50, 300], shared b
            let gram = matmul(x, x, transposeB: true)                              // x on both sides: one gradient
            let loss = sum(h * h) + sum(tall * tall) + sum(flat * flat) + sum(batched * batched) + sum(gram * gram)
            loss.backward()
            return [h.scalars, tall.scalars, flat.scalars, batched.scalars, gram.scalars, x.grad!.scalars,
                    w.grad!.scalars, b.grad!.scalars, wide.grad!.scalars, v.grad!.scalars]
        }
        let one = run(threads: 1)
        for threads in [2, 2, 2, 2, 3] {   // repeated: a race between the two gradient products shows up by chance
            for (i, (a, b)) in zip(one, run(threads: threads)).enumerated() {
                XCTAssertTrue(a == b, "tensor \(i) differs between 1 and \(threads) threads")
            }
        }
    }
}
