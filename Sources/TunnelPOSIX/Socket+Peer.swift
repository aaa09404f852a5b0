import Glibc

extension Socket {
    /// The address of the other end of a connected socket.
    public func peerAddress() throws(SystemError) -> SocketAddress {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) }
        }
        if rc != 0 { throw SystemError("getpeername", .current) }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress(storage: $0) }
        } ?? .unix(path: "?")
    }
}
