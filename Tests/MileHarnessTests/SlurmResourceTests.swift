import Foundation
import XCTest
@testable import MileHarness

/// `--time-per-epoch`, `--mem auto` and the options a resubmission takes from the manifest.
final class SlurmResourceTests: XCTestCase {
    func testDurationsParseAsSlurmReadsThem() throws {
        XCTAssertEqual(try SlurmResources.seconds("12"), 720)          // minutes
        XCTAssertEqual(try SlurmResources.seconds("12:30"), 750)       // minutes:seconds
        XCTAssertEqual(try SlurmResources.seconds("1:02:03"), 3723)
        XCTAssertEqual(try SlurmResources.seconds("2-3"), 2 * 86_400 + 3 * 3600)
        XCTAssertEqual(try SlurmResources.seconds("2-3:04"), 2 * 86_400 + 3 * 3600 + 240)
        XCTAssertEqual(try SlurmResources.seconds("1-00:00:05"), 86_405)
        for bad in ["", "abc", "1:2:3:4", "-5", "1--2", "0", "0:00", "5:-1"] {
            XCTAssertThrowsError(try SlurmResources.seconds(bad), bad)
        }
        XCTAssertEqual(SlurmResources.format(seconds: 3723), "01:02:03")
        XCTAssertEqual(SlurmResources.format(seconds: 86_405), "1-00:00:05")
    }

    func testLimitsFollowEpochsAndPredictedPeaks() {
        // 4 epochs of 10 min: 1.5 × 40 min + 15 min = 75 min.
        XCTAssertEqual(SlurmResources.timeLimit(epochs: 4, perEpoch: 600), "01:15:00")
        XCTAssertEqual(SlurmResources.timeLimit(epochs: 0, perEpoch: 600), "00:15:00")
        // 2 × 1.5 GiB + 1 GiB = 4096 MiB; one byte more rounds up to the next MiB.
        XCTAssertEqual(SlurmResources.memoryRequest(peakBytes: 3 << 29), "4096M")
        XCTAssertEqual(SlurmResources.memoryRequest(peakBytes: (3 << 29) + 1), "4097M")
    }

    func testJobLinesTakeEachJobsOwnNeeds() {
        let options = SlurmOptions(timePerEpoch: 600, memory: SlurmOptions.autoMemory)
        let base = options.lines(JobNeeds(epochs: 4, peakBytes: 3 << 29))
        XCTAssertEqual(base, ["--cpus-per-task=1", "--mem=4096M", "--time=01:15:00"])
        XCTAssertEqual(options.lines(JobNeeds(epochs: 2)), ["--cpus-per-task=1", "--time=00:45:00"], "no peak: no --mem")
        var requeue = SlurmOptions(time: "4:00:00")
        requeue.requeueBefore = 600
        XCTAssertEqual(requeue.lines(JobNeeds(epochs: 1)), ["--cpus-per-task=1", "--time=4:00:00", "--signal=B:USR1@600"])
        let fixed = SlurmOptions(time: "4:00:00", timePerEpoch: 600, memory: "8G")
        XCTAssertEqual(fixed.lines(JobNeeds(epochs: 4, peakBytes: 1)), ["--cpus-per-task=1", "--mem=8G", "--time=4:00:00"])
    }

    func testGroupsCarryTheirEpochs() throws {
        let table = try ExperimentLoader.load(path: TestSupport.experiment("slurm-smoke.yaml"))
        let cells = try Planner.expand(table, overrides: [ConfigOverride("recipe.epochs=3"), ConfigOverride("pretraining.epochs=2")])
        let group = try XCTUnwrap(SlurmGroup.make(cells) { _ in false }.first)
        XCTAssertEqual(group.baseNeeds, JobNeeds(epochs: 2))
        XCTAssertEqual(group.cellNeeds, JobNeeds(epochs: 3))
    }

    /// A resubmission reads the submission's options back from its manifest.
    func testManifestKeepsTheOptions() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        var options = SlurmOptions(partition: "cpu", account: "lab", timePerEpoch: 900, cpus: 4, memory: "auto", maxParallel: 3,
                                   extra: ["--constraint=avx2"])
        options.requeueBefore = 300
        options.maxRequeues = 5
        let scripts = SlurmScripts(folder: SlurmRunFolder(path: dir), options: options, workingDirectory: dir, selection: ["t.yaml"],
                                   slake: "/data/Slake1.0", rad: nil, cache: dir + "/.mile")
        let text = SlurmManifest.json(runID: "r", created: Date(timeIntervalSince1970: 0), scripts: scripts, groups: [])
        try text.write(toFile: dir + "/manifest.json", atomically: true, encoding: .utf8)
        XCTAssertEqual(try SlurmManifest.read(dir + "/manifest.json").options, options)
    }
}
