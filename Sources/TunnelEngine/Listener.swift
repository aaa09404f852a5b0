import Glibc
import TunnelConfig
import TunnelPOSIX

/// A local address that could not be bound, worded for the user.
public struct BindFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public let address: String
    public let errno: Errno
    public let message: String
    public var description: String { message }

    public init(address: String, errno: Errno, message: String) {
        self.address = address
        self.errno = errno
        self.message = message
    }
}

/// Explains why a bind failed. Replaced by the supervisor with one that also
/// names the process holding the port.
public nonisolated(unsafe) var describeBindFailure: (SocketAddress, Errno) -> String = { address, errno in
    switch errno {
    case .addressInUse: return "local address \(address) is already in use"
    case .accessDenied: return "binding \(address) needs root or CAP_NET_BIND_SERVICE (ports below 1024 are privileged)"
    default: return "cannot bind \(address): \(errno)"
    }
}

/// One forward's listening socket. It stays bound for the tunnel's whole life,
/// across reconnects; while the link is down it is simply not accepted from,
/// so new clients wait in the kernel's accept queue.
final class Listener {
    let spec: ForwardSpec
    let stats: ForwardStats
    let socket: Socket
    let address: SocketAddress
    var registration: EventLoop.Registration?
    /// Estimated arrival times of clients waiting in the accept queue while
    /// not accepting, oldest first (for hold_timeout).
    var waitingSince: [Instant] = []

    init(spec: ForwardSpec, stats: ForwardStats) throws(BindFailure) {
        self.spec = spec
        self.stats = stats
        guard let requested = SocketAddress(ip: spec.bind.host, port: spec.localPort) else {
            throw BindFailure(address: spec.localDescription, errno: Errno(EINVAL), message: "bind address \(spec.bind) is not an IP address")
        }
        let socket: Socket
        do {
            socket = try Socket.tcp(family: requested.family)
        } catch {
            throw BindFailure(address: requested.description, errno: error.errno, message: "cannot create a socket for \(requested): \(error.errno)")
        }
        do {
            try socket.setReuseAddress()
            if requested.family == AF_INET6 {
                // Keep [::] from also claiming IPv4, as the overlap check assumes.
                try socket.setOption(Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "IPV6_V6ONLY")
            }
            try socket.bind(requested)
            try socket.listen()
            self.address = try socket.localAddress()
        } catch {
            socket.close()
            throw BindFailure(address: requested.description, errno: error.errno, message: describeBindFailure(requested, error.errno))
        }
        self.socket = socket
    }

    func close(loop: EventLoop) {
        if let registration { loop.deregister(registration) }
        registration = nil
        socket.close()
    }
}
