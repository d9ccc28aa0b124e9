import Foundation

/// Seeded, splittable generator (SplitMix64). One stream for init, dropout and shuffling;
/// `split` derives independent deterministic streams so that consumers do not disturb each other.
public struct RNG {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func nextUInt64() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return RNG.mix(state)
    }

    /// Uniform in [0, 1) with 24 random bits.
    public mutating func nextFloat() -> Float {
        Float(nextUInt64() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Standard normal (Box-Muller, one value per call).
    public mutating func normal() -> Float {
        let u1 = (Double(nextUInt64() >> 11) + 1) * (1.0 / 9_007_199_254_740_993.0)  // (0, 1]
        let u2 = Double(nextUInt64() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }

    /// Uniform integer in 0..<n.
    public mutating func nextInt(_ n: Int) -> Int {
        check(n > 0, "RNG.nextInt needs n > 0")
        return Int(nextUInt64() % UInt64(n))
    }

    /// Fisher-Yates shuffle.
    public mutating func shuffle<T>(_ xs: inout [T]) {
        guard xs.count > 1 else { return }
        for i in stride(from: xs.count - 1, to: 0, by: -1) { xs.swapAt(i, nextInt(i + 1)) }
    }

    /// An independent stream keyed by `key`; does not advance `self`.
    public func split(_ key: UInt64) -> RNG {
        RNG(seed: RNG.mix(state ^ RNG.mix(key &+ 0xD1B5_4A32_D192_ED03)))
    }

    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform [0, 1) value number `index` of the counter-based stream `seed` (any order, any thread).
    @inline(__always)
    static func uniform(seed: UInt64, index: Int) -> Float {
        Float(bits24(seed: seed, index: index)) * (1.0 / 16_777_216.0)
    }

    /// The 24 random bits behind uniform(seed:index:), as an integer in 0..<2^24.
    @inline(__always)
    static func bits24(seed: UInt64, index: Int) -> UInt64 {
        mix(seed &+ UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15) >> 40
    }
}
