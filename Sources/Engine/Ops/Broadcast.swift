// Numpy broadcasting for binary ops. Dimensions with the same (a broadcast?, b broadcast?) pattern are
// merged, so the kernels run over rows of the last merged dimension with strides 0 or 1.

struct BroadcastPlan {
    let outShape: [Int]
    /// Merged dims; the last one is the inner row.
    let dims: [Int]
    let aStrides: [Int]
    let bStrides: [Int]

    init(_ a: [Int], _ b: [Int]) {
        let rank = Swift.max(a.count, b.count)
        let pa = Array(repeating: 1, count: rank - a.count) + a
        let pb = Array(repeating: 1, count: rank - b.count) + b
        var out: [Int] = []
        for i in 0..<rank {
            check(pa[i] == pb[i] || pa[i] == 1 || pb[i] == 1, "cannot broadcast shapes \(a) and \(b)")
            out.append(pa[i] == 1 ? pb[i] : pa[i])   // numpy: a size-1 dim takes the other size (also 0)
        }
        outShape = out
        // Merge dims with the same broadcast pattern (size-1 output dims are dropped).
        var dims: [Int] = [], pattern: [(Bool, Bool)] = []
        for i in 0..<rank where out[i] != 1 {
            let p = (pa[i] == 1, pb[i] == 1)
            if let last = pattern.last, last == p { dims[dims.count - 1] *= out[i] } else {
                dims.append(out[i]); pattern.append(p)
            }
        }
        if dims.isEmpty { dims = [1]; pattern = [(false, false)] }
        self.dims = dims
        aStrides = BroadcastPlan.strides(dims, pattern.map { $0.0 })
        bStrides = BroadcastPlan.strides(dims, pattern.map { $0.1 })
    }

    private static func strides(_ dims: [Int], _ broadcast: [Bool]) -> [Int] {
        var s = Array(repeating: 0, count: dims.count), acc = 1
        for i in stride(from: dims.count - 1, through: 0, by: -1) where !broadcast[i] {
            s[i] = acc; acc *= dims[i]
        }
        return s
    }

    var inner: Int { dims[dims.count - 1] }
    var rows: Int { dims.dropLast().reduce(1, *) }

    /// Calls body(outOffset, aOffset, bOffset) for every inner row, in order.
    func forEachRow(_ body: (Int, Int, Int) -> Void) { forEachRow(in: 0..<rows, body) }

    /// Same over row chunks on several threads; only for bodies whose rows write disjoint memory.
    func forEachRowParallel(_ body: (Int, Int, Int) -> Void) {
        parallelFor(rows, grain: Swift.max(1, 32768 / Swift.max(inner, 1))) { forEachRow(in: $0, body) }
    }

    private func forEachRow(in range: Range<Int>, _ body: (Int, Int, Int) -> Void) {
        guard !range.isEmpty else { return }   // also covers zero-size dims
        let outer = dims.count - 1
        var idx = Array(repeating: 0, count: outer)
        var ia = 0, ib = 0, rest = range.lowerBound
        for d in stride(from: outer - 1, through: 0, by: -1) {   // odometer state of the first row
            idx[d] = rest % dims[d]; rest /= dims[d]
            ia += idx[d] * aStrides[d]; ib += idx[d] * bStrides[d]
        }
        for r in range {
            body(r * inner, ia, ib)
            var d = outer - 1
            while d >= 0 {
                idx[d] += 1; ia += aStrides[d]; ib += bStrides[d]
                if idx[d] < dims[d] { break }
                ia -= aStrides[d] * dims[d]; ib -= bStrides[d] * dims[d]; idx[d] = 0
                d -= 1
            }
        }
    }
}
