import CBLAS

// Matrix products through cblas_sgemm. Notation: op(A) [M, K], op(B) [K, N], C [M, N], all row-major.

/// C = alpha * op(A) op(B) + beta * C for `batch` matrices at the given element strides (0 = shared).
func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
          _ a: UnsafePointer<Float>, strideA: Int, _ b: UnsafePointer<Float>, strideB: Int,
          beta: Float, _ c: UnsafeMutablePointer<Float>, strideC: Int, batch: Int = 1) {
    let p = GemmCall(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha)
    // Many small products with separate outputs (attention's B·H heads): split the batch over threads.
    if strideC != 0, batch > 1, m * n * k <= splitGemmSize {
        parallelFor(batch, grain: 1) { r in for i in r { p.run(a + i * strideA, b + i * strideB, beta, c + i * strideC) } }
        return
    }
    for i in 0..<batch {   // a shared C accumulates over the batch
        p.runSplit(a + i * strideA, b + i * strideB, strideC == 0 && i > 0 ? 1 : beta, c + i * strideC)
    }
}

/// The two gradient products of a product op (into the gradients of nodes `a` and `b`, nil when not
/// wanted): two independent products of about equal size, so on two threads each runs whole on one core,
/// which beats splitting both (no operand packed twice). When both sides are the same node (x·xᵀ) they
/// accumulate into one buffer and must run in turn.
func gradientPair(_ a: Node?, _ b: Node?, _ first: () -> Void, _ second: () -> Void) {
    if let a, let b, a !== b { parallelPair(first, second) } else { first(); second() }
}

/// Row-major single-threaded sgemm on sub-matrices with explicit leading dimensions.
@inline(__always)
func sgemm(_ tA: Bool, _ tB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>,
           _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>,
           _ ldc: Int) {
    cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n),
                Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Products smaller than this (M·N·K) run as one call: splitting them costs more than it saves.
let splitGemmSize = 65536 * 4

/// One row-major sgemm, C [M, N] = alpha op(A) op(B) + beta C with the leading dimensions of whole
/// matrices, so that a part of C can be computed on its own.
struct GemmCall {
    let transA, transB: Bool
    let m, n, k: Int
    let alpha: Float

    var lda: Int { transA ? m : k }
    var ldb: Int { transB ? k : n }

    /// Rows r of C from rows r of op(A); columns j from columns j of op(B).
    func run(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ beta: Float, _ c: UnsafeMutablePointer<Float>,
             rows: Range<Int>? = nil, columns: Range<Int>? = nil) {
        let r = rows ?? 0..<m, j = columns ?? 0..<n
        guard !r.isEmpty, !j.isEmpty else { return }
        let ap = transA ? a + r.lowerBound : a + r.lowerBound * lda
        let bp = transB ? b + j.lowerBound * ldb : b + j.lowerBound
        sgemm(transA, transB, r.count, j.count, k, alpha, ap, lda, bp, ldb, beta, c + r.lowerBound * n + j.lowerBound, n)
    }

    /// The product split over the engine's threads: OpenBLAS runs single-threaded, each thread computes
    /// a block of rows of C. Results must not depend on the split, and OpenBLAS gives that only for some
    /// splits: a block of C's rows is a block of the kernel's N (column-major view), which reproduces the
    /// one-call values when its edges fall on the kernel's N tile (16 on SkylakeX, 24 on the Haswell/Zen
    /// kernels, so edges are multiples of 48); a block of C's columns changes the kernel's M blocking and
    /// rounds differently on Zen whatever the edge, so columns are never split.
    func runSplit(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ beta: Float, _ c: UnsafeMutablePointer<Float>) {
        let parts = Swift.min(Threads.count, m * n * k / splitGemmSize, m / Self.rowTile)
        guard parts > 1 else { run(a, b, beta, c); return }
        parallelTasks(parts) { t in
            let lo = (t * m / parts) / Self.rowTile * Self.rowTile
            let hi = t == parts - 1 ? m : ((t + 1) * m / parts) / Self.rowTile * Self.rowTile
            run(a, b, beta, c, rows: lo..<hi)
        }
    }

    /// Block edges of a split product: a multiple of every x86-64 kernel's N tile (see `runSplit`).
    static let rowTile = 48
}

public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
    matmul(a, b, transposeA: transposeA, transposeB: transposeB, alpha: 1)
}

/// alpha * op(a) op(b). a [..., M, K] ([..., K, M] if transposeA); b [K, N] shared, or [..., K, N] with
/// a's leading dims ([N, K] / [..., N, K] if transposeB) -> [..., M, N].
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) -> Tensor {
    check(a.shape.count >= 2 && b.shape.count >= 2, "matmul needs rank >= 2, got \(a.shape) x \(b.shape)")
    let lead = Array(a.shape.dropLast(2))
    let shared = b.shape.count == 2
    check(shared || Array(b.shape.dropLast(2)) == lead, "matmul batch dims differ: \(a.shape) x \(b.shape)")
    let ra = a.shape.count, rb = b.shape.count
    let m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2], k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1]
    let kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2], n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1]
    check(k == kb, "matmul inner dims differ: \(a.shape)\(transposeA ? "^T" : "") x \(b.shape)\(transposeB ? "^T" : "")")
    let batch = lead.reduce(1, *)
    let p = MatmulProblem(m: m, n: n, k: k, batch: batch, shared: shared, tA: transposeA, tB: transposeB, alpha: alpha)
    let out = output(lead + [m, n], a, b)
    if let c = out.data { p.forward(a.ptr, b.ptr, c) }
    if needsGrad(a, b) {
        let savedA = b.requiresGrad ? a : nil, savedB = a.requiresGrad ? b : nil
        out.record([a, b]) { g, ins in
            let da = ins[0]?.gradForWrite(), db = ins[1]?.gradForWrite()
            guard let gp = g.data else { return }
            let gradA = { if let da { p.backwardA(gp, savedB!.ptr, da.tensor.ptr, beta: da.fresh ? 0 : 1) } }
            let gradB = { if let db { p.backwardB(gp, savedA!.ptr, db.tensor.ptr, beta: db.fresh ? 0 : 1) } }
            gradientPair(da == nil ? nil : ins[0], db == nil ? nil : ins[1], gradA, gradB)
        }
    }
    return out
}

struct MatmulProblem {
    let m, n, k, batch: Int
    let shared, tA, tB: Bool
    let alpha: Float

    var sA: Int { m * k }
    var sB: Int { shared ? 0 : k * n }
    var sC: Int { m * n }
    /// With a shared b and an untransposed a, the batch folds into one tall GEMM.
    var folds: Bool { shared && !tA }

    // C [M, N] = alpha op(A) op(B)
    func forward(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
        if folds {
            gemm(transA: false, transB: tB, m: batch * m, n: n, k: k, alpha: alpha, a, strideA: 0, b, strideB: 0,
                 beta: 0, c, strideC: 0)
        } else {
            gemm(transA: tA, transB: tB, m: m, n: n, k: k, alpha: alpha, a, strideA: sA, b, strideB: sB,
                 beta: 0, c, strideC: sC, batch: batch)
        }
    }

    // !tA: dA [M,K] += alpha dC op(B)^T ;  tA: dA [K,M] += alpha op(B) dC^T
    func backwardA(_ g: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ da: UnsafeMutablePointer<Float>, beta: Float) {
        if folds {
            gemm(transA: false, transB: !tB, m: batch * m, n: k, k: n, alpha: alpha, g, strideA: 0, b, strideB: 0,
                 beta: beta, da, strideC: 0)
        } else if !tA {
            gemm(transA: false, transB: !tB, m: m, n: k, k: n, alpha: alpha, g, strideA: sC, b, strideB: sB,
                 beta: beta, da, strideC: sA, batch: batch)
        } else {
            gemm(transA: tB, transB: true, m: k, n: m, k: n, alpha: alpha, b, strideA: sB, g, strideB: sC,
                 beta: beta, da, strideC: sA, batch: batch)
        }
    }

    // !tB: dB [K,N] += alpha op(A)^T dC ;  tB: dB [N,K] += alpha dC^T op(A). Shared b sums over the batch.
    func backwardB(_ g: UnsafePointer<Float>, _ a: UnsafePointer<Float>, _ db: UnsafeMutablePointer<Float>, beta: Float) {
        let rows = folds ? batch * m : m, count = folds ? 1 : batch
        let sa = folds ? 0 : sA, sg = folds ? 0 : sC
        if !tB {
            gemm(transA: !tA, transB: false, m: k, n: n, k: rows, alpha: alpha, a, strideA: sa, g, strideB: sg,
                 beta: beta, db, strideC: sB, batch: count)
        } else {
            gemm(transA: true, transB: tA, m: n, n: k, k: rows, alpha: alpha, g, strideA: sg, a, strideB: sa,
                 beta: beta, db, strideC: sB, batch: count)
        }
    }
}

/// x [..., In] @ weight[Out, In]^T + bias[Out] -> [..., Out]. Saves x only if weight needs grad and weight
/// only if x needs grad, so a frozen linear on a frozen input keeps nothing.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    check(weight.shape.count == 2, "linear weight must be [Out, In], got \(weight.shape)")
    let inF = weight.shape[1], outF = weight.shape[0]
    check(x.shape.last == inF, "linear: input \(x.shape) does not end in \(inF)")
    if let bias { check(bias.shape == [outF], "linear bias must be [\(outF)], got \(bias.shape)") }
    let rows = x.count / Swift.max(inF, 1)
    let out = bias.map { output(Array(x.shape.dropLast()) + [outF], x, weight, $0) }
        ?? output(Array(x.shape.dropLast()) + [outF], x, weight)
    if let o = out.data {
        if let bias {
            let bp = bias.ptr
            parallelFor(rows, grain: Swift.max(1, 16384 / Swift.max(outF, 1))) { rs in
                for r in rs { (o + r * outF).update(from: bp, count: outF) }
            }
        }
        gemm(transA: false, transB: true, m: rows, n: outF, k: inF, alpha: 1, x.ptr, strideA: 0, weight.ptr,
             strideB: 0, beta: bias == nil ? 0 : 1, o, strideC: 0)
    }
    let inputs = [x, weight] + (bias.map { [$0] } ?? [])
    if Mode.gradEnabled && inputs.contains(where: { $0.requiresGrad }) {
        let savedX = weight.requiresGrad ? x : nil, savedW = x.requiresGrad ? weight : nil
        out.record(inputs) { g, ins in
            let dx = ins[0]?.gradForWrite(), dw = ins[1]?.gradForWrite(), db = ins.count > 2 ? ins[2]?.gradTensor() : nil
            guard let gp = g.data else { return }
            let shape = LinearShape(rows: rows, inF: inF, outF: outF)
            shape.backward(gp, x: savedX?.ptr, w: savedW?.ptr,
                           dx: dx.map { ($0.tensor.ptr, $0.fresh ? 0 : 1, ins[0]!) },
                           dw: dw.map { ($0.tensor.ptr, $0.fresh ? 0 : 1, ins[1]!) })
            if let db { addColumnSums(gp, rows: rows, columns: outF, into: db.ptr) }
        }
    }
    return out
}

/// The products of a linear layer's backward from dy [rows, Out] (shared by `linear` and `geluLinear`).
struct LinearShape {
    let rows, inF, outF: Int

    /// dx [rows, In] = dy W + beta dx, and dW [Out, In] = dyᵀ x + beta dW (x: the layer's input), at the same
    /// time on two threads; the nodes tell `gradientPair` whether the two targets are distinct.
    func backward(_ gp: UnsafePointer<Float>, x: UnsafePointer<Float>?, w: UnsafePointer<Float>?,
                  dx: (UnsafeMutablePointer<Float>, beta: Float, node: Node)?,
                  dw: (UnsafeMutablePointer<Float>, beta: Float, node: Node)?) {
        let inputGrad = {
            guard let (d, beta, _) = dx, let w else { return }
            gemm(transA: false, transB: false, m: rows, n: inF, k: outF, alpha: 1, gp, strideA: 0, w,
                 strideB: 0, beta: beta, d, strideC: 0)
        }
        let weightGrad = {
            guard let (d, beta, _) = dw, let x else { return }
            gemm(transA: true, transB: false, m: outF, n: inF, k: rows, alpha: 1, gp, strideA: 0, x,
                 strideB: 0, beta: beta, d, strideC: 0)
        }
        gradientPair(dx?.node, dw?.node, inputGrad, weightGrad)
    }
}

/// d[j] += sum over rows of m[r, j] for m [rows, columns], rows added in order. Columns are split over
/// threads, so every d[j] sees the same sequence of additions whatever the split.
func addColumnSums(_ m: UnsafeMutablePointer<Float>, rows: Int, columns: Int, into d: UnsafeMutablePointer<Float>) {
    parallelFor(columns, grain: Swift.max(16, columns * 8192 / Swift.max(rows * columns, 1))) { cs in
        for r in 0..<rows { let mr = m + r * columns; for j in cs { d[j] += mr[j] } }
    }
}
