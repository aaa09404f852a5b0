import TunnelPOSIX

/// Connects to a remote forward's target on this machine, non-blocking on
/// the link's loop. An IP literal is connected to at once; a name is
/// resolved on a short-lived thread (getaddrinfo has no non-blocking form),
/// once for all the connections that arrive while it resolves, and the
/// answer is kept for a few seconds so a burst costs one lookup. The
/// addresses are tried in turn, as `Connector` tries the server's.
final class LocalDialer {
    /// Why the target could not be reached, worded for the log.
    struct Failure: Error, Equatable {
        let message: String
    }

    private struct Key: Hashable {
        let host: String
        let port: UInt16
    }

    private let loop: EventLoop
    /// Seconds an attempt may take, resolving included (`connect_timeout`).
    private let timeout: Double
    private var cache: [Key: (addresses: [SocketAddress], at: Instant)] = [:]
    private var resolving: [Key: [(Result<[SocketAddress], ResolveError>) -> Void]] = [:]
    static let cacheSeconds = 5.0

    init(loop: EventLoop, timeout: Double) {
        self.loop = loop
        self.timeout = timeout
    }

    /// Starts connecting to host:port. `done` runs later on the loop (never
    /// inside this call) with the connected socket, unless the attempt is
    /// cancelled first.
    func dial(host: String, port: UInt16, _ done: @escaping (Result<Socket, Failure>) -> Void) -> DialAttempt {
        let attempt = DialAttempt(loop: loop, done: done)
        let seconds = timeout
        attempt.deadline = loop.schedule(after: seconds) { [weak attempt] in
            attempt?.finish(.failure(Failure(message: "connecting to \(host):\(port) timed out after \(Int(seconds)) s")))
        }
        if let literal = SocketAddress(ip: host, port: port) {
            loop.schedule(after: 0) { [weak attempt] in attempt?.connect([literal], index: 0) }
            return attempt
        }
        let key = Key(host: host, port: port)
        let now = Instant.now()
        if let cached = cache[key], now.seconds(since: cached.at) < Self.cacheSeconds {
            loop.schedule(after: 0) { [weak attempt] in attempt?.connect(cached.addresses, index: 0) }
            return attempt
        }
        let waiter: (Result<[SocketAddress], ResolveError>) -> Void = { [weak attempt] result in
            switch result {
            case .success(let addresses): attempt?.connect(addresses, index: 0)
            case .failure(let error): attempt?.finish(.failure(Failure(message: error.description)))
            }
        }
        if resolving[key] != nil {
            resolving[key]!.append(waiter)
            return attempt
        }
        resolving[key] = [waiter]
        let resolved = loop.callback { [weak self] (result: Result<[SocketAddress], ResolveError>) in
            guard let self else { return }
            if case .success(let addresses) = result { self.cache[key] = (addresses, Instant.now()) }
            for waiter in self.resolving.removeValue(forKey: key) ?? [] { waiter(result) }
        }
        do {
            try startThread(name: "resolve") {
                do throws(ResolveError) { resolved(.success(try resolveTCP(host: host, port: port))) } catch { resolved(.failure(error)) }
            }
        } catch {
            resolved(.failure(ResolveError(host: host, kind: .other, message: "\(error)")))
        }
        return attempt
    }
}

/// One connection attempt of a `LocalDialer`: its socket while connecting.
final class DialAttempt {
    private let loop: EventLoop
    private var done: ((Result<Socket, LocalDialer.Failure>) -> Void)?
    private var socket: Socket?
    private var registration: EventLoop.Registration?
    fileprivate var deadline: EventLoop.TimerID?
    /// Each address tried, with why it failed.
    private var errors: [String] = []

    fileprivate init(loop: EventLoop, done: @escaping (Result<Socket, LocalDialer.Failure>) -> Void) {
        self.loop = loop
        self.done = done
    }

    /// Abandons the attempt and closes its socket; `done` is not called.
    func cancel() {
        done = nil
        loop.cancel(deadline)
        deadline = nil
        release(closing: true)
    }

    deinit { loop.cancel(deadline) }

    fileprivate func connect(_ addresses: [SocketAddress], index: Int) {
        guard done != nil else { return }
        guard index < addresses.count else {
            return finish(.failure(LocalDialer.Failure(message: errors.joined(separator: "; "))))
        }
        let address = addresses[index]
        do {
            let socket = try Socket.tcp(family: address.family)
            self.socket = socket
            try? socket.setNoDelay()
            registration = try loop.register(fd: socket.fd, events: .writable) { [weak self] _ in
                self?.connected(addresses, index: index)
            }
            // Done or not, the writable event reports it.
            _ = try socket.connect(address)
        } catch {
            errors.append(describeTCP(error.errno, address))
            release(closing: true)
            connect(addresses, index: index + 1)
        }
    }

    private func connected(_ addresses: [SocketAddress], index: Int) {
        guard let socket else { return }
        if let errno = socket.pendingError() {
            errors.append(describeTCP(errno, addresses[index]))
            release(closing: true)
            return connect(addresses, index: index + 1)
        }
        release(closing: false)
        finish(.success(socket))
    }

    fileprivate func finish(_ result: Result<Socket, LocalDialer.Failure>) {
        loop.cancel(deadline)
        deadline = nil
        release(closing: true)
        guard let done else {
            if case .success(let socket) = result { socket.close() }
            return
        }
        self.done = nil
        done(result)
    }

    private func release(closing: Bool) {
        if let registration { loop.deregister(registration) }
        registration = nil
        if closing { socket?.close() }
        socket = nil
    }
}
