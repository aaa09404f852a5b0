import Glibc
import Logging
import TunnelPOSIX

/// Where log lines go: stderr in the foreground, the runtime directory's log
/// file (rotated by size) for the daemon, or the journal through stderr
/// under systemd (`journal`: each line starts with its sd-daemon(3)
/// priority, `<4>`, and carries no timestamp, as the journal adds its own).
public final class LogSink: Sendable {
    private struct Targets {
        var fds: [Int32]
        var file: RotatingLogFile?
    }
    private let targets: Locked<Targets>
    public let minimumLevel: Logger.Level
    public let journal: Bool

    public init(fds: [Int32], file: RotatingLogFile? = nil, minimumLevel: Logger.Level, journal: Bool = false) {
        self.targets = Locked(Targets(fds: fds, file: file))
        self.minimumLevel = minimumLevel
        self.journal = journal
    }

    /// Lines for the journal, written to `fd` (stderr, which `$JOURNAL_STREAM` names).
    public convenience init(journal fd: Int32, minimumLevel: Logger.Level) {
        self.init(fds: [fd], minimumLevel: minimumLevel, journal: true)
    }

    public convenience init(fd: Int32, minimumLevel: Logger.Level) {
        self.init(fds: [fd], minimumLevel: minimumLevel)
    }

    public func write(_ line: String) {
        targets.withLock { targets in
            targets.file?.write(line)
            for fd in targets.fds { writeLine(fd, line) }
        }
    }
}

/// One line per message: `2026-11-21 19:32:00 [db] warning: link lost ...`.
/// The tunnel's name in brackets is what `tunnel logs NAME` filters on.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let sink: LogSink

    public init(label: String, sink: LogSink) {
        self.label = label
        self.sink = sink
        self.logLevel = sink.minimumLevel
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let explicit = event.metadata { all.merge(explicit) { $1 } }
        let level = event.level, message = event.message
        let tunnel = all.removeValue(forKey: "tunnel").map { "[\($0)] " } ?? ""
        let extra = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        // One event is one line: nothing in it may start another or drive the terminal.
        let text = "\(tunnel)\(level): \(message)\(extra)".escapingControlCharacters
        sink.write(sink.journal ? "<\(journalPriority(level))>\(text)" : "\(localTimestamp()) \(text)")
    }
}

/// sd-daemon(3)'s syslog priority for a level: `<3>` error, `<4>` warning,
/// `<6>` info, `<7>` debug.
public func journalPriority(_ level: Logger.Level) -> Int {
    switch level {
    case .trace, .debug: return 7
    case .info: return 6
    case .notice: return 5
    case .warning: return 4
    case .error: return 3
    case .critical: return 2
    }
}
