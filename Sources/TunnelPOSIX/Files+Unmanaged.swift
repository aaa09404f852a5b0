import Glibc

extension Files {
    /// Reads a small regular file into memory the caller owns: it must wipe
    /// and deallocate it (key material must not linger in copies Swift's
    /// arrays and strings would make). nil when the file does not exist.
    public static func readUnmanaged(_ path: String, limit: Int = 1 << 20) throws(SystemError) -> UnsafeMutableRawBufferPointer? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw SystemError("open(\(path))", .current)
        }
        defer { _ = close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError("fstat(\(path))", .current) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw SystemError("read(\(path)): not a regular file", Errno(EINVAL)) }
        guard Int(st.st_size) <= limit else { throw SystemError("read(\(path)): larger than \(limit) bytes", Errno(EFBIG)) }
        let capacity = max(1, Int(st.st_size))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        var filled = 0
        while filled < capacity {
            let n = Glibc.read(fd, buffer.baseAddress! + filled, capacity - filled)
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                let error = SystemError("read(\(path))", .current)
                buffer.initializeMemory(as: UInt8.self, repeating: 0)
                buffer.deallocate()
                throw error
            }
            filled += n
        }
        return UnsafeMutableRawBufferPointer(rebasing: buffer[0..<filled])
    }
}
