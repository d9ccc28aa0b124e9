import Engine
@testable import MileModel

/// FNV-1a 64 over the listing of a model's parameters: name, shape, trainability, adapter role.
func layoutDigest(_ lines: [String]) -> String {
    var h: UInt64 = 0xcbf29ce484222325
    for byte in lines.joined(separator: "\n").utf8 { h ^= UInt64(byte); h = h &* 0x100000001b3 }
    return String(h, radix: 16)
}

let layoutCells: [(String, String, String, Int)] = paperRows.map { ($0.vit, $0.jtm, $0.dec, $0.rank) }
    + [("T", "T", "T", 8), ("F", "F", "F", 8), ("lora", "T", "ia3", 3), ("ia3", "prefix", "ptv2", 2)]
