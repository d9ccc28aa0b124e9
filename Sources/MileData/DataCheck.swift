import Foundation

/// What `mile data check` finds: counts per dataset split and every problem, each naming the file and the
/// question ids involved.
public struct DataCheckReport: Sendable {
    public struct Problem: Equatable, Sendable, CustomStringConvertible {
        public var file: String
        public var message: String
        /// Question ids that use the file (for an image), empty for a file-level problem.
        public var qids: [Int]

        public var description: String {
            guard !qids.isEmpty else { return "\(file): \(message)" }
            let shown = qids.prefix(10).map(String.init).joined(separator: ", ")
            let more = qids.count > 10 ? " and \(qids.count - 10) more" : ""
            return "\(file): \(message) (qids \(shown)\(more))"
        }
    }

    public struct Section: Sendable {
        public var dataset: String
        public var split: String
        public var counts: SplitCounts
    }

    public var sections: [Section] = []
    public var problems: [Problem] = []
    public var imagesDecoded = 0
    public var notes: [String] = []

    public var ok: Bool { problems.isEmpty }

    public init() {}

    /// Plain-text report.
    public func text() -> String {
        var lines = sections.map { "\($0.dataset) \($0.split): \($0.counts)" }
        lines.append("images decoded: \(imagesDecoded)")
        lines += notes
        if problems.isEmpty {
            lines.append("OK: no problems found")
        } else {
            lines.append("\(problems.count) problem(s):")
            lines += problems.map { "  " + $0.description }
        }
        return lines.joined(separator: "\n")
    }

    /// The same as JSON (keys in a fixed order).
    public func json() -> String {
        let sectionValues: [JSONValue] = sections.map { section in
            let c = section.counts
            return .object([
                ("dataset", .string(section.dataset)), ("split", .string(section.split)), ("questions", .int(c.total)),
                ("open", .int(c.open)), ("closed", .int(c.closed)), ("yes_no", .int(c.yesNo)), ("yes", .int(c.yes)),
                ("no", .int(c.no)), ("images", .int(c.images)),
            ])
        }
        let problemValues: [JSONValue] = problems.map { problem in
            .object([("file", .string(problem.file)), ("message", .string(problem.message)),
                     ("qids", .list(problem.qids.map { .int($0) }))])
        }
        return JSONValue.object([
            ("ok", .string(ok ? "true" : "false")), ("images_decoded", .int(imagesDecoded)),
            ("splits", .list(sectionValues)), ("notes", .list(notes.map { .string($0) })),
            ("problems", .list(problemValues)),
        ]).encoded().replacingOccurrences(of: "\"ok\": \"true\"", with: "\"ok\": true")
            .replacingOccurrences(of: "\"ok\": \"false\"", with: "\"ok\": false")
    }
}

/// Validates datasets: layout, schema (through the loaders), and that every image decodes.
public struct DataChecker {
    public var decodeImages = true
    private var report = DataCheckReport()
    /// image path -> qids using it, across everything checked.
    private var imageUsers: [String: [Int]] = [:]
    private var imageOrder: [String] = []

    public init(decodeImages: Bool = true) {
        self.decodeImages = decodeImages
    }

    public mutating func checkSlake(root: String) {
        guard folderExists(root, what: "SLAKE folder") else { return }
        for split in Slake.Split.allCases {
            record(dataset: "SLAKE", split: split.rawValue, file: (root as NSString).appendingPathComponent("\(split.rawValue).json")) {
                try Slake.load(root: root, split: split)
            }
        }
    }

    public mutating func checkRad(root: String) {
        guard folderExists(root, what: "VQA-RAD folder") else { return }
        for split in [VQARad.Split.train, .test] {
            record(dataset: "VQA-RAD", split: split.rawValue, file: "\(root) (\(split.rawValue))") { try VQARad.load(root: root, split: split) }
        }
    }

    public mutating func checkInstructions(file: String, imageRoot: String? = nil) {
        do {
            let dataset = try InstructionDataset.load(file: file, imageRoot: imageRoot)
            let samples = dataset.samples(epoch: 0)
            let pools = Dictionary(grouping: dataset.records, by: { $0.questionPool.count }).mapValues(\.count)
            report.notes.append("instructions \(file): \(dataset.records.count) records, pool sizes "
                + pools.keys.sorted().map { "\($0): \(pools[$0]!)" }.joined(separator: ", "))
            // Instruction records carry no answer type, so open/closed read 0 here.
            let counts = SplitCounts(samples)
            report.sections.append(.init(dataset: "instructions", split: (file as NSString).lastPathComponent, counts: counts))
            collect(samples)
        } catch {
            report.problems.append(problem(from: error, fallbackFile: file))
        }
    }

    /// Decodes every image seen so far (once each) and returns the report.
    public mutating func finish() -> DataCheckReport {
        for path in imageOrder {
            let qids = imageUsers[path] ?? []
            if !FileManager.default.fileExists(atPath: path) {
                report.problems.append(.init(file: path, message: "image file not found", qids: qids))
                continue
            }
            guard decodeImages else { continue }
            do {
                _ = try ImageCodec.decodeFile(path)
                report.imagesDecoded += 1
            } catch {
                report.problems.append(.init(file: path, message: "\(messageOnly(error))", qids: qids))
            }
        }
        imageOrder = []
        imageUsers = [:]
        return report
    }

    private mutating func record(dataset: String, split: String, file: String, _ load: () throws -> [VQASample]) {
        do {
            let samples = try load()
            report.sections.append(.init(dataset: dataset, split: split, counts: SplitCounts(samples)))
            let duplicated = samples.duplicatedQids()
            if !duplicated.isEmpty {
                report.problems.append(.init(file: file, message: "\(duplicated.count) question ids appear more than once (each question needs its own qid)",
                                             qids: duplicated.map(\.qid)))
            }
            collect(samples)
        } catch {
            report.problems.append(problem(from: error, fallbackFile: "\(dataset) \(split)"))
        }
    }

    private mutating func collect(_ samples: [VQASample]) {
        for sample in samples {
            if imageUsers[sample.imagePath] == nil { imageOrder.append(sample.imagePath) }
            imageUsers[sample.imagePath, default: []].append(sample.qid)
        }
    }

    private mutating func folderExists(_ path: String, what: String) -> Bool {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue { return true }
        report.problems.append(.init(file: path, message: "\(what) not found", qids: []))
        return false
    }

    private func problem(from error: Error, fallbackFile: String) -> DataCheckReport.Problem {
        if let error = error as? DataError {
            switch error {
            case .missingFile(let path, _): return .init(file: path, message: "file not found", qids: [])
            case .unreadable(let path, let reason): return .init(file: path, message: "cannot read: \(reason)", qids: [])
            case .badImage(let path, let reason): return .init(file: path, message: reason, qids: [])
            case .badJSON(let path, let reason): return .init(file: path, message: "bad JSON: \(reason)", qids: [])
            case .badRecord(let path, let record, let reason):
                return .init(file: path, message: "\(record): \(reason)", qids: [])
            case .badVocabulary(let path, let reason): return .init(file: path, message: reason, qids: [])
            case .invalid(let message): return .init(file: fallbackFile, message: message, qids: [])
            }
        }
        return .init(file: fallbackFile, message: "\(error)", qids: [])
    }

    private func messageOnly(_ error: Error) -> String {
        if case DataError.badImage(_, let reason) = error { return "corrupt image: \(reason)" }
        return "\(error)"
    }
}
