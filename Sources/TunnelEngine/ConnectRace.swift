import Glibc
import TunnelConfig
import TunnelPOSIX

/// TCP connection attempts to a server's addresses, staggered as RFC 8305
/// ("Happy Eyeballs") describes: the first address is tried; when it has not
/// connected after `delay` seconds, or fails, the next one starts beside it,
/// and the first to connect wins. One address that drops packets (an AAAA
/// record on a network with broken IPv6, a dead node behind round-robin DNS)
/// then costs `delay`, not the whole `connect_timeout` — which, tried one
/// after another, it used to take every time, so the link never came up.
///
/// A value: each transition returns what its owner (Connector) does with
/// sockets and timers. `.attempt` is always last in a transition's actions,
/// because the owner may report that attempt's immediate outcome before
/// returning.
struct ConnectRace: Equatable, Sendable {
    enum Action: Equatable, Sendable {
        /// Start a connect to address `index`; report `failed` or `connected`.
        case attempt(Int)
        /// Call `delayElapsed` after this many seconds (replacing any earlier such timer).
        case scheduleNext(after: Double)
        case cancelNext
        /// Close this attempt's socket: another one won.
        case close(Int)
        /// This attempt won: hand its socket to the SSH handshake.
        case connected(Int)
        /// Every address failed.
        case exhausted
    }

    /// RFC 8305 §5 recommends 250 ms between attempts.
    static let attemptDelay = 0.25

    let count: Int
    let delay: Double
    private(set) var next = 0
    private(set) var inFlight: [Int] = []
    private(set) var isFinished = false

    init(count: Int, delay: Double = ConnectRace.attemptDelay) {
        self.count = count
        self.delay = delay
    }

    mutating func start() -> [Action] {
        launchNext()
    }

    /// The stagger timer fired: the attempts under way get company.
    mutating func delayElapsed() -> [Action] {
        guard !isFinished else { return [] }
        return launchNext()
    }

    /// Attempt `index` failed (at once or later): the next address starts now.
    mutating func failed(_ index: Int) -> [Action] {
        guard !isFinished, let position = inFlight.firstIndex(of: index) else { return [] }
        inFlight.remove(at: position)
        if next < count { return [.cancelNext] + launchNext() }
        if inFlight.isEmpty {
            isFinished = true
            return [.cancelNext, .exhausted]
        }
        return []
    }

    mutating func connected(_ index: Int) -> [Action] {
        guard !isFinished, inFlight.contains(index) else { return [] }
        isFinished = true
        let losers = inFlight.filter { $0 != index }
        inFlight = []
        return [.cancelNext] + losers.map { .close($0) } + [.connected(index)]
    }

    private mutating func launchNext() -> [Action] {
        guard next < count else {
            if inFlight.isEmpty && !isFinished {
                isFinished = true
                return [.exhausted]
            }
            return []
        }
        let index = next
        next += 1
        inFlight.append(index)
        return (next < count ? [.scheduleNext(after: delay)] : []) + [.attempt(index)]
    }

    /// getaddrinfo's order with the address families taking turns, from the
    /// first one's (RFC 8305 §4), so a family that does not work delays the
    /// other by one attempt, not by all of its addresses.
    static func interleavingFamilies(_ addresses: [SocketAddress]) -> [SocketAddress] {
        guard let first = addresses.first else { return [] }
        var preferred = addresses.filter { $0.family == first.family }[...]
        var others = addresses.filter { $0.family != first.family }[...]
        var out: [SocketAddress] = []
        out.reserveCapacity(addresses.count)
        while !preferred.isEmpty || !others.isEmpty {
            if let a = preferred.popFirst() { out.append(a) }
            if let b = others.popFirst() { out.append(b) }
        }
        return out
    }
}

extension AddressFamily {
    /// The addresses ssh_config's AddressFamily lets tunnel try, in their order.
    func admitted(_ addresses: [SocketAddress]) -> [SocketAddress] {
        switch self {
        case .any: return addresses
        case .inet: return addresses.filter { $0.family == AF_INET }
        case .inet6: return addresses.filter { $0.family == AF_INET6 }
        }
    }

    /// Why no address was left to try.
    func leftNone(of addresses: [SocketAddress], host: String) -> String {
        let version = self == .inet ? "IPv4" : "IPv6"
        let found = addresses.map { $0.host }.joined(separator: ", ")
        return "\(host) has no \(version) address (it resolves to \(found)), and ssh_config says AddressFamily \(rawValue) for it"
    }
}
