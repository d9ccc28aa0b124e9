import Foundation

/// SLAKE in the official Slake1.0 layout: `train.json`, `validate.json`, `test.json` (JSON lists) and
/// `imgs/xmlab<N>/source.jpg`. `img_name` is relative to `imgs/`.
public enum Slake {
    public enum Split: String, CaseIterable, Sendable {
        case train, validate, test
    }

    /// The questions of one split, in file order. By default English only (`q_lang == "en"`), as upstream's
    /// 1061-question test set implies; pass `languages: nil` for all.
    public static func load(root: String, split: Split, languages: Set<String>? = ["en"]) throws -> [VQASample] {
        let path = (root as NSString).appendingPathComponent("\(split.rawValue).json")
        let objects = try JSONFile.readList(path)
        let imageRoot = (root as NSString).appendingPathComponent("imgs")
        var samples: [VQASample] = []
        for (index, object) in objects.enumerated() {
            let record = RecordReader(path: path, index: index, object: object)
            if let languages, let language = try record.optionalString("q_lang"), !languages.contains(language) {
                continue
            }
            samples.append(try VQASample(record: record, imageRoot: imageRoot, imageKey: "img_name",
                                         contentKey: "content_type"))
        }
        return samples
    }
}
