import Foundation

/// The vocabulary of a run, built from training-side text only: every prompt of every instruction pool,
/// every instruction answer, and the questions and answers of the pretraining corpus. Test questions and
/// test answers are never read, so the vocabulary cannot tell the model anything about the test set.
///
/// A test word missing from it is not lost: the vocabulary holds every character seen in training and its
/// `##` form, so WordPiece spells an unseen word from pieces; only a character never seen in training
/// becomes `[UNK]`. `coverage` measures this.
///
/// The build is deterministic (`Tokenizer.buildVocabulary`: specials, characters, then words by falling
/// count, ties in code-point order) and does not depend on the order of the texts.
public enum Vocabulary {
    public static let fileName = "vocab.txt"

    /// The training-side texts the vocabulary is built from.
    public static func trainingTexts(instructions: [InstructionRecord] = [], samples: [VQASample] = []) -> [String] {
        var texts: [String] = []
        for record in instructions {
            texts += record.questionPool
            texts.append(record.answer)
        }
        for sample in samples {
            texts.append(sample.question)
            texts.append(sample.answer)
        }
        return texts
    }

    public static func build(instructions: [InstructionRecord] = [], samples: [VQASample] = [], minCount: Int = 1,
                             maxSize: Int = 30522) -> Tokenizer {
        Tokenizer.build(corpus: trainingTexts(instructions: instructions, samples: samples), minCount: minCount,
                        maxSize: maxSize)
    }

    /// The vocabulary stored at `file` next to a run's outputs: built from the training texts and written
    /// when the file is absent; loaded when the file holds exactly that vocabulary. A file that differs
    /// (the training data changed since the run began) is an error, because checkpoints index their
    /// embeddings by its ids.
    public static func prepare(file: String, instructions: [InstructionRecord] = [], samples: [VQASample] = [],
                               minCount: Int = 1, maxSize: Int = 30522) throws -> Tokenizer {
        let built = build(instructions: instructions, samples: samples, minCount: minCount, maxSize: maxSize)
        guard FileManager.default.fileExists(atPath: file) else {
            let folder = (file as NSString).deletingLastPathComponent
            if !folder.isEmpty { try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
            try built.save(to: file)
            return built
        }
        let stored = try Tokenizer(vocabFile: file)
        guard stored.tokens == built.tokens else {
            throw DataError.badVocabulary(path: file, reason: "differs from the vocabulary built from the training "
                + "data (\(stored.vocabularySize) vs \(built.vocabularySize) tokens); the data changed since this "
                + "run began. Delete the file to start over, or restore the data")
        }
        return stored
    }

    /// SHA-256 of the token list, for keys such as a base checkpoint's config hash.
    public static func fingerprint(_ tokenizer: Tokenizer) -> String {
        SHA256.hex(Array((tokenizer.tokens.joined(separator: "\n") + "\n").utf8))
    }

    /// How well a vocabulary covers some texts, counted over BERT basic words.
    public struct Coverage: Equatable, Sendable, CustomStringConvertible {
        public var words = 0
        /// Words that are one vocabulary entry.
        public var whole = 0
        /// Words spelled from several pieces.
        public var split = 0
        /// Words that become `[UNK]`.
        public var unknown = 0

        public var description: String {
            "\(words) words: \(whole) whole, \(split) split into pieces, \(unknown) unknown"
        }
    }

    public static func coverage(_ tokenizer: Tokenizer, texts: [String]) -> Coverage {
        var result = Coverage()
        for text in texts {
            for word in Tokenizer.basicTokens(text) {
                result.words += 1
                let pieces = tokenizer.tokenize(word)
                if pieces.contains("[UNK]") {
                    result.unknown += 1
                } else if pieces.count == 1 {
                    result.whole += 1
                } else {
                    result.split += 1
                }
            }
        }
        return result
    }
}
