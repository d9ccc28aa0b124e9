import Foundation
/// One question about one image, as the training and evaluation code consumes it.
public struct VQASample: Equatable, Sendable {
    /// The dataset's question id (SLAKE `qid`, VQA-RAD `qid`, or the instruction record's `qid`).
    public var qid: Int
    /// Absolute (or caller-relative) path of the image file.
    public var imagePath: String
    /// The image name as the dataset writes it (`xmlab102/source.jpg`, `synpic54610.jpg`, ...).
    public var imageName: String
    public var question: String
    public var answer: String
    /// `OPEN` or `CLOSED` (upper case, trimmed); empty when the source has none (instruction records).
    public var answerType: String
    /// SLAKE `content_type` (Modality, Organ, ...), VQA-RAD `question_type`; empty when absent.
    public var contentType: String

    public init(qid: Int, imagePath: String, imageName: String, question: String, answer: String,
                answerType: String, contentType: String) {
        self.qid = qid
        self.imagePath = imagePath
        self.imageName = imageName
        self.question = question
        self.answer = answer
        self.answerType = answerType
        self.contentType = contentType
    }

    /// True when the answer is yes or no (any case): the questions the paper's "Closed" accuracy scores.
    public var isYesNo: Bool {
        VQASample.isYesNo(answer)
    }

    public static func isYesNo(_ answer: String) -> Bool {
        let lower = answer.trimmingCharacters(in: .whitespaces).lowercased()
        return lower == "yes" || lower == "no"
    }
}

/// Counts printed by `mile data check` and used in tests.
public struct SplitCounts: Equatable, CustomStringConvertible, Sendable {
    public var total = 0
    public var open = 0
    public var closed = 0
    public var yesNo = 0
    public var yes = 0
    public var no = 0
    public var images = 0

    public init(_ samples: [VQASample]) {
        total = samples.count
        open = samples.filter { $0.answerType == "OPEN" }.count
        closed = samples.filter { $0.answerType == "CLOSED" }.count
        yesNo = samples.filter { $0.isYesNo }.count
        yes = samples.filter { $0.answer.lowercased() == "yes" }.count
        no = samples.filter { $0.answer.lowercased() == "no" }.count
        images = Set(samples.map { $0.imagePath }).count
    }

    public var description: String {
        "\(total) questions (open \(open), closed \(closed); yes/no answers \(yesNo): yes \(yes), no \(no)), \(images) images"
    }
}

extension VQASample {
    /// A sample from one record of an official SLAKE or VQA-RAD file; the two differ only in the keys
    /// that name the image and the content type. `answer_type` is trimmed because two VQA-RAD rows say
    /// "CLOSED " with a trailing space.
    init(record: RecordReader, imageRoot: String, imageKey: String, contentKey: String) throws {
        let name = try record.string(imageKey)
        self.init(qid: try record.integer("qid"),
                  imagePath: (imageRoot as NSString).appendingPathComponent(name),
                  imageName: name,
                  question: try record.string("question"),
                  answer: try record.text("answer"),
                  answerType: try record.string("answer_type").trimmingCharacters(in: .whitespaces).uppercased(),
                  contentType: try record.optionalString(contentKey) ?? "")
    }
}

extension Array where Element == VQASample {
    /// Question ids used more than once, sorted, with how often each occurs (a dataset needs unique qids:
    /// predictions are matched to questions by qid).
    public func duplicatedQids() -> [(qid: Int, count: Int)] {
        Dictionary(map { ($0.qid, 1) }, uniquingKeysWith: +).filter { $0.value > 1 }.sorted { $0.key < $1.key }
            .map { (qid: $0.key, count: $0.value) }
    }
}
