import Glibc

/// Whole-file helpers for small files (profiles, known_hosts, state, pid files).
public enum Files {
    /// The file's bytes from `offset` on, or nil when it does not exist.
    public static func read(_ path: String, from offset: Int = 0) throws(SystemError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw SystemError("open(\(path))", .current)
        }
        defer { _ = close(fd) }
        if offset > 0 && lseek(fd, off_t(offset), SEEK_SET) < 0 { throw SystemError("lseek(\(path))", .current) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read(\(path))", .current)
            }
            if n == 0 { return out }
            out += chunk[0..<n]
        }
    }

    public static func readText(_ path: String) throws(SystemError) -> String? {
        try read(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The whole of a file the user named (a config file, known_hosts, a key),
    /// which must be a regular file (a symbolic link to one is fine) of at most
    /// `limit` bytes. Opened non-blocking, so a FIFO without a writer is
    /// refused at once instead of blocking the open or the read, and a device
    /// such as /dev/zero is refused before anything is read from it.
    public static func readRegularFile(_ path: String, limit: Int) throws(FileReadError) -> [UInt8] {
        let (fd, size) = try openRegularFile(path, limit: limit)
        defer { _ = close(fd) }
        // The size can change under us (or be 0, as in /proc): read to the end,
        // never more than one byte past the limit. Sized up front, as a large
        // known_hosts file otherwise regrows the buffer four or five times.
        var out: [UInt8] = []
        out.reserveCapacity(min(max(size, limit / 64), limit) + 1)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let want = min(chunk.count, limit + 1 - out.count)
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, want) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileReadError(path: path, reason: .system(SystemError("read(\(path))", .current)))
            }
            if n == 0 { return out }
            out += chunk[0..<n]
            if out.count > limit { throw FileReadError(path: path, reason: .tooLarge(limit: limit)) }
        }
    }

    /// Appends to a file, creating it with `mode`. If the file does not end in
    /// a newline and `separateLines` is set, one is added first.
    /// Opens `path` for `readRegularFile` and `readUnmanaged`: a regular file
    /// (a symbolic link to one is fine) of at most `limit` bytes, opened
    /// non-blocking so a FIFO without a writer is refused at once. Returns the
    /// descriptor (the caller closes it) and the size.
    static func openRegularFile(_ path: String, limit: Int) throws(FileReadError) -> (Int32, Int) {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        if fd < 0 {
            let err = errno
            if err == ENOENT { throw FileReadError(path: path, reason: .missing) }
            // A Unix socket cannot be opened at all (ENXIO); say what it is.
            var st = stat()
            if err == ENXIO && stat(path, &st) == 0, let kind = FileReadError.kind(of: st.st_mode) {
                throw FileReadError(path: path, reason: .notRegular(kind))
            }
            throw FileReadError(path: path, reason: .system(SystemError("open(\(path))", Errno(err))))
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let error = SystemError("fstat(\(path))", .current)
            _ = close(fd)
            throw FileReadError(path: path, reason: .system(error))
        }
        if let kind = FileReadError.kind(of: st.st_mode) {
            _ = close(fd)
            throw FileReadError(path: path, reason: .notRegular(kind))
        }
        if Int(st.st_size) > limit {
            _ = close(fd)
            throw FileReadError(path: path, reason: .tooLarge(limit: limit))
        }
        return (fd, Int(st.st_size))
    }

    public static func append(_ text: String, to path: String, mode: mode_t = 0o600, separateLines: Bool = true) throws(SystemError) {
        // Read-write: pread of the last byte needs it.
        let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SystemError("open(\(path))", .current) }
        defer { _ = close(fd) }
        var bytes = Array(text.utf8)
        let size = lseek(fd, 0, SEEK_END)
        if separateLines && size > 0 {
            var last: UInt8 = 0
            if pread(fd, &last, 1, size - 1) == 1 && last != UInt8(ascii: "\n") { bytes.insert(UInt8(ascii: "\n"), at: 0) }
        }
        try writeAll(fd, bytes, path)
    }

    /// Replaces a file atomically (write to a temporary, fsync, rename).
    public static func replace(_ path: String, with text: String, mode: mode_t = 0o600) throws(SystemError) {
        let tmp = path + ".tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SystemError("open(\(tmp))", .current) }
        do {
            try writeAll(fd, Array(text.utf8), tmp)
            _ = fsync(fd)
            _ = close(fd)
        } catch {
            _ = close(fd)
            _ = unlink(tmp)
            throw error
        }
        if rename(tmp, path) != 0 {
            let e = SystemError("rename(\(path))", .current)
            _ = unlink(tmp)
            throw e
        }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], _ path: String) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write(\(path))", .current)
            }
            offset += n
        }
    }

    /// mkdir -p with `mode` for the directories it creates.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws(SystemError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw SystemError("mkdir(\(current))", .current)
            }
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Size in bytes, or nil if absent.
    public static func size(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    /// A symbolic link's target, or nil.
    public static func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
    }

    /// The names in a directory (without "." and ".."), or [] if unreadable.
    public static func directoryEntries(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public static func remove(_ path: String) { _ = unlink(path) }

    /// Owner, mode and type of a path, or nil if absent.
    public static func status(_ path: String) -> (uid: uid_t, mode: mode_t, isDirectory: Bool, isSocket: Bool)? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return (st.st_uid, st.st_mode & 0o7777, (st.st_mode & S_IFMT) == S_IFDIR, (st.st_mode & S_IFMT) == S_IFSOCK)
    }

    public static func isWritableDirectory(_ path: String) -> Bool { access(path, W_OK | X_OK) == 0 }

    public enum PathKind: Equatable, Sendable {
        case missing
        case regularFile
        case directory
        /// "a FIFO", "a character device", ...
        case other(String)
    }

    /// What is at `path`, symlinks followed (a path that cannot be looked
    /// up, for whatever reason, is `missing`).
    public static func kind(of path: String) -> PathKind {
        var st = stat()
        guard stat(path, &st) == 0 else { return .missing }
        if (st.st_mode & S_IFMT) == S_IFDIR { return .directory }
        return FileReadError.kind(of: st.st_mode).map { .other($0) } ?? .regularFile
    }

    /// What is at `path` (symlinks followed) when it is something other than
    /// a socket: "a regular file", "a directory", ...; nil for a socket or nothing.
    public static func nonSocketKind(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) != S_IFSOCK else { return nil }
        return FileReadError.kind(of: st.st_mode) ?? "a regular file"
    }
}

/// Why `Files.readRegularFile` refused or failed; the description is one line
/// naming the path.
public struct FileReadError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Reason: Equatable, Sendable {
        case missing
        /// "a FIFO", "a directory", "a character device", ...
        case notRegular(String)
        case tooLarge(limit: Int)
        case system(SystemError)
    }

    public let path: String
    public let reason: Reason

    public init(path: String, reason: Reason) {
        self.path = path
        self.reason = reason
    }

    /// The errno behind a missing file or a failed call; nil for a refusal.
    public var errno: Errno? {
        switch reason {
        case .missing: return .noEntry
        case .system(let error): return error.errno
        case .notRegular, .tooLarge: return nil
        }
    }

    public var description: String {
        switch reason {
        case .missing: return "cannot read \(path): \(Errno.noEntry)"
        case .system(let error): return "cannot read \(path): \(error.errno)"
        case .notRegular(let kind): return "\(path) is \(kind), not a regular file"
        case .tooLarge(let limit): return "\(path) is too large: more than \(FileReadError.size(limit))"
        }
    }

    /// What a non-regular file is, from its mode; nil for a regular file.
    static func kind(of mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFIFO: return "a FIFO"
        case S_IFDIR: return "a directory"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "a special file"
        }
    }

    /// "1 MiB", "64 KiB", "1000 bytes".
    static func size(_ bytes: Int) -> String {
        if bytes > 0 && bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
        if bytes > 0 && bytes % (1 << 10) == 0 { return "\(bytes >> 10) KiB" }
        return bytes == 1 ? "1 byte" : "\(bytes) bytes"
    }
}
