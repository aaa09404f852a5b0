import Glibc
import Logging
import TunnelPOSIX

/// Where log lines go: stderr in the foreground, the runtime directory's log
/// file (rotated by size) for the daemon.
public final class LogSink: Sendable {
    private struct Targets {
        var fds: [Int32]
        var file: RotatingLogFile?
    }
    private let targets: Locked<Targets>
    public let minimumLevel: Logger.Level

    public init(fds: [Int32], file: RotatingLogFile? = nil, minimumLevel: Logger.Level) {
        self.targets = Locked(Targets(fds: fds, file: file))
        self.minimumLevel = minimumLevel
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
        sink.write("\(localTimestamp()) \(tunnel)\(level): \(message)\(extra)".escapingControlCharacters)
    }
}
