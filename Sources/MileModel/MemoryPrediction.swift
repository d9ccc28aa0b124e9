import Engine

/// Peak-memory prediction of one training step by shape-only execution: the model is built, the
/// forward pass and backward pass run in the engine's meta mode (no buffers, no arithmetic, same byte
/// accounting), so the paper-scale model can be measured without allocating its weights.
public enum MemoryPrediction {
    public struct Result: Equatable, Sendable {
        /// Peak engine bytes of build + forward + backward (weights, activations, gradients).
        public let stepPeakBytes: Int
        /// AdamW's two fp32 moments per trainable parameter (allocated on the first optimizer step).
        public let optimizerBytes: Int
        /// What `torch.cuda.max_memory_allocated` would report after the first step: the sum.
        public var peakBytes: Int { stepPeakBytes + optimizerBytes }
    }

    /// A MISS cell's prediction (`predict(family:…)` for any family).
    public static func predict(config: ModelConfig, assignment: PEFTAssignment, batch: Int,
                               questionLength: Int, answerLength: Int) throws -> Result {
        try predict(family: MISSFamily(), config: config, assignment: assignment, batch: batch,
                    questionLength: questionLength, answerLength: answerLength)
    }

    /// Predicts the peak for one step at `batch` with the given question and answer lengths, in
    /// training mode (dropout, stochastic depth) as upstream trains.
    public static func predict(family: any ModelFamily, config: any FamilyConfig, assignment: PEFTAssignment,
                               batch: Int, questionLength: Int, answerLength: Int) throws -> Result {
        let liveBefore = Memory.liveBytes
        Memory.resetPeak()
        let trainable: Int = try withShapeOnly {
            let model = try family.build(config: config, assignment: assignment, rng: RNG(seed: 0))
            model.train(true)
            let images = Tensor.zeros([batch, 3, config.imageSize, config.imageSize])
            let loss = try model.loss(images: images, question: tokens(batch, questionLength, config),
                                      answer: tokens(batch, answerLength, config))
            loss.backward()
            return model.parameterCount.trainable
        }
        let peak = Memory.peakBytes - liveBefore
        return Result(stepPeakBytes: peak, optimizerBytes: 2 * trainable * MemoryLayout<Float>.size)
    }

    /// Non-pad ids, all unmasked (the values do not matter in meta mode; PAD would only change the ignored
    /// targets).
    private static func tokens(_ batch: Int, _ length: Int, _ c: any FamilyConfig) throws -> TokenBatch {
        let id: Int32 = c.padTokenId == 0 ? 1 : 0
        return try TokenBatch(ids: Array(repeating: id, count: batch * length),
                              mask: Array(repeating: 1, count: batch * length), batch: batch, length: length)
    }
}
