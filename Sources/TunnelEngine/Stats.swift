import Synchronization
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
public enum LinkPhase: String, Sendable, Codable, Equatable {
    case connecting
    case up
    case reconnecting
    case failed
    case stopped
}

/// What the supervisor shows for one tunnel.
public struct TunnelStatus: Sendable, Equatable {
    public var phase: LinkPhase = .connecting
    /// Wall-clock time the current phase began.
    public var since: Double = wallClockSeconds()
    public var restarts: Int = 0
    public var lastError: String?
    /// The address each forward listens on, once bound (port filled in for `auto`).
    public var boundAddresses: [String] = []
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
