import Engine

/// A bias-free Conv2d (`weight` [O, C, k, k]), torchvision's ResNet init: kaiming-normal, fan_out, ReLU gain.
final class OFAConv: Module {
    let weight: Tensor
    let stride: Int
    let padding: Int

    init(_ inC: Int, _ outC: Int, kernel: Int, stride: Int = 1, padding: Int = 0, random: RandomSource) {
        weight = Tensor.randn([outC, inC, kernel, kernel], std: (2 / Float(outC * kernel * kernel)).squareRoot(),
                              rng: &random.rng)
        self.stride = stride
        self.padding = padding
        super.init()
        register(parameter: "weight", weight)
    }

    func callAsFunction(_ x: Tensor) -> Tensor { conv2d(x, weight: weight, stride: stride, padding: padding) }
}

/// torch's BatchNorm2d (eps 1e-5, momentum 0.1): `weight` ones and `bias` zeros are parameters,
/// `running_mean` / `running_var` buffers (checkpointed, never trainable, not counted). torch's integer
/// `num_batches_tracked` buffer is not kept (it only matters for momentum None).
final class OFABatchNorm: Module {
    let weight: Tensor
    let bias: Tensor
    let runningMean: Tensor
    let runningVar: Tensor

    init(_ channels: Int) {
        weight = Tensor.ones([channels])
        bias = Tensor.zeros([channels])
        runningMean = Tensor.zeros([channels])
        runningVar = Tensor.ones([channels])
        super.init()
        register(parameter: "weight", weight)
        register(parameter: "bias", bias)
        register(buffer: "running_mean", runningMean)
        register(buffer: "running_var", runningVar)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        batchNorm2d(x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar, training: training)
    }
}

/// `downsample`: nn.Sequential(conv1x1(stride), BatchNorm2d), children "0" and "1".
final class OFADownsample: Module {
    let conv: OFAConv
    let norm: OFABatchNorm
    init(_ inC: Int, _ outC: Int, stride: Int, random: RandomSource) {
        conv = OFAConv(inC, outC, kernel: 1, stride: stride, random: random)
        norm = OFABatchNorm(outC)
        super.init()
        register("0", conv)
        register("1", norm)
    }
    func callAsFunction(_ x: Tensor) -> Tensor { norm(conv(x)) }
}

/// torchvision's Bottleneck (ResNet v1.5: the stride sits on the 3×3 conv), expansion 4:
/// relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1 x)))))) + identity). OFA's ResNet drop path is 0 in every
/// recipe (`resnet_drop_path_rate 0.0`) and is not implemented.
final class OFABottleneck: Module {
    let conv1: OFAConv, bn1: OFABatchNorm
    let conv2: OFAConv, bn2: OFABatchNorm
    let conv3: OFAConv, bn3: OFABatchNorm
    let downsample: OFADownsample?

    init(inplanes: Int, planes: Int, stride: Int, random: RandomSource) {
        let out = planes * 4
        conv1 = OFAConv(inplanes, planes, kernel: 1, random: random); bn1 = OFABatchNorm(planes)
        conv2 = OFAConv(planes, planes, kernel: 3, stride: stride, padding: 1, random: random); bn2 = OFABatchNorm(planes)
        conv3 = OFAConv(planes, out, kernel: 1, random: random); bn3 = OFABatchNorm(out)
        downsample = stride != 1 || inplanes != out ? OFADownsample(inplanes, out, stride: stride, random: random) : nil
        super.init()
        register("conv1", conv1); register("bn1", bn1)
        register("conv2", conv2); register("bn2", bn2)
        register("conv3", conv3); register("bn3", bn3)
        if let downsample { register("downsample", downsample) }
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var out = relu(bn1(conv1(x)))
        out = relu(bn2(conv2(out)))
        out = bn3(conv3(out))
        return relu((downsample?(x) ?? x) + out)
    }
}

/// OFA's `ResNet(layers)` (`encoder.embed_images`): conv1 7×7/2, bn1, ReLU, max pool 3/2, then stages
/// layer1-layer3 (planes w, 2w, 4w; strides 1, 2, 2). No layer4, no pooling, no head: the output is the
/// [B, 16w, S/16, S/16] feature map (1024 channels at w = 64).
final class OFAResNet: Module {
    let conv1: OFAConv
    let bn1: OFABatchNorm
    let stages: [ModuleList<OFABottleneck>]

    init(_ c: OFAConfig, random: RandomSource) {
        let w = c.resnetWidth
        conv1 = OFAConv(3, w, kernel: 7, stride: 2, padding: 3, random: random)
        bn1 = OFABatchNorm(w)
        var inplanes = w, stages: [ModuleList<OFABottleneck>] = []
        for (i, blocks) in c.resnetLayers.enumerated() {
            let planes = w << i
            var stage: [OFABottleneck] = []
            for b in 0..<blocks {
                stage.append(OFABottleneck(inplanes: inplanes, planes: planes, stride: b == 0 && i > 0 ? 2 : 1, random: random))
                inplanes = planes * 4
            }
            stages.append(ModuleList(stage))
        }
        self.stages = stages
        super.init()
        register("conv1", conv1)
        register("bn1", bn1)
        for (i, stage) in stages.enumerated() { register("layer\(i + 1)", stage) }
    }

    /// images [B, 3, S, S] -> features [B, 16w, g, g].
    func callAsFunction(_ images: Tensor) -> Tensor {
        var x = maxPool2d(relu(bn1(conv1(images))), kernel: 3, stride: 2, padding: 1)
        for stage in stages { for block in stage.items { x = block(x) } }
        return x
    }
}
