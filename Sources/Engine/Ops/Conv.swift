/// Patch convolution with stride = kernel = p, as im2col + GEMM.
/// image [B, C, H, W], weight [O, C, p, p], bias [O] -> tokens [B, (H/p)*(W/p), O] in row-major patch order
/// (Conv2d(...).flatten(2).transpose(1, 2)). Because patches do not overlap, im2col is a permutation:
/// [B, C, gh, p, gw, p] -> [B, gh, gw, C, p, p], the same size as the image.
public func patchConv(_ image: Tensor, weight: Tensor, bias: Tensor?, patch p: Int) -> Tensor {
    check(image.shape.count == 4 && weight.shape.count == 4, "patchConv: image \(image.shape), weight \(weight.shape)")
    let (b, c, h, w) = (image.shape[0], image.shape[1], image.shape[2], image.shape[3])
    let o = weight.shape[0]
    check(weight.shape == [o, c, p, p], "patchConv weight must be [O, \(c), \(p), \(p)], got \(weight.shape)")
    check(h % p == 0 && w % p == 0, "patchConv: image \(h)x\(w) not divisible by patch \(p)")
    let gh = h / p, gw = w / p
    let cols = reshape(permute(reshape(image, [b, c, gh, p, gw, p]), [0, 2, 4, 1, 3, 5]), [b, gh * gw, c * p * p])
    return linear(cols, weight: reshape(weight, [o, c * p * p]), bias: bias)
}
