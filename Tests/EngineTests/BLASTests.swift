import XCTest
import CBLAS
@testable import Engine

final class BLASTests: XCTestCase {
    func testLinkedSgemmMultiplies() {
        let a: [Float] = [1, 2, 3, 4]  // 2x2 row-major
        let b: [Float] = [5, 6, 7, 8]
        var c = [Float](repeating: 0, count: 4)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1, a, 2, b, 2, 0, &c, 2)
        XCTAssertEqual(c, [19, 22, 43, 50])
        XCTAssertGreaterThan(BLAS.threads, 0)
    }

    func testCoreNameAndRecommendation() {
        XCTAssertNotEqual(BLAS.coreName, "unknown", BLAS.configuration)
        if let core = BLAS.recommendedCoreType() { XCTAssertTrue(["SkylakeX", "Haswell"].contains(core)) }
    }
}
