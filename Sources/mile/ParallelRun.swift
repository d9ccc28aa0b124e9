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
    static func runWorkers(count: Int, arguments: [String], store: ResultsStore) throws {
        let all = ProcessInfo.processInfo.environment["MILE_THREADS"].flatMap { Int($0) }.map { max($0, 1) }
            ?? ProcessInfo.processInfo.activeProcessorCount
        FileHandle.standardError.write(Data("pretraining missing bases first (one process, MILE_THREADS=\(all))\n".utf8))
        try waitForAll([try startWorker(arguments: arguments + ["--bases-only"], threads: all)], store: store, replacement: nil, limit: 0)
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
        try waitForAll(workers, store: store, replacement: { try startWorker(arguments: arguments, threads: threads) }, limit: count)
    }

    /// Waits until every process has exited, passing a stop request (Ctrl-C, SIGTERM: the same signal) on
    /// to them. A worker that dies (killed by a signal, or an exit status other than 0 and 130) is noticed
    /// at once: the cells it held are recorded interrupted, and a replacement worker (at most `limit` in
    /// all) reruns them, resuming from their last finished epoch.
    private static func waitForAll(_ initial: [Process], store: ResultsStore, replacement: (() throws -> Process)?, limit: Int) throws {
        var processes = initial
        var handled = Set<Int32>()
        var forwarded = false
        var replacements = 0
        while handled.count < processes.count {
            if StopRequest.isSet && !forwarded {
                let signal = StopRequest.requested > 0 ? StopRequest.requested : SIGINT
                for process in processes where process.isRunning { kill(process.processIdentifier, signal) }
                forwarded = true
            }
            for process in processes where !process.isRunning && !handled.contains(process.processIdentifier) {
                handled.insert(process.processIdentifier)
                let signalled = process.terminationReason == .uncaughtSignal
                guard signalled || ![0, 130].contains(process.terminationStatus) else { continue }
                let pid = process.processIdentifier
                let how = signalled ? "was killed by signal \(process.terminationStatus) (\(String(cString: strsignal(process.terminationStatus))))"
                                    : "exited with status \(process.terminationStatus)"
                let released = try store.releaseClaims(ofProcess: pid, reason: "worker process \(pid) \(how)")
                let cells = released.map { "\($0.label) seed \($0.seed) \($0.cellID.prefix(12))" }
                FileHandle.standardError.write(Data(("worker \(pid) \(how)"
                    + (cells.isEmpty ? "" : "; recorded interrupted: \(cells.joined(separator: ", "))") + "\n").utf8))
                if !released.isEmpty, !StopRequest.isSet, let replacement, replacements < limit {
                    replacements += 1
                    let next = try replacement()
                    processes.append(next)
                    FileHandle.standardError.write(Data("started replacement worker \(next.processIdentifier) to rerun them\n".utf8))
                }
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
