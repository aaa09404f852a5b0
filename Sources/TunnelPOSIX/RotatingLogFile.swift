import Glibc

/// An append-only log file that rotates by size while it is written:
/// past `limit` bytes, `path` becomes `path.1` (`.1` becomes `.2`, and so on
/// up to `keep` files) and a new `path` is started. Not thread-safe: the
/// owner serialises writes.
public final class RotatingLogFile {
    public let path: String
    public let limit: Int
    public let keep: Int
    private var fd: Int32
    private var size: Int

    /// Opens (creating, mode 0600) `path` for appending; rotates first if it
    /// is already over `limit`.
    public init(path: String, limit: Int = 10 << 20, keep: Int = 3) throws(SystemError) {
        self.path = path
        self.limit = limit
        self.keep = keep
        fd = -1
        size = 0
        try reopen()
        if size > limit { try rotate() }
    }

    deinit { if fd >= 0 { _ = close(fd) } }

    private func reopen() throws(SystemError) {
        let opened = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard opened >= 0 else { throw SystemError("open(\(path))", .current) }
        fd = opened
        var st = stat()
        size = fstat(fd, &st) == 0 ? Int(st.st_size) : 0
    }

    private func rotate() throws(SystemError) {
        _ = close(fd)
        fd = -1
        for index in stride(from: keep - 1, through: 1, by: -1) {
            _ = rename("\(path).\(index)", "\(path).\(index + 1)")
        }
        _ = rename(path, "\(path).1")
        try reopen()
    }

    /// Appends one line (a newline is added if missing), then rotates if the
    /// file grew past the limit. A failed rotation keeps writing where it can.
    public func write(_ line: String) {
        guard fd >= 0 else { return }
        let written = writeLine(fd, line)
        size += written
        if size > limit { try? rotate() }
    }
}
