import TunnelPOSIX

/// Connects to a remote forward's target on this machine, non-blocking on
/// the link's loop. An IP literal is connected to at once; a name is
/// resolved on a short-lived thread (getaddrinfo has no non-blocking form),
/// once for all the connections that arrive while it resolves, and the
/// answer is kept for a few seconds so a burst costs one lookup. The
/// addresses are raced (`RacingConnect`), as `Connector` races the server's.
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
            loop.schedule(after: 0) { [weak attempt] in attempt?.connect([literal]) }
            return attempt
        }
        let key = Key(host: host, port: port)
        let now = Instant.now()
        if let cached = cache[key], now.seconds(since: cached.at) < Self.cacheSeconds {
            loop.schedule(after: 0) { [weak attempt] in attempt?.connect(cached.addresses) }
            return attempt
        }
        let waiter: (Result<[SocketAddress], ResolveError>) -> Void = { [weak attempt] result in
            switch result {
            case .success(let addresses): attempt?.connect(addresses)
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

/// One connection attempt of a `LocalDialer`: its sockets while connecting.
final class DialAttempt {
    private let loop: EventLoop
    private var done: ((Result<Socket, LocalDialer.Failure>) -> Void)?
    private var racing: RacingConnect?
    fileprivate var deadline: EventLoop.TimerID?

    fileprivate init(loop: EventLoop, done: @escaping (Result<Socket, LocalDialer.Failure>) -> Void) {
        self.loop = loop
        self.done = done
    }

    /// Abandons the attempt and closes its sockets; `done` is not called.
    func cancel() {
        done = nil
        loop.cancel(deadline)
        deadline = nil
        racing?.cancel()
        racing = nil
    }

    deinit { loop.cancel(deadline) }

    fileprivate func connect(_ addresses: [SocketAddress]) {
        guard done != nil else { return }
        let racing = RacingConnect(loop: loop, addresses: addresses)
        self.racing = racing
        racing.start { [weak self] outcome in
            guard let self else {
                if case .success(let won) = outcome { won.socket.close() }
                return
            }
            self.racing = nil
            switch outcome {
            case .success(let won): self.finish(.success(won.socket))
            case .failure(let failed):
                self.finish(.failure(LocalDialer.Failure(message: failed.failures.map { describeTCP($0.errno, $0.address) }.joined(separator: "; "))))
            }
        }
    }

    fileprivate func finish(_ result: Result<Socket, LocalDialer.Failure>) {
        loop.cancel(deadline)
        deadline = nil
        racing?.cancel()
        racing = nil
        guard let done else {
            if case .success(let socket) = result { socket.close() }
            return
        }
        self.done = nil
        done(result)
    }
}
