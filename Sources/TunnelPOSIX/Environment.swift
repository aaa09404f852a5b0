import Glibc

/// The process environment as a dictionary (Foundation is kept out of the daemon).
public func currentEnvironment() -> [String: String] {
    var out: [String: String] = [:]
    var cursor = environ
    while let entry = cursor.pointee {
        let text = String(cString: entry)
        if let eq = text.firstIndex(of: "=") {
            out[String(text[..<eq])] = String(text[text.index(after: eq)...])
        }
        cursor += 1
    }
    return out
}

/// The user's home directory: $HOME, else the password database.
public func homeDirectory(_ environment: [String: String]) -> String {
    if let home = environment["HOME"], !home.isEmpty { return home }
    if let pw = getpwuid(getuid()), let dir = pw.pointee.pw_dir { return String(cString: dir) }
    return "/"
}

/// Writes a whole line to a descriptor with one write(2), so lines from
/// several threads (or processes appending to one file) never interleave.
/// Returns the bytes written.
@discardableResult
public func writeLine(_ fd: Int32, _ line: String) -> Int {
    var text = line
    if !text.hasSuffix("\n") { text += "\n" }
    return text.utf8CString.withUnsafeBufferPointer { buf in
        var offset = 0
        let total = buf.count - 1
        while offset < total {
            let n = write(fd, buf.baseAddress! + offset, total - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return offset
            }
            offset += n
        }
        return offset
    }
}

/// "2026-11-21 19:32:00" in local time.
public func localTimestamp(_ seconds: Double = wallClockSeconds()) -> String {
    var t = time_t(seconds)
    var parts = tm()
    localtime_r(&t, &parts)
    var buf = [CChar](repeating: 0, count: 32)
    let n = strftime(&buf, buf.count, "%Y-%m-%d %H:%M:%S", &parts)
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
