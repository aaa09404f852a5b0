import TunnelPOSIX

/// Whether a tunnel's listeners accept clients, as a value whose transitions
/// return the actions its owner (TunnelRuntime) performs.
///
/// While no SSH connection is up, new clients wait in the kernel's accept
/// queue and clients accepted earlier wait in the runtime's queue; either kind
/// waiting longer than `holdTimeout` is closed, so nobody hangs forever. While
/// more than `maxQueued` clients wait for a channel, new ones stay in the
/// kernel's queue (backpressure). After accept fails for lack of descriptors,
/// accepting pauses briefly.
public struct AcceptGate: Sendable {
    public enum State: Equatable, Sendable {
        /// Not started, or no lane is up: clients are held.
        case holding
        case accepting
        /// Too many clients wait for a channel.
        case full
        /// accept failed with EMFILE/ENFILE: retried after a pause.
        case outOfDescriptors
        case stopped
    }

    public enum Action: Equatable, Sendable {
        case watchListeners(Bool)
        /// Look at the held clients after this many seconds (`holdTick`).
        case scheduleHoldTick(after: Double)
        /// Try accepting again after this many seconds (`descriptorPauseOver`).
        case scheduleAcceptRetry(after: Double)
    }

    public let holdTimeout: Double
    public let maxQueued: Int
    public static let holdTickSeconds = 0.25
    public static let descriptorPauseSeconds = 0.1

    public private(set) var state: State = .holding
    /// A lazy tunnel's first connection attempt is under way: the clients
    /// waiting came to be served by it, so none expires before it ends.
    public private(set) var awaitingFirstAttempt = false
    private var holdTickArmed = false
    /// Per listener: when each client now in its kernel accept queue was
    /// first seen there, oldest first.
    private var waitingSince: [Int: [Instant]] = [:]

    public init(holdTimeout: Double, maxQueued: Int = 4096) {
        self.holdTimeout = holdTimeout
        self.maxQueued = maxQueued
    }

    public var isAccepting: Bool { state == .accepting }

    /// A lane is up.
    public mutating func linkUp() -> [Action] {
        guard state != .stopped else { return [] }
        waitingSince.removeAll()
        let wasAccepting = state == .accepting
        state = .accepting
        return wasAccepting ? [] : [.watchListeners(true)]
    }

    /// No lane is up: hold clients.
    public mutating func linkDown() -> [Action] {
        guard state != .stopped else { return [] }
        var actions: [Action] = []
        if state != .holding {
            state = .holding
            actions.append(.watchListeners(false))
        }
        if !holdTickArmed {
            holdTickArmed = true
            actions.append(.scheduleHoldTick(after: Self.holdTickSeconds))
        }
        return actions
    }

    /// Before accepting one more client while `pending` already wait for a channel.
    public mutating func mayAccept(pending: Int) -> (Bool, [Action]) {
        guard state == .accepting else { return (false, []) }
        if pending >= maxQueued {
            state = .full
            return (false, [.watchListeners(false)])
        }
        return (true, [])
    }

    /// Clients left the channel queue; `pending` still wait.
    public mutating func queueShrank(pending: Int) -> [Action] {
        guard state == .full, pending < maxQueued / 2 else { return [] }
        state = .accepting
        return [.watchListeners(true)]
    }

    /// accept(2) failed with EMFILE or ENFILE.
    public mutating func outOfDescriptors() -> [Action] {
        guard state == .accepting else { return [] }
        state = .outOfDescriptors
        return [.watchListeners(false), .scheduleAcceptRetry(after: Self.descriptorPauseSeconds)]
    }

    public mutating func descriptorPauseOver() -> [Action] {
        guard state == .outOfDescriptors else { return [] }
        state = .accepting
        return [.watchListeners(true)]
    }

    /// What to close on a hold tick.
    public struct Expiry: Equatable, Sendable {
        /// Per listener index: how many clients to accept from the kernel's queue and close.
        public var acceptAndClose: [Int: Int] = [:]
        public var actions: [Action] = []
    }

    /// The hold timer fired. `kernelQueue[listener]`: clients now waiting in
    /// that listener's accept queue (nil when unknown). Clients in the
    /// runtime's own queue are checked with `isExpired`.
    public mutating func holdTick(now: Instant, kernelQueue: [Int: Int?]) -> Expiry {
        holdTickArmed = false
        guard state == .holding else { return Expiry() }
        var expiry = Expiry()
        for (listener, length) in kernelQueue {
            guard let waiting = length else { continue }
            var stamps = waitingSince[listener] ?? []
            // New arrivals since the last look are stamped now; clients that
            // gave up leave from the front (they are the oldest).
            if waiting > stamps.count {
                stamps += Array(repeating: now, count: waiting - stamps.count)
            } else if waiting < stamps.count {
                stamps.removeFirst(stamps.count - waiting)
            }
            var expired = 0
            while let oldest = stamps.first, isExpired(since: oldest, now: now) {
                stamps.removeFirst()
                expired += 1
            }
            waitingSince[listener] = stamps
            if expired > 0 { expiry.acceptAndClose[listener] = expired }
        }
        holdTickArmed = true
        expiry.actions = [.scheduleHoldTick(after: Self.holdTickSeconds)]
        return expiry
    }

    /// A client held since `since` has waited out hold_timeout.
    public func isExpired(since: Instant, now: Instant) -> Bool {
        !awaitingFirstAttempt && now.seconds(since: since) >= holdTimeout
    }

    /// A lazy tunnel woke for a client: hold_timeout counts only once the
    /// first attempt has failed, so `hold_timeout = 0` still serves it.
    public mutating func firstAttemptStarted() { awaitingFirstAttempt = true }

    /// The first attempt came up or failed: clients that have waited
    /// hold_timeout by now are closed on the next tick.
    public mutating func firstAttemptEnded() { awaitingFirstAttempt = false }

    public mutating func stop() -> [Action] {
        guard state != .stopped else { return [] }
        let wasWatching = state == .accepting
        state = .stopped
        waitingSince.removeAll()
        return wasWatching ? [.watchListeners(false)] : []
    }
}
