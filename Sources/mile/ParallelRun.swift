import Foundation
import MileHarness

/// `mile run --jobs N`: N worker processes of this executable share one results database, each claiming
/// the next pending cell (the store's claims keep two workers off one cell; the base's file lock makes
/// the others wait while the first pretrains it). On 2 cores two single-threaded workers train about
/// twice as many samples per second as one process with two threads, because the small preset's thin
/// matrix products scale poorly across threads (docs/PIPELINE.md).
enum ParallelRun {
    /// Starts the workers, forwards a stop request to them, and waits for all of them.
    static func runWorkers(count: Int, arguments: [String]) throws {
        let threads = workerThreads(jobs: count)
        var workers: [Process] = []
        for index in 0..<count {
            workers.append(try startWorker(arguments: arguments, threads: threads))
            // A short gap lets the first worker claim the first cell (and its base) before the next one looks.
            if index + 1 < count { Thread.sleep(forTimeInterval: 2) }
        }
        FileHandle.standardError.write(Data("started \(count) workers (pids \(workers.map { String($0.processIdentifier) }.joined(separator: ", ")), MILE_THREADS=\(threads) each)\n".utf8))
        var forwarded = false
        while workers.contains(where: \.isRunning) {
            if StopRequest.isSet && !forwarded {
                for worker in workers where worker.isRunning { worker.interrupt() }
                forwarded = true
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }

    /// MILE_THREADS for each worker: the user's value when set, else the cores divided among the workers.
    static func workerThreads(jobs: Int) -> Int {
        if let text = ProcessInfo.processInfo.environment["MILE_THREADS"], let n = Int(text), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount / jobs)
    }

    /// The command line of this process without `--jobs`, plus the hidden `--worker` flag.
    static func workerArguments(_ arguments: [String]) -> [String] {
        var result: [String] = []
        var skipNext = false
        for argument in arguments {
            if skipNext { skipNext = false; continue }
            if argument == "--jobs" { skipNext = true; continue }
            if argument.hasPrefix("--jobs=") { continue }
            result.append(argument)
        }
        return result + ["--worker"]
    }

    private static func startWorker(arguments: [String], threads: Int) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["MILE_THREADS"] = String(threads)
        process.environment = environment
        try process.run()
        return process
    }

    /// In a worker: stop at the next safe point (recording the cell as interrupted) when the parent
    /// `mile run --jobs` process goes away, even by SIGKILL, instead of running on unattended.
    static func watchParent() {
        let parent = getppid()
        Thread.detachNewThread {
            while getppid() == parent { Thread.sleep(forTimeInterval: 1) }
            StopRequest.requested = StopRequest.parentGone
        }
    }
}
