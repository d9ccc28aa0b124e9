import Foundation

/// One record of the MILE instruction format: `{img_name, qid, answer, question_pool}`.
public struct InstructionRecord: Equatable, Sendable {
    /// Relative to the instruction image folder (`Instruction_dataset/image/`), e.g. `vqa-rad/synpic54610.jpg`.
    public var imageName: String
    public var qid: Int
    public var answer: String
    /// The prompts for this question; training draws one per epoch.
    public var questionPool: [String]

    public init(imageName: String, qid: Int, answer: String, questionPool: [String]) {
        self.imageName = imageName
        self.qid = qid
        self.answer = answer
        self.questionPool = questionPool
    }
}

/// A loaded instruction file plus the folder its `img_name`s are relative to and the seed of the
/// per-epoch prompt draw.
public struct InstructionDataset: Sendable {
    public var records: [InstructionRecord]
    public var imageRoot: String
    public var seed: UInt64

    public init(records: [InstructionRecord], imageRoot: String, seed: UInt64 = 42) {
        self.records = records
        self.imageRoot = imageRoot
        self.seed = seed
    }

    /// Loads a file. `imageRoot` defaults to `image/` beside the file, the layout of `Instruction_dataset/`.
    /// Integer answers are turned into their text, as upstream's `str(answer)` does.
    public static func load(file: String, imageRoot: String? = nil, seed: UInt64 = 42) throws -> InstructionDataset {
        let objects = try JSONFile.readList(file)
        var records: [InstructionRecord] = []
        var seen: [Int: Int] = [:]
        for (index, object) in objects.enumerated() {
            let reader = RecordReader(path: file, index: index, object: object)
            let record = InstructionRecord(imageName: try reader.string("img_name"), qid: try reader.integer("qid"),
                                           answer: try reader.text("answer"),
                                           questionPool: try reader.stringList("question_pool"))
            if record.questionPool.isEmpty { throw reader.fail("question_pool is empty") }
            if let first = seen[record.qid] {
                throw reader.fail("qid \(record.qid) repeats record \(first)")
            }
            seen[record.qid] = index
            records.append(record)
        }
        let root = imageRoot ?? ((file as NSString).deletingLastPathComponent as NSString).appendingPathComponent("image")
        return InstructionDataset(records: records, imageRoot: root, seed: seed)
    }

    /// The prompt a record shows in a given epoch: one draw from its pool, a pure function of (seed, qid,
    /// epoch), so it does not depend on batch order or threads. Upstream draws with `random.choice` each
    /// `__getitem__`, i.e. also once per epoch.
    public func prompt(for record: InstructionRecord, epoch: Int) -> String {
        var random = SeededRandom(seed: seed, record.qid, epoch)
        return record.questionPool[random.below(record.questionPool.count)]
    }

    /// Every record as a training sample for `epoch`, with the drawn prompt as the question.
    public func samples(epoch: Int) -> [VQASample] {
        records.map { record in
            VQASample(qid: record.qid, imagePath: imagePath(record), imageName: record.imageName,
                      question: prompt(for: record, epoch: epoch), answer: record.answer,
                      answerType: "", contentType: "")
        }
    }

    public func imagePath(_ record: InstructionRecord) -> String {
        (imageRoot as NSString).appendingPathComponent(record.imageName)
    }

    /// Writes records in upstream's key order.
    public static func write(_ records: [InstructionRecord], to file: String) throws {
        let items = records.map { record in
            JSONValue.object([
                ("img_name", .string(record.imageName)), ("qid", .int(record.qid)),
                ("answer", .string(record.answer)), ("question_pool", .list(record.questionPool.map { .string($0) })),
            ])
        }
        try JSONValue.writeList(items, to: file)
    }
}

/// Builds instruction records from plain VQA samples with MILE's six prompt templates (spec §6.1, typos
/// kept). Closed questions get all six prompts, open ones the five that carry no "judgmental" wording.
/// Options are written `(a)X; (b)Y; ...` with the true answer at a shuffled position:
/// - yes/no answers: the answer and its opposite (2 options);
/// - other closed answers: the answer plus 2 or 3 other closed answers of the same source (3-4 options);
/// - open answers: the answer plus 3 other open answers of the same source (4 options).
/// Everything is drawn from `SeededRandom(seed, qid)`, so the output is a pure function of the inputs.
public struct InstructionBuilder {
    public let seed: UInt64

    public init(seed: UInt64 = 42) {
        self.seed = seed
    }

    /// `prefix` is prepended to each image name (`slake/`, `vqa-rad/`); `firstQid` numbers the records.
    /// Distractors come only from `samples` themselves.
    public func build(_ samples: [VQASample], imagePrefix: String, firstQid: Int) -> [InstructionRecord] {
        let openAnswers = distinctAnswers(samples.filter { $0.answerType != "CLOSED" })
        let closedAnswers = distinctAnswers(samples.filter { $0.answerType == "CLOSED" && !$0.isYesNo })
        return samples.enumerated().map { offset, sample in
            let qid = firstQid + offset
            var random = SeededRandom(seed: seed, qid)
            let closed = sample.answerType == "CLOSED" || sample.isYesNo
            let options = makeOptions(sample.answer, closed: closed, openPool: openAnswers,
                                      closedPool: closedAnswers, random: &random)
            return InstructionRecord(imageName: imagePrefix + sample.imageName, qid: qid, answer: sample.answer,
                                     questionPool: InstructionBuilder.prompts(question: sample.question,
                                                                              options: options, closed: closed))
        }
    }

    /// The prompt pool for one question: templates 1, 2, (3 when closed), 4, 5, 6.
    public static func prompts(question q: String, options: [String], closed: Bool) -> [String] {
        let opts = optionString(options)
        var pool = [
            "<image>Question:{\(q)}Option:{\(opts)} The answer to the question is:",
            "<image>Question:{\(q)}Option:{\(opts)} Answer:",
        ]
        if closed {
            pool.append("<image>Question:{\(q)} Based on the image, give a judgmental answer to the question")
        }
        pool += [
            "<image>Question:{\(q)}Option:{\(opts)} Short answer:",
            "<image>Used the provided image to answer the question:{\(q)}Option:{\(opts)} Provide your ansewer based on the option",
            "<image>What is the answer to the following question?\"{\(q)}\"",
        ]
        return pool
    }

    /// `(a)X; (b)Y; (c)Z`.
    public static func optionString(_ options: [String]) -> String {
        options.enumerated().map { index, option in
            let letter = Character(UnicodeScalar(UInt8(97 + index % 26)))
            return "(\(letter))\(option)"
        }.joined(separator: "; ")
    }

    private func makeOptions(_ answer: String, closed: Bool, openPool: [String], closedPool: [String],
                             random: inout SeededRandom) -> [String] {
        var options: [String]
        if VQASample.isYesNo(answer) {
            // Upstream keeps the answer's own spelling and writes the opposite capitalised.
            options = [answer, answer.lowercased().hasPrefix("y") ? "No" : "Yes"]
        } else {
            let wanted = closed ? 2 + random.below(2) : 3
            options = [answer] + distractors(for: answer, from: closed ? closedPool : openPool,
                                             count: wanted, random: &random)
        }
        random.shuffle(&options)
        return options
    }

    private func distractors(for answer: String, from pool: [String], count: Int,
                             random: inout SeededRandom) -> [String] {
        let key = answer.lowercased()
        var chosen: [String] = []
        var used: Set<String> = [key]
        let candidates = pool.filter { $0.lowercased() != key }
        var attempts = 0
        // Random draws with rejection; the pool is large in practice, the attempt cap covers tiny pools.
        while chosen.count < count && attempts < 20 * max(count, 1) && !candidates.isEmpty {
            attempts += 1
            let candidate = candidates[random.below(candidates.count)]
            if used.insert(candidate.lowercased()).inserted { chosen.append(candidate) }
        }
        return chosen
    }

    private func distinctAnswers(_ samples: [VQASample]) -> [String] {
        var seen: Set<String> = []
        var answers: [String] = []
        for sample in samples where seen.insert(sample.answer.lowercased()).inserted {
            answers.append(sample.answer)
        }
        return answers
    }
}
