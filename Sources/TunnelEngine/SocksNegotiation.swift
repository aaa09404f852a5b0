import Logging
import TunnelPOSIX

/// One `-D` client being asked where it wants to go, on the runtime's loop:
/// it holds no channel and no lane until its request is complete. The
/// decisions are `SocksHandshake`'s; this class reads, writes and times.
final class SocksNegotiation {
    private let socket: Socket
    private let peer: SocketAddress?
    private let listener: Listener
    private let loop: EventLoop
    private let logger: Logger
    private var handshake = SocksHandshake()
    private var registration: EventLoop.Registration?
    private var timer: EventLoop.TimerID?
    /// Called once: a connection to hand to a lane, or nil when the client was closed.
    private var ended: ((SocksNegotiation, Connection?) -> Void)?

    /// The most clients a tunnel negotiates with at once; more are closed at
    /// accept, so a flood of silent clients costs bounded memory and descriptors.
    static let maxConcurrent = 1024

    init(socket: Socket, peer: SocketAddress?, listener: Listener, loop: EventLoop, logger: Logger,
         ended: @escaping (SocksNegotiation, Connection?) -> Void) {
        self.socket = socket
        self.peer = peer
        self.listener = listener
        self.loop = loop
        self.logger = logger
        self.ended = ended
    }

    func start() {
        do {
            registration = try loop.register(fd: socket.fd, events: .readable) { [weak self] _ in self?.readable() }
        } catch {
            return close("cannot watch the client: \(error)")
        }
        timer = loop.schedule(after: SocksHandshake.greetingTimeout) { [weak self] in
            guard let self else { return }
            self.timer = nil
            self.perform(self.handshake.timedOut(), received: [], consumed: 0)
        }
    }

    /// Closes the client (the tunnel is stopping).
    func cancel() { close(nil) }

    private func readable() {
        // A request is at most a few hundred bytes; what follows it is payload.
        var buffer = [UInt8](repeating: 0, count: 1024)
        let received: IOResult<Int>
        do {
            received = try buffer.withUnsafeMutableBytes { try socket.recv(into: $0.baseAddress!, count: $0.count) }
        } catch {
            return close("read failed: \(error)")
        }
        guard case .done(let n) = received else { return }
        guard n > 0 else { return close("the client closed before its request was complete") }
        let bytes = Array(buffer[..<n])
        let outcome = handshake.receive(bytes)
        perform(outcome.actions, received: bytes, consumed: outcome.consumed)
    }

    private func perform(_ actions: [SocksHandshake.Action], received: [UInt8], consumed: Int) {
        for action in actions {
            switch action {
            case .send(let reply):
                // A few bytes into a fresh socket's buffer: anything short means a broken client.
                let sent = reply.withUnsafeBytes { try? socket.send($0.baseAddress!, count: $0.count) }
                guard case .done(let k)? = sent, k == reply.count else { return close("the client does not take its reply") }
            case .openChannel(let target):
                let local = listener.address.description
                let channelTarget = ChannelTarget(host: target.host, port: target.port, description: "\(target) (socks)",
                                                  local: local, stats: listener.stats)
                let c = Connection(socket: socket, peer: peer, target: channelTarget, acceptedAt: Instant.now())
                c.socks = handshake
                let payload = received[consumed...]
                if !payload.isEmpty {
                    payload.withUnsafeBytes { c.upPending.append($0.baseAddress!, count: $0.count) }
                    listener.stats.bytesOut.add(UInt64(payload.count), ordering: .relaxed)
                }
                return handOff(c)
            case .forward:
                break
            case .close(let reason):
                return close(reason)
            }
        }
    }

    private func stopWatching() {
        if let registration { loop.deregister(registration) }
        registration = nil
        loop.cancel(timer)
        timer = nil
    }

    private func handOff(_ c: Connection) {
        stopWatching()
        let done = ended
        ended = nil
        done?(self, c)
    }

    private func close(_ reason: String?) {
        guard let done = ended else { return }
        ended = nil
        stopWatching()
        if let reason { logger.debug("socks client \(peer?.description ?? "?") closed: \(reason)", metadata: ["local": "\(listener.address)"]) }
        socket.close()
        listener.stats.active.subtract(1, ordering: .relaxed)
        done(self, nil)
    }
}
