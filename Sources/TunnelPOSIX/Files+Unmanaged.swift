import Glibc

extension Files {
    /// Reads a small regular file into memory the caller owns: it must wipe
    /// and deallocate it (key material must not linger in copies Swift's
    /// arrays and strings would make). The same checks as `readRegularFile`.
    public static func readUnmanaged(_ path: String, limit: Int = 1 << 20) throws(FileReadError) -> UnsafeMutableRawBufferPointer {
        let (fd, size) = try openRegularFile(path, limit: limit)
        defer { _ = close(fd) }
        let capacity = max(1, size)
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
                throw FileReadError(path: path, reason: .system(error))
            }
            filled += n
        }
        return UnsafeMutableRawBufferPointer(rebasing: buffer[0..<filled])
    }
}
