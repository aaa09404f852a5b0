import TunnelPOSIX

/// A change of this machine's network that may concern an SSH connection:
/// from the kernel's route netlink groups, or a resume from suspend.
public enum NetworkChange: Equatable, Sendable, CustomStringConvertible {
    case addressAdded(IPAddress, prefixLength: Int)
    case addressRemoved(IPAddress, prefixLength: Int)
    case routeAdded(IPAddress, prefixLength: Int)
    case routeRemoved(IPAddress, prefixLength: Int)
    /// The machine slept about this long.
    case resumed(afterSeconds: Double)
    /// Netlink messages were lost: treat everything as changed.
    case overrun
    /// An interface stopped running (down, or no carrier), with the
    /// addresses it still holds: its connections are cut, and nothing else
    /// says so.
    case linkDown(interface: String, addresses: [IPAddress])

    /// Nil for a link's state, which needs the interface's addresses
    /// (`Interfaces.addresses(ofIndex:)`) to become a change.
    public init?(_ event: NetworkEvent) {
        switch event {
        case .link: return nil
        case .addressAdded(let a): self = .addressAdded(a.address, prefixLength: a.prefixLength)
        case .addressRemoved(let a): self = .addressRemoved(a.address, prefixLength: a.prefixLength)
        case .routeAdded(let r): self = .routeAdded(r.destination, prefixLength: r.prefixLength)
        case .routeRemoved(let r): self = .routeRemoved(r.destination, prefixLength: r.prefixLength)
        case .overrun: self = .overrun
        }
    }

    public var description: String {
        func route(_ ip: IPAddress, _ length: Int) -> String {
            length == 0 ? "default route (\(ip)/0)" : "route \(ip)/\(length)"
        }
        switch self {
        case .addressAdded(let ip, let length): return "address \(ip)/\(length) added"
        case .addressRemoved(let ip, let length): return "address \(ip)/\(length) removed"
        case .routeAdded(let ip, let length): return "\(route(ip, length)) added"
        case .routeRemoved(let ip, let length): return "\(route(ip, length)) removed"
        case .resumed(let seconds): return "a resume from suspend (\(Int(seconds.rounded())) s asleep)"
        case .overrun: return "lost network change messages"
        case .linkDown(let name, _): return "link \(name) down"
        }
    }

    /// Where one SSH connection stands, as far as a network change goes.
    public enum ConnectionState: Equatable, Sendable {
        case up
        /// Waiting out its backoff to reconnect.
        case waiting
        /// Resolving or in TCP connect: started over only when the path to
        /// the server changed (a new address alone changes no path, and
        /// other interfaces come and go).
        case connecting
        /// Anything else (handshaking, failed for good, stopped): left alone.
        case other
    }

    public enum Reaction: Equatable, Sendable {
        /// Ask the server for an answer now, with a short deadline.
        case probe
        /// Reconnect now instead of waiting out the backoff.
        case retryNow
        case nothing
    }

    /// What a connection does about this change. `local` and `server` are
    /// its socket's two ends (the first hop's through jump hosts); nil when
    /// unknown (a proxy command), in which case any change of the kind may
    /// concern it.
    public func reaction(state: ConnectionState, local: IPAddress?, server: IPAddress?) -> Reaction {
        let local = local?.unmapped, server = server?.unmapped
        switch (state, self) {
        case (.up, .resumed), (.up, .overrun):
            return .probe
        case (.waiting, .resumed), (.waiting, .overrun), (.connecting, .resumed), (.connecting, .overrun):
            return .retryNow
        case (.up, .addressRemoved(let ip, _)):
            guard let local else { return .probe }
            return ip.unmapped == local ? .probe : .nothing
        case (.up, .linkDown(_, let addresses)):
            guard let local else { return .probe }
            return addresses.contains { $0.unmapped == local } ? .probe : .nothing
        case (.up, .routeAdded(let ip, let length)), (.up, .routeRemoved(let ip, let length)):
            guard let server else { return .probe }
            return server.isIn(ip, prefixLength: length) ? .probe : .nothing
        case (.waiting, .addressAdded(let ip, _)):
            // A link-local or loopback address reaches no more servers than before.
            if let server, server.isLinkLocalOrLoopback { return .retryNow }
            return ip.isLinkLocalOrLoopback ? .nothing : .retryNow
        case (.waiting, .routeAdded(let ip, let length)), (.connecting, .routeAdded(let ip, let length)):
            // A default route covers every server of its family. With the
            // server not known yet (never reached), only a default route
            // counts: a container's or VPN's own subnet is no news for it.
            guard let server else { return length == 0 ? .retryNow : .nothing }
            return server.isIn(ip, prefixLength: length) ? .retryNow : .nothing
        default:
            return .nothing
        }
    }
}

extension IPAddress {
    /// Whether the first `prefixLength` bits equal `network`'s (same family only).
    public func isIn(_ network: IPAddress, prefixLength: Int) -> Bool {
        let a = unmapped, n = network.unmapped
        guard a.bytes.count == n.bytes.count, prefixLength >= 0, prefixLength <= a.bytes.count * 8 else { return false }
        let whole = prefixLength / 8, rest = prefixLength % 8
        guard a.bytes[..<whole] == n.bytes[..<whole] else { return false }
        guard rest > 0 else { return true }
        let mask = UInt8(0xff) << (8 - rest)
        return a.bytes[whole] & mask == n.bytes[whole] & mask
    }

    /// 127.0.0.0/8, 169.254.0.0/16, ::1, fe80::/10.
    public var isLinkLocalOrLoopback: Bool {
        let a = unmapped
        if a.isV4 { return a.bytes[0] == 127 || (a.bytes[0] == 169 && a.bytes[1] == 254) }
        if a.bytes == [UInt8](repeating: 0, count: 15) + [1] { return true }
        return a.bytes[0] == 0xfe && a.bytes[1] & 0xc0 == 0x80
    }
}

/// Notices a suspend: CLOCK_BOOTTIME counts the time asleep and
/// CLOCK_MONOTONIC does not, so their gap grows by the time slept. Fed one
/// sample per check (the supervisor's 1 s timer); the clock is injected.
public struct SuspendDetector: Sendable, Equatable {
    public let threshold: Double
    private var lastGap: UInt64?

    public init(threshold: Double = 2) { self.threshold = threshold }

    /// The seconds slept since the previous sample, when more than the threshold.
    public mutating func sample(boottime: UInt64, monotonic: UInt64) -> Double? {
        let gap = boottime > monotonic ? boottime - monotonic : 0
        defer { lastGap = gap }
        guard let lastGap, gap > lastGap else { return nil }
        let slept = Double(gap - lastGap) / 1e9
        return slept > threshold ? slept : nil
    }
}

/// Network changes come in bursts (an interface brings an address and routes
/// at once; Docker or a VPN churn them all day): a lane may skip its backoff
/// for them once per `seconds`, not once per message, so a down server is not
/// logged into over and over.
public struct NetworkRetrySpacing: Sendable {
    public static let seconds = 10.0
    private var last: Instant?

    public init() {}

    /// Whether a change at `now` may retry at once; if so, the next may not until `seconds` later.
    public mutating func mayRetry(now: Instant) -> Bool {
        if let last, now.seconds(since: last) < Self.seconds { return false }
        last = now
        return true
    }
}
