import Foundation

/// The default corpus for pretraining the base model (MISS's own weights were never published). It never
/// contains a SLAKE test question or a SLAKE test image:
///
/// - VQA-RAD train questions with their answers (official split: `freeform` + `para`; the `test_*` rows
///   are left out), when a VQA-RAD folder is given;
/// - caption-style questions derived from the metadata of SLAKE training images: modality (open, plus one
///   true and one false yes/no question), body part (from `location`), the organs and the abnormalities
///   named in `imgs/<folder>/detection.json`.
///
/// Caption images are the images named by `train.json` records of every language, minus every image named
/// by any `test.json` record of any language. The exclusion matters: on the real SLAKE, 72 images of the
/// English test set are named by Chinese `train.json` records. No question text of SLAKE is used, and the
/// per-image `question.json` files (which hold the test questions too) are never read.
///
/// The output is deterministic: VQA-RAD rows in file order, then per image (in first-use order in
/// `train.json`) its caption questions in a fixed order; qids are renumbered 0..<count.
public struct PretrainCorpus: Sendable {
    public var samples: [VQASample]
    /// How many samples come from VQA-RAD and how many are SLAKE captions.
    public var radCount: Int
    public var captionCount: Int
    /// SLAKE training images used for captions, and training images left out because `test.json` names them.
    public var captionImages: Int
    public var excludedImages: Int

    public static let modalityQuestion = "what modality is this image?"
    public static let bodyPartQuestion = "which part of the body is shown in this image?"
    public static let organsQuestion = "which organs are shown in this image?"
    public static let abnormalitiesQuestion = "which abnormalities are shown in this image?"

    /// `is this a CT image?`, `is this an MRI image?`, `is this an X-Ray image?`.
    public static func modalityCheck(_ modality: String) -> String {
        let upper = modality.uppercased()
        let article = upper.hasPrefix("MR") || upper.hasPrefix("X") || "AEIOU".contains(upper.first ?? "B") ? "an" : "a"
        return "is this \(article) \(modality) image?"
    }

    /// Detection labels that name a finding rather than an organ (the SLAKE labels seen in
    /// `detection.json`); any label containing one of `abnormalityWords` counts as a finding too.
    public static let abnormalityLabels: Set<String> = [
        "atelectasis", "cardiomegaly", "effusion", "infiltrate", "mass", "nodule", "pneumonia", "pneumothorax",
    ]
    public static let abnormalityWords = ["tumor", "cancer", "edema", "lesion"]

    /// SLAKE's `location` values written as SLAKE's answers to "Which part of the body…" spell them
    /// (`Lung` images are answered `Chest`, `Brain_Tissue` ones `Head`); other values have `_` turned into
    /// spaces.
    public static let bodyParts: [String: String] = [
        "Lung": "Chest", "Chest_lung": "Chest", "Chest_heart": "Chest", "Chest_mediastinal": "Chest",
        "Brain_Tissue": "Head", "Brain_Face": "Head",
    ]

    /// SLAKE English train questions, when the `slake-train` part is chosen (not in the default).
    public var slakeTrainCount = 0

    public var description: String {
        var text = "\(samples.count) samples: \(radCount) VQA-RAD train questions, \(captionCount) SLAKE captions from "
            + "\(captionImages) training images (\(excludedImages) training images left out: named in test.json)"
        if slakeTrainCount > 0 { text += ", \(slakeTrainCount) SLAKE train questions" }
        return text
    }

    /// The parts a corpus can be made of, named as an experiment file names them.
    public enum Part: String, CaseIterable, Sendable {
        /// VQA-RAD official train rows with their answers.
        case radTrain = "vqa-rad-train"
        /// Caption questions from the metadata of SLAKE training images.
        case slakeCaptions = "slake-captions"
        /// SLAKE English train questions (the fine-tuning questions; off by default).
        case slakeTrain = "slake-train"

        /// The spelling of experiment files' `pretraining.corpus` (part of every base key, so it stays).
        public var configName: String {
            switch self {
            case .radTrain: return "vqa-rad"
            case .slakeCaptions: return "slake-train-captions"
            case .slakeTrain: return "slake-train-questions"
            }
        }
    }

    /// The default corpus of the run pipeline.
    public static let defaultParts: [Part] = [.radTrain, .slakeCaptions]

    /// Parses `vqa-rad-train,slake-captions`; an unknown name is an error listing the known ones.
    public static func parts(_ text: String) throws -> [Part] {
        try text.split(separator: ",").map { name in
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            guard let part = Part(rawValue: trimmed) else {
                let known = Part.allCases.map(\.rawValue).joined(separator: ", ")
                throw DataError.invalid("pretraining corpus: unknown part \"\(trimmed)\" (known: \(known))")
            }
            return part
        }
    }

    /// The default parts for whichever folders are given (VQA-RAD train with a VQA-RAD folder, SLAKE captions
    /// with a SLAKE folder); at least one folder is needed. `seed` picks the false modality of each image's
    /// "no" question.
    public static func build(slakeRoot: String?, radRoot: String?, seed: UInt64 = 42) throws -> PretrainCorpus {
        guard slakeRoot != nil || radRoot != nil else {
            throw DataError.invalid("pretraining corpus: give a SLAKE folder, a VQA-RAD folder or both")
        }
        let parts = defaultParts.filter { $0 == .radTrain ? radRoot != nil : slakeRoot != nil }
        return try build(parts: parts, slakeRoot: slakeRoot, radRoot: radRoot, seed: seed)
    }

    /// The chosen parts in the order VQA-RAD train, SLAKE captions, SLAKE train; qids renumbered 0..<count.
    /// A part whose folder is missing is an error.
    public static func build(parts: [Part], slakeRoot: String?, radRoot: String?, seed: UInt64 = 42) throws -> PretrainCorpus {
        guard !parts.isEmpty else { throw DataError.invalid("pretraining corpus: no parts chosen") }
        func need(_ root: String?, _ part: Part, _ what: String) throws -> String {
            guard let root else {
                throw DataError.invalid("pretraining corpus part \(part.rawValue) needs a \(what) folder")
            }
            return root
        }
        var corpus = PretrainCorpus(samples: [], radCount: 0, captionCount: 0, captionImages: 0, excludedImages: 0)
        if parts.contains(.radTrain) {
            corpus.samples = try VQARad.load(root: need(radRoot, .radTrain, "VQA-RAD (RAD_DIR)"), split: .train)
            corpus.radCount = corpus.samples.count
        }
        if parts.contains(.slakeCaptions) {
            let root = try need(slakeRoot, .slakeCaptions, "SLAKE (SLAKE_DIR)")
            let images = try trainingImages(slakeRoot: root)
            let captions = try captions(images.kept, slakeRoot: root, seed: seed)
            corpus.samples += captions
            (corpus.captionCount, corpus.captionImages, corpus.excludedImages) = (captions.count, images.kept.count, images.excluded)
        }
        if parts.contains(.slakeTrain) {
            let train = try Slake.load(root: need(slakeRoot, .slakeTrain, "SLAKE (SLAKE_DIR)"), split: .train)
            corpus.samples += train
            corpus.slakeTrainCount = train.count
        }
        for index in corpus.samples.indices { corpus.samples[index].qid = index }
        return corpus
    }

    /// The metadata of one SLAKE image, as its `train.json` records give it.
    public struct ImageInfo: Equatable, Sendable {
        public var imageName: String
        public var modality: String
        public var location: String
    }

    /// Images named by `train.json` (any language, first-use order) that no `test.json` record names.
    public static func trainingImages(slakeRoot: String) throws -> (kept: [ImageInfo], excluded: Int) {
        let testImages = try imageNames(slakeRoot: slakeRoot, split: .test)
        let path = (slakeRoot as NSString).appendingPathComponent("train.json")
        var kept: [ImageInfo] = []
        var seen: Set<String> = [], excluded: Set<String> = []
        for (index, object) in try JSONFile.readList(path).enumerated() {
            let record = RecordReader(path: path, index: index, object: object)
            let name = try record.string("img_name")
            if testImages.contains(name) { excluded.insert(name); continue }
            guard seen.insert(name).inserted else { continue }
            kept.append(ImageInfo(imageName: name, modality: try record.string("modality"),
                                  location: try record.string("location")))
        }
        return (kept, excluded.count)
    }

    /// Every `img_name` of a SLAKE split, all languages.
    public static func imageNames(slakeRoot: String, split: Slake.Split) throws -> Set<String> {
        let path = (slakeRoot as NSString).appendingPathComponent("\(split.rawValue).json")
        return Set(try JSONFile.readList(path).enumerated().map { index, object in
            try RecordReader(path: path, index: index, object: object).string("img_name")
        })
    }

    /// The caption questions of `images`, in order.
    static func captions(_ images: [ImageInfo], slakeRoot: String, seed: UInt64) throws -> [VQASample] {
        let modalities = Array(Set(images.map(\.modality))).sorted()
        var samples: [VQASample] = []
        for (order, image) in images.enumerated() {
            let path = (slakeRoot as NSString).appendingPathComponent("imgs/" + image.imageName)
            func add(_ question: String, _ answer: String, _ type: String, _ content: String) {
                samples.append(VQASample(qid: 0, imagePath: path, imageName: image.imageName, question: question,
                                         answer: answer, answerType: type, contentType: content))
            }
            add(modalityQuestion, image.modality, "OPEN", "Modality")
            add(modalityCheck(image.modality), "yes", "CLOSED", "Modality")
            let others = modalities.filter { $0 != image.modality }
            if !others.isEmpty {
                var random = SeededRandom(seed: seed, order)
                add(modalityCheck(others[random.below(others.count)]), "no", "CLOSED", "Modality")
            }
            add(bodyPartQuestion, bodyPart(image.location), "OPEN", "Position")
            let labels = try detectionLabels(slakeRoot: slakeRoot, imageName: image.imageName)
            let findings = labels.filter(isAbnormality)
            let organs = labels.filter { !isAbnormality($0) }
            if !organs.isEmpty { add(organsQuestion, organs.joined(separator: ", "), "OPEN", "Organ") }
            if !findings.isEmpty { add(abnormalitiesQuestion, findings.joined(separator: ", "), "OPEN", "Abnormality") }
        }
        return samples
    }

    public static func bodyPart(_ location: String) -> String {
        bodyParts[location] ?? location.replacingOccurrences(of: "_", with: " ")
    }

    public static func isAbnormality(_ label: String) -> Bool {
        let lower = label.lowercased()
        return abnormalityLabels.contains(lower) || abnormalityWords.contains { lower.contains($0) }
    }

    /// The distinct labels of `imgs/<folder>/detection.json` in file order (a label boxed twice is listed
    /// once). A missing file means no labels; a malformed one is an error naming it. The file is a list of
    /// objects `{"Liver": [x, y, w, h]}`; an object with several keys contributes them in sorted order.
    public static func detectionLabels(slakeRoot: String, imageName: String) throws -> [String] {
        let folder = (imageName as NSString).deletingLastPathComponent
        let path = (slakeRoot as NSString).appendingPathComponent("imgs/\(folder)/detection.json")
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        var labels: [String] = []
        var seen: Set<String> = []
        for object in try JSONFile.readList(path) {
            for label in object.keys.sorted() where seen.insert(label).inserted {
                labels.append(label)
            }
        }
        return labels
    }
}
