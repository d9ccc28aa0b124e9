import Foundation

/// Progress on stderr: on a terminal one line rewritten in place; otherwise (logs, make) a line every
/// `interval` seconds, so a long stage is visible without flooding the log.
public final class ProgressPrinter {
    public var cellPrefix = ""
    let interactive: Bool
    let interval: TimeInterval
    let quiet: Bool
    private var lastPrint = Date.distantPast
    private var pendingLine = false

    /// `inPlace: false` prints log lines even on a terminal (parallel workers share one terminal).
    public init(interval: TimeInterval = 15, quiet: Bool = false, inPlace: Bool = true) {
        interactive = inPlace && isatty(STDERR_FILENO) != 0
        self.interval = interval
        self.quiet = quiet
    }

    public func line(_ text: String) {
        guard !quiet else { return }
        write((pendingLine ? "\n" : "") + cellPrefix + " " + text + "\n")
        pendingLine = false
    }

    func step(_ p: StepProgress) {
        let text = String(format: "%@ epoch %d/%d step %d/%d loss %.4f %.1f samples/s ETA %@", p.stage, p.epoch + 1, p.epochs,
                          p.step, p.steps, p.loss, p.samplesPerSecond, Self.duration(p.secondsLeft))
        transient(text)
    }

    func evaluation(done: Int, total: Int) {
        transient("evaluate \(done)/\(total) questions")
    }

    private func transient(_ text: String) {
        guard !quiet else { return }
        let now = Date()
        if interactive {
            guard now.timeIntervalSince(lastPrint) >= 0.5 else { return }
            write("\r\u{1B}[K" + cellPrefix + " " + text)
            pendingLine = true
        } else {
            guard now.timeIntervalSince(lastPrint) >= interval else { return }
            write(cellPrefix + " " + text + "\n")
        }
        lastPrint = now
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let s = Int(seconds.rounded())
        if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m" }
        if s >= 60 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s)s"
    }
}
