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
    let listener: Listener
    let acceptedAt: Instant
    var phase: Phase = .queued
    var channel: SSHChannel?
    var registration: EventLoop.Registration?

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

    init(socket: Socket, peer: SocketAddress?, listener: Listener, acceptedAt: Instant) {
        self.socket = socket
        self.peer = peer
        self.listener = listener
        self.acceptedAt = acceptedAt
    }

    var isDone: Bool { up.isClosed && down.isClosed && !eofOwed }

    /// Closes a client that never got a channel (stop, hold_timeout).
    func closeUnserved() {
        socket.close()
        listener.stats.active.subtract(1, ordering: .relaxed)
    }

    /// The events this connection needs from epoll now.
    var wantedEvents: IOEvents {
        var events: IOEvents = []
        if up.isOpen && upWait == .none && upPending.isEmpty { events.insert(.readable) }
        if !downPending.isEmpty { events.insert(.writable) }
        return events
    }
}
