import XCTest
@testable import MileModel

final class MileModelPlaceholderTests: XCTestCase {
    func testModuleLoads() {
        XCTAssertFalse(MileModelInfo.name.isEmpty)
    }
}
