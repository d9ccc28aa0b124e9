/// SplitMix64: a small, fast generator that gives the same sequence for the same seed on every platform
/// (Swift's SystemRandomNumberGenerator cannot be seeded). Used wherever MileData must be deterministic.
public struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    /// A generator for one purpose derived from a seed and some integers (e.g. seed, qid, epoch), so draws
    /// for different records do not depend on the order in which they are made.
    public init(seed: UInt64, _ parts: Int...) {
        var mixed = SeededRandom.mix(seed)
        for part in parts {
            mixed = SeededRandom.mix(mixed ^ UInt64(bitPattern: Int64(part)) &* 0x9E37_79B9_7F4A_7C15)
        }
        state = mixed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SeededRandom.mix(state)
    }

    /// A uniform integer in 0..<bound, computed the same way everywhere (Swift's `Int.random(in:using:)`
    /// is not documented to be stable across versions).
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0)
        return Int(next() % UInt64(bound))
    }

    /// A uniform double in [0, 1).
    public mutating func unit() -> Double {
        Double(next() >> 11) / Double(1 << 53)
    }

    /// Fisher-Yates shuffle with `below`, stable across Swift versions.
    public mutating func shuffle<T>(_ items: inout [T]) {
        guard items.count > 1 else { return }
        for i in stride(from: items.count - 1, to: 0, by: -1) {
            items.swapAt(i, below(i + 1))
        }
    }

    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
