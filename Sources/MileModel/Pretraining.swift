import Engine
import Foundation

/// The pretraining objectives of MISS / BLIP (`miss_pretrain.py`, `blip_pretrain.py`), spec §1.5.
public enum PretrainObjective: String, CaseIterable, Sendable {
    /// Image-text contrastive: the ViT's CLS and the JTM's text-mode [CLS], projected and normalised.
    case itc
    /// Image-text matching: the JTM in multimodal mode tells matched pairs from hard negatives.
    case itm
    /// The answer decoder's language-modelling loss on the question's answer (the VQA loss).
    case lm
}

/// One pretraining batch beside the VQA batch: the pair text `[CLS] question answer [SEP]` of every row,
/// and which rows are true of each other's image.
public struct PretrainPairs {
    public let text: TokenBatch
    /// B·B, row-major: true where text j is true of image i (same image, or the same pair text).
    public let positive: [Bool]
    /// The first token in multimodal mode (BLIP replaces [CLS] by [ENC] for ITM).
    public let encTokenId: Int32

    public init(text: TokenBatch, positive: [Bool], encTokenId: Int32) throws {
        guard positive.count == text.batch * text.batch else {
            throw ConfigError("pretraining pairs: \(positive.count) positive flags for a batch of \(text.batch)")
        }
        self.text = text
        self.positive = positive
        self.encTokenId = encTokenId
    }

    /// Row i and j are positives when they show the same image or carry the same pair text.
    public static func positives(imageKeys: [String], texts: [String]) -> [Bool] {
        let b = imageKeys.count
        var out = [Bool](repeating: false, count: b * b)
        for i in 0..<b {
            for j in 0..<b { out[i * b + j] = imageKeys[i] == imageKeys[j] || texts[i] == texts[j] }
        }
        return out
    }
}

/// The losses of one pretraining step, each a scalar tensor (nil when the objective is off).
public struct PretrainLosses {
    public var itc: Tensor?
    public var itm: Tensor?
    public var lm: Tensor?

    /// BLIP's sum of the objectives' losses.
    public var total: Tensor {
        let parts = [itc, itm, lm].compactMap { $0 }
        return parts.dropFirst().reduce(parts[0], +)
    }
}

/// MISS with BLIP's pretraining heads (`vision_proj`, `text_proj`, `itm_head`) around its three modules.
/// The modules are registered under their own names, so the parameter names are the base model's plus
/// the heads'; the base checkpoint keeps only the model's (`model.save`), as upstream's VQA model drops
/// the heads when it loads a pretraining checkpoint. Momentum distillation and the queue of BLIP are left
/// out: at batch 20 on a CPU they would add a second model for little (stated in docs/PIPELINE.md).
public final class MISSPretrainer: Module {
    public let model: MISSModel
    public let objectives: Set<PretrainObjective>
    let visionProj: Linear
    let textProj: Linear
    let itmHead: Linear
    /// Fixed softmax temperature of the contrastive similarities (BLIP learns it, initialised at 0.07).
    public let temperature: Float = 0.07
    private var mining: RNG

    public init(model: MISSModel, objectives: Set<PretrainObjective>, rng: RNG) throws {
        guard !objectives.isEmpty else { throw ConfigError("pretraining needs at least one objective") }
        self.model = model
        self.objectives = objectives
        let c = model.config, embed = min(256, c.textHidden)
        var init_ = rng.split(0x4845_4144)   // the heads' own stream: the model's initialisation is unchanged
        visionProj = Linear(c.visionWidth, embed, rng: &init_)
        textProj = Linear(c.textHidden, embed, rng: &init_)
        itmHead = Linear(c.textHidden, 2, rng: &init_)
        mining = rng.split(0x4D49_4E45)
        super.init()
        register("visual_encoder", model.visualEncoder)
        register("text_encoder", model.textEncoder)
        register("text_decoder", model.textDecoder)
        register("vision_proj", visionProj)
        register("text_proj", textProj)
        register("itm_head", itmHead)
    }

    /// The losses of the chosen objectives on one batch: images [B, 3, S, S], the VQA question and answer
    /// (for `lm`) and the pair texts (for `itc` and `itm`). One ViT pass serves every objective.
    public func losses(images: Tensor, question: TokenBatch, answer: TokenBatch, pairs: PretrainPairs) throws -> PretrainLosses {
        let b = question.batch
        guard pairs.text.batch == b else { throw ConfigError("pair texts for \(pairs.text.batch) rows, batch of \(b)") }
        let imageTokens = imageTokens(images)
        var out = PretrainLosses()
        if objectives.contains(.lm) { out.lm = try model.loss(imageTokens: imageTokens, question: question, answer: answer) }
        guard objectives.contains(.itc) || objectives.contains(.itm) else { return out }
        let similarity = try contrastiveSimilarity(imageTokens: imageTokens, text: pairs.text)   // [B, B] image -> text
        if objectives.contains(.itc) { out.itc = contrastiveLoss(similarity, positive: pairs.positive, batch: b) }
        if objectives.contains(.itm) {
            let scores = withNoGrad { similarity.detached().scalars }
            out.itm = try matchingLoss(imageTokens: imageTokens, pairs: pairs, similarity: scores)
        }
        return out
    }

    /// Cosine similarities / temperature between every image's CLS and every text's [CLS]: [B, B].
    func contrastiveSimilarity(imageTokens: Tensor, text: TokenBatch) throws -> Tensor {
        let b = text.batch, c = model.config
        let imageCLS = reshape(slice(imageTokens, axis: 1, range: 0..<1), [b, c.visionWidth])
        let textStates = model.textEncoder(ids: text.ids, mask: text.mask, batch: b, length: text.length,
                                           memory: nil, memoryMask: nil, prefixes: nil)
        let textCLS = reshape(slice(textStates, axis: 1, range: 0..<1), [b, c.textHidden])
        let imageFeature = l2NormalizeRows(visionProj(imageCLS)), textFeature = l2NormalizeRows(textProj(textCLS))
        return matmul(imageFeature, textFeature, transposeA: false, transposeB: true, alpha: 1 / temperature)
    }

    /// BLIP's ITC: the mean of the image-to-text and text-to-image soft cross-entropies, each target row
    /// spread evenly over that row's positives.
    func contrastiveLoss(_ similarity: Tensor, positive: [Bool], batch b: Int) -> Tensor {
        let targets = Self.targetRows(positive, batch: b)
        let imageToText = mean(softCrossEntropy(logits: similarity, targets: targets))
        let textToImage = mean(softCrossEntropy(logits: permute(similarity, [1, 0]), targets: targets))   // positives are symmetric
        return scale(imageToText + textToImage, 0.5)
    }

    static func targetRows(_ positive: [Bool], batch b: Int) -> [Float] {
        var out = [Float](repeating: 0, count: b * b)
        for i in 0..<b {
            let row = positive[(i * b)..<((i + 1) * b)], count = Float(row.filter { $0 }.count)
            for j in 0..<b where positive[i * b + j] { out[i * b + j] = 1 / count }
        }
        return out
    }

    /// BLIP's ITM: the B matched pairs, each image with a hard negative text, and each text with a hard
    /// negative image, through the JTM in multimodal mode; the [CLS] state goes to `itm_head`. A row whose
    /// every candidate is a positive (a batch of one image, or of one pair text) has no negative pair.
    func matchingLoss(imageTokens: Tensor, pairs: PretrainPairs, similarity: [Float]) throws -> Tensor {
        let text = pairs.text, b = text.batch
        let negatives = Self.hardNegatives(similarity: similarity, positive: pairs.positive, batch: b, rng: &mining)
        var imageRows = Array(0..<b), textRows = Array(0..<b)
        for (i, j) in negatives.textForImage.enumerated() { if let j { imageRows.append(i); textRows.append(j) } }
        for (j, i) in negatives.imageForText.enumerated() { if let i { imageRows.append(i); textRows.append(j) } }
        let labels = [Int32](repeating: 1, count: b) + [Int32](repeating: 0, count: imageRows.count - b)
        let logits = matchLogits(imageTokens: imageTokens, imageRows: imageRows, text: text, textRows: textRows,
                                 encTokenId: pairs.encTokenId)
        return mean(crossEntropy(logits: logits, targets: labels))
    }

    /// `itm_head` logits [n, 2] (index 1: match) of the pairs (image imageRows[k], text textRows[k]): the
    /// JTM in multimodal mode, its [CLS] state (BLIP puts [ENC] in the first position).
    public func matchLogits(imageTokens: Tensor, imageRows: [Int], text: TokenBatch, textRows: [Int],
                            encTokenId: Int32) -> Tensor {
        let b = imageTokens.shape[0], n = imageRows.count, tokens = imageTokens.shape[1], width = imageTokens.shape[2]
        let images = reshape(selectRows(reshape(imageTokens, [b, tokens * width]), imageRows), [n, tokens, width])
        let t = text.length
        var ids = textRows.flatMap { text.ids[($0 * t)..<(($0 + 1) * t)] }
        let mask = textRows.flatMap { text.mask[($0 * t)..<(($0 + 1) * t)] }
        for row in 0..<n { ids[row * t] = encTokenId }
        let states = model.textEncoder(ids: ids, mask: mask, batch: n, length: t, memory: images,
                                       memoryMask: nil, prefixes: nil)
        return itmHead(reshape(slice(states, axis: 1, range: 0..<1), [n, model.config.textHidden]))
    }

    /// The ViT's output [B, N, w] for `images` [B, 3, S, S].
    public func imageTokens(_ images: Tensor) -> Tensor { model.visualEncoder(images) }

    /// For every image a negative text and for every text a negative image, drawn with probability
    /// softmax(similarity) over the non-positives (BLIP's hard-negative mining); nil where every candidate
    /// is a positive. A positive is never drawn.
    static func hardNegatives(similarity: [Float], positive: [Bool], batch b: Int,
                              rng: inout RNG) -> (textForImage: [Int?], imageForText: [Int?]) {
        func draw(_ row: Int, transposed: Bool) -> Int? {
            func at(_ j: Int) -> Int { transposed ? j * b + row : row * b + j }
            let candidates = (0..<b).filter { !positive[at($0)] }
            guard let last = candidates.last else { return nil }
            let top = candidates.map { similarity[at($0)] }.max() ?? 0
            let weights = candidates.map { Double(Foundation.exp(similarity[at($0)] - top)) }
            var u = Double(rng.nextFloat()) * weights.reduce(0, +)
            for (k, w) in weights.enumerated() {
                u -= w
                if u < 0 { return candidates[k] }
            }
            return last
        }
        let texts = (0..<b).map { draw($0, transposed: false) }
        let images = (0..<b).map { draw($0, transposed: true) }
        return (texts, images)
    }
}
