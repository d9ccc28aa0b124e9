import XCTest
@testable import MileHarness

final class MileHarnessPlaceholderTests: XCTestCase {
    func testModuleLoads() {
        XCTAssertFalse(MileHarnessInfo.name.isEmpty)
    }
}
