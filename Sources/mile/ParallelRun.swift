import Foundation
import MileHarness

/// `mile run --jobs N`: first one process with every thread pretrains the missing bases, then N worker
/// processes of this executable share one results database, each claiming the next pending cell (the
/// store's claims keep two workers off one cell; the base's file lock would make the others wait if a
/// base were still missing). On 2 cores two single-threaded workers finish about 1.1× the cells per hour
/// of one process with two threads (docs/PIPELINE.md), while a base, which no worker can share, is
/// pretrained ~1.8× faster with two threads.
enum ParallelRun {
    /// Pretrains the missing bases, then starts the workers; forwards a stop request and waits for all.
    static func runWorkers(count: Int, arguments: [String]) throws {
        let all = ProcessInfo.processInfo.environment["MILE_THREADS"].flatMap { Int($0) }.map { max($0, 1) }
            ?? ProcessInfo.processInfo.activeProcessorCount
        FileHandle.standardError.write(Data("pretraining missing bases first (one process, MILE_THREADS=\(all))\n".utf8))
        waitForAll([try startWorker(arguments: arguments + ["--bases-only"], threads: all)])
        if StopRequest.isSet { return }
        let threads = workerThreads(jobs: count)
        var workers: [Process] = []
        for index in 0..<count {
            if StopRequest.isSet { break }    // Ctrl-C/SIGTERM while starting workers: start no more
            workers.append(try startWorker(arguments: arguments, threads: threads))
            // A short gap lets the first worker claim the first cell before the next one looks.
            if index + 1 < count { sleepUnlessStopped(2) }
        }
        FileHandle.standardError.write(Data("started \(count) workers (pids \(workers.map { String($0.processIdentifier) }.joined(separator: ", ")), MILE_THREADS=\(threads) each)\n".utf8))
        waitForAll(workers)
    }

    /// Waits until every process has exited, passing a stop request (Ctrl-C, SIGTERM) on to them.
    private static func waitForAll(_ processes: [Process]) {
        var forwarded = false
        while processes.contains(where: \.isRunning) {
            if StopRequest.isSet && !forwarded {
                for process in processes where process.isRunning { process.interrupt() }
                forwarded = true
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }

    private static func sleepUnlessStopped(_ seconds: Double) {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end && !StopRequest.isSet { Thread.sleep(forTimeInterval: 0.05) }
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
