// `make bench-engine`: the engine's matmul op against raw cblas_sgemm at transformer shapes, and the time
// and peak memory of a transformer-block training step. Not a test: prints figures.
import CBLAS
import Engine
import Foundation

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

/// CPU time of the calling thread: unaffected by other processes competing for the cores.
func threadCPUTime() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Best time of `reps` runs of body.
func best(_ reps: Int, clock: () -> Double = now, _ body: () -> Void) -> Double {
    var t = Double.infinity
    for _ in 0..<reps { let s = clock(); body(); t = min(t, clock() - s) }
    return t
}

func randomTensor(_ shape: [Int], _ rng: inout RNG) -> Tensor { Tensor.uniform(shape, low: -1, high: 1, rng: &rng) }

/// Best times of raw and engine, interleaved so that machine load affects both alike.
func bestPair(_ reps: Int, clock: () -> Double, _ raw: () -> Void, _ engine: () -> Void) -> (Double, Double) {
    raw(); engine()
    var tr = Double.infinity, te = Double.infinity
    for _ in 0..<reps {
        tr = min(tr, best(1, clock: clock, raw))
        te = min(te, best(1, clock: clock, engine))
    }
    return (tr, te)
}

/// Raw sgemm vs engine matmul for one shape and transpose mode: wall times with all threads (OpenBLAS's
/// threading against the engine's split products), and
/// single-thread CPU times (less disturbed by other processes on the machine).
func compare(m: Int, k: Int, n: Int, mode: String, rng: inout RNG) -> (raw: Double, engine: Double, cpuRatio: Double) {
    let tA = mode == "TN", tB = mode == "NT"
    let a = randomTensor(tA ? [k, m] : [m, k], &rng), b = randomTensor(tB ? [n, k] : [k, n], &rng)
    let av = a.scalars, bv = b.scalars
    var c = [Float](repeating: 0, count: m * n)
    let flops = 2.0 * Double(m * n * k)
    let reps = max(10, min(60, Int(2e10 / flops)))
    let ta = tA ? CblasTrans : CblasNoTrans, tb = tB ? CblasTrans : CblasNoTrans
    // Raw: one cblas_sgemm with OpenBLAS's own threading at the engine's thread count (the engine keeps
    // OpenBLAS single-threaded and splits products over its own pool instead).
    let raw = {
        BLAS.setThreads(Threads.count)
        cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k), 1, av, Int32(tA ? m : k), bv,
                    Int32(tB ? k : n), 0, &c, Int32(n))
        BLAS.setThreads(1)
    }
    let engine = { _ = withNoGrad { matmul(a, b, transposeA: tA, transposeB: tB) } }
    let (tr, te) = bestPair(reps, clock: now, raw, engine)
    Threads.set(1)
    let (cr, ce) = bestPair(max(3, reps / 3), clock: threadCPUTime, raw, engine)
    Threads.configure()
    return (tr, te, cr / ce)
}

/// Pre-LN transformer block with a vocabulary head, as the engine tests use.
final class Block: Module {
    let d: Int, heads: Int
    let ln1: LayerNorm, qkv: Linear, proj: Linear, ln2: LayerNorm, fc1: Linear, fc2: Linear

    init(_ d: Int, heads: Int, rng: inout RNG) {
        self.d = d; self.heads = heads
        ln1 = LayerNorm(d, eps: 1e-6); qkv = Linear(d, 3 * d, rng: &rng); proj = Linear(d, d, rng: &rng)
        ln2 = LayerNorm(d, eps: 1e-6); fc1 = Linear(d, 4 * d, rng: &rng); fc2 = Linear(4 * d, d, rng: &rng)
        super.init()
        register("norm1", ln1); register("qkv", qkv); register("proj", proj)
        register("norm2", ln2); register("fc1", fc1); register("fc2", fc2)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = qkv(ln1(x))
        let q = splitHeads(slice(h, axis: 2, range: 0..<d), heads: heads)
        let k = splitHeads(slice(h, axis: 2, range: d..<(2 * d)), heads: heads)
        let v = splitHeads(slice(h, axis: 2, range: (2 * d)..<(3 * d)), heads: heads)
        let x1 = x + proj(mergeHeads(attention(q: q, k: k, v: v, mask: nil)))
        return x1 + fc2(gelu(fc1(ln2(x1))))
    }
}

/// Runs `steps` training steps of one block (B x T tokens of width d) on a regression loss; returns
/// seconds per step (after one warm-up step) and the peak bytes above the starting live bytes.
func blockSteps(d: Int, heads: Int, batch: Int, tokens: Int, steps: Int) -> (seconds: Double, peak: Int) {
    let base = Memory.liveBytes
    Memory.resetPeak()
    var rng = RNG(seed: 1)
    let block = Block(d, heads: heads, rng: &rng)
    let opt = AdamW(parameters: block.namedParameters(), lr: 1e-4)
    let x = randomTensor([batch, tokens, d], &rng)
    func step() {
        let y = block(x)
        let loss = mean(y * y.detached())   // gradient reaches every weight; cheap to form
        loss.backward(); opt.step(); opt.zeroGrad()
    }
    step()
    let t = best(steps, step)
    return (t, Memory.peakBytes - base)
}

BLAS.reexecWithFasterKernelsIfNeeded()
Threads.configure()
print("BLAS: \(BLAS.configuration)")
print("threads: \(Threads.count)")
// Arguments: none = everything; "matmul" or "block" = one part only.
let part = CommandLine.arguments.dropFirst().first ?? "all"
if part == "all" || part == "matmul" { benchMatmul() }
if part == "all" || part == "block" { benchBlock() }
if part == "attention" { benchAttention() }
if part == "conv" { benchConv() }
if part == "vit" {   // one ViT-B block at 224 px (197 tokens), batch 4: profiling aid
    let (seconds, peak) = blockSteps(d: 768, heads: 12, batch: 4, tokens: 197, steps: 3)
    print(String(format: "ViT-B block step (768, 12 heads, 197 tokens, batch 4): %.1f ms, peak %d bytes", seconds * 1e3, peak))
}

func benchMatmul() {
print("\nmatmul op vs raw cblas_sgemm (ratio = raw time / engine time; 1.00 = no overhead)")
print("wall: best wall time with all threads (raw: OpenBLAS's threads; engine: its pool, one single-threaded sgemm per block)")
print("cpu1: best thread CPU time with 1 thread (less disturbed by machine load)")
print("     M     K     N  mode    raw ms  engine ms  GFLOP/s  wall ratio  cpu1 ratio")
var rng = RNG(seed: 7)
var wall: [Double] = [], cpu: [Double] = []
for m in [1024, 2048, 4096, 8192] {
    for (k, n) in [(192, 192), (192, 768), (768, 192), (768, 768)] {
        for mode in ["NN", "NT", "TN"] {
            let (raw, engine, cpuRatio) = compare(m: m, k: k, n: n, mode: mode, rng: &rng)
            wall.append(raw / engine); cpu.append(cpuRatio)
            print(String(format: "%6d %5d %5d  %@  %8.3f  %9.3f  %7.1f  %10.3f  %10.3f", m, k, n, mode, raw * 1e3,
                         engine * 1e3, 2.0 * Double(m * n * k) / raw * 1e-9, raw / engine, cpuRatio))
        }
    }
}
// The engine's fixed cost per call, measured where the product itself is negligible.
let one = Tensor.ones([1, 1])
var oneC: [Float] = [0]
let oneRaw = best(20000) { cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1, [1], 1, [1], 1, 0, &oneC, 1) }
let oneEngine = best(20000) { _ = withNoGrad { matmul(one, one) } }
print(String(format: "1x1x1 product: raw %.2f us, engine op %.2f us (the op's fixed overhead is the difference)",
             oneRaw * 1e6, oneEngine * 1e6))
for (name, r) in [("wall", wall.sorted()), ("cpu1", cpu.sorted())] {
    print(String(format: "%@ ratio: min %.3f  median %.3f  max %.3f over %d shapes", name, r.first!, r[r.count / 2],
                 r.last!, r.count))
}
}

func benchBlock() {
let (d, heads, batch, tokens) = (192, 3, 32, 64)
let (seconds, peak) = blockSteps(d: d, heads: heads, batch: batch, tokens: tokens, steps: 10)
let predicted = withShapeOnly { blockSteps(d: d, heads: heads, batch: batch, tokens: tokens, steps: 1).peak }
print(String(format: "\ntransformer block training step (width %d, %d heads, %d tokens, batch %d, AdamW): %.1f ms",
             d, heads, tokens, batch, seconds * 1e3))
print("peak bytes: measured \(peak), shape-only prediction \(predicted)")
}

/// Attention forward + backward at the block's shapes (used to tune the batched small GEMMs).
func benchAttention() {
    var rng = RNG(seed: 3)
    let q = randomTensor([32, 3, 64, 64], &rng), k = randomTensor([32, 3, 64, 64], &rng), v = randomTensor([32, 3, 64, 64], &rng)
    for t in [q, k, v] { t.isTrainable = true }
    let t = best(20) {
        sum(attention(q: q, k: k, v: v, mask: nil)).backward()
        for x in [q, k, v] { x.grad = nil }
    }
    print(String(format: "attention [32, 3, 64, 64] forward+backward: %.2f ms", t * 1e3))
}

/// conv2d on ResNet-50 shapes (BiomedGPT-Tiny's trunk, 256 px images, stages 1-3), batch 2: best forward
/// and forward + backward (dx and dW) times. `bench/torch_peer.py conv` times torch's conv2d on the same list.
func benchConv() {
    var rng = RNG(seed: 5)
    print("\nconv2d, batch 2: [C, H, W] -> O, kernel/stride/padding; ms best of 5; GFLOP/s of forward+backward (3 products)")
    print("shape                              fwd ms  fwd+bwd ms  GFLOP/s")
    for s in resNetConvShapes() {
        let x = randomTensor([2, s.c, s.h, s.h], &rng), w = randomTensor([s.o, s.c, s.k, s.k], &rng)
        x.isTrainable = true; w.isTrainable = true
        let fwd = best(5) { _ = withNoGrad { conv2d(x, weight: w, stride: s.stride, padding: s.padding) } }
        let both = best(5) {
            sum(conv2d(x, weight: w, stride: s.stride, padding: s.padding)).backward()
            x.grad = nil; w.grad = nil
        }
        let oh = (s.h + 2 * s.padding - s.k) / s.stride + 1
        let flops = 3 * 2.0 * Double(2 * s.o * oh * oh * s.c * s.k * s.k)
        print(String(format: "%@ %6.2f  %10.2f  %7.1f", s.name.padding(toLength: 34, withPad: " ", startingAt: 0), fwd * 1e3, both * 1e3, flops / both * 1e-9))
    }
}

/// (name, input channels, input size, output channels, kernel, stride, padding) of ResNet-50 convs at 256 px.
/// A function, not a global: top-level globals of main.swift are set in order, after the calls above.
func resNetConvShapes() -> [(name: String, c: Int, h: Int, o: Int, k: Int, stride: Int, padding: Int)] { [
    ("stem [3,256,256] -> 64 7/2/3", 3, 256, 64, 7, 2, 3),
    ("s1 [64,64,64] -> 64 1/1/0", 64, 64, 64, 1, 1, 0),
    ("s1 [64,64,64] -> 64 3/1/1", 64, 64, 64, 3, 1, 1),
    ("s1 [64,64,64] -> 256 1/1/0", 64, 64, 256, 1, 1, 0),
    ("s2 [256,64,64] -> 128 1/1/0", 256, 64, 128, 1, 1, 0),
    ("s2 [128,64,64] -> 128 3/2/1", 128, 64, 128, 3, 2, 1),
    ("s2 [128,32,32] -> 128 3/1/1", 128, 32, 128, 3, 1, 1),
    ("s2 [128,32,32] -> 512 1/1/0", 128, 32, 512, 1, 1, 0),
    ("s3 [256,32,32] -> 256 3/2/1", 256, 32, 256, 3, 2, 1),
    ("s3 [256,16,16] -> 256 3/1/1", 256, 16, 256, 3, 1, 1),
    ("s3 [1024,16,16] -> 256 1/1/0", 1024, 16, 256, 1, 1, 0),
    ("s3 [256,16,16] -> 1024 1/1/0", 256, 16, 1024, 1, 1, 0),
] }
