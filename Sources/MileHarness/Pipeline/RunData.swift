import Foundation
import MileData

/// Where the datasets are and where the pipeline keeps its derived files.
public struct DataLocations: Sendable {
    /// A Slake1.0 folder (real or `mile data synth` output); the test set always comes from here.
    public var slakeDir: String
    /// A VQA-RAD folder, needed only when a config lists `vqa-rad` / `vqa-rad-train`.
    public var radDir: String?
    /// Bases, checkpoints, image cache, vocabularies (default `.mile`).
    public var cacheDir: String

    public init(slakeDir: String, radDir: String?, cacheDir: String) {
        self.slakeDir = slakeDir
        self.radDir = radDir
        self.cacheDir = cacheDir
    }

    /// Checks the folders before anything runs, with a message that says how to fix them.
    public func check() throws {
        let test = (slakeDir as NSString).appendingPathComponent("test.json")
        guard FileManager.default.fileExists(atPath: test) else {
            throw HarnessError.input("no SLAKE test set at \(test). Get SLAKE 1.0 from https://www.med-vqa.com/slake/ (Slake1.0 folder with train.json, test.json, imgs/) and set SLAKE_DIR or pass --slake; for a dataset-free try run `mile data synth --out demo-data/synth` and use --slake demo-data/synth")
        }
        if let radDir, !FileManager.default.fileExists(atPath: radDir) {
            throw HarnessError.input("RAD_DIR / --rad points at \(radDir), which does not exist")
        }
    }

    func radRequired(for what: String) throws -> String {
        guard let radDir else {
            throw HarnessError.input("\(what) needs VQA-RAD: set RAD_DIR or pass --rad (VQA-RAD from https://osf.io/89kps/), or remove it from the config")
        }
        return radDir
    }
}

/// The data of one run configuration: instruction records, pretraining corpus, SLAKE test questions,
/// the run vocabulary and the in-memory images. Loaded once per process and shared by every cell
/// with the same data settings.
public final class RunData {
    public let instructions: InstructionDataset
    public let pretrainSamples: [VQASample]
    public let testSamples: [VQASample]
    /// SLAKE's English validate questions (none when the folder has no validate.json), for the validation
    /// loss after each fine-tuning epoch; empty when the training records include them (`slake-validate`).
    public let validateSamples: [VQASample]
    public let tokenizer: Tokenizer
    public let locations: DataLocations
    private var stores: [String: ImageStore] = [:]
    private var answerIds: [[Int32]]?

    /// The answers of SLAKE's English train and validate questions as token ids, once each (read once per run
    /// data: every evaluation of its cells, real and image-shuffled, restricts decoding to them).
    func trainValidateAnswers() throws -> [[Int32]] {
        if let answerIds { return answerIds }
        let root = locations.slakeDir
        var seen = Set<[Int32]>()
        let ids = try (Slake.load(root: root, split: .train) + Slake.load(root: root, split: .validate))
            .map { tokenizer.ids($0.answer) }.filter { !$0.isEmpty && seen.insert($0).inserted }
        answerIds = ids
        return ids
    }

    /// The seed of `mile data instructions`: prompts and options are built exactly as in the file it writes.
    static let instructionBuildSeed: UInt64 = 42

    public init(settings: RunSettings, locations: DataLocations, vocabularyFile: String, pretrainedVocabulary: String?) throws {
        self.locations = locations
        // The vocabulary always comes from MILE's template prompts (they contain the plain questions), so
        // that every prompt format of a base shares that base's vocabulary.
        let records = try Self.instructionRecords(settings.instructionSources, locations: locations)
        let training = settings.prompts == ["mile"] ? records
            : try Self.instructionRecords(settings.instructionSources, prompts: settings.prompts, locations: locations)
        instructions = InstructionDataset(records: Self.limited(training, settings.limit), imageRoot: try Self.linkedImageRoot(locations))
        pretrainSamples = Self.limited(try Self.pretrainingCorpus(settings.pretraining.corpus, locations: locations,
                                                                  seed: UInt64(settings.pretraining.seed)), settings.limit)
        testSamples = Self.limited(try Slake.load(root: locations.slakeDir, split: .test), settings.limit)
        let validateFile = (locations.slakeDir as NSString).appendingPathComponent("validate.json")
        let heldOut = !settings.instructionSources.contains("slake-validate") && FileManager.default.fileExists(atPath: validateFile)
        validateSamples = heldOut ? Self.limited(try Slake.load(root: locations.slakeDir, split: .validate), settings.limit) : []
        guard !testSamples.isEmpty else { throw HarnessError.input("\(locations.slakeDir)/test.json has no English questions") }
        try Self.checkBeforeTraining(test: testSamples, testFile: (locations.slakeDir as NSString).appendingPathComponent("test.json"),
                                     training: instructions.samples(epoch: 0) + pretrainSamples + validateSamples)
        if let pretrainedVocabulary {
            tokenizer = try Tokenizer(vocabFile: pretrainedVocabulary)
        } else {
            tokenizer = try Vocabulary.prepare(file: vocabularyFile, instructions: records, samples: pretrainSamples)
        }
    }

    /// The first `limit` items (all when 0).
    static func limited<T>(_ items: [T], _ limit: Int) -> [T] { limit > 0 ? Array(items.prefix(limit)) : items }

    /// SLAKE train (+ validate) then VQA-RAD train, qids from 0: the same records as `mile data instructions`.
    /// `prompts` (`data.prompts`): `mile`, the six MILE templates with options; `plain`, the question as the
    /// test set asks it; both, one pool holding the templates and the plain question.
    static func instructionRecords(_ sources: [String], prompts: [String] = ["mile"],
                                   locations: DataLocations) throws -> [InstructionRecord] {
        let builder = InstructionBuilder(seed: instructionBuildSeed)
        func build(_ samples: [VQASample], prefix: String, firstQid: Int) -> [InstructionRecord] {
            zip(samples, builder.build(samples, imagePrefix: prefix, firstQid: firstQid)).map { sample, record in
                var record = record
                record.questionPool = (prompts.contains("mile") ? record.questionPool : [])
                    + (prompts.contains("plain") ? [sample.question] : [])
                return record
            }
        }
        var slake: [VQASample] = []
        if sources.contains("slake-train") { slake += try Slake.load(root: locations.slakeDir, split: .train) }
        if sources.contains("slake-validate") { slake += try Slake.load(root: locations.slakeDir, split: .validate) }
        var records = slake.isEmpty ? [] : build(slake, prefix: "slake/", firstQid: 0)
        if sources.contains("vqa-rad-train") {
            let rad = try VQARad.load(root: try locations.radRequired(for: "data.instruction_sources: vqa-rad-train"), split: .train)
            records += build(rad, prefix: "vqa-rad/", firstQid: records.count)
        }
        guard !records.isEmpty else { throw HarnessError.input("data.instruction_sources gives no training records") }
        return records
    }

    static func pretrainingCorpus(_ corpus: [String], locations: DataLocations, seed: UInt64) throws -> [VQASample] {
        guard !corpus.isEmpty else { return [] }
        let parts = try corpus.map { name -> PretrainCorpus.Part in
            guard let part = PretrainCorpus.Part.allCases.first(where: { $0.configName == name }) else {
                let known = PretrainCorpus.Part.allCases.map(\.configName)
                throw HarnessError.input("pretraining.corpus: unknown part '\(name)' (known: \(known.joined(separator: ", ")))")
            }
            return part
        }
        let rad = parts.contains(.radTrain) ? try locations.radRequired(for: "pretraining.corpus: vqa-rad") : nil
        return try PretrainCorpus.build(parts: parts, slakeRoot: locations.slakeDir, radRoot: rad, seed: seed).samples
    }

    /// `<cache>/instruction-images/{slake,vqa-rad}` as symlinks to the image folders, the layout the
    /// records' `slake/...` and `vqa-rad/...` names expect (nothing is copied).
    static func linkedImageRoot(_ locations: DataLocations) throws -> String {
        let root = (locations.cacheDir as NSString).appendingPathComponent("instruction-images")
        let fm = FileManager.default
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        var links = [("slake", (locations.slakeDir as NSString).appendingPathComponent("imgs"))]
        if let rad = locations.radDir { links.append(("vqa-rad", (rad as NSString).appendingPathComponent("images"))) }
        for (name, target) in links {
            let link = (root as NSString).appendingPathComponent(name)
            let absolute = URL(fileURLWithPath: target).standardizedFileURL.path
            if (try? fm.destinationOfSymbolicLink(atPath: link)) == absolute { continue }
            try? fm.removeItem(atPath: link)
            do {
                try fm.createSymbolicLink(atPath: link, withDestinationPath: absolute)
            } catch {
                // Another runner on the same cache may have created the same link in between.
                if (try? fm.destinationOfSymbolicLink(atPath: link)) != absolute { throw error }
            }
        }
        return root
    }

    /// A duplicated test qid, or a missing or undecodable image, would otherwise surface only after training.
    /// Every image must exist; the test images are decoded too (training images fail at their first batch).
    static func checkBeforeTraining(test: [VQASample], testFile: String, training: [VQASample]) throws {
        let duplicated = test.duplicatedQids()
        if !duplicated.isEmpty {
            throw HarnessError.input("\(testFile): \(duplicated.count) qids appear more than once (\(list(duplicated.map { "qid \($0.qid) × \($0.count)" }))); every test question needs its own qid")
        }
        // Keyed by the dataset path: the test records name an image by the data folder, the training records
        // by the cache's symlinked folder, and one missing file must be named once.
        var firstUser: [String: Int] = [:]
        for sample in test + training {
            let path = realPath(sample.imagePath)
            if firstUser[path] == nil { firstUser[path] = sample.qid }
        }
        let missing = firstUser.keys.filter { !FileManager.default.fileExists(atPath: $0) }.sorted()
        if !missing.isEmpty {
            let count = missing.count == 1 ? "1 image the run needs does not exist" : "\(missing.count) images the run needs do not exist"
            throw HarnessError.input("\(count): \(list(missing.map { "\($0) (qid \(firstUser[$0]!))" }))")
        }
        for path in Set(test.map { realPath($0.imagePath) }).sorted() {
            do { _ = try ImageCodec.decodeFile(path) } catch {
                throw HarnessError.input("test image \(path) (qid \(firstUser[path]!)) cannot be decoded: \(error)")
            }
        }
    }

    private static func list(_ items: [String]) -> String {
        items.prefix(5).joined(separator: ", ") + (items.count > 5 ? ", …" : "")
    }

    /// The absolute dataset path behind the instruction images' symlinked folders (the link itself means
    /// nothing to a user).
    private static func realPath(_ path: String) -> String {
        let folder = URL(fileURLWithPath: (path as NSString).deletingLastPathComponent).standardizedFileURL.path
        let resolved = (folder as NSString).resolvingSymlinksInPath
        return (resolved as NSString).appendingPathComponent((path as NSString).lastPathComponent)
    }

    /// Decoded images at one size, shared by every feed of that size.
    public func images(size: Int, doubleDivide255: Bool) -> ImageStore {
        let key = "\(size)-\(doubleDivide255)"
        if let store = stores[key] { return store }
        let cache = URL(fileURLWithPath: (locations.cacheDir as NSString).appendingPathComponent("image-cache"))
        let store = ImageStore(loader: ImageLoader(size: size, cacheDirectory: cache, upstreamDoubleScale: doubleDivide255))
        stores[key] = store
        return store
    }
}
