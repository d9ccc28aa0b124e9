/// "Did you mean ...?" for a mistyped name: the closest candidate by edit distance, ignoring case, when it
/// is close enough to be the intended one (at most a third of the longer name's characters differ).
public enum Suggestion {
    public static func closest(to text: String, among candidates: [String]) -> String? {
        let typed = Array(text.lowercased())
        let scored = candidates.map { ($0, distance(typed, Array($0.lowercased()))) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        let limit = max(typed.count, best.0.count) / 3
        return best.1 <= limit ? best.0 : nil
    }

    /// " (did you mean 'x'?)", or "" when nothing is close.
    public static func phrase(for text: String, among candidates: [String]) -> String {
        closest(to: text, among: candidates).map { " (did you mean '\($0)'?)" } ?? ""
    }

    /// Edit distance with adjacent transpositions counted once ("loar" is one edit from "lora").
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in stride(from: 1, through: a.count, by: 1) {
            for j in stride(from: 1, through: b.count, by: 1) {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
            }
        }
        return d[a.count][b.count]
    }
}
