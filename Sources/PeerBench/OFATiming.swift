import Engine
import Foundation
import MileModel

/// `PeerBench ofa-time [--scale small --batch 20 --question 35 --answer 6 --cell T,T --steps 5 --warmup 1 --overrides JSON]`:
/// training steps (loss, backward, AdamW) of the OFA family on one random batch in the harness's token
/// layout, in training mode; prints ms per step and per sample as a JSON line. Threads from MILE_THREADS.
func ofaTime(_ o: [String: String]) throws {
    Threads.configure()
    var config = try OFAConfig.preset(o["scale"] ?? "small")
    if let text = o["overrides"] {   // a JSON object of config keys, e.g. '{"resnet_width": 8}'
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
        config = try config.applying(object)
    }
    let b = try int(o, "batch", 20), tq = try int(o, "question", 35), ta = try int(o, "answer", 6)
    let steps = try int(o, "steps", 5), warmup = o["warmup"] == "0" ? 0 : try int(o, "warmup", 1)
    let flags = (o["cell"] ?? "T,T").split(separator: ",").map(String.init)
    guard flags.count == 2 else { throw UsageError(description: "--cell needs two flags (encoder,decoder), e.g. T,lora") }
    let assignment = try PEFTAssignment(enc: ModuleMode(flag: flags[0]), dec: ModuleMode(flag: flags[1]), rank: try int(o, "rank", 8))
    let model = try OFAModel(config: config, assignment: assignment, rng: RNG(seed: 1))
    model.train(true)
    var rng = RNG(seed: 2)
    let images = Tensor.uniform([b, 3, config.imageSize, config.imageSize], low: -1, high: 1, rng: &rng)
    func tokens(_ length: Int, first: Int32) throws -> TokenBatch {
        var ids: [Int32] = [], mask: [Int32] = []
        for row in 0..<b {
            let content = row == 0 ? length - 2 : 1 + rng.nextInt(length - 2)
            ids.append(first); mask.append(1)
            for _ in 0..<content { ids.append(Int32(1000 + rng.nextInt(config.vocabSize - 1000))); mask.append(1) }
            ids.append(config.eosTokenId); mask.append(1)
            for _ in (content + 2)..<length { ids.append(config.padTokenId); mask.append(0) }
        }
        return try TokenBatch(ids: ids, mask: mask, batch: b, length: length)
    }
    let question = try tokens(tq, first: 30523 % Int32(config.vocabSize)), answer = try tokens(ta, first: config.bosTokenId)
    let optimizer = AdamW(parameters: model.trainableParameters(), lr: 2e-5, weightDecay: 0.05)
    // Wall time, and this process's CPU time (user + system), which a loaded host inflates far less.
    func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6
    }
    var times: [Double] = [], cpu: [Double] = [], last: Float = 0
    for i in 0..<(warmup + steps) {
        let t0 = now(), c0 = cpuSeconds()
        let loss = try model.loss(images: images, question: question, answer: answer)
        optimizer.backwardAndStep(loss)
        last = loss.item()
        if i >= warmup { times.append(now() - t0); cpu.append(cpuSeconds() - c0) }
    }
    let median = times.sorted()[times.count / 2], cpuMedian = cpu.sorted()[cpu.count / 2]
    print("{\"family\": \"ofa\", \"scale\": \"\(o["scale"] ?? "small")\", \"cell\": \"\(assignment)\", \"batch\": \(b), "
          + "\"threads\": \(Threads.count), \"ms_per_step\": \(median * 1000), \"ms_per_sample\": \(median * 1000 / Double(b)), "
          + "\"cpu_ms_per_sample\": \(cpuMedian * 1000 / Double(b)), "
          + "\"times\": \(times), \"loss\": \(last), \"parameters\": \(model.parameterCount.total)}")
}
