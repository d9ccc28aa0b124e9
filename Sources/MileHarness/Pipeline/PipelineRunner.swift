import Engine
import Foundation
import MileData
import MileModel

/// What happened to one cell in a `mile run`.
public struct CellOutcome: Sendable {
    public enum Kind: String, Sendable { case done, failed, interrupted, skipped, busy }
    public let cell: PlannedCell
    public let kind: Kind
    public let detail: String
    public let scores: Scores?
    public let seconds: Double
}

extension CellOutcome {
    /// The outcome of `cell` as the store records it: for a run whose cells were run by other processes
    /// (`mile run --jobs`). A cell with no run yet is reported as skipped, "not started".
    public static func recorded(_ cell: PlannedCell, store: ResultsStore) throws -> CellOutcome {
        guard let run = try store.latestRun(cellID: cell.id) else {
            return CellOutcome(cell: cell, kind: .skipped, detail: "not started", scores: nil, seconds: 0)
        }
        let seconds = run.wallSeconds ?? (run.endedAt ?? run.heartbeatAt).timeIntervalSince(run.startedAt)
        switch run.status {
        case .done:
            let scores = try store.results(runID: run.id)?.scores
            return CellOutcome(cell: cell, kind: .done, detail: "run \(run.id)", scores: scores, seconds: seconds)
        case .failed:
            return CellOutcome(cell: cell, kind: .failed, detail: run.failureReason ?? "failed", scores: nil, seconds: seconds)
        case .interrupted:
            return CellOutcome(cell: cell, kind: .interrupted, detail: run.failureReason ?? "interrupted", scores: nil, seconds: seconds)
        case .running:
            return CellOutcome(cell: cell, kind: .busy, detail: "run \(run.id) by \(run.runner) still running", scores: nil, seconds: seconds)
        }
    }
}

public struct PipelineOptions: Sendable {
    public var locations: DataLocations
    public var force: Bool
    /// Seconds between heartbeats during long stages (the store's stale-claim timeout is 900 s).
    public var heartbeatInterval: TimeInterval
    /// The database is this task's own shard (`mile run --shard`, a SLURM array task): a running claim found
    /// in it is an earlier attempt of this task (requeued, or killed on another node), taken over at once.
    public var ownShard: Bool

    public init(locations: DataLocations, force: Bool = false, heartbeatInterval: TimeInterval = 60, ownShard: Bool = false) {
        self.locations = locations
        self.force = force
        self.heartbeatInterval = heartbeatInterval
        self.ownShard = ownShard
    }
}

/// Runs cells: claim, base, fine-tune, evaluate, measure, store. A failed cell is recorded and the next
/// one runs; SIGINT records the current cell as interrupted and stops the run.
public final class PipelineRunner {
    let store: ResultsStore
    let options: PipelineOptions
    let progress: ProgressPrinter
    private var dataByKey: [String: RunData] = [:]
    private var provenance: Provenance?

    public init(store: ResultsStore, options: PipelineOptions, progress: ProgressPrinter = ProgressPrinter()) {
        self.store = store
        self.options = options
        self.progress = progress
    }

    public func run(_ cells: [PlannedCell]) throws -> [CellOutcome] {
        try options.locations.check()
        var outcomes: [CellOutcome] = []
        for (index, cell) in cells.enumerated() {
            if StopRequest.isSet { break }
            progress.cellPrefix = "[\(index + 1)/\(cells.count) \(cell.table) \(cell.label) seed \(cell.seed) \(cell.shortID)]"
            let outcome = try runCell(cell)
            progress.line("\(outcome.kind.rawValue): \(outcome.detail)")
            outcomes.append(outcome)
            if outcome.kind == .interrupted { break }
        }
        // A stop request also ends the run between cells (after a cell was stored): the cells left are
        // reported, never silently dropped.
        for cell in cells.dropFirst(outcomes.count) {
            outcomes.append(CellOutcome(cell: cell, kind: .skipped, detail: "not run (\(StopRequest.cause))", scores: nil, seconds: 0))
        }
        return outcomes
    }

    /// Pretrains the missing bases of the cells not yet done, one per base key, without claiming any cell.
    /// `mile run --jobs N` runs this first in one process with every thread: otherwise one worker pretrains
    /// single-threaded while the others wait on the base's lock. A base that fails is left to the cells,
    /// which record the failure, unless `recordFailures` (a SLURM base job, whose failure cancels the cells'
    /// array): then each pending cell of a failed base is recorded failed here, with the base's reason.
    /// Returns the failures ("base KEY: reason").
    @discardableResult
    public func pretrainBases(_ cells: [PlannedCell], recordFailures: Bool = false) throws -> [String] {
        try options.locations.check()
        var keys = Set<String>()
        var failures: [String] = []
        let versions = CurrentVersions(try currentProvenance())
        let pending = try cells.filter { cell in
            try options.force || Planner.status(of: cell, store: store, versions: versions).state != .done
        }
        for cell in pending {
            let key = cell.stage(.base).key
            if StopRequest.isSet { return failures }
            guard keys.insert(key).inserted else { continue }
            let settings = try RunSettings(cell.config, cell: "\(cell.label) (\(cell.shortID))")
            let file = BaseStage.file(cacheDir: options.locations.cacheDir, key: key)
            if settings.pretraining.source == "checkpoint" || FileManager.default.fileExists(atPath: file.path) { continue }
            progress.cellPrefix = "[base \(key.prefix(12)) for \(cell.table) \(cell.label)]"
            let data = try runData(settings, baseKey: key, cell: cell)
            let stage = BaseStage(key: key, settings: settings, config: try modelConfig(settings, data), data: data,
                                  cacheDir: options.locations.cacheDir)
            switch try stage.ensure(wait: {}, progress: { [progress] p in progress.step(p) }, epoch: baseEpochLine(settings)) {
            case .done: progress.line("base ready")
            case let .failed(reason):
                progress.line("base failed (the cells will record it): \(reason)")
                failures.append("base \(key.prefix(12)): \(reason)")
                if recordFailures { try recordBaseFailure(reason, cells: pending.filter { $0.stage(.base).key == key }) }
            case let .stopped(reason): progress.line("stopped: \(reason)"); return failures
            }
        }
        return failures
    }

    /// Each cell recorded failed with the base's reason (a claim and its failure, as a cell of `mile run`
    /// records it), so a merge shows why the cells never ran and `--resubmit` submits them again.
    private func recordBaseFailure(_ reason: String, cells: [PlannedCell]) throws {
        for cell in cells {
            guard case let .claimed(runID) = try claim(cell) else { continue }
            try store.fail(runID: runID, reason: "base pretraining failed: \(reason)")
        }
    }

    func modelConfig(_ settings: RunSettings, _ data: RunData) throws -> any FamilyConfig {
        try Self.modelConfig(settings, data)
    }

    /// The config a cell's model has at its run scale: the vocabulary is the one its run data builds.
    static func modelConfig(_ settings: RunSettings, _ data: RunData) throws -> any FamilyConfig {
        let tokenizer = data.tokenizer
        let vocabulary = VocabularyIds(size: tokenizer.vocabularySize, pad: tokenizer.padId, begin: tokenizer.decId,
                                       end: tokenizer.sepId)
        return try settings.modelConfig(scale: settings.scale, vocabulary: vocabulary)
    }

    /// The run-scale config of a cell without a runner (`mile submit --mem auto`): its run data is loaded
    /// (and its vocabulary written to the cache, as the base job would).
    public static func runScaleConfig(_ settings: RunSettings, cell: PlannedCell, locations: DataLocations) throws -> any FamilyConfig {
        let key = cell.stage(.base).key
        let data = try RunData(settings: settings, locations: locations,
                               vocabularyFile: BaseStage.vocabularyFile(cacheDir: locations.cacheDir, key: key),
                               pretrainedVocabulary: BaseStage.checkpointVocabulary(settings))
        return try modelConfig(settings, data)
    }

    private func baseEpochLine(_ settings: RunSettings) -> (EpochMetric) -> Void {
        { [progress] metric in
            progress.line(String(format: "base epoch %d/%d: loss %.4f, lr %.3g, %.0f s", metric.epoch + 1,
                                 settings.pretraining.epochs, metric.loss, metric.lr, metric.seconds))
        }
    }

    // MARK: one cell

    func runCell(_ cell: PlannedCell) throws -> CellOutcome {
        let started = Date()
        func outcome(_ kind: CellOutcome.Kind, _ detail: String, _ scores: Scores? = nil) -> CellOutcome {
            CellOutcome(cell: cell, kind: kind, detail: detail, scores: scores, seconds: Date().timeIntervalSince(started))
        }
        let settings = try RunSettings(cell.config, cell: "\(cell.label) (\(cell.shortID))")
        let baseKey = cell.stage(.base).key
        let data = try runData(settings, baseKey: baseKey, cell: cell)
        let runID: Int64
        switch try claim(cell) {
        case let .claimed(id): runID = id
        case let .alreadyDone(id):
            let shuffle = try backfillShuffle(cell, runID: id, settings: settings, data: data)   // ShuffleEvaluation.swift
            return outcome(.skipped, "already done (run \(id)); --force reruns it" + (shuffle.map { "; \($0)" } ?? ""))
        case let .busy(id, runner): return outcome(.busy, "run \(id) by \(runner) holds a live claim")
        }
        do {
            return try execute(cell, settings: settings, data: data, runID: runID, started: started, outcome: outcome)
        } catch {
            let reason = "\(error)"
            try? store.fail(runID: runID, reason: reason)
            return outcome(.failed, reason)
        }
    }

    /// What the stages of one cell share.
    struct CellContext {
        let cell: PlannedCell
        let settings: RunSettings
        let data: RunData
        let runID: Int64
        let config: any FamilyConfig
        let assignment: PEFTAssignment
        let beat: () throws -> Void
    }

    /// A stage that ended the cell early: failed (NaN, base failure) or interrupted (SIGINT).
    struct StageStop: Error {
        let kind: CellOutcome.Kind
        let reason: String
    }

    private func execute(_ cell: PlannedCell, settings: RunSettings, data: RunData, runID: Int64, started: Date,
                         outcome: (CellOutcome.Kind, String, Scores?) -> CellOutcome) throws -> CellOutcome {
        var lastBeat = Date()
        let beat: () throws -> Void = { [store, options] in
            if Date().timeIntervalSince(lastBeat) >= options.heartbeatInterval {
                try store.heartbeat(runID: runID)
                lastBeat = Date()
            }
        }
        Self.resetPeakRSS()
        let context = CellContext(cell: cell, settings: settings, data: data, runID: runID,
                                  config: try modelConfig(settings, data), assignment: try cell.assignment.peft(), beat: beat)
        do {
            let base = try baseModel(context)
            let (model, peakEngine) = try fineTune(context, base: base)
            let evaluation = Evaluation(settings: settings, data: data)
            let predictions = try evaluate(context, evaluation: evaluation, model: model)
            let (scores, perQuestion) = try Scorer.score(questions: evaluation.questions, predictions: predictions)
            try shuffleEvaluation(context, evaluation: evaluation, model: model)   // ShuffleEvaluation.swift
            let results = try measurements(model: model, settings: settings, assignment: context.assignment,
                                           peakEngine: peakEngine, scores: scores)
            let finetuneKey = cell.stage(.finetune).key
            let artifacts = ["base": base.file.path,
                             "checkpoint": Self.checkpointFile(cacheDir: options.locations.cacheDir, finetuneKey: finetuneKey).path]
            try store.complete(runID: runID, results: results, predictions: perQuestion, wallSeconds: Date().timeIntervalSince(started),
                               artifacts: artifacts)
            return outcome(.done, String(format: "Opened %.2f, Closed %.2f, Global %.2f (recall %.2f)", scores.opened,
                                         scores.closed, scores.global, scores.openedRecall), scores)
        } catch let stop as StageStop {
            if stop.kind == .interrupted {
                try store.interrupt(runID: runID, reason: stop.reason)
            } else {
                try store.fail(runID: runID, reason: stop.reason)
            }
            return outcome(stop.kind, stop.reason, nil)
        }
    }

    private func baseModel(_ context: CellContext) throws -> BaseModel {
        let settings = context.settings
        let stage = BaseStage(key: context.cell.stage(.base).key, settings: settings, config: context.config,
                              data: context.data, cacheDir: options.locations.cacheDir)
        switch try stage.ensure(wait: context.beat, progress: { [progress] p in progress.step(p); try context.beat() },
                                epoch: baseEpochLine(settings)) {
        case let .done(base): return base
        case let .failed(reason): throw StageStop(kind: .failed, reason: reason)
        case let .stopped(reason): throw StageStop(kind: .interrupted, reason: reason)
        }
    }

    /// Fine-tunes (or resumes) the cell; returns the trained model and the engine's training peak.
    private func fineTune(_ context: CellContext, base: BaseModel) throws -> (any VQAModel, Int) {
        let settings = context.settings, runID = context.runID
        let key = context.cell.stage(.finetune).key
        let checkpoint = Self.checkpointFile(cacheDir: options.locations.cacheDir, finetuneKey: key)
        if options.force { try? FileManager.default.removeItem(at: checkpoint) }
        let stage = TrainingStage(name: "finetune", key: key, config: context.config, assignment: context.assignment,
                                  baseFile: base.file, baseID: base.id, checkpointFile: checkpoint,
                                  epochs: settings.recipe.epochs, lr: settings.recipe.lr,
                                  weightDecay: settings.recipe.weightDecay, seed: settings.recipe.seed, family: settings.family,
                                  visionLRScale: settings.recipe.visionLRScale)
        let resumed = Trainer.resumePoint(stage)
        for metric in resumed.history { try store.recordEpoch(runID: runID, metric) }
        if resumed.epoch > 0 { progress.line("resuming fine-tuning after epoch \(resumed.epoch) of \(stage.epochs)") }
        let images = context.data.images(size: context.config.imageSize, doubleDivide255: settings.doubleDivide255)
        let feed = try TrainingFeed(instructions: context.data.instructions, tokenizer: context.data.tokenizer, images: images,
                                    batchSize: settings.recipe.batch, seed: UInt64(settings.recipe.seed))
        try feed.preload()
        let trainer = Trainer(stage: stage, feed: feed)
        trainer.onStep = { [progress] p in progress.step(p); try context.beat() }
        if !context.data.validateSamples.isEmpty {
            let (samples, tokenizer) = (context.data.validateSamples, context.data.tokenizer)
            trainer.validate = { model in
                try ImageReliance.measure(model: model, samples: samples, tokenizer: tokenizer, images: images)
            }
        }
        trainer.onEpoch = { [store, progress] metric in
            try store.recordEpoch(runID: runID, metric)
            let validation = metric.validationLoss.map { v in
                String(format: ", validate %.4f (shuffled images %.4f)", v, metric.validationShuffledLoss ?? .nan)
            } ?? ""
            progress.line(String(format: "finetune epoch %d/%d: loss %.4f, lr %.3g, %.0f s", metric.epoch + 1, stage.epochs,
                                 metric.loss, metric.lr, metric.seconds) + validation)
        }
        switch try trainer.run() {
        case .finished:
            guard let model = trainer.trainedModel else { throw HarnessError.io("fine-tuning produced no model") }
            return (model, trainer.peakEngineBytes)
        case let .nonFinite(epoch, step, loss):
            throw StageStop(kind: .failed, reason: "loss \(loss) at epoch \(epoch) step \(step) (fine-tuning)")
        case let .stopped(epoch, step):
            throw StageStop(kind: .interrupted, reason: "\(StopRequest.cause) at epoch \(epoch) step \(step) (fine-tuning); resumes after epoch \(Trainer.resumePoint(stage).epoch)")
        }
    }

    func evaluate(_ context: CellContext, evaluation: Evaluation, model: any VQAModel,
                  samples: [VQASample]? = nil) throws -> [Prediction] {
        let start = Date()
        switch try evaluation.predictions(model: model, samples: samples, progress: { [progress] done, total in
            progress.evaluation(done: done, total: total); try context.beat()
        }) {
        case let .done(predictions):
            progress.line(String(format: "evaluated %d questions in %.0f s", predictions.count, Date().timeIntervalSince(start)))
            return predictions
        case let .failed(reason): throw StageStop(kind: .failed, reason: reason)
        case let .stopped(reason): throw StageStop(kind: .interrupted, reason: reason)
        }
    }

    /// #Params at run and paper scale, engine and RSS peaks, paper-scale memory prediction (batch 20,
    /// question 35 and answer 6 tokens, as docs/MODEL.md).
    func measurements(model: any VQAModel, settings: RunSettings, assignment: PEFTAssignment, peakEngine: Int,
                      scores: Scores) throws -> RunResults {
        let run = model.parameterCount
        let paperConfig = try settings.modelConfig(scale: "paper", vocabulary: nil)
        let paper = try settings.family.count(config: paperConfig, assignment: assignment)
        let predicted = try MemoryPrediction.predict(family: settings.family, config: paperConfig, assignment: assignment,
                                                     batch: 20, questionLength: 35, answerLength: 6).peakBytes
        return RunResults(runScale: ParamCounts(trainable: run.trainable, total: run.total),
                          paperScale: ParamCounts(trainable: paper.trainable, total: paper.total),
                          peakEngineBytes: peakEngine, peakRSSBytes: ProvenanceCollector.peakRSSBytes(),
                          predictedPaperBytes: predicted, scores: scores)
    }

    public static func checkpointFile(cacheDir: String, finetuneKey: String) -> URL {
        URL(fileURLWithPath: (cacheDir as NSString).appendingPathComponent("cells/\(finetuneKey)/checkpoint.safetensors"))
    }

    /// Linux: writing 5 to clear_refs resets VmHWM, so the peak RSS is the cell's own, not an earlier cell's.
    static func resetPeakRSS() {
        if let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") {
            handle.write(Data("5".utf8))
            try? handle.close()
        }
    }

    // MARK: claims, data, provenance

    /// Claims the cell. A claim held by a process of this host that no longer exists (killed with
    /// SIGKILL) is taken over at once instead of after the stale-claim timeout.
    func claim(_ cell: PlannedCell) throws -> ClaimOutcome {
        let request = ClaimRequest(cell: cell, provenance: try currentProvenance())
        let outcome = try store.claim(request, force: options.force)
        guard case let .busy(runID, runner) = outcome, options.ownShard || isDeadLocalRunner(runner) else { return outcome }
        if options.ownShard {
            progress.line("taking over the claim of \(runner) (an earlier attempt of this task)")
            try store.releaseDeadClaim(runID: runID, reason: "claim of \(runner) left by an earlier attempt of this task (requeued or killed); taken over by \(store.runner)")
        } else {
            progress.line("taking over the claim of \(runner) (process no longer exists)")
            try store.releaseDeadClaim(runID: runID, reason: "process \(runnerPID(runner)) of claim \(runner) no longer exists (killed or crashed); taken over by \(store.runner)")
        }
        return try store.claim(request, force: options.force)
    }

    func currentProvenance() throws -> Provenance {
        if let provenance { return provenance }
        let hashes = try ProvenanceCollector.datasetHashes(files: ProvenanceCollector.datasetFiles(slakeDir: options.locations.slakeDir,
                                                                                                  radDir: options.locations.radDir))
        let collected = ProvenanceCollector.collect(blasLibrary: BLAS.configuration, blasThreads: Threads.count, datasetHashes: hashes)
        provenance = collected
        return collected
    }

    func runData(_ settings: RunSettings, baseKey: String, cell: PlannedCell) throws -> RunData {
        // data.prompts is outside the data key (it shares the base) but changes the training records.
        let key = cell.stage(.data).key + ":" + baseKey + ":" + settings.prompts.joined(separator: ",")
        if let data = dataByKey[key] { return data }
        progress.line("loading data (instruction records, pretraining corpus, SLAKE test, vocabulary)")
        let data = try RunData(settings: settings, locations: options.locations,
                               vocabularyFile: BaseStage.vocabularyFile(cacheDir: options.locations.cacheDir, key: baseKey),
                               pretrainedVocabulary: BaseStage.checkpointVocabulary(settings))
        dataByKey[key] = data
        return data
    }
}
