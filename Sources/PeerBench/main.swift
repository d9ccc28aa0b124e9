// The engine side of `make bench-peer` (bench/torch_peer.py drives it) and of the parity fixtures.
//
//   PeerBench export --cases bench/parity_cases.json --dir DIR    weights + inputs of each parity case
//   PeerBench prepare --dir DIR [--scale small --batch 32 --question 35 --answer 6]   weights and a batch
//   PeerBench worker --mode full|lora|dec|infer --dir DIR [--steps 3 --warmup 1]   one timed run (JSON line)
//   PeerBench ofa-time [--scale small --batch 20 --cell T,T]   OFA training-step timing (OFATiming.swift)
//   PeerBench ofa-export --dir DIR    weights + inputs of the OFA parity cases (OFAParity.swift)
//
// Threads come from MILE_THREADS. Not a test: prints figures.
import Engine
import Foundation
import MileModel

struct UsageError: Error, CustomStringConvertible { let description: String }

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

/// `--key value` options after the subcommand.
func options(_ args: ArraySlice<String>) throws -> [String: String] {
    var out: [String: String] = [:]
    var i = args.startIndex
    while i < args.endIndex {
        let key = args[i]
        guard key.hasPrefix("--"), i + 1 < args.endIndex else { throw UsageError(description: "expected --key value, got '\(key)'") }
        out[String(key.dropFirst(2))] = args[i + 1]
        i += 2
    }
    return out
}

func int(_ o: [String: String], _ key: String, _ fallback: Int) throws -> Int {
    guard let text = o[key] else { return fallback }
    guard let v = Int(text), v > 0 else { throw UsageError(description: "--\(key) must be a positive integer, got '\(text)'") }
    return v
}

func required(_ o: [String: String], _ key: String) throws -> String {
    guard let v = o[key] else { throw UsageError(description: "missing --\(key)") }
    return v
}

/// Peak resident set size of this process (VmHWM), in MB.
func peakRSSMegabytes() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return .nan }
    for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let parts = line.split(separator: " ")
        if parts.count >= 2, let kb = Double(parts[1]) { return kb / 1024 }
    }
    return .nan
}

// MARK: parity export

/// One parity case of bench/parity_cases.json (the Swift tests read the same recipe from the fixture).
struct ParityCase: Codable {
    struct Tokens: Codable { let batch: Int; let ids: [Int32]; let mask: [Int32] }
    struct Noise: Codable { let std: Float; let seed: UInt64 }
    let name: String
    let scale: String
    let configStrings: [String: String]?
    let cell: [String]
    let rank: Int
    let seed: UInt64
    let noise: Noise
    let imagesSeed: UInt64
    let question: Tokens
    let answer: Tokens

    enum CodingKeys: String, CodingKey {
        case name, scale, cell, rank, seed, noise, question, answer
        case configStrings = "config_strings", imagesSeed = "images_seed"
    }
}

/// The recipe: the model from `seed`, then N(0, noise.std) added to every parameter in registration
/// order (so biases, LayerNorms, LoRA B, IA3 vectors and prompts are all non-trivial).
func buildParityModel(_ c: ParityCase) throws -> (MISSModel, Tensor) {
    let config = try ModelConfig.preset(c.scale).applying(c.configStrings ?? [:])
    guard c.cell.count == 3 else { throw UsageError(description: "case \(c.name): cell needs 3 flags") }
    let a = try PEFTAssignment(vit: ModuleMode(flag: c.cell[0]), jtm: ModuleMode(flag: c.cell[1]),
                               dec: ModuleMode(flag: c.cell[2]), rank: c.rank)
    let model = try MISSModel(config: config, assignment: a, rng: RNG(seed: c.seed))
    model.train(false)
    var rng = RNG(seed: c.noise.seed)
    for (_, t) in model.namedParameters() {
        let noise = Tensor.randn(t.shape, std: c.noise.std, rng: &rng).scalars
        t.copy(from: Tensor(shape: t.shape, scalars: zip(t.scalars, noise).map(+)))
    }
    var imageRng = RNG(seed: c.imagesSeed)
    let s = config.imageSize
    let images = Tensor.uniform([c.question.batch, 3, s, s], low: 0, high: 1, rng: &imageRng)
    return (model, images)
}

func export(_ o: [String: String]) throws {
    struct Spec: Codable { let cases: [ParityCase] }
    let spec = try JSONDecoder().decode(Spec.self, from: Data(contentsOf: URL(fileURLWithPath: try required(o, "cases"))))
    let dir = URL(fileURLWithPath: try required(o, "dir"))
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    for c in spec.cases {
        let (model, images) = try buildParityModel(c)
        try model.save(to: dir.appendingPathComponent("\(c.name).weights.safetensors"))
        try Safetensors.write([("images", images)], to: dir.appendingPathComponent("\(c.name).inputs.safetensors"))
        print("exported \(c.name): \(model.parameterCount.total) parameters")
    }
}

// MARK: benchmark

/// A preset (default small) with the real vocabulary size (30524), a T T T model from seed 1 and one
/// batch: images uniform, questions `[ENC] q [SEP]` padded to the longest, answers `[DEC] a [SEP]` padded.
func prepare(_ o: [String: String]) throws {
    let dir = URL(fileURLWithPath: try required(o, "dir"))
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let b = try int(o, "batch", 32), tq = try int(o, "question", 35), ta = try int(o, "answer", 6)
    let config = try ModelConfig.preset(o["scale"] ?? "small")
    guard config.vocabSize == 30524 else { throw UsageError(description: "--scale must be small or paper (the benchmark needs the real vocabulary)") }
    try config.jsonData().write(to: dir.appendingPathComponent("config.json"))
    let model = try MISSModel(config: config, assignment: .full, rng: RNG(seed: 1))
    // N(0, 0.05) added to every weight: with BERT's 0.02 init alone the logits of an untrained model
    // are so close that float rounding flips beam-search ties, and the two sides would decode different tokens.
    var noise = RNG(seed: 4)
    for (_, t) in model.namedParameters() {
        let n = Tensor.randn(t.shape, std: 0.05, rng: &noise).scalars
        t.copy(from: Tensor(shape: t.shape, scalars: zip(t.scalars, n).map(+)))
    }
    try model.save(to: dir.appendingPathComponent("weights.safetensors"))
    var rng = RNG(seed: 2)
    let images = Tensor.uniform([b, 3, config.imageSize, config.imageSize], low: 0, high: 1, rng: &rng)
    func tokens(length: Int, first: Int32, minContent: Int) -> (Tensor, Tensor) {
        var ids = [Float](), mask = [Float]()
        for row in 0..<b {
            // row 0 is full length (padding to the longest), others between minContent and full
            let content = row == 0 ? length - 2 : minContent + rng.nextInt(length - 1 - minContent)
            ids.append(Float(first)); mask.append(1)
            for _ in 0..<content { ids.append(Float(1000 + rng.nextInt(29000))); mask.append(1) }
            ids.append(Float(config.sepTokenId)); mask.append(1)
            for _ in (content + 2)..<length { ids.append(Float(config.padTokenId)); mask.append(0) }
        }
        return (Tensor(shape: [b, length], scalars: ids), Tensor(shape: [b, length], scalars: mask))
    }
    let (qi, qm) = tokens(length: tq, first: 30523, minContent: max(1, tq / 3))
    let (ai, am) = tokens(length: ta, first: config.decTokenId, minContent: 1)
    try Safetensors.write([("images", images), ("question_ids", qi), ("question_mask", qm),
                           ("answer_ids", ai), ("answer_mask", am)],
                          to: dir.appendingPathComponent("inputs.safetensors"))
}

func worker(_ o: [String: String]) throws {
    Threads.configure()
    let dir = URL(fileURLWithPath: try required(o, "dir"))
    let mode = try required(o, "mode")
    let steps = try int(o, "steps", 3), warmup = o["warmup"] == "0" ? 0 : try int(o, "warmup", 1)
    let cells = ["full": ("T", "T", "T"), "lora": ("F", "lora", "lora"), "dec": ("F", "F", "T"), "infer": ("T", "T", "T")]
    guard let cell = cells[mode] else { throw UsageError(description: "unknown --mode '\(mode)' (full, lora, dec, infer)") }
    let config = try ModelConfig.load(json: Data(contentsOf: dir.appendingPathComponent("config.json")))
    let a = try PEFTAssignment(vit: ModuleMode(flag: cell.0), jtm: ModuleMode(flag: cell.1), dec: ModuleMode(flag: cell.2),
                               rank: try int(o, "rank", 8))
    let model = try MISSModel(config: config, assignment: a, rng: RNG(seed: 3))
    try model.load(from: dir.appendingPathComponent("weights.safetensors"))
    let (inputs, _) = try Safetensors.read(dir.appendingPathComponent("inputs.safetensors"))
    func ids(_ name: String) throws -> [Int32] {
        guard let t = inputs[name] else { throw UsageError(description: "inputs.safetensors has no '\(name)'") }
        return t.scalars.map { Int32($0) }
    }
    guard let images = inputs["images"] else { throw UsageError(description: "inputs.safetensors has no 'images'") }
    let qi = try ids("question_ids"), qm = try ids("question_mask"), ai = try ids("answer_ids"), am = try ids("answer_mask")
    var times: [Double] = []
    var extra = ""
    if mode == "infer" {
        var answers: [[Int32]] = []
        for i in 0..<(warmup + steps) {
            let t0 = now()
            answers = try model.generate(images: images, questionIds: qi, questionMask: qm, beams: 3, maxLength: 10, minLength: 1)
            if i >= warmup { times.append(now() - t0) }
        }
        let json = try JSONSerialization.data(withJSONObject: answers.map { $0.map(Int.init) })
        extra = ", \"answers\": " + String(decoding: json, as: UTF8.self)
    } else {
        model.train(true)
        let opt = AdamW(parameters: model.trainableParameters(), lr: 2e-5, weightDecay: 0.05)
        var last: Float = 0
        for i in 0..<(warmup + steps) {
            let t0 = now()
            let loss = try model.loss(images: images, questionIds: qi, questionMask: qm, answerIds: ai, answerMask: am)
            opt.backwardAndStep(loss)   // backward + AdamW step, each gradient applied and freed when final
            last = loss.item()
            if i >= warmup { times.append(now() - t0) }
        }
        extra = ", \"loss\": \(last)"
    }
    print("{\"side\": \"engine\", \"mode\": \"\(mode)\", \"batch\": \(images.shape[0]), \"threads\": \(Threads.count), "
          + "\"times\": \(times), \"peak_rss_mb\": \(peakRSSMegabytes()), "
          + "\"tensor_peak_mb\": \(Double(Memory.peakBytes) / 1_048_576)\(extra)}")
}

// OpenBLAS falls back to SSE3 kernels on CPUs it does not know: re-exec with OPENBLAS_CORETYPE set.
BLAS.reexecWithFasterKernelsIfNeeded()
let args = CommandLine.arguments
do {
    guard args.count >= 2 else { throw UsageError(description: "usage: PeerBench export|prepare|worker --key value ...") }
    let o = try options(args.dropFirst(2))
    switch args[1] {
    case "export": try export(o)
    case "prepare": try prepare(o)
    case "worker": try worker(o)
    case "ofa-time": try ofaTime(o)
    case "ofa-export": try ofaExport(o)
    default: throw UsageError(description: "unknown command '\(args[1])' (export, prepare, worker, ofa-time, ofa-export)")
    }
} catch {
    FileHandle.standardError.write(Data("PeerBench: \(error)\n".utf8))
    exit(1)
}
