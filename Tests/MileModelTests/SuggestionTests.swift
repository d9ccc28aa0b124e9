import XCTest
@testable import MileModel

/// Issue 18 (10): "did you mean" for mistyped modes, values and row labels.
final class SuggestionTests: XCTestCase {
    func testCloseNamesAreSuggestedAndFarOnesAreNot() {
        XCTAssertEqual(Suggestion.closest(to: "loar", among: ModuleMode.spellings), "lora", "a transposition is one edit")
        XCTAssertEqual(Suggestion.closest(to: "IA", among: ModuleMode.spellings), "ia3")
        XCTAssertEqual(Suggestion.closest(to: "smal", among: ["paper", "small", "smoke"]), "small")
        XCTAssertNil(Suggestion.closest(to: "huge", among: ["paper", "small", "smoke"]))
        XCTAssertNil(Suggestion.closest(to: "Q", among: ["F", "T"]), "one-letter names: only another case")
        XCTAssertEqual(Suggestion.closest(to: "t", among: ["F", "T"]), "T")
        XCTAssertEqual(Suggestion.distance(Array("kitten"), Array("sitting")), 3)
        XCTAssertEqual(Suggestion.phrase(for: "ptv", among: ["prefix", "ptv2"]), " (did you mean 'ptv2'?)")
        XCTAssertEqual(Suggestion.phrase(for: "zzzzzz", among: ["prefix", "ptv2"]), "")
    }
}
