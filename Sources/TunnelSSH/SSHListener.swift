internal import CLibSSH2
import TunnelPOSIX

/// Why the server is not listening for a remote forward.
public enum SSHListenError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The server answered the tcpip-forward request with
    /// SSH_MSG_REQUEST_FAILURE (libssh2's LIBSSH2_ERROR_REQUEST_DENIED). RFC
    /// 4254 carries no reason: OpenSSH refuses when AllowTcpForwarding or
    /// DisableForwarding rule remote forwarding out, when PermitListen does
    /// not allow the address, and when it cannot bind it (the port is taken,
    /// often by an earlier session of the same client).
    case refused
    /// Any other failure of the request, the session's included.
    case failed(SSHError)

    /// The server closed the connection or the socket failed.
    public var isTransportFailure: Bool {
        if case .failed(let error) = self { return error.isTransportFailure }
        return false
    }

    public var description: String {
        switch self {
        case .refused: return "the server refused the tcpip-forward request"
        case .failed(let error): return error.description
        }
    }
}

/// A port the server listens on for this session (`ssh -R`): each
/// connection it accepts there arrives as a forwarded-tcpip channel. Owned
/// by its session, which frees it (and with it the server's listener) when
/// it closes.
public final class SSHListener {
    private var handle: OpaquePointer?
    public let session: SSHSession
    /// What the server was asked to listen on.
    public let host: String
    /// The port it listens on: the one it picked when asked for port 0.
    public let port: UInt16

    init(handle: OpaquePointer, session: SSHSession, host: String, port: UInt16) {
        self.handle = handle
        self.session = session
        self.host = host
        self.port = port
    }

    deinit { session.forget(self) }

    /// The next forwarded-tcpip channel the server opened for this listener,
    /// or `.wouldBlock` when none is waiting. Reads the session socket first.
    /// libssh2 1.10 reports every failure here as "Channel not found"
    /// (LIBSSH2_ERROR_CHANNEL_UNKNOWN, even a socket error): the session's
    /// own state (`connectionLoss`) is what tells a dead link.
    public func accept() -> IOResult<SSHChannel> {
        guard let handle, !session.isClosed else { return .wouldBlock }
        guard let raw = libssh2_channel_forward_accept(handle) else { return .wouldBlock }
        return .done(session.adopt(raw))
    }

    /// One step of cancel-tcpip-forward: the server stops listening, and
    /// channels it opened that were not accepted yet are freed. True once
    /// done (the listener is then freed); false while it would block (call
    /// again). A failure frees it too: libssh2 drops it either way.
    public func cancel() throws(SSHError) -> Bool {
        guard let handle, !session.isClosed else { return true }
        let rc = libssh2_channel_forward_cancel(handle)
        if rc == LIBSSH2_ERROR_EAGAIN { return false }
        self.handle = nil
        session.forget(self)
        if rc < 0 { throw session.handle.lastError("libssh2_channel_forward_cancel(\(host):\(port))") }
        return true
    }

    /// The session freed it (libssh2_session_free cancels every listener).
    func invalidate() { handle = nil }
}

extension SSHSession {
    /// One step of a tcpip-forward request: asks the server to listen on
    /// host:port (port 0: a port it picks) and send each connection back
    /// through this session. One request may be in flight per session (libssh2
    /// keeps its state in the session), and it must be retried with the same
    /// arguments while it would block.
    ///
    /// `host` goes to the server as written: libssh2 1.10 turns a NULL into
    /// "0.0.0.0", and it matches each forwarded-tcpip channel to its listener
    /// by that text and the port.
    public func listen(host: String, port: UInt16, queueSize: Int32 = 128) throws(SSHListenError) -> IOResult<SSHListener> {
        var bound: Int32 = 0
        guard let raw = libssh2_channel_forward_listen_ex(handle, host, Int32(port), &bound, queueSize) else {
            let code = libssh2_session_last_errno(handle)
            if code == LIBSSH2_ERROR_EAGAIN { return .wouldBlock }
            if code == LIBSSH2_ERROR_REQUEST_DENIED { throw .refused }
            throw .failed(handle.lastError("libssh2_channel_forward_listen_ex(\(host):\(port))"))
        }
        let listener = SSHListener(handle: raw, session: self, host: host, port: UInt16(truncatingIfNeeded: bound))
        track(listener)
        return .done(listener)
    }
}
