import Engine
import XCTest
@testable import MileModel

final class OFALossTests: XCTestCase {
    func testLossIsFiniteAndNearUniform() throws {
        let model = try ofaSmokeModel(.trained, .trained)
        let batch = try OFASmokeBatch(.smoke)
        let loss = try ofaLossValue(model, batch)
        XCTAssertTrue(loss.isFinite)
        XCTAssertEqual(loss, log(Float(100)), accuracy: 1.5, "\(loss)")
    }
}
