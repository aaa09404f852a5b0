import Glibc
internal import CLibSSH2
import TunnelPOSIX

/// The socket under an SSH session, reached by libssh2 through custom send and
/// recv callbacks.
///
/// Send: whatever the socket does not take is queued here and reported to
/// libssh2 as sent, so libssh2 never holds a half-sent packet. In 1.10 such a
/// packet blocks every other send on the session (BAD_USE) until the same call
/// is retried, which makes interleaving channels impossible. The owner flushes
/// the queue when the socket is writable and stops feeding channels while the
/// queue is above `highWater`.
///
/// Recv: records when the last byte arrived (the dead-link clock) and skips the
/// syscall while the socket is known to be empty, because libssh2 drains the
/// transport on every channel read and write.
public final class SSHTransport {
    public let socket: Socket
    private let outbound = ByteBuffer()

    /// Instant of the last byte received from the server.
    public private(set) var lastReceive = Instant.now()
    public private(set) var bytesReceived: UInt64 = 0
    public private(set) var bytesSent: UInt64 = 0
    /// The first hard socket error, kept for the log.
    public private(set) var failure: SystemError?
    /// Set once the peer closed the TCP connection.
    public private(set) var peerClosed = false
    /// What the server said in its SSH_MSG_DISCONNECT, if it sent one.
    public private(set) var serverDisconnect: String?

    /// False after a recv returned EAGAIN; true again when epoll says readable.
    private var mayHaveInput = true
    private var killed = false

    /// ACK every segment at once. OpenSSH's sshd leaves Nagle on for
    /// sessions without a tty: its next small packet (a channel-open
    /// confirmation, a reply) waits for our ACK, which delayed ACK holds up
    /// to 40 ms. That stall is most of the cost of a new connection through
    /// `ssh -L`.
    public var quickAck = true

    /// Queue every packet and let the owner send them with one `flush()` per
    /// event-loop pass: several channels' packets leave in one send(2), which
    /// halves the syscalls per request/response and the server's wake-ups.
    /// The ACK then waits for the pass too: see `endPass()`.
    public var coalesce = false
    private var receivedThisPass = false
    private var sentBeforePass: UInt64 = 0

    /// While set (the handshake), libssh2's one-byte reads are its hunt for
    /// the server's identification line: libssh2 1.10 skips every line that
    /// does not start with "SSH-" and returns only on EAGAIN, so a server
    /// that keeps sending text would hold the loop thread for good. After
    /// `identificationLimit` such bytes the read fails instead (OpenSSH
    /// likewise gives up after 1024 lines).
    public var huntsIdentification = false
    private var identificationBytes = 0
    public static let identificationLimit = 64 * 1024
    /// Set when the server sent more than `identificationLimit` bytes without an identification line.
    public private(set) var identificationOverflow = false
    /// The first non-empty line read in that hunt (up to 200 bytes): what a
    /// server that is not an SSH server said first ("HTTP/1.1 400 Bad
    /// Request"), where libssh2 keeps only the last line.
    public private(set) var firstLine: [UInt8] = []
    private var firstLineDone = false

    public static let highWater = 1 << 20
    public static let lowWater = 256 << 10

    /// The queue's storage is kept through a bulk transfer and freed once
    /// nothing was queued for a second: since when it has sat empty.
    private var queuedThisPass = false
    private var quietSince: Instant?

    public init(socket: Socket) {
        self.socket = socket
        outbound.keepsStorage = true
    }

    public var pendingOutbound: Int { outbound.count }
    public var isAboveHighWater: Bool { outbound.count >= SSHTransport.highWater }
    public var isBelowLowWater: Bool { outbound.count <= SSHTransport.lowWater }

    /// epoll reported the socket readable.
    public func markReadable() { mayHaveInput = true }
    public var hasUnreadInput: Bool { mayHaveInput }

    /// Makes every later send and recv fail, so libssh2 stops waiting on the
    /// network when channels and the session are freed.
    public func kill() { killed = true }

    /// Writes queued bytes. Returns false on a hard error.
    @discardableResult
    public func flush() -> Bool {
        while let bytes = outbound.readable, !outbound.isEmpty {
            do {
                switch try socket.send(bytes, count: outbound.count) {
                case .done(let n):
                    bytesSent &+= UInt64(n)
                    outbound.consume(n)
                case .wouldBlock:
                    return true
                }
            } catch {
                record(error)
                outbound.release()
                return false
            }
        }
        return true
    }

    /// Called once per event-loop pass, after `flush()`. Data we sent this
    /// pass carried the ACK for what arrived; if we sent nothing, ACK now
    /// instead of letting delayed ACK hold the server's next small packet.
    public func endPass() {
        if receivedThisPass && quickAck && bytesSent == sentBeforePass { socket.quickAck() }
        receivedThisPass = false
        sentBeforePass = bytesSent
        if queuedThisPass {
            queuedThisPass = false
            quietSince = nil
        } else if outbound.isEmpty && outbound.hasStorage {
            let now = Instant.now()
            if let since = quietSince, now.seconds(since: since) >= 1 {
                outbound.release()
                quietSince = nil
            } else if quietSince == nil {
                quietSince = now
            }
        }
    }

    private func record(_ error: SystemError) {
        if failure == nil { failure = error }
    }

    // Called by libssh2 through the C callback.
    fileprivate func send(_ buffer: UnsafeRawPointer, _ length: Int) -> Int {
        if killed { return -Int(EPIPE) }
        if let failure { return -Int(failure.errno.rawValue) }
        // Bulk packets go out at once (no copy); small ones wait for the pass's flush.
        if outbound.isEmpty && (!coalesce || length >= 16 * 1024) {
            do {
                switch try socket.send(buffer, count: length) {
                case .done(let n):
                    bytesSent &+= UInt64(n)
                    if n < length { queue(buffer + n, length - n) }
                case .wouldBlock:
                    queue(buffer, length)
                }
            } catch {
                record(error)
                return -Int(error.errno.rawValue)
            }
        } else {
            queue(buffer, length)
        }
        return length
    }

    private func queue(_ bytes: UnsafeRawPointer, _ count: Int) {
        outbound.append(bytes, count: count)
        queuedThisPass = true
    }

    fileprivate func recv(_ buffer: UnsafeMutableRawPointer, _ length: Int) -> Int {
        if killed { return 0 }
        if let failure { return -Int(failure.errno.rawValue) }
        guard mayHaveInput else { return -Int(EAGAIN) }
        if huntsIdentification && length == 1 {
            identificationBytes += 1
            if identificationBytes > SSHTransport.identificationLimit {
                identificationOverflow = true
                return -Int(EPROTO)
            }
        }
        do {
            switch try socket.recv(into: buffer, count: length) {
            case .done(let n):
                if n == 0 {
                    peerClosed = true
                } else {
                    bytesReceived &+= UInt64(n)
                    lastReceive = Instant.now()
                    // A short read drained the socket: skip the recv that
                    // would only say EAGAIN (epoll reports anything newer).
                    if n < length { mayHaveInput = false }
                    if coalesce { receivedThisPass = true } else if quickAck { socket.quickAck() }
                    if huntsIdentification && length == 1 && !firstLineDone { noteFirstLine(buffer.load(as: UInt8.self)) }
                }
                return n
            case .wouldBlock:
                mayHaveInput = false
                return -Int(EAGAIN)
            }
        } catch {
            record(error)
            return -Int(error.errno.rawValue)
        }
    }

    private func noteFirstLine(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\n"): firstLineDone = !firstLine.isEmpty
        case UInt8(ascii: "\r"): break
        default: if firstLine.count < 200 { firstLine.append(byte) }
        }
    }

    func install(on session: OpaquePointer) {
        // libssh2 passes another fd only for its own ssh-agent calls, which
        // tunnel never makes (see AgentQuery): refuse rather than block.
        let send: @convention(c) (libssh2_socket_t, UnsafeRawPointer?, Int, Int32, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int = { fd, buffer, length, flags, abstract in
            let transport = Unmanaged<SSHTransport>.fromOpaque(abstract!.pointee!).takeUnretainedValue()
            guard fd == transport.socket.fd else { return -Int(EBADF) }
            return transport.send(buffer!, length)
        }
        let recv: @convention(c) (libssh2_socket_t, UnsafeMutableRawPointer?, Int, Int32, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int = { fd, buffer, length, flags, abstract in
            let transport = Unmanaged<SSHTransport>.fromOpaque(abstract!.pointee!).takeUnretainedValue()
            guard fd == transport.socket.fd else { return -Int(EBADF) }
            return transport.recv(buffer!, length)
        }
        // libssh2 takes its I/O callbacks as void*.
        libssh2_session_callback_set(session, LIBSSH2_CALLBACK_SEND, unsafeBitCast(send, to: UnsafeMutableRawPointer.self))
        libssh2_session_callback_set(session, LIBSSH2_CALLBACK_RECV, unsafeBitCast(recv, to: UnsafeMutableRawPointer.self))
        // The server's own words when it ends the session ("Too many
        // authentication failures"): libssh2 reports only a closed socket.
        let disconnect: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, Int32, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Void = { _, reason, message, length, _, _, abstract in
            let transport = Unmanaged<SSHTransport>.fromOpaque(abstract!.pointee!).takeUnretainedValue()
            let bytes = message.map { UnsafeRawBufferPointer(start: $0, count: Int(max(0, min(length, 512)))) }.map(Array.init) ?? []
            let text = String(decoding: bytes, as: UTF8.self)
            transport.serverDisconnect = text.isEmpty ? "reason \(reason)" : text
        }
        libssh2_session_callback_set(session, LIBSSH2_CALLBACK_DISCONNECT, unsafeBitCast(disconnect, to: UnsafeMutableRawPointer.self))
    }

}
