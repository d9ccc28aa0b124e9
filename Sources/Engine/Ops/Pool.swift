/// max(x, 0). Saves its output (y > 0 exactly where x > 0); the gradient at 0 is 0, as PyTorch.
public func relu(_ x: Tensor) -> Tensor {
    let out = output(x.shape, x)
    if let o = out.data {
        let xp = x.ptr
        parallelFor(x.count, grain: 16384) { r in for i in r { o[i] = Swift.max(xp[i], 0) } }
    }
    if needsGrad(x) {
        let y = out.alias()
        out.record([x]) { g, ins in
            guard let dx = ins[0]?.gradTensor(), let gp = g.data else { return }
            let yp = y.ptr, d = dx.ptr
            parallelFor(g.count, grain: 16384) { r in for i in r where yp[i] > 0 { d[i] += gp[i] } }
        }
    }
    return out
}

/// Max pooling, x [N, C, H, W] -> [N, C, OH, OW], OH = (H + 2 padding - kernel) / stride + 1; padding
/// counts as -inf (ResNet's stem: kernel 3, stride 2, padding 1). Tie rule: the first maximum in row-major
/// window order wins (strict >), as PyTorch's CPU kernel. Saves the argmax of each output (its index in
/// the input plane, stored as Float: exact below 2^24) and routes the gradient there (+=).
public func maxPool2d(_ x: Tensor, kernel: Int, stride: Int, padding: Int = 0) -> Tensor {
    check(x.shape.count == 4, "maxPool2d: x \(x.shape) is not (N, C, H, W)")
    check(padding <= kernel / 2, "maxPool2d: padding \(padding) more than half the kernel \(kernel)")
    let (planes, h, w) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
    check(h * w < 1 << 24, "maxPool2d: plane \(h)x\(w) too large for Float indices")
    let oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1
    check(oh >= 1 && ow >= 1, "maxPool2d: kernel \(kernel) larger than padded input \(h)x\(w)")
    let out = output([x.shape[0], x.shape[1], oh, ow], x)
    let grad = needsGrad(x)
    let argmax = grad ? Tensor(empty: out.shape, meta: out.isMeta) : nil
    if let o = out.data {
        let xp = x.ptr, ap = argmax?.data
        parallelFor(planes, grain: 1) { r in
            for pl in r {
                let src = xp + pl * h * w
                for y in 0..<oh {
                    for xo in 0..<ow {
                        let (v, at) = windowMax(src, h, w, y * stride - padding, xo * stride - padding, kernel)
                        let i = pl * oh * ow + y * ow + xo
                        o[i] = v
                        ap?[i] = Float(at)
                    }
                }
            }
        }
    }
    if grad {
        out.record([x]) { g, ins in
            guard let dx = ins[0]?.gradTensor(), let gp = g.data else { return }
            let ap = argmax!.ptr, d = dx.ptr, outPlane = oh * ow
            parallelFor(planes, grain: 1) { r in
                for pl in r {
                    let dp = d + pl * h * w, base = pl * outPlane
                    for j in 0..<outPlane { dp[Int(ap[base + j])] += gp[base + j] }
                }
            }
        }
    }
    return out
}

/// Max over the kernel×kernel window at (y0, x0) of one plane, clipped to the plane, and its index there.
@inline(__always)
private func windowMax(_ src: UnsafePointer<Float>, _ h: Int, _ w: Int, _ y0: Int, _ x0: Int,
                       _ kernel: Int) -> (Float, Int) {
    var best = -Float.infinity, at = Swift.max(y0, 0) * w + Swift.max(x0, 0)
    for iy in Swift.max(y0, 0)..<Swift.min(y0 + kernel, h) {
        for ix in Swift.max(x0, 0)..<Swift.min(x0 + kernel, w) where src[iy * w + ix] > best {
            best = src[iy * w + ix]; at = iy * w + ix
        }
    }
    return (best, at)
}
