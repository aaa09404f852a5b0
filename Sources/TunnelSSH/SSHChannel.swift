internal import CLibSSH2
import TunnelPOSIX

/// One SSH channel. Holds its session alive; the session frees it first if it
/// is torn down while the channel is still open.
public final class SSHChannel {
    private var handle: OpaquePointer?
    public let session: SSHSession

    /// OpenSSH's own direct-tcpip window (64 packets of 32 KiB).
    public static let defaultWindow: UInt32 = 2 * 1024 * 1024
    public static let packetSize: UInt32 = 32 * 1024

    init(handle: OpaquePointer, session: SSHSession) {
        self.handle = handle
        self.session = session
    }

    deinit {
        assert(handle == nil, "SSHChannel was not freed by its owner")
        freeHandle()
    }

    public enum ReadResult: Equatable {
        case data(Int)
        case wouldBlock
        case eof
    }

    public enum WriteResult: Equatable {
        case wrote(Int)
        /// The peer's window is closed, or a rekey is under way: retry with
        /// the same bytes after the session socket was read.
        case mustWait
    }

    private var live: OpaquePointer {
        guard let handle else { preconditionFailure("channel used after free") }
        return handle
    }

    /// Bytes libssh2 has already queued for this channel.
    public var readAvailable: Int {
        var avail: UInt = 0
        _ = libssh2_channel_window_read_ex(live, &avail, nil)
        return Int(avail)
    }

    /// EOF (or CLOSE) arrived and no data is queued before it. Walks the
    /// session's queued packets, which is short while channels keep up.
    public var isAtEOF: Bool {
        libssh2_channel_eof(live) > 0
    }

    /// How much the peer lets us send right now.
    public var writeWindow: Int {
        Int(libssh2_channel_window_write_ex(live, nil))
    }

    /// Reads queued data. A read of 0 is EOF only if libssh2 says so.
    public func read(into buffer: UnsafeMutableRawPointer, capacity: Int) throws(SSHError) -> ReadResult {
        let n = libssh2_channel_read_ex(live, 0, buffer.assumingMemoryBound(to: CChar.self), capacity)
        mayOweWindowAdjust = n == Int(LIBSSH2_ERROR_EAGAIN)
        if n > 0 { return .data(n) }
        if n == Int(LIBSSH2_ERROR_EAGAIN) { return .wouldBlock }
        if n < 0 { throw session.handle.lastError("libssh2_channel_read") }
        return isAtEOF ? .eof : .wouldBlock
    }

    /// The last read said EAGAIN, which may mean libssh2 built a window
    /// adjust it could not send yet (during a key re-exchange). libssh2 1.10
    /// sends that packet on the channel's next read but adds that read's own
    /// adjustment to its window (`_libssh2_channel_receive_window_adjust`),
    /// which depends on the read's length: a zero-length read then leaves
    /// libssh2's window smaller than the server's, and it drops the server's
    /// data beyond it as "window full". Such a channel is read only with the
    /// length it was read with until a read returns something else.
    public private(set) var mayOweWindowAdjust = false

    /// Drains the session socket into libssh2's queues (a zero-length read
    /// reads the transport until EAGAIN and sends due window adjustments).
    public func pumpTransport() throws(SSHError) {
        var byte: CChar = 0
        let n = libssh2_channel_read_ex(live, 0, &byte, 0)
        if n < 0 && n != Int(LIBSSH2_ERROR_EAGAIN) { throw session.handle.lastError("libssh2_channel_read") }
    }

    /// Sends up to one packet (32 KiB) of `count` bytes.
    public func write(_ bytes: UnsafeRawPointer, count: Int) throws(SSHError) -> WriteResult {
        let n = libssh2_channel_write_ex(live, 0, bytes.assumingMemoryBound(to: CChar.self), count)
        if n > 0 { return .wrote(n) }
        if n == 0 || n == Int(LIBSSH2_ERROR_EAGAIN) { return .mustWait }
        throw session.handle.lastError("libssh2_channel_write")
    }

    /// True when EOF was sent.
    public func sendEOF() throws(SSHError) -> Bool {
        try step(libssh2_channel_send_eof(live), session.handle, "libssh2_channel_send_eof")
    }

    /// Sends CLOSE; true once libssh2 considers the channel closed.
    public func close() throws(SSHError) -> Bool {
        try step(libssh2_channel_close(live), session.handle, "libssh2_channel_close")
    }

    /// One step of a ping: an "env" request with want-reply on a session
    /// channel. Any answer (success or failure) proves the server is alive, and
    /// libssh2 consumes it, unlike keepalive replies, which 1.10 queues forever.
    public func ping() throws(SSHError) -> Bool {
        let name = "TUNNEL_PING", value = "1"
        let rc = libssh2_channel_setenv_ex(live, name, UInt32(name.utf8.count), value, UInt32(value.utf8.count))
        if rc == LIBSSH2_ERROR_EAGAIN { return false }
        if rc == 0 || rc == LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED { return true }
        throw session.handle.lastError("libssh2_channel_setenv")
    }

    /// Freed, or waiting for the peer's CLOSE to be freed.
    var isFreeing = false

    var liveHandleIfAny: OpaquePointer? { handle }

    /// Frees the channel. libssh2 discards data still queued for it. If
    /// libssh2 still waits for the peer's CLOSE, the session keeps the channel
    /// and frees it later (`SSHSession.reapChannels`) or when it closes.
    public func free() {
        guard handle != nil else { return }
        isFreeing = true
        if tryFree() {
            session.forget(self)
        } else {
            session.deferFree(self)
        }
    }

    /// True when freed.
    func tryFree() -> Bool {
        guard let handle else { return true }
        if libssh2_channel_free(handle) == LIBSSH2_ERROR_EAGAIN { return false }
        self.handle = nil
        return true
    }

    func freeHandle() {
        guard let handle else { return }
        self.handle = nil
        _ = libssh2_channel_free(handle)
    }
}

extension SSHChannel {
    /// After EOF: whether the peer also sent CLOSE (it will read no more).
    public func remoteClosed() -> Bool {
        guard let handle = liveHandleIfAny else { return true }
        let rc = libssh2_channel_wait_closed(handle)
        return rc == 0 || (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN)
    }
}
