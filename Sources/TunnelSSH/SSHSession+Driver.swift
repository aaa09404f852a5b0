import TunnelPOSIX

/// Why a session's connection is gone, from what the socket saw (libssh2
/// itself only says "transport read").
public enum SSHConnectionLoss: Equatable, Sendable, CustomStringConvertible {
    case peerClosed
    case socketFailed(Errno)
    /// The server sent SSH_MSG_DISCONNECT with this text.
    case serverDisconnected(String)

    public var description: String {
        switch self {
        case .peerClosed: return "the server closed the connection"
        case .serverDisconnected(let message): return "the server disconnected: \(message.escapingControlCharacters)"
        case .socketFailed(let errno): return "connection to the server lost: \(errno)"
        }
    }
}

/// The session driver: everything an event loop needs to run a session. The
/// owner registers `socketFD`, passes each readiness report to
/// `socketEvents`, calls the session's steps (handshake, auth, channel opens
/// and I/O), and ends each loop pass with `endPass`, which sends what was
/// queued and says which events to wait for next.
extension SSHSession {
    /// The descriptor to watch. Owned by the session.
    public var socketFD: Int32 { transport.socket.fd }

    /// Epoll reported these events for `socketFD`.
    public func socketEvents(_ events: IOEvents) {
        if events.contains(.writable) { transport.flush() }
        if !events.intersection([.readable, .hangup, .error, .readHangup]).isEmpty { transport.markReadable() }
        if events.contains(.readHangup) { peerHungUp = true }
    }

    /// Packets are queued and sent once per pass (`endPass`), so several
    /// channels' packets leave in one send(2). For established links.
    public func coalescePackets() { transport.coalesce = true }

    /// Unacknowledged data fails the connection after this long (TCP_USER_TIMEOUT).
    public func failUnacknowledgedData(afterMilliseconds milliseconds: Int32) {
        try? transport.socket.setUserTimeout(milliseconds: milliseconds)
    }

    /// When the last byte arrived from the server: the dead-link clock.
    public var lastReceive: Instant { transport.lastReceive }
    /// Bytes received so far; libssh2's channel states change only when it grows.
    public var bytesReceived: UInt64 { transport.bytesReceived }

    /// The connection is gone, if it is.
    public var connectionLoss: SSHConnectionLoss? {
        if let message = transport.serverDisconnect { return .serverDisconnected(message) }
        if let failure = transport.failure { return .socketFailed(failure.errno) }
        if transport.peerClosed { return .peerClosed }
        return nil
    }

    /// Why a failed call means the session is dead, worded from the socket when it knows.
    public func lossReason(_ error: SSHError) -> String {
        connectionLoss?.description ?? "connection to the server lost: \(error.message)"
    }

    /// The server shut down its sending side (EPOLLRDHUP seen).
    public var serverHungUp: Bool { peerHungUp }

    /// Reads what arrived on the socket into libssh2's per-channel queues.
    /// Needs a channel to read through; without one, the next channel open
    /// or handshake step reads the socket.
    public func readIncoming() throws(SSHError) {
        guard transport.hasUnreadInput, let channel = transportReadingChannel else { return }
        try channel.pumpTransport()
    }

    /// The send queue is full: stop feeding channels until it drains.
    public var isSendQueueFull: Bool { transport.isAboveHighWater }
    /// The send queue drained enough to feed channels again.
    public var isSendQueueLow: Bool { transport.isBelowLowWater }

    /// Ends a loop pass: sends what was queued, acknowledges what arrived,
    /// and returns the events to wait for. `canRead` is false when no channel
    /// (or open, or handshake) can take incoming bytes: the socket is then
    /// watched for hang-up only, or EPOLLIN would fire forever.
    public func endPass(canRead: Bool = true) -> IOEvents {
        transport.flush()
        transport.endPass()
        // The step that saw a failure has reported it, or the next one will.
        if connectionLoss != nil { transport.markReadable() }
        var events: IOEvents = canRead ? [.readable, .readHangup] : [.readHangup]
        if transport.pendingOutbound > 0 { events.insert(.writable) }
        return events
    }
}
