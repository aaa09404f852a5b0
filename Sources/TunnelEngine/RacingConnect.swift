import TunnelPOSIX

/// Performs a `ConnectRace` with non-blocking sockets on a loop: a TCP
/// connection to the first of `addresses` that answers. Used for the SSH
/// server (`Connector`) and for a remote forward's target (`LocalDialer`).
final class RacingConnect {
    typealias Outcome = Result<(socket: Socket, address: SocketAddress), RacingConnect.Failed>

    /// Every address failed.
    struct Failed: Error {
        let failures: [(address: SocketAddress, errno: Errno)]
    }

    private let loop: EventLoop
    let addresses: [SocketAddress]
    private var race: ConnectRace
    private var attempts: [Int: (socket: Socket, registration: EventLoop.Registration)] = [:]
    private var staggerTimer: EventLoop.TimerID?
    /// Each address that failed so far, with why.
    private(set) var failures: [(address: SocketAddress, errno: Errno)] = []
    private var done: ((Outcome) -> Void)?

    /// `addresses` in the resolver's order; the families take turns (RFC 8305 §4).
    init(loop: EventLoop, addresses: [SocketAddress]) {
        self.loop = loop
        self.addresses = ConnectRace.interleavingFamilies(addresses)
        race = ConnectRace(count: self.addresses.count)
    }

    /// Starts the attempts. `done` runs once, on the loop, perhaps inside
    /// this call (a connect that completes at once), unless cancelled first.
    func start(_ done: @escaping (Outcome) -> Void) {
        self.done = done
        perform(race.start())
    }

    /// Closes every attempt; `done` is not called.
    func cancel() {
        done = nil
        loop.cancel(staggerTimer)
        staggerTimer = nil
        for index in Array(attempts.keys) { close(index) }
    }

    // Its owner lets go of it on the loop thread: the sockets and their registrations go with it.
    deinit { cancel() }

    /// The addresses still being tried.
    var addressesInFlight: [SocketAddress] {
        race.inFlight.map { addresses[$0] }
    }

    private func perform(_ actions: [ConnectRace.Action]) {
        for action in actions {
            switch action {
            case .attempt(let index):
                attempt(index)
            case .scheduleNext(let seconds):
                loop.cancel(staggerTimer)
                staggerTimer = loop.schedule(after: seconds) { [weak self] in
                    guard let self else { return }
                    self.staggerTimer = nil
                    self.perform(self.race.delayElapsed())
                }
            case .cancelNext:
                loop.cancel(staggerTimer)
                staggerTimer = nil
            case .close(let index):
                close(index)
            case .connected(let index):
                guard let won = attempts.removeValue(forKey: index) else { continue }
                loop.deregister(won.registration)
                finish(.success((won.socket, addresses[index])), orClose: won.socket)
            case .exhausted:
                finish(.failure(Failed(failures: failures)), orClose: nil)
            }
        }
    }

    /// Starts a connect to address `index`; an immediate outcome goes to the race at once.
    private func attempt(_ index: Int) {
        let address = addresses[index]
        let socket: Socket
        do {
            socket = try Socket.tcp(family: address.family)
        } catch {
            failures.append((address, error.errno))
            return perform(race.failed(index))
        }
        try? socket.setNoDelay()
        let registration: EventLoop.Registration
        do {
            registration = try loop.register(fd: socket.fd, events: .writable) { [weak self] _ in self?.ready(index) }
        } catch {
            socket.close()
            failures.append((address, error.errno))
            return perform(race.failed(index))
        }
        attempts[index] = (socket, registration)
        do {
            if case .done = try socket.connect(address) { perform(race.connected(index)) }
        } catch {
            close(index)
            failures.append((address, error.errno))
            perform(race.failed(index))
        }
    }

    private func ready(_ index: Int) {
        guard let attempt = attempts[index] else { return }
        if let error = attempt.socket.pendingError() {
            close(index)
            failures.append((addresses[index], error))
            return perform(race.failed(index))
        }
        perform(race.connected(index))
    }

    private func close(_ index: Int) {
        guard let attempt = attempts.removeValue(forKey: index) else { return }
        loop.deregister(attempt.registration)
        attempt.socket.close()
    }

    private func finish(_ outcome: Outcome, orClose socket: Socket?) {
        guard let done else {
            socket?.close()
            return
        }
        self.done = nil
        done(outcome)
    }
}
