// swift-tools-version:6.0
import PackageDescription

// Layers: C shims -> Engine -> MileModel (MISS, OFA, PEFT) and MileData (both on Engine: TokenBatch) -> MileHarness -> mile (CLI).
// Tests depend only on the layer they exercise.
let optimized: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"])]

let package = Package(
    name: "mile",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "mile", targets: ["mile"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
    ],
    targets: [
        // System libraries (installed by `make deps` through apt-get).
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg-dev"])]),

        // Spinning worker threads for the engine's parallel kernels (C for atomics and the pause hint).
        .target(name: "CWorkerPool", path: "Sources/CWorkerPool"),
        .target(name: "CHeap", path: "Sources/CHeap"),
        .target(name: "Engine", dependencies: ["CBLAS", "CWorkerPool", "CHeap"], swiftSettings: optimized),
        .target(name: "MileModel", dependencies: ["Engine"], swiftSettings: optimized),
        // libjpeg/libpng report errors by longjmp, which Swift cannot catch: this C target wraps them.
        .target(name: "CImageCodec", path: "Sources/CImageCodec",
                linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16")]),
        .target(name: "MileData", dependencies: ["Engine", "CPNG", "CJPEG", "CImageCodec"], swiftSettings: optimized),
        // The git commit the binary is built from, embedded by a prebuild command (Plugins/BuildInfo).
        .plugin(name: "BuildInfo", capability: .buildTool()),
        .target(name: "MileHarness", dependencies: [
            "Engine", "MileModel", "MileData",
            .product(name: "Yams", package: "Yams"),
            .product(name: "GRDB", package: "GRDB.swift"),
        ], plugins: ["BuildInfo"]),
        .executableTarget(name: "mile", dependencies: [
            "MileHarness", "MileModel", "MileData", "Engine",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "EngineBench", dependencies: ["Engine", "CBLAS"], swiftSettings: optimized),
        .executableTarget(name: "PeerBench", dependencies: ["MileModel", "Engine"], swiftSettings: optimized),

        .testTarget(name: "EngineTests", dependencies: ["Engine"]),
        .testTarget(name: "MileModelTests", dependencies: ["MileModel", "Engine"], resources: [.copy("Fixtures")]),
        .testTarget(name: "MileDataTests", dependencies: ["MileData", "Engine"]),
        .testTarget(name: "MileHarnessTests", dependencies: ["MileHarness", "MileData", .product(name: "GRDB", package: "GRDB.swift")]),
    ],
    swiftLanguageModes: [.v5]
)
