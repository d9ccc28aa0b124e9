import Foundation

/// A small synthetic dataset in the Slake1.0 layout whose questions can only be answered from the image.
///
/// Each image shows a body on a modality-specific background (CT: gray body on black, saved as RGB JPEG;
/// MRI: dark body with a bright rim, saved as PNG; X-Ray: bright field with dark organs, saved as gray
/// JPEG). One to three organs sit in distinct quadrants, each with its own shape (heart: circle, liver:
/// square, kidney: triangle, spleen: diamond), and zero to two organs carry a lesion (a small dot).
/// Every image gets eight English questions (about 60 % open, 40 % closed, mostly yes/no with balanced
/// polarity, a few left/right choices) and one Chinese question that the default English loader skips.
/// Images are split 70/15/15 into train/validate/test. Everything follows from the seed.
public enum SyntheticDataset {
    public static let organs = ["heart", "liver", "kidney", "spleen"]
    public static let modalities = ["CT", "MRI", "X-Ray"]
    public static let questionsPerImage = 8
    static let quadrants = ["upper left", "upper right", "lower left", "lower right"]

    /// What `generate` wrote.
    public struct Summary: Equatable, CustomStringConvertible {
        public var images = 0
        public var jpeg = 0
        public var png = 0
        /// English questions per split (train, validate, test).
        public var questions: [String: Int] = [:]
        public var imagesPerSplit: [String: Int] = [:]

        public var description: String {
            let splits = Slake.Split.allCases.map { "\($0.rawValue) \(questions[$0.rawValue] ?? 0) questions / \(imagesPerSplit[$0.rawValue] ?? 0) images" }
            return "\(images) images (\(jpeg) JPEG, \(png) PNG); " + splits.joined(separator: ", ")
        }
    }

    /// The content of one image, from which both pixels and answers derive.
    struct Scene {
        var modality: String
        var width: Int
        var height: Int
        /// organ name -> quadrant index (0 upper left, 1 upper right, 2 lower left, 3 lower right)
        var placement: [(organ: String, quadrant: Int)]
        var lesions: Set<String>
    }

    struct Question {
        var text: String
        var answer: String
        var open: Bool
        var content: String
    }

    /// Writes `out/{train,validate,test}.json`, `out/imgs/xmlab<N>/source.{jpg,png}` and
    /// `out/imgs/xmlab<N>/detection.json`.
    public static func generate(out: String, seed: UInt64 = 0, images: Int = 300) throws -> Summary {
        guard images >= 3 else { throw DataError.invalid("synthetic dataset: need at least 3 images, got \(images)") }
        let manager = FileManager.default
        var order = Array(0..<images)
        var splitRandom = SeededRandom(seed: seed, -1)
        splitRandom.shuffle(&order)
        var splitOf = [Slake.Split](repeating: .train, count: images)
        let trainCount = images * 70 / 100, validateCount = max(1, images * 15 / 100)
        for (rank, index) in order.enumerated() {
            splitOf[index] = rank < trainCount ? .train : (rank < trainCount + validateCount ? .validate : .test)
        }
        var records: [Slake.Split: [JSONValue]] = [:]
        var summary = Summary(images: images)
        var qid = 0
        for index in 0..<images {
            var random = SeededRandom(seed: seed, index)
            let scene = makeScene(&random)
            let name = "xmlab\(index)/source.\(scene.modality == "MRI" ? "png" : "jpg")"
            let folder = (out as NSString).appendingPathComponent("imgs/xmlab\(index)")
            try createDirectory(folder, manager)
            try writeImage(scene, random: &random, to: (out as NSString).appendingPathComponent("imgs/" + name))
            try writeDetection(scene, to: (folder as NSString).appendingPathComponent("detection.json"))
            if scene.modality == "MRI" { summary.png += 1 } else { summary.jpeg += 1 }
            let split = splitOf[index]
            summary.imagesPerSplit[split.rawValue, default: 0] += 1
            for question in questions(for: scene, random: &random) {
                records[split, default: []].append(record(question, scene: scene, imageId: index, name: name,
                                                          qid: qid, language: "en"))
                qid += 1
                summary.questions[split.rawValue, default: 0] += 1
            }
            let chinese = Question(text: "这张图片的成像方式是什么?", answer: scene.modality, open: true, content: "Modality")
            records[split, default: []].append(record(chinese, scene: scene, imageId: index, name: name, qid: qid,
                                                      language: "zh"))
            qid += 1
        }
        for split in Slake.Split.allCases {
            try JSONValue.writeList(records[split] ?? [], to: (out as NSString).appendingPathComponent("\(split.rawValue).json"))
        }
        return summary
    }

    private static func createDirectory(_ path: String, _ manager: FileManager) throws {
        do {
            try manager.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw DataError.invalid("\(path): cannot create folder: \(error.localizedDescription)")
        }
    }

    static func makeScene(_ random: inout SeededRandom) -> Scene {
        let modality = modalities[random.below(3)]
        // Odd, non-square sizes on purpose: the loader must resize anything.
        let width = 97 + random.below(64), height = 89 + random.below(64)
        var organPool = organs, quadrantPool = [0, 1, 2, 3]
        random.shuffle(&organPool)
        random.shuffle(&quadrantPool)
        let count = 1 + random.below(3)
        let placement = (0..<count).map { (organ: organPool[$0], quadrant: quadrantPool[$0]) }
        var lesions: Set<String> = []
        let lesionCount = min(count, random.below(3))
        for i in 0..<lesionCount { lesions.insert(placement[i].organ) }
        return Scene(modality: modality, width: width, height: height, placement: placement, lesions: lesions)
    }

    // MARK: Questions

    /// Eight English questions: five open, three closed (two yes/no, and a left/right choice or a third
    /// yes/no). Candidates of each kind are drawn without repetition.
    static func questions(for scene: Scene, random: inout SeededRandom) -> [Question] {
        var open = openQuestions(scene)
        var yesNo = yesNoQuestions(scene, random: &random)
        var choice = choiceQuestions(scene)
        random.shuffle(&open)
        random.shuffle(&yesNo)
        random.shuffle(&choice)
        var chosen = Array(open.prefix(5))
        chosen += yesNo.prefix(2)
        if !choice.isEmpty && random.below(3) == 0 {
            chosen.append(choice[0])
        } else {
            chosen += yesNo.dropFirst(2).prefix(1)
        }
        // Top up from any remaining yes/no question (a scene always has enough of them).
        var spare = yesNo.dropFirst(3).makeIterator()
        while chosen.count < questionsPerImage, let extra = spare.next() { chosen.append(extra) }
        return chosen
    }

    static func openQuestions(_ scene: Scene) -> [Question] {
        var list = [
            Question(text: "What modality is used to take this image?", answer: scene.modality, open: true, content: "Modality"),
            Question(text: "How many organs are shown in this image?", answer: String(scene.placement.count), open: true, content: "Quantity"),
            Question(text: "How many lesions are in this image?", answer: String(scene.lesions.count), open: true, content: "Quantity"),
        ]
        for (organ, quadrant) in scene.placement {
            list.append(Question(text: "Where is the \(organ) in this image?", answer: quadrants[quadrant], open: true, content: "Position"))
            list.append(Question(text: "Which organ is in the \(quadrants[quadrant]) part of the image?", answer: organ, open: true, content: "Organ"))
        }
        if scene.lesions.count == 1, let organ = scene.lesions.first {
            list.append(Question(text: "Which organ has a lesion?", answer: organ, open: true, content: "Abnormality"))
        }
        let largest = scene.placement.map { $0.organ }.sorted()
        list.append(Question(text: "Which organs appear in this image?", answer: largest.joined(separator: ", "), open: true, content: "Organ"))
        return list
    }

    /// Yes/no questions, half of them true, so "always no" scores about 50 % as on SLAKE.
    static func yesNoQuestions(_ scene: Scene, random: inout SeededRandom) -> [Question] {
        var list: [Question] = []
        func add(_ text: String, _ truth: Bool, _ content: String) {
            list.append(Question(text: text, answer: truth ? "Yes" : "No", open: false, content: content))
        }
        let other = modalities.filter { $0 != scene.modality }[random.below(2)]
        let askedModality = random.below(2) == 0 ? scene.modality : other
        add("Is this a\(askedModality == "MRI" ? "n" : "") \(askedModality) image?", askedModality == scene.modality, "Modality")
        let present = scene.placement.map { $0.organ }
        let absent = organs.filter { !present.contains($0) }
        let askedOrgan = (random.below(2) == 0 || absent.isEmpty) ? present[random.below(present.count)] : absent[random.below(absent.count)]
        add("Does the image contain the \(askedOrgan)?", present.contains(askedOrgan), "Organ")
        add("Is there a lesion in this image?", !scene.lesions.isEmpty, "Abnormality")
        add("Does this image look normal?", scene.lesions.isEmpty, "Abnormality")
        let (organ, quadrant) = scene.placement[random.below(scene.placement.count)]
        let askLeft = random.below(2) == 0
        add("Is the \(organ) on the \(askLeft ? "left" : "right") side of the image?", (quadrant % 2 == 0) == askLeft, "Position")
        add("Does the \(organ) have a lesion?", scene.lesions.contains(organ), "Abnormality")
        return list
    }

    /// Closed questions whose answer is not yes/no.
    static func choiceQuestions(_ scene: Scene) -> [Question] {
        scene.placement.map { organ, quadrant in
            Question(text: "Is the \(organ) on the left or right side of the image?",
                     answer: quadrant % 2 == 0 ? "Left" : "Right", open: false, content: "Position")
        }
    }

    private static func record(_ question: Question, scene: Scene, imageId: Int, name: String, qid: Int,
                               language: String) -> JSONValue {
        .object([
            ("img_id", .int(imageId)), ("img_name", .string(name)), ("question", .string(question.text)),
            ("answer", .string(question.answer)), ("q_lang", .string(language)), ("location", .string("Abdomen")),
            ("modality", .string(scene.modality)), ("answer_type", .string(question.open ? "OPEN" : "CLOSED")),
            ("base_type", .string("vqa")), ("content_type", .string(question.content)),
            ("triple", .list([.string("vhead"), .string("_"), .string("_")])), ("qid", .int(qid)),
        ])
    }

    // MARK: Pixels

    /// Gray levels per modality: background, body, organ, lesion.
    private static func palette(_ modality: String) -> (background: Int, body: Int, organ: Int, lesion: Int) {
        switch modality {
        case "CT": return (0, 80, 170, 30)
        case "MRI": return (0, 45, 215, 5)
        default: return (225, 175, 85, 250)
        }
    }

    static func render(_ scene: Scene, random: inout SeededRandom) -> [UInt8] {
        let (w, h) = (scene.width, scene.height)
        let colors = palette(scene.modality)
        var gray = [UInt8](repeating: 0, count: w * h)
        let unit = Double(min(w, h))
        for y in 0..<h {
            for x in 0..<w {
                let dx = (Double(x) + 0.5 - Double(w) / 2) / (Double(w) * 0.47)
                let dy = (Double(y) + 0.5 - Double(h) / 2) / (Double(h) * 0.47)
                let radius = dx * dx + dy * dy
                var level = colors.background
                if scene.modality == "X-Ray" {
                    // A bright field whose body darkens towards the bottom.
                    if abs(dx) < 0.95 && abs(dy) < 0.95 { level = colors.body - Int(20 * dy) }
                } else if radius < 1 {
                    level = colors.body
                    if scene.modality == "MRI" && radius > 0.85 { level = 200 }  // bright fat rim
                }
                gray[y * w + x] = UInt8(clamping: level)
            }
        }
        for (organ, quadrant) in scene.placement {
            let cx = Double(w) * (quadrant % 2 == 0 ? 0.3 : 0.7)
            let cy = Double(h) * (quadrant < 2 ? 0.3 : 0.7)
            let size = unit * 0.15
            fill(&gray, w, h) { x, y in inside(organ, x - cx, y - cy, size) ? colors.organ : nil }
            if scene.lesions.contains(organ) {
                let r = max(2.5, unit * 0.04)
                fill(&gray, w, h) { x, y in (x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r ? colors.lesion : nil }
            }
        }
        for i in 0..<gray.count {
            let noise = random.below(13) - 6
            gray[i] = UInt8(clamping: Int(gray[i]) + noise)
        }
        return gray
    }

    private static func fill(_ gray: inout [UInt8], _ w: Int, _ h: Int, _ shade: (Double, Double) -> Int?) {
        for y in 0..<h {
            for x in 0..<w {
                if let level = shade(Double(x) + 0.5, Double(y) + 0.5) { gray[y * w + x] = UInt8(clamping: level) }
            }
        }
    }

    /// Shape membership around the organ's centre: circle, square, triangle, diamond.
    private static func inside(_ organ: String, _ x: Double, _ y: Double, _ size: Double) -> Bool {
        switch organ {
        case "heart": return x * x + y * y < size * size
        case "liver": return abs(x) < size * 0.9 && abs(y) < size * 0.9
        case "kidney": return y < size * 0.8 && y > -size && abs(x) < (y + size) * 0.55
        default: return abs(x) + abs(y) < size * 1.1
        }
    }

    /// `detection.json` as SLAKE writes it: a list of one-key objects `{"organ": [x, y, width, height]}`,
    /// the box around each organ's shape. Uses no random draws, so images and questions are unchanged.
    private static func writeDetection(_ scene: Scene, to path: String) throws {
        let unit = Double(min(scene.width, scene.height))
        let boxes = scene.placement.map { organ, quadrant -> String in
            let cx = Double(scene.width) * (quadrant % 2 == 0 ? 0.3 : 0.7)
            let cy = Double(scene.height) * (quadrant < 2 ? 0.3 : 0.7)
            let half = unit * 0.15
            let box = [cx - half, cy - half, 2 * half, 2 * half].map { String(format: "%.1f", $0) }
            return "{\(JSONValue.quote(organ)): [\(box.joined(separator: ", "))]}"
        }
        do {
            try ("[" + boxes.joined(separator: ", ") + "]").write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw DataError.invalid("\(path): cannot write: \(error.localizedDescription)")
        }
    }

    /// CT as RGB JPEG, X-Ray as gray JPEG, MRI as PNG (gray or RGB, alternating by width parity).
    private static func writeImage(_ scene: Scene, random: inout SeededRandom, to path: String) throws {
        let gray = render(scene, random: &random)
        let rgb = gray.flatMap { [$0, $0, $0] }
        let bytes: [UInt8]
        switch scene.modality {
        case "CT": bytes = try ImageCodec.encodeJPEG(rgb, width: scene.width, height: scene.height, channels: 3)
        case "X-Ray": bytes = try ImageCodec.encodeJPEG(gray, width: scene.width, height: scene.height, channels: 1)
        default:
            bytes = scene.width % 2 == 0
                ? try ImageCodec.encodePNG(gray, width: scene.width, height: scene.height, channels: 1)
                : try ImageCodec.encodePNG(rgb, width: scene.width, height: scene.height, channels: 3)
        }
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        } catch {
            throw DataError.invalid("\(path): cannot write: \(error.localizedDescription)")
        }
    }
}
