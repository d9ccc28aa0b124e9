import XCTest
@testable import MileData

final class MileDataPlaceholderTests: XCTestCase {
    func testModuleLoads() {
        XCTAssertFalse(MileDataInfo.name.isEmpty)
    }
}
