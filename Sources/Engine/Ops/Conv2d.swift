/// 2-D convolution (NCHW, no groups) as im2col + sgemm, one image at a time.
/// x [N, C, H, W], weight [O, C, KH, KW], bias [O] -> [N, O, OH, OW] with
/// OH = (H + 2 padding - KH) / stride + 1 (likewise OW). Saves x (for dW) and the weight (for dx);
/// the column matrix of an image is rebuilt in backward instead of kept (C·KH·KW·OH·OW floats per image).
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0) -> Tensor {
    let g = ConvGeometry(x.shape, weight.shape, stride: stride, padding: padding)
    if let bias { check(bias.shape == [g.o], "conv2d: bias \(bias.shape) for \(g.o) output channels") }
    let inputs = [x, weight] + (bias.map { [$0] } ?? [])
    let out = Tensor(empty: [g.n, g.o, g.oh, g.ow], meta: inputs.contains { $0.isMeta })
    // Scratch [C·KH·KW, OH·OW]; a 1x1 stride-1 unpadded conv (ResNet's projections) reads the image itself.
    let cols = g.pointwise ? nil : Tensor(empty: [g.k, g.p], meta: out.isMeta)
    if let o = out.data {
        for i in 0..<g.n {
            let ci = g.columns(x.ptr + i * g.inPlane, cols)
            // out_i [O, P] = W [O, K] · cols [K, P]
            gemm(transA: false, transB: false, m: g.o, n: g.p, k: g.k, alpha: 1, weight.ptr, strideA: 0,
                 ci, strideB: 0, beta: 0, o + i * g.outPlane, strideC: 0)
            if let bias { addChannelBias(bias.ptr, o + i * g.outPlane, channels: g.o, plane: g.p) }
        }
    }
    guard needsGrad(x, weight) || bias?.requiresGrad == true else { return out }
    let savedX = weight.requiresGrad ? x : nil, savedW = x.requiresGrad ? weight : nil
    out.record(inputs) { gr, ins in
        let dx = ins[0]?.gradTensor(), dw = ins[1]?.gradTensor()
        let db = ins.count > 2 ? ins[2]?.gradTensor() : nil
        // Allocated in meta mode too (same bytes as a real run).
        let scratch = g.pointwise ? nil : Tensor(empty: [g.k, g.p], meta: gr.isMeta)
        guard let gp = gr.data else { return }
        for i in 0..<g.n {
            let gi = gp + i * g.outPlane
            if let dw, let savedX {   // dW [O, K] += g_i [O, P] · cols_iᵀ [P, K]
                let ci = g.columns(savedX.ptr + i * g.inPlane, scratch)
                gemm(transA: false, transB: true, m: g.o, n: g.k, k: g.p, alpha: 1, gi, strideA: 0,
                     ci, strideB: 0, beta: 1, dw.ptr, strideC: 0)
            }
            if let dx, let savedW {   // dcols [K, P] = Wᵀ [K, O] · g_i [O, P], scattered back into dx_i
                let di = dx.ptr + i * g.inPlane
                gemm(transA: true, transB: false, m: g.k, n: g.p, k: g.o, alpha: 1, savedW.ptr, strideA: 0,
                     gi, strideB: 0, beta: g.pointwise ? 1 : 0, scratch?.ptr ?? di, strideC: 0)
                if let scratch { g.col2imAdd(scratch.ptr, di) }
            }
            if let db { addPlaneSums(gi, channels: g.o, plane: g.p, into: db.ptr) }
        }
    }
    return out
}

/// Sizes of one convolution. k = C·KH·KW (rows of the column matrix), p = OH·OW (its columns).
struct ConvGeometry {
    let n: Int, c: Int, h: Int, w: Int, o: Int, kh: Int, kw: Int, stride: Int, padding: Int, oh: Int, ow: Int
    var k: Int { c * kh * kw }
    var p: Int { oh * ow }
    var inPlane: Int { c * h * w }
    var outPlane: Int { o * oh * ow }
    /// 1x1, stride 1, no padding: the column matrix is the image [C, H·W] itself.
    var pointwise: Bool { kh == 1 && kw == 1 && stride == 1 && padding == 0 }

    /// The column matrix of one image: the image itself when pointwise, else im2col into `scratch`.
    func columns(_ img: UnsafeMutablePointer<Float>, _ scratch: Tensor?) -> UnsafeMutablePointer<Float> {
        guard let scratch else { return img }
        im2col(img, scratch.ptr)
        return scratch.ptr
    }

    init(_ xs: [Int], _ ws: [Int], stride: Int, padding: Int) {
        check(xs.count == 4 && ws.count == 4 && ws[1] == xs[1],
              "conv2d: x \(xs) (N, C, H, W) and weight \(ws) (O, C, KH, KW) do not match")
        check(stride >= 1 && padding >= 0, "conv2d: stride \(stride), padding \(padding)")
        (n, c, h, w, o, kh, kw) = (xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3])
        (self.stride, self.padding) = (stride, padding)
        oh = (h + 2 * padding - kh) / stride + 1
        ow = (w + 2 * padding - kw) / stride + 1
        check(oh >= 1 && ow >= 1, "conv2d: kernel \(kh)x\(kw) larger than padded input \(h)x\(w)")
    }

    /// cols [(c, i, j), (y, x)] = image [c, y·stride − padding + i, x·stride − padding + j], 0 outside.
    /// Rows are split over threads (each row is written whole by one thread).
    func im2col(_ img: UnsafePointer<Float>, _ cols: UnsafeMutablePointer<Float>) {
        parallelFor(k, grain: Swift.max(1, 8192 / Swift.max(p, 1))) { rows in
            for r in rows {
                let (ch, i, j) = (r / (kh * kw), (r / kw) % kh, r % kw)
                let src = img + ch * h * w, dst = cols + r * p
                for y in 0..<oh {
                    let iy = y * stride - padding + i
                    let row = dst + y * ow
                    guard iy >= 0 && iy < h else { row.update(repeating: 0, count: ow); continue }
                    for x in 0..<ow {
                        let ix = x * stride - padding + j
                        row[x] = ix >= 0 && ix < w ? src[iy * w + ix] : 0
                    }
                }
            }
        }
    }

    /// image += the inverse of im2col (overlapping windows add). Split over channels, so no two threads
    /// write the same element; each channel adds its rows in order (independent of the split).
    func col2imAdd(_ cols: UnsafePointer<Float>, _ img: UnsafeMutablePointer<Float>) {
        parallelFor(c, grain: 1) { chans in
            for ch in chans {
                let dst = img + ch * h * w
                for r in ch * kh * kw..<(ch + 1) * kh * kw {
                    let (i, j) = ((r / kw) % kh, r % kw)
                    let src = cols + r * p
                    for y in 0..<oh {
                        let iy = y * stride - padding + i
                        guard iy >= 0 && iy < h else { continue }
                        for x in 0..<ow {
                            let ix = x * stride - padding + j
                            if ix >= 0 && ix < w { dst[iy * w + ix] += src[y * ow + x] }
                        }
                    }
                }
            }
        }
    }
}

/// out [C, P] += bias[c] on every element of plane c.
private func addChannelBias(_ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, channels: Int, plane: Int) {
    for ch in 0..<channels { let row = out + ch * plane, v = b[ch]; for j in 0..<plane { row[j] += v } }
}

/// d[c] += Σ_j g[c, j] over a [C, P] block, summed in Double (planes of up to 128² elements).
func addPlaneSums(_ g: UnsafePointer<Float>, channels: Int, plane: Int, into d: UnsafeMutablePointer<Float>) {
    for ch in 0..<channels {
        var s = 0.0
        let row = g + ch * plane
        for j in 0..<plane { s += Double(row[j]) }
        d[ch] += Float(s)
    }
}
