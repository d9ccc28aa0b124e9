/// Token ids padded to a common length, row-major [batch, length], with the attention mask (1 a token, 0
/// padding): what the data layer produces and every model consumes.
public struct TokenBatch: Equatable, Sendable {
    public let ids: [Int32]
    public let mask: [Int32]
    public let batch: Int
    public let length: Int

    /// A model input: non-empty, with one id and one mask value per position.
    public init(ids: [Int32], mask: [Int32], batch: Int, length: Int) throws {
        guard batch > 0, length > 0 else { throw TokenBatchError("token batch must be non-empty, got [\(batch), \(length)]") }
        guard ids.count == batch * length, mask.count == ids.count else {
            throw TokenBatchError("token batch [\(batch), \(length)] needs \(batch * length) ids and mask values, got \(ids.count) and \(mask.count)")
        }
        self.ids = ids; self.mask = mask; self.batch = batch; self.length = length
    }

    /// The sequences padded with `pad` to the longest one (mask 0 on the padding).
    public init(padding sequences: [[Int32]], pad: Int32 = 0) {
        batch = sequences.count
        length = sequences.map(\.count).max() ?? 0
        var ids = [Int32](repeating: pad, count: batch * length)
        var mask = [Int32](repeating: 0, count: batch * length)
        for (row, sequence) in sequences.enumerated() {
            for (column, id) in sequence.enumerated() {
                ids[row * length + column] = id
                mask[row * length + column] = 1
            }
        }
        self.ids = ids
        self.mask = mask
    }

    /// Row `i` as its own array (padding included).
    public func row(_ i: Int) -> [Int32] {
        Array(ids[i * length..<(i + 1) * length])
    }
}

public struct TokenBatchError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
