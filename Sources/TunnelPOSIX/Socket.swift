import Glibc
import CLinuxShim

/// A non-blocking, close-on-exec socket. The only owner of its descriptor.
public final class Socket: @unchecked Sendable {
    public let descriptor: FileDescriptor
    public var fd: Int32 { descriptor.raw }
    public var isOpen: Bool { descriptor.isOpen }

    public init(owning fd: Int32) {
        descriptor = FileDescriptor(owning: fd)
    }

    public static func tcp(family: Int32) throws(SystemError) -> Socket {
        let fd = try checked("socket") { Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        return Socket(owning: fd)
    }

    public static func unix() throws(SystemError) -> Socket {
        let fd = try checked("socket(AF_UNIX)") { Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        return Socket(owning: fd)
    }

    /// Two connected Unix stream sockets, non-blocking: a pipe for bytes
    /// that code on both ends reads and writes like a TCP connection.
    public static func pair() throws(SystemError) -> (Socket, Socket) {
        var fds: [Int32] = [-1, -1]
        let flags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        _ = try checked("socketpair") { socketpair(AF_UNIX, flags, 0, &fds) }
        return (Socket(owning: fds[0]), Socket(owning: fds[1]))
    }

    public func close() { descriptor.close() }

    /// Makes the next close send RST instead of FIN, so the peer sees an
    /// error rather than a clean end of stream.
    public func resetOnClose() { setLinger(onOff: 1) }

    /// Undoes `resetOnClose`: close sends FIN again.
    public func finishOnClose() { setLinger(onOff: 0) }

    private func setLinger(onOff: Int32) {
        var linger = Glibc.linger(l_onoff: onOff, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    }

    // MARK: options

    public func setOption(_ level: Int32, _ name: Int32, _ value: Int32, _ label: String) throws(SystemError) {
        var v = value
        _ = try checked("setsockopt(\(label))") { setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) }
    }

    public func setNoDelay() throws(SystemError) {
        try setOption(Int32(IPPROTO_TCP), TCP_NODELAY, 1, "TCP_NODELAY")
    }

    public func setReuseAddress() throws(SystemError) {
        try setOption(SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")
    }

    /// Leaves delayed-ACK mode until the next read (Linux resets it).
    @inline(__always)
    public func quickAck() {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    public func setUserTimeout(milliseconds: Int32) throws(SystemError) {
        try setOption(Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, milliseconds, "TCP_USER_TIMEOUT")
    }

    /// Pending error of a non-blocking connect.
    public func pendingError() -> Errno? {
        var value: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &len) != 0 { return Errno.current }
        return value == 0 ? nil : Errno(value)
    }

    // MARK: addresses

    public func bind(_ address: SocketAddress) throws(SystemError) {
        guard address.fitsSockaddr else { throw SystemError("bind(\(address))", Errno(ENAMETOOLONG)) }
        let rc = address.withSockAddr { Glibc.bind(fd, $0, $1) }
        if rc != 0 { throw SystemError("bind(\(address))", .current) }
    }

    public func listen(backlog: Int32 = SOMAXCONN) throws(SystemError) {
        _ = try checked("listen") { Glibc.listen(fd, backlog) }
    }

    public func localAddress() throws(SystemError) -> SocketAddress {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        if rc != 0 { throw SystemError("getsockname", .current) }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress(storage: $0) }
        } ?? .unix(path: "?")
    }

    /// Accepts one connection; the new socket is non-blocking and close-on-exec.
    public func accept() throws(SystemError) -> IOResult<(Socket, SocketAddress?)> {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = try retrying("accept4") {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { tunnel_accept4(fd, $0, &len) }
            }
        }
        guard case .done(let newFD) = result else { return .wouldBlock }
        let peer = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress(storage: $0) }
        }
        return .done((Socket(owning: newFD), peer))
    }

    /// Starts a connect. `.wouldBlock` means in progress: wait for writable,
    /// then read `pendingError()`.
    public func connect(_ address: SocketAddress) throws(SystemError) -> IOResult<Void> {
        guard address.fitsSockaddr else { throw SystemError("connect(\(address))", Errno(ENAMETOOLONG)) }
        while true {
            let rc = address.withSockAddr { Glibc.connect(fd, $0, $1) }
            if rc == 0 { return .done(()) }
            let err = errno
            if err == EINTR { continue }
            if err == EINPROGRESS || err == EAGAIN { return .wouldBlock }
            throw SystemError("connect(\(address))", Errno(err))
        }
    }

    // MARK: data

    @inline(__always)
    public func recv(into buffer: UnsafeMutableRawPointer, count: Int) throws(SystemError) -> IOResult<Int> {
        try retrying("recv") { Glibc.recv(fd, buffer, count, 0) }
    }

    @inline(__always)
    public func send(_ buffer: UnsafeRawPointer, count: Int) throws(SystemError) -> IOResult<Int> {
        try retrying("send") { Glibc.send(fd, buffer, count, Int32(MSG_NOSIGNAL)) }
    }

    public func shutdown(_ how: Int32) {
        // ENOTCONN after the peer reset is expected and harmless.
        _ = Glibc.shutdown(fd, how)
    }

    public static let shutdownWrite = Int32(SHUT_WR)
    public static let shutdownBoth = Int32(SHUT_RDWR)

    /// Length of a listening socket's accept queue (connections the kernel
    /// completed that nobody has accepted yet).
    public func acceptQueueLength() -> Int? {
        var length: UInt32 = 0
        return tunnel_listen_queue_length(fd, &length) == 0 ? Int(length) : nil
    }

    /// uid and pid of the process at the other end of a Unix socket.
    public func peerCredentials() throws(SystemError) -> (uid: uid_t, pid: pid_t) {
        var uid: uid_t = 0
        var pid: pid_t = 0
        if tunnel_peer_credentials(fd, &uid, &pid) != 0 { throw SystemError("getsockopt(SO_PEERCRED)", .current) }
        return (uid, pid)
    }
}
