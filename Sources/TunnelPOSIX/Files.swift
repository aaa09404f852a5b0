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

    /// Appends to a file, creating it with `mode`. If the file does not end in
    /// a newline and `separateLines` is set, one is added first.
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
}

/// Blocking send/recv on a descriptor the caller does not own (libssh2's agent
/// socket). Return the byte count or -errno, as libssh2's callbacks expect;
/// -ETIMEDOUT when the peer does not get ready within `timeout` seconds, so a
/// stuck ssh-agent fails the attempt instead of hanging the thread.
public enum RawIO {
    public static func send(_ fd: Int32, _ buffer: UnsafeRawPointer, _ length: Int, timeout: Double) -> Int {
        guard Poll.wait(fd: fd, writable: true, timeout: timeout) else { return -Int(ETIMEDOUT) }
        while true {
            let n = Glibc.send(fd, buffer, length, Int32(MSG_NOSIGNAL))
            if n >= 0 { return n }
            if errno != EINTR { return -Int(errno) }
        }
    }

    public static func recv(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ length: Int, timeout: Double) -> Int {
        guard Poll.wait(fd: fd, writable: false, timeout: timeout) else { return -Int(ETIMEDOUT) }
        while true {
            let n = Glibc.recv(fd, buffer, length, 0)
            if n >= 0 { return n }
            if errno != EINTR { return -Int(errno) }
        }
    }
}
