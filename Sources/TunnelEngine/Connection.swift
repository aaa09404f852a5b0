import TunnelPOSIX
import TunnelSSH

/// One accepted local client and its channel.
///
/// Bytes are moved through the link's shared scratch buffer; only what a
/// sink does not take at once is copied into the connection's own buffers,
/// which hold memory only while bytes are in flight.
final class Connection {
    enum Phase: Equatable {
        /// Accepted; waiting its turn for a channel (one open in flight per session).
        case queued
        case pumping
        case finished
    }

    /// Why the local→channel direction is paused (its EPOLLIN is off meanwhile).
    enum UpstreamWait: Equatable {
        case none
        /// The peer's window is closed, or a rekey is under way.
        case window
        /// The session's outbound queue is above its high-water mark.
        case session
    }

    let socket: Socket
    let peer: SocketAddress?
    /// Where its channel goes, and whose counters it moves.
    let target: ChannelTarget
    let acceptedAt: Instant
    var phase: Phase = .queued
    var channel: SSHChannel?
    var registration: EventLoop.Registration?
    /// Both directions of the socket are shut (our EOF went out, the
    /// client's came in): epoll reports HUP whatever we ask for, so the
    /// socket is watched only while there is something to read or write.
    var bothEndsShut = false

    /// local → channel
    var up = Direction()
    /// channel → local
    var down = Direction()
    let upPending = ByteBuffer()
    let downPending = ByteBuffer()
    var upWait: UpstreamWait = .none
    /// When the connection last moved bytes or sent a request: the link
    /// checks recently busy channels on every pass, the rest less often.
    var lastBusy = Instant.now()
    var isHot = false
    /// EOF owed to the channel but not yet sent (the session was mid-rekey).
    var eofOwed = false
    /// A `-D` client whose SOCKS reply waits for the channel open's outcome.
    var socks: SocksHandshake?

    /// A client's socket resets when closed until its stream has ended
    /// cleanly (`endDownstream`, a completed finish): if this process dies
    /// mid-stream (SIGKILL, the OOM killer, a crash), the kernel's close then
    /// resets it, and the client cannot take the cut for a complete stream.
    init(socket: Socket, peer: SocketAddress?, target: ChannelTarget, acceptedAt: Instant) {
        self.socket = socket
        self.peer = peer
        self.target = target
        self.acceptedAt = acceptedAt
        if !target.isHop { socket.resetOnClose() }
    }

    /// The target's stream has ended and every byte of it is sent: FIN to the client.
    func endDownstream() {
        socket.finishOnClose()
        socket.shutdown(Socket.shutdownWrite)
    }

    var isDone: Bool { up.isClosed && down.isClosed && !eofOwed }

    /// Closes a client that never got a channel (stop, hold_timeout).
    func closeUnserved() {
        socket.finishOnClose()
        socket.close()
        target.stats.active.subtract(1, ordering: .relaxed)
    }

    /// The events this connection needs from epoll now.
    var wantedEvents: IOEvents {
        var events: IOEvents = []
        if up.isOpen && upWait == .none && upPending.isEmpty { events.insert(.readable) }
        if !downPending.isEmpty { events.insert(.writable) }
        return events
    }
}

/// What a connection's direct-tcpip channel asks the server for, and the
/// counters its bytes go to: a forward's, or a jump hop's.
final class ChannelTarget {
    let host: String
    let port: UInt16
    /// "localhost:5432 (postgresql)", for the log.
    let description: String
    /// The local end, for the log: a listener's address, or a hop's name.
    let local: String
    let stats: ForwardStats
    /// The channel carries the next jump host, not a client: its failure is
    /// the chain's, reported by the chain.
    let isHop: Bool

    init(host: String, port: UInt16, description: String, local: String, stats: ForwardStats, isHop: Bool = false) {
        self.host = host
        self.port = port
        self.description = description
        self.local = local
        self.stats = stats
        self.isHop = isHop
    }
}
