import Foundation

/// OFA's relative-position buckets (`make_token_bucket_position`, `make_image_bucket_position` in
/// `unify_transformer.py`), computed per pair instead of as the upstream [1024, 1024] / [1765, 1765] buffers.
enum OFABuckets {
    /// Row of the token table for query position i and key position j (relative position i − j):
    /// exact within ±bucket/2, log-spaced beyond up to ±1023 (upstream's fixed `max_position` 1024), plus
    /// bucket − 1 so rows start at 0. Table rows: 2·bucket − 1.
    static func token(_ relative: Int, bucketSize: Int, maxPosition: Int = 1024) -> Int {
        let mid = bucketSize / 2
        let sign = relative > 0 ? 1 : (relative < 0 ? -1 : 0)
        let absolute = relative < mid && relative > -mid ? mid - 1 : abs(relative)
        if absolute <= mid { return relative + bucketSize - 1 }
        // torch computes this in float32: ceil(log(abs / mid) / log((max - 1) / mid) · (mid − 1)) + mid.
        let ratio = Float(absolute) / Float(mid)
        let scaled = Float(log(Double(ratio))) / Float(log(Double(maxPosition - 1) / Double(mid))) * Float(mid - 1)
        let logPosition = Int(scaled.rounded(.up)) + mid
        return min(max(logPosition * sign + bucketSize - 1, 0), 2 * bucketSize - 2)
    }

    /// Rows of the token table: 2·bucket − 1.
    static func tokenRows(_ bucketSize: Int) -> Int { 2 * bucketSize - 1 }

    /// Rows of the image table: (2·bucket − 1)² + 3 (the last three serve a CLS-like position 0 that OFA's
    /// ResNet path never uses).
    static func imageRows(_ bucketSize: Int) -> Int { (2 * bucketSize - 1) * (2 * bucketSize - 1) + 3 }

    /// Row of the image table for grid cells (yi, xi) and (yj, xj).
    static func image(dy: Int, dx: Int, bucketSize: Int) -> Int {
        (dy + bucketSize - 1) * (2 * bucketSize - 1) + (dx + bucketSize - 1)
    }

    /// Index of grid cell (y, x) in `embed_image_positions`: x + y · bucket + 1.
    static func imagePosition(y: Int, x: Int, bucketSize: Int) -> Int32 { Int32(x + y * bucketSize + 1) }
}
