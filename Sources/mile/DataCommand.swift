import ArgumentParser
import Foundation
import MileData

/// `mile data ...`: synthetic data, checks, instruction files, the Instruction_dataset layout, vocabularies.
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Datasets: synthesize, check, build instruction data, link images, build a vocabulary.",
        subcommands: [DataSynthCommand.self, DataCheckCommand.self, DataInstructionsCommand.self, DataLinkCommand.self,
                      DataVocabCommand.self]
    )
}

/// Prints a MileData error (which names the file and record) and exits non-zero instead of a stack trace.
private func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as DataError {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}

/// A dataset folder from the option, else from the environment variable, else nil.
private func folder(_ option: String?, env: String) -> String? {
    if let option { return option }
    if let value = ProcessInfo.processInfo.environment[env], !value.isEmpty { return value }
    return nil
}

struct DataSynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth", abstract: "Write a synthetic dataset in the Slake1.0 layout (JPEG and PNG images).")

    @Option(help: "Output folder (created).") var out: String
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Number of images.") var images: Int = 300
    @Flag(help: "Write into --out even when it is not empty (its train/validate/test.json and images are replaced).")
    var force = false

    func run() throws {
        try runReportingErrors {
            let existing = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
            if !existing.isEmpty && !force {
                throw DataError.invalid("\(out) is not empty (\(existing.count) entries): a synthetic dataset would replace its train.json, validate.json, test.json and imgs/; pass another --out, or --force")
            }
            let start = Date()
            let summary = try SyntheticDataset.generate(out: out, seed: seed, images: images)
            print("wrote \(out): \(summary)")
            print(String(format: "time: %.2f s", Date().timeIntervalSince(start)))
        }
    }
}

struct DataCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate layout and schema, decode every image, print counts; exit 1 when anything is wrong.")

    @Option(help: "A Slake1.0 folder (default: $SLAKE_DIR).") var slake: String?
    @Option(help: "A VQA-RAD folder (default: $RAD_DIR).") var rad: String?
    @Option(help: "An instruction JSON file (img_name, qid, answer, question_pool).") var instructions: String?
    @Option(help: "Folder the instruction img_names are relative to (default: image/ beside the file).")
    var imageRoot: String?
    @Flag(help: "Print the report as JSON.") var json = false
    @Flag(help: "Skip decoding images (existence is still checked).") var noDecode = false

    func run() throws {
        let slakeDir = folder(slake, env: "SLAKE_DIR"), radDir = folder(rad, env: "RAD_DIR")
        guard slakeDir != nil || radDir != nil || instructions != nil else {
            throw ValidationError("give --slake, --rad or --instructions (or set SLAKE_DIR / RAD_DIR)")
        }
        let start = Date()
        var checker = DataChecker(decodeImages: !noDecode)
        if let slakeDir { checker.checkSlake(root: slakeDir) }
        if let radDir { checker.checkRad(root: radDir) }
        if let instructions { checker.checkInstructions(file: instructions, imageRoot: imageRoot) }
        var report = checker.finish()
        report.notes.append(String(format: "time: %.1f s", Date().timeIntervalSince(start)))
        print(json ? report.json() : report.text())
        if !report.ok { throw ExitCode.failure }
    }
}

struct DataInstructionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "instructions",
        abstract: "Build MILE instruction data (six templates, options) from SLAKE train and VQA-RAD train.")

    @Option(help: "A Slake1.0 folder (default: $SLAKE_DIR).") var slake: String?
    @Option(help: "A VQA-RAD folder (default: $RAD_DIR).") var rad: String?
    @Flag(help: "Also include SLAKE validate.") var withValidate = false
    @Option(help: "Seed for options and their order.") var seed: UInt64 = 42
    @Option(help: "Output file.") var out: String = "Instruction_dataset/instruction_data.json"
    @Option(help: "vocab.txt for the truncation report (default: a vocabulary built from the records).")
    var vocab: String?

    func run() throws {
        let slakeDir = folder(slake, env: "SLAKE_DIR"), radDir = folder(rad, env: "RAD_DIR")
        guard slakeDir != nil || radDir != nil else {
            throw ValidationError("give --slake and/or --rad (or set SLAKE_DIR / RAD_DIR)")
        }
        try runReportingErrors {
            let builder = InstructionBuilder(seed: seed)
            var records: [InstructionRecord] = []
            if let slakeDir {
                var samples = try Slake.load(root: slakeDir, split: .train)
                if withValidate { samples += try Slake.load(root: slakeDir, split: .validate) }
                records += builder.build(samples, imagePrefix: "slake/", firstQid: 0)
                print("SLAKE: \(samples.count) records")
            }
            if let radDir {
                let samples = try VQARad.load(root: radDir, split: .train)
                records += builder.build(samples, imagePrefix: "vqa-rad/", firstQid: records.count)
                print("VQA-RAD train: \(samples.count) records")
            }
            let folder = (out as NSString).deletingLastPathComponent
            if !folder.isEmpty { try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
            try InstructionDataset.write(records, to: out)
            print("wrote \(out): \(records.count) records")
            try printTruncation(records)
        }
    }

    private func printTruncation(_ records: [InstructionRecord]) throws {
        let tokenizer: Tokenizer
        if let vocab {
            tokenizer = try Tokenizer(vocabFile: vocab)
        } else {
            tokenizer = Tokenizer.build(corpus: records.flatMap { $0.questionPool + [$0.answer] })
        }
        let prompts = records.flatMap(\.questionPool)
        let stats = tokenizer.truncation(prompts)
        let source = vocab ?? "a vocabulary built from these records (\(tokenizer.vocabularySize) tokens)"
        print("prompts over \(Tokenizer.questionMaxLength) tokens with \(source): \(stats)")
    }
}

struct DataLinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "link",
        abstract: "Make Instruction_dataset/image/{slake,vqa-rad} as symlinks to the dataset image folders.")

    @Option(help: "A Slake1.0 folder (default: $SLAKE_DIR).") var slake: String?
    @Option(help: "A VQA-RAD folder (default: $RAD_DIR).") var rad: String?
    @Option(help: "The Instruction_dataset folder.") var root: String = "Instruction_dataset"

    func run() throws {
        let slakeDir = folder(slake, env: "SLAKE_DIR"), radDir = folder(rad, env: "RAD_DIR")
        guard slakeDir != nil || radDir != nil else {
            throw ValidationError("give --slake and/or --rad (or set SLAKE_DIR / RAD_DIR)")
        }
        try runReportingErrors {
            if let slakeDir { try link(name: "slake", to: (slakeDir as NSString).appendingPathComponent("imgs")) }
            if let radDir { try link(name: "vqa-rad", to: (radDir as NSString).appendingPathComponent("images")) }
        }
    }

    /// Replaces an existing symlink, never a real folder or file.
    private func link(name: String, to target: String) throws {
        let manager = FileManager.default
        let absolute = URL(fileURLWithPath: target).standardizedFileURL.path
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: absolute, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DataError.missingFile(path: absolute, usedBy: "mile data link")
        }
        let imageFolder = (root as NSString).appendingPathComponent("image")
        let linkPath = (imageFolder as NSString).appendingPathComponent(name)
        do {
            try manager.createDirectory(atPath: imageFolder, withIntermediateDirectories: true)
            if (try? manager.destinationOfSymbolicLink(atPath: linkPath)) != nil {
                try manager.removeItem(atPath: linkPath)
            } else if manager.fileExists(atPath: linkPath) {
                throw DataError.invalid("\(linkPath) exists and is not a symlink; not replacing it")
            }
            try manager.createSymbolicLink(atPath: linkPath, withDestinationPath: absolute)
        } catch let error as DataError {
            throw error
        } catch {
            throw DataError.invalid("\(linkPath): cannot link: \(error.localizedDescription)")
        }
        print("\(linkPath) -> \(absolute)")
    }
}

struct DataVocabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vocab",
        abstract: "Build vocab.txt deterministically from training questions and answers (and instruction prompts).")

    @Option(help: "A Slake1.0 folder (train split is used).") var slake: String?
    @Option(help: "A VQA-RAD folder (train split is used).") var rad: String?
    @Option(help: "An instruction JSON file whose prompts and answers are added.") var instructions: String?
    @Option(help: "Keep words seen at least this often.") var minCount: Int = 1
    @Option(help: "Output file.") var out: String = "vocab.txt"

    func run() throws {
        let slakeDir = folder(slake, env: "SLAKE_DIR"), radDir = folder(rad, env: "RAD_DIR")
        guard slakeDir != nil || radDir != nil || instructions != nil else {
            throw ValidationError("give --slake, --rad or --instructions (or set SLAKE_DIR / RAD_DIR)")
        }
        try runReportingErrors {
            var corpus: [String] = []
            var questions: [String] = []
            if let slakeDir {
                let samples = try Slake.load(root: slakeDir, split: .train)
                corpus += samples.flatMap { [$0.question, $0.answer] }
                questions += samples.map(\.question)
            }
            if let radDir {
                let samples = try VQARad.load(root: radDir, split: .train)
                corpus += samples.flatMap { [$0.question, $0.answer] }
                questions += samples.map(\.question)
            }
            if let instructions {
                let records = try InstructionDataset.load(file: instructions).records
                corpus += records.flatMap { $0.questionPool + [$0.answer] }
                questions += records.flatMap(\.questionPool)
            }
            let tokenizer = Tokenizer.build(corpus: corpus, minCount: minCount)
            try tokenizer.save(to: out)
            print("wrote \(out): \(tokenizer.vocabularySize) tokens")
            print("questions over \(Tokenizer.questionMaxLength) tokens: \(tokenizer.truncation(questions))")
        }
    }
}
