import Synchronization
import TunnelConfig
import TunnelPOSIX

/// Counters of one forward, written by its tunnel's loop thread and read by
/// the supervisor from another.
public final class ForwardStats: Sendable {
    public let active = Atomic<Int>(0)
    public let total = Atomic<Int>(0)
    /// Bytes from the remote target to local clients.
    public let bytesIn = Atomic<UInt64>(0)
    /// Bytes from local clients to the remote target.
    public let bytesOut = Atomic<UInt64>(0)

    public init() {}

    public func snapshot() -> (active: Int, total: Int, bytesIn: UInt64, bytesOut: UInt64) {
        (active.load(ordering: .relaxed), total.load(ordering: .relaxed),
         bytesIn.load(ordering: .relaxed), bytesOut.load(ordering: .relaxed))
    }
}

/// The link's state as `tunnel ls` names it.
public enum LinkPhase: String, Sendable, Codable, Equatable, CaseIterable {
    case connecting
    case up
    case reconnecting
    case failed
    /// A lazy tunnel with its listeners bound and no SSH connection: the next client starts one.
    case idle
    case stopped
}

/// Durations in fixed buckets, as a Prometheus histogram reports them.
public struct DurationHistogram: Sendable, Equatable {
    /// Upper bounds in seconds; a last, implicit bucket holds the rest (+Inf).
    public static let bounds: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
    /// Per bucket, not cumulative; one more than `bounds` (the +Inf bucket).
    public private(set) var counts: [UInt64] = Array(repeating: 0, count: DurationHistogram.bounds.count + 1)
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    public init() {}

    public mutating func record(_ seconds: Double) {
        let bucket = DurationHistogram.bounds.firstIndex { seconds <= $0 } ?? DurationHistogram.bounds.count
        counts[bucket] += 1
        sum += seconds
        count += 1
    }
}

/// One entry of a tunnel's recent history: what state it entered, when, and why.
public struct StateChange: Sendable, Equatable {
    public var time: Double
    public var phase: LinkPhase
    public var reason: String?
    public init(time: Double, phase: LinkPhase, reason: String?) {
        self.time = time
        self.phase = phase
        self.reason = reason
    }
}

/// Ports a restored tunnel asks for again where its profile says "auto" or
/// port 0: what the kernel (local) or the server (remote) picked before, so
/// clients told the old port keep working. Per forward, in profile order;
/// 0 where the profile names its port.
public struct PreferredPorts: Codable, Sendable, Equatable {
    public var local: [UInt16] = []
    public var remote: [UInt16] = []
    public init(local: [UInt16] = [], remote: [UInt16] = []) {
        self.local = local
        self.remote = remote
    }
    public var isEmpty: Bool { !(local + remote).contains { $0 != 0 } }

    /// These ports, and `saved`'s where these have none.
    public func filling(from saved: PreferredPorts) -> PreferredPorts {
        func fill(_ ports: [UInt16], _ old: [UInt16]) -> [UInt16] {
            ports.enumerated().map { i, port in port == 0 && i < old.count ? old[i] : port }
        }
        return PreferredPorts(local: fill(local, saved.local), remote: fill(remote, saved.remote))
    }

    /// These ports (picked for `old`'s forwards) for the forwards `new`
    /// keeps unchanged at the same place: a reload that restarts a tunnel
    /// for another change keeps the ports its clients were told.
    public func carried(to new: Profile, from old: Profile) -> PreferredPorts {
        func same<T: Equatable>(_ ports: [UInt16], _ before: [T], _ after: [T]) -> [UInt16] {
            after.indices.map { i in i < before.count && i < ports.count && before[i] == after[i] ? ports[i] : 0 }
        }
        return PreferredPorts(local: same(local, old.forwards, new.forwards), remote: same(remote, old.remoteForwards, new.remoteForwards))
    }

    /// What a tunnel of `profile` picked, by its status.
    public init(profile: Profile, status: TunnelStatus) {
        local = profile.forwards.enumerated().map { i, spec in
            guard spec.localPath == nil, spec.localPort == 0, i < status.boundAddresses.count,
                  let port = status.boundAddresses[i].split(separator: ":").last.flatMap({ UInt16($0) }) else { return 0 }
            return port
        }
        remote = profile.remoteForwards.enumerated().map { i, spec in
            spec.port == 0 && i < status.remoteListeners.count ? status.remoteListeners[i].boundPort ?? 0 : 0
        }
    }
}

/// What the supervisor shows for one tunnel.
public struct TunnelStatus: Sendable, Equatable {
    public var phase: LinkPhase = .connecting
    /// Wall-clock time the current phase began.
    public var since: Double = wallClockSeconds()
    public var restarts: Int = 0
    public var lastError: String? {
        didSet { lastErrorAt = lastError.map { _ in wallClockSeconds() } }
    }
    /// Wall-clock time of `lastError`: an old error under a tunnel that is up
    /// again must not read as a current one.
    public private(set) var lastErrorAt: Double?
    /// The address each forward listens on, once bound (port filled in for `auto`).
    public var boundAddresses: [String] = []
    /// Per forward, the IPv6 counterpart it also listens on ("[::1]:5433"), if any.
    public var companionAddresses: [String?] = []
    /// Whether the link has been up at least once.
    public var everUp = false
    /// How the session authenticated, once up.
    public var authMethod: String?
    /// Connection attempts finished (succeeded or failed): lets a waiter tell
    /// a fresh result from an old one.
    public var attempts = 0
    /// SSH connections configured (`sessions`), and how many are up.
    public var sessions = 1
    public var sessionsUp = 0
    /// SSH connections still on their first attempt. `tunnel up` waits for
    /// them: clients that connect as soon as it returns (a pool opening)
    /// then spread over every lane instead of all landing on the first.
    public var sessionsConnecting = 0
    /// Extra SSH connections up, opened while clients queued for channels.
    public var extraSessionsUp = 0
    /// One per remote forward (`profile.remoteForwards`), in order.
    public var remoteListeners: [RemoteListenerStatus] = []
    /// The last keepalive round trip of the first SSH connection up, in seconds.
    public var rttSeconds: Double?
    /// Successful connects of the kept SSH connections, TCP through auth.
    public var connectDurations = DurationHistogram()
    /// Each SSH connection of the tunnel (kept and extra), by lane index.
    public var connections: [ConnectionStatus] = []
    /// The last state changes, oldest first (at most `historyLimit`).
    public var history: [StateChange] = []
    public static let historyLimit = 10
    public init() {}
}

/// A remote forward's listener on the server, as the first SSH connection sees it.
public struct RemoteListenerStatus: Sendable, Equatable {
    /// The port the server listens on while it does (the one it picked, for port 0).
    public var boundPort: UInt16?
    /// Why it is not listening: the server's refusal or a failure, worded
    /// for `tunnel up` and the last error; nil while listening or waiting for an answer.
    public var problem: String?
    /// The server answered the current link's request (granted or refused),
    /// or the SSH connection that asks for it failed to come up: `tunnel up`
    /// waits for that.
    public var settled = false
    public init(boundPort: UInt16? = nil, problem: String? = nil, settled: Bool = false) {
        self.boundPort = boundPort
        self.problem = problem
        self.settled = settled
    }
}

/// One SSH connection of a tunnel, for `tunnel status`.
public struct ConnectionStatus: Sendable, Equatable {
    public var index: Int
    public var isExtra = false
    public var phase: LinkPhase = .connecting
    /// Wall-clock time it came up, while up.
    public var upSince: Double?
    /// What the session runs over: "127.0.0.1:22", or the proxy command.
    public var peer: String?
    public var authMethod: String?
    /// Key exchange, host key, cipher/MAC, as negotiated.
    public var algorithms: String?
    public var hostKeyFingerprint: String?
    public var rttSeconds: Double?
    public init(index: Int) { self.index = index }
}
