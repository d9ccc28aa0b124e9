import XCTest
@testable import Engine

final class OptimizerTests: XCTestCase {
    func testAdamWMatchesDoubleReference() {
        let p = Tensor(shape: [3], scalars: [0.5, -1, 2])
        let frozen = Tensor(shape: [1], scalars: [7])
        p.isTrainable = true
        let opt = AdamW(parameters: [("p", p), ("frozen", frozen)], lr: 0.1, weightDecay: 0.05)
        var ref = [0.5, -1.0, 2.0], m = [0.0, 0, 0], v = [0.0, 0, 0]
        for t in 1...3 {
            let grads = ref.map { 2 * $0 + 1 }   // d/dp of p^2 + p, from the reference point
            p.grad = Tensor(shape: [3], scalars: grads.map(Float.init))
            opt.step()
            for i in 0..<3 {
                ref[i] *= 1 - 0.1 * 0.05
                m[i] = 0.9 * m[i] + 0.1 * grads[i]
                v[i] = 0.999 * v[i] + 0.001 * grads[i] * grads[i]
                let mh = m[i] / (1 - pow(0.9, Double(t))), vh = v[i] / (1 - pow(0.999, Double(t)))
                ref[i] -= 0.1 * mh / (vh.squareRoot() + 1e-8)
            }
            XCTAssertLessThan(maxDiff(p.scalars, ref), 1e-5)
        }
        XCTAssertEqual(opt.stepCount, 3)
        XCTAssertEqual(frozen.scalars, [7])
        XCTAssertEqual(opt.stateTensors().map(\.name), ["exp_avg.p", "exp_avg_sq.p"])
        opt.zeroGrad()
        XCTAssertNil(p.grad)
    }

    /// A parameter with lr scale s moves as AdamW at lr·s (decay included), the others as at lr, bit for bit,
    /// through both update paths.
    func testLRScaleIsAnOwnLearningRate() {
        func run(lr: Float, scale: Float, fused: Bool) -> [[Float]] {
            let a = Tensor(shape: [9], scalars: (0..<9).map { Float($0) * 0.3 - 1 }), b = Tensor(shape: [2], scalars: [0.4, -0.7])
            a.isTrainable = true; b.isTrainable = true
            let opt = AdamW(parameters: [("visual_encoder.w", a), ("text.w", b)], lr: lr, weightDecay: 0.1,
                            lrScale: { $0.hasPrefix("visual_encoder.") ? scale : 1 })
            for _ in 0..<3 {
                let loss = sum(a * a) + sum(b * b * b)
                if fused { opt.backwardAndStep(loss) } else { loss.backward(); opt.step(); opt.zeroGrad() }
            }
            return [a.scalars, b.scalars]
        }
        for fused in [false, true] {
            let scaled = run(lr: 0.01, scale: 4, fused: fused)
            XCTAssertEqual(scaled[0], run(lr: 0.04, scale: 1, fused: fused)[0])
            XCTAssertEqual(scaled[1], run(lr: 0.01, scale: 1, fused: fused)[1])
            XCTAssertNotEqual(scaled[0], run(lr: 0.01, scale: 1, fused: fused)[0])
        }
    }

    /// backwardAndStep == backward + step + zeroGrad, bit for bit, over three steps: with a weight used
    /// by two ops (embedding lookup and a penalty), a frozen parameter, a trainable parameter with no
    /// path to the loss, and a trainable leaf the optimizer does not own (its gradient must be kept).
    func testBackwardAndStepMatchesSeparateCalls() {
        func run(fused: Bool) -> (values: [[Float]], losses: [Float], outside: [Float], peak: Int) {
            var rng = RNG(seed: 5)
            let model = TinyLM(vocab: 11, d: 16, heads: 2, rng: &rng)
            model.norm.bias.isTrainable = false
            let unused = Tensor.ones([4]), outside = Tensor.full([16], 0.5)
            unused.isTrainable = true; outside.isTrainable = true
            let opt = AdamW(parameters: model.namedParameters() + [("unused", unused)], lr: 3e-3)
            var data = RNG(seed: 6)
            let (ids, targets) = toyBatch(vocab: 11, batch: 3, length: 6, rng: &data)
            var losses: [Float] = []
            Memory.resetPeak()
            for _ in 0..<3 {
                outside.grad = nil
                let w = model.emb.weight
                let loss = model.loss(ids, targets, batch: 3, length: 6) + scale(sum(w * w), 0.01)
                    + sum(outside * model.norm.weight)
                losses.append(loss.item())
                if fused {
                    opt.backwardAndStep(loss)
                    XCTAssertTrue(model.namedParameters().allSatisfy { $0.tensor.grad == nil })
                } else {
                    loss.backward(); opt.step(); opt.zeroGrad()
                }
            }
            let values = (model.namedParameters() + [("unused", unused)] + opt.stateTensors()).map { $0.tensor.scalars }
            return (values, losses, outside.grad!.scalars, Memory.peakBytes)
        }
        let separate = run(fused: false), fused = run(fused: true)
        XCTAssertEqual(fused.losses, separate.losses)
        XCTAssertTrue(fused.values == separate.values, "parameters or optimizer state differ")
        XCTAssertEqual(fused.outside, separate.outside)
        XCTAssertLessThanOrEqual(fused.peak, separate.peak)
    }

    func testCosineSchedule() {
        XCTAssertEqual(cosineLR(initial: 2e-5, epoch: 0, maxEpoch: 130), 2e-5)
        XCTAssertEqual(cosineLR(initial: 1, epoch: 65, maxEpoch: 130), 0.5, accuracy: 1e-6)
        XCTAssertEqual(cosineLR(initial: 1, epoch: 130, maxEpoch: 130), 0, accuracy: 1e-6)
        XCTAssertEqual(cosineLR(initial: 1, epoch: 1, maxEpoch: 4), Float(0.5 * (1 + cos(Double.pi / 4))), accuracy: 1e-6)
    }
}

final class ModuleTests: XCTestCase {
    final class Pair: Module {
        let a: Linear, b: Linear
        init(rng: inout RNG) {
            a = Linear(2, 3, rng: &rng); b = Linear(3, 2, bias: false, rng: &rng)
            super.init()
            register("a", a); register("b", b)
        }
    }

    func testNamesRegistrationOrderAndTiedWeights() {
        var rng = RNG(seed: 1)
        let root = Module()
        let blocks = root.register("blocks", Module())
        let p0 = blocks.register("0", Pair(rng: &rng))
        blocks.register("1", Pair(rng: &rng))
        root.register(parameter: "tied", p0.a.weight)   // same tensor under a second path
        XCTAssertEqual(root.namedParameters().map(\.name),
                       ["tied", "blocks.0.a.bias", "blocks.0.b.weight", "blocks.1.a.weight", "blocks.1.a.bias", "blocks.1.b.weight"])
        XCTAssertEqual(root.namedModules().map(\.name), ["", "blocks", "blocks.0", "blocks.0.a", "blocks.0.b", "blocks.1", "blocks.1.a", "blocks.1.b"])
    }

    func testTrainModeFreezeAndReplace() {
        var rng = RNG(seed: 2)
        let p = Pair(rng: &rng)
        p.train(false)
        XCTAssertFalse(p.a.training)
        p.train(true)
        XCTAssertTrue(p.b.training)
        p.a.setTrainable(false)
        XCTAssertEqual(p.parameterCount().total, 2 * 3 + 3 + 3 * 2)
        XCTAssertEqual(p.parameterCount().trainable, 6)
        let replacement = Linear(2, 3, rng: &rng)
        p.register("a", replacement)
        XCTAssertTrue(p.child("a") === replacement)
        XCTAssertEqual(p.namedParameters().first?.name, "a.weight")
        XCTAssertTrue(p.namedParameters().first?.tensor === replacement.weight)
    }
}

final class ModuleRoleTests: XCTestCase {
    /// A layer with a BatchNorm-like running mean (buffer), an adapter vector and an adapter child.
    final class Layer: Module {
        let weight = Tensor(shape: [2], scalars: [1, 2])
        let runningMean = Tensor(shape: [2], scalars: [0, 0])
        let vector = Tensor(shape: [2], scalars: [1, 1])
        let factor: Linear
        init(rng: inout RNG) {
            factor = Linear(2, 2, bias: false, rng: &rng)
            super.init()
            register(parameter: "weight", weight)
            register(buffer: "running_mean", runningMean)
            register(adapter: "ia3_l", vector)
            register(adapter: "lora_A", factor)
        }
    }

    func testRolesAreStructuralAndBuffersAreNeverTrainedOrCounted() {
        var rng = RNG(seed: 3)
        let layer = Layer(rng: &rng)
        let roles = Dictionary(uniqueKeysWithValues: layer.namedTensors().map { ($0.name, $0.role) })
        XCTAssertEqual(roles["weight"], .weight)
        XCTAssertEqual(roles["running_mean"], .buffer)
        XCTAssertEqual(roles["ia3_l"], .adapter)
        XCTAssertEqual(roles["lora_A.weight"], .adapter, "parameters below an adapter child are adapters")
        XCTAssertEqual(layer.namedParameters().map(\.name), ["weight", "ia3_l", "lora_A.weight"])
        XCTAssertEqual(layer.namedBuffers().map(\.name), ["running_mean"])
        layer.setTrainable(true)
        XCTAssertFalse(layer.runningMean.isTrainable)
        XCTAssertEqual(layer.parameterCount().total, 2 + 2 + 4)
    }

    func testOptimizerNeverTouchesBuffers() {
        var rng = RNG(seed: 4)
        let layer = Layer(rng: &rng)
        let opt = AdamW(parameters: layer.namedTensors().map { ($0.name, $0.tensor) }, lr: 0.1, weightDecay: 0.5)
        layer.runningMean.grad = Tensor(shape: [2], scalars: [1, 1])
        layer.weight.grad = Tensor(shape: [2], scalars: [1, 1])
        opt.step()
        XCTAssertEqual(layer.runningMean.scalars, [0, 0])
        XCTAssertNotEqual(layer.weight.scalars, [1, 2])
    }

    func testCheckpointsCarryBuffers() throws {
        var rng = RNG(seed: 5)
        let layer = Layer(rng: &rng)
        layer.runningMean.copy(from: Tensor(shape: [2], scalars: [0.5, -1]))
        layer.setTrainable(false)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("roles-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try layer.saveState(to: url, onlyTrainable: true)
        let fresh = Layer(rng: &rng)
        let (missing, unexpected) = try fresh.loadState(from: url)
        XCTAssertEqual(fresh.runningMean.scalars, [0.5, -1], "buffers are saved even in trainable-only files")
        XCTAssertEqual(missing.map(\.name), ["weight", "ia3_l", "lora_A.weight"])
        XCTAssertEqual(unexpected, [])
    }
}

final class RNGTests: XCTestCase {
    func testDeterministicSplittableStreams() {
        var a = RNG(seed: 5), b = RNG(seed: 5)
        XCTAssertEqual((0..<5).map { _ in a.nextUInt64() }, (0..<5).map { _ in b.nextUInt64() })
        var s1 = a.split(1), s2 = a.split(2), again = a.split(1)
        let first = s1.nextUInt64()
        XCTAssertEqual(first, again.nextUInt64())        // same key, same stream
        XCTAssertNotEqual(first, s2.nextUInt64())        // different key, different stream
        XCTAssertEqual(a.nextUInt64(), b.nextUInt64())   // split does not advance the parent
    }

    func testUniformAndNormalStatistics() {
        var r = RNG(seed: 9)
        let n = 20_000
        let u = (0..<n).map { _ in Double(r.nextFloat()) }
        XCTAssertTrue(u.allSatisfy { $0 >= 0 && $0 < 1 })
        XCTAssertEqual(u.reduce(0, +) / Double(n), 0.5, accuracy: 0.01)
        let g = (0..<n).map { _ in Double(r.normal()) }
        let mean = g.reduce(0, +) / Double(n)
        let variance = g.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
    }

    func testThreadsConfigureReadsMileThreads() {
        let original = ProcessInfo.processInfo.environment["MILE_THREADS"]
        defer {
            if let original { setenv("MILE_THREADS", original, 1) } else { unsetenv("MILE_THREADS") }
            Threads.configure()
        }
        setenv("MILE_THREADS", "1", 1)
        Threads.configure()
        XCTAssertEqual(Threads.count, 1)
        XCTAssertEqual(BLAS.threads, 1)
        setenv("MILE_THREADS", "zero", 1)
        Threads.configure()
        XCTAssertEqual(Threads.count, ProcessInfo.processInfo.activeProcessorCount)
    }
}
