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

/// Explains a failed bind the way an engineer would find out with
/// `ss -tlnp` and `id`: who holds the port, or which privilege is missing.
public enum BindDiagnosis {
    /// `supervisorPID`: the pid of this user's tunnel supervisor, so a port it
    /// holds is named as such.
    public static func describe(_ address: SocketAddress, _ errno: Errno, supervisorPID: pid_t? = nil) -> String {
        switch errno {
        case .addressInUse:
            return "local address \(address) is already in use" + ownerSuffix(port: address.port, ipv6: address.family == AF_INET6, supervisorPID: supervisorPID)
        case .accessDenied:
            return privilegeProblem(address) ?? "cannot bind \(address): \(errno)"
        case .addressNotAvailable:
            return "cannot bind \(address): that address is not on this machine"
        default:
            return "cannot bind \(address): \(errno)"
        }
    }

    /// " by pid 123 (postgres): /usr/lib/postgresql/15/bin/postgres -D ..." or a hint.
    /// `ipv6`: only holders of that family's listeners (nil: both).
    public static func ownerSuffix(port: UInt16, ipv6: Bool? = nil, supervisorPID: pid_t?) -> String {
        let found = PortOwners.owners(ofPort: port, ipv6: ipv6)
        if found.owners.isEmpty {
            return found.listenerExists
                ? " by a process this user cannot see (another user's; `sudo ss -tlnp 'sport = :\(port)'` names it)"
                : ""
        }
        let names = found.owners.map { owner -> String in
            if owner.pid == getpid() || owner.pid == supervisorPID { return "this user's tunnel supervisor (pid \(owner.pid))" }
            return owner.description
        }
        return " by " + names.joined(separator: "; ")
    }

    /// Why this process may not bind a privileged port, with the two fixes; nil if it may.
    public static func privilegeProblem(_ address: SocketAddress) -> String? {
        let start = Privileges.unprivilegedPortStart
        guard Int(address.port) < start, address.port != 0, !Privileges.isRoot, !Privileges.hasNetBindService else { return nil }
        return "binding \(address) needs root or CAP_NET_BIND_SERVICE (ports below \(start) are privileged), and this process (uid \(getuid())) has neither; use a local port of \(start) or more, or allow the binary: sudo setcap cap_net_bind_service=+ep \(ProcessControl.executablePath)"
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
    /// The same forward on its IPv6 counterpart (`ForwardSpec.ipv6Companion`),
    /// when that could be bound; it shares the port, stats and target.
    private(set) var companion: (socket: Socket, address: SocketAddress)?
    var companionRegistration: EventLoop.Registration?
    /// Every socket clients arrive on: the main one first.
    var sockets: [Socket] { [socket] + (companion.map { [$0.socket] } ?? []) }
    var registrations: [EventLoop.Registration] { [registration, companionRegistration].compactMap { $0 } }
    /// What its clients' channels ask for.
    let target: ChannelTarget

    /// `preferredPort`: for an "auto" spec, the port to try first (the one a
    /// restored tunnel had); when it is taken the kernel picks another.
    init(spec: ForwardSpec, stats: ForwardStats, preferredPort: UInt16 = 0) throws(BindFailure) {
        self.spec = spec
        self.stats = stats
        let socket: Socket
        if let path = spec.localPath {
            socket = try Listener.bindUnix(path)
            address = .unix(path: path)
        } else {
            if spec.localPort == 0 && preferredPort != 0, let again = try? Listener.bindTCP(spec, port: preferredPort) {
                socket = again
            } else {
                socket = try Listener.bindTCP(spec, port: spec.localPort)
            }
            do throws(SystemError) { address = try socket.localAddress() } catch {
                socket.close()
                throw BindFailure(address: spec.localDescription, errno: error.errno, message: "cannot read the bound address of \(spec.localDescription): \(error.errno)")
            }
        }
        self.socket = socket
        target = ChannelTarget(host: spec.remoteHost, port: spec.remotePort, description: spec.remoteDescription,
                               local: address.description, stats: stats)
    }

    /// Binds `bind` on the port the main socket got. Like ssh, the forward
    /// stands without it: the caller decides what a failure is worth saying.
    func bindCompanion(_ bind: BindAddress) throws(BindFailure) {
        precondition(companion == nil)
        let socket = try Listener.bindTCP(bind, port: address.port, describing: "\(bind):\(address.port)")
        // bindTCP has parsed the same text, so this cannot be nil.
        guard let bound = SocketAddress(ip: bind.host, port: address.port) else { return socket.close() }
        companion = (socket, bound)
    }

    private static func bindTCP(_ spec: ForwardSpec, port: UInt16) throws(BindFailure) -> Socket {
        try bindTCP(spec.bind, port: port, describing: spec.localDescription)
    }

    private static func bindTCP(_ bind: BindAddress, port: UInt16, describing: String) throws(BindFailure) -> Socket {
        guard let requested = SocketAddress(ip: bind.host, port: port) else {
            throw BindFailure(address: describing, errno: Errno(EINVAL), message: "bind address \(bind) is not an IP address")
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
        } catch {
            socket.close()
            throw BindFailure(address: requested.description, errno: error.errno, message: BindDiagnosis.describe(requested, error.errno))
        }
        return socket
    }

    /// A Unix socket at `path`, mode 0600. A stale socket file (nobody
    /// listening) is replaced; a live one, or any other file, is refused.
    private static func bindUnix(_ path: String) throws(BindFailure) -> Socket {
        if try checkUnixPath(path) { Files.remove(path) }
        let socket: Socket
        do { socket = try Socket.unix() } catch {
            throw BindFailure(address: path, errno: error.errno, message: "cannot create a Unix socket: \(error.errno)")
        }
        do {
            try socket.bind(.unix(path: path))
            // Before listen, so no client can connect while it is wider.
            try UnixSocketPath.setMode(path, 0o600)
            try socket.listen()
        } catch {
            socket.close()
            if error.errno != .addressInUse { Files.remove(path) }
            throw BindFailure(address: path, errno: error.errno, message: "cannot listen on \(path): \(error.errno)")
        }
        return socket
    }

    /// Throws why a Unix socket cannot be made at `path` (its directory is
    /// missing, or something other than a stale socket is there); returns
    /// whether a stale socket file is there to replace.
    static func checkUnixPath(_ path: String) throws(BindFailure) -> Bool {
        let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        guard Files.status(directory)?.isDirectory == true else {
            throw BindFailure(address: path, errno: .noEntry, message: "cannot listen on \(path): directory \(directory) does not exist")
        }
        switch UnixSocketPath.occupant(path) {
        case .nothing:
            return false
        case .stale:
            return true
        case .live:
            throw BindFailure(address: path, errno: .addressInUse, message: "\(path) is a socket something is listening on; tunnel does not take it over")
        case .other(let kind):
            throw BindFailure(address: path, errno: .addressInUse, message: "\(path) exists and is \(kind), not a socket; tunnel removes only stale sockets")
        }
    }

    /// Clients waiting in the kernel's accept queues; nil when unknown.
    func acceptQueueLength() -> Int? {
        let lengths = sockets.map { $0.acceptQueueLength() }
        guard lengths.allSatisfy({ $0 != nil }) else { return nil }
        return lengths.reduce(0) { $0 + $1! }
    }

    func close(loop: EventLoop) {
        for registration in registrations { loop.deregister(registration) }
        registration = nil
        companionRegistration = nil
        socket.close()
        companion?.socket.close()
        companion = nil
        // Its socket file goes with it, so the next `up` finds the path free.
        if let path = spec.localPath, Files.status(path)?.isSocket == true { Files.remove(path) }
    }
}
