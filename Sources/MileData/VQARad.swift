import Foundation

/// VQA-RAD in its official release: `VQA_RAD Dataset Public.json` and `images/`. The official test split
/// is the rows whose `phrase_type` is `test_freeform` or `test_para` (451); the rest (`freeform`, `para`)
/// is train (1797).
public enum VQARad {
    public static let fileName = "VQA_RAD Dataset Public.json"

    public enum Split: String, CaseIterable, Sendable {
        case train, test, all
    }

    public static func load(root: String, split: Split) throws -> [VQASample] {
        let path = (root as NSString).appendingPathComponent(fileName)
        let objects = try JSONFile.readList(path)
        let imageRoot = (root as NSString).appendingPathComponent("images")
        var samples: [VQASample] = []
        for (index, object) in objects.enumerated() {
            let record = RecordReader(path: path, index: index, object: object)
            let phrase = try record.string("phrase_type").trimmingCharacters(in: .whitespaces)
            let isTest = phrase.hasPrefix("test_")
            if (split == .train && isTest) || (split == .test && !isTest) { continue }
            samples.append(try VQASample(record: record, imageRoot: imageRoot, imageKey: "image_name",
                                         contentKey: "question_type"))
        }
        return samples
    }
}
