import TunnelPOSIX

/// A tunnel's SSH connections ("lanes") as a value: which are up, which
/// clients go where, when to add an extra connection and when to retire one.
/// Each transition returns the actions its owner (TunnelRuntime) performs, so
/// the logic is tested without sockets or threads.
///
/// `kept` lanes (the profile's `sessions`) reconnect forever. When every lane
/// up carries `busyPerLane` clients, or while clients queue for channels,
/// extra lanes open one at a time up to `maxSessions`;
/// an extra lane never reconnects: a failure or a loss retires it, and it
/// retires after `extraIdleSeconds` without clients.
public struct LanePool: Sendable {
    public enum Report: Equatable, Sendable {
        case connecting
        case up
        case connectFailed(message: String, isPermanent: Bool)
        case dropped(reason: String)
    }

    public enum Action: Equatable, Sendable {
        /// Start a new lane (connecting) with this index.
        case launch(lane: Int, isExtra: Bool)
        /// Stop this lane and forget it; its waiting clients come back.
        case retire(lane: Int)
        /// These lanes give back the newer half of their waiting clients, for the least loaded (a new lane).
        case shed(lanes: [Int])
        /// Accept clients again and hand the ones held meanwhile to the lanes.
        case resumeService
        /// No lane is up: stop accepting and hold clients up to hold_timeout.
        case holdClients
        /// Check extra lanes for idleness after this many seconds.
        case scheduleIdleCheck(after: Double)
        /// Clients kept back for an extra lane (`admit`) go to the lanes now:
        /// it came up or failed, or the hold ran out (`after` seconds).
        case releaseHeldForGrowth
        case scheduleGrowthHoldEnd(after: Double)
        case log(LogLevel, String)
    }

    public enum LogLevel: Equatable, Sendable { case info, warning }

    public struct Lane: Equatable, Sendable {
        public let index: Int
        public let isExtra: Bool
        public var phase: LinkPhase
        /// Since when an up extra lane has had no client.
        var idleSince: Instant?
    }

    /// What the tunnel's status shows, derived from the kept lanes.
    public struct Summary: Equatable, Sendable {
        public var phase: LinkPhase
        public var sessionsUp: Int
        public var sessionsConnecting: Int
        public var extraSessionsUp: Int
    }

    public let kept: Int
    public let maxSessions: Int
    /// Clients waiting for a channel (over all lanes) that make the tunnel add
    /// an SSH connection: libssh2 opens one channel at a time per connection,
    /// one round trip each, so a queue this long waits many round trips.
    public var growthBacklog = 16
    /// Clients on every up lane at which the next client waits (at most
    /// `growthHoldSeconds`) for an extra lane instead. One SSH connection
    /// serves its channels in one sshd process, and pgbench's 8 clients
    /// made 1.0–1.3× ssh -L's query rate over one and 1.45× over two
    /// (2-core bench): a pool of clients is worth a second connection.
    public var busyPerLane = 4
    public var growthHoldSeconds = 0.5
    public var growthPauseSeconds = 30.0
    public var extraIdleSeconds = 15.0

    public private(set) var lanes: [Lane] = []
    public private(set) var everUp = false
    public private(set) var isStopped = false
    /// A lazy tunnel with no lanes: the next client wakes it (`wake`), and
    /// it sleeps again once idle (`sleep`).
    public private(set) var isAsleep = false
    private var nextIndex = 0
    /// An extra lane is connecting: one at a time, so a slow server is not hit by a burst of logins.
    public private(set) var isGrowing = false
    private var growthStartedAt: Instant?
    /// After an extra lane failed, none is tried before this.
    public private(set) var growthPausedUntil = Instant(nanoseconds: 0)
    /// Kept lanes that answered (up or failed) since the last counted attempt.
    private var answered: Set<Int> = []
    /// Round-robin start among equally loaded lanes.
    private var roundRobin = 0

    /// `asleep`: a lazy tunnel, which starts with no lane until `wake`.
    public init(kept: Int, maxSessions: Int, asleep: Bool = false) {
        self.kept = max(1, kept)
        self.maxSessions = max(self.kept, maxSessions)
        self.isAsleep = asleep
    }

    public var anyUp: Bool { lanes.contains { $0.phase == .up } }
    public var upLanes: [Int] { lanes.filter { $0.phase == .up }.map(\.index) }
    public func lane(_ index: Int) -> Lane? { lanes.first { $0.index == index } }

    public var summary: Summary {
        let keptPhases = lanes.filter { !$0.isExtra }.map(\.phase)
        let phase: LinkPhase
        if isStopped {
            phase = .stopped
        } else if isAsleep {
            phase = .idle
        } else if keptPhases.contains(.up) {
            phase = .up
        } else if !keptPhases.isEmpty && keptPhases.allSatisfy({ $0 == .failed }) {
            phase = .failed
        } else if everUp {
            phase = .reconnecting
        } else {
            phase = keptPhases.contains(.connecting) || keptPhases.isEmpty ? .connecting : .reconnecting
        }
        return Summary(phase: phase,
                       sessionsUp: isStopped ? 0 : keptPhases.filter { $0 == .up }.count,
                       sessionsConnecting: isStopped ? 0 : keptPhases.filter { $0 == .connecting }.count,
                       extraSessionsUp: isStopped ? 0 : lanes.filter { $0.isExtra && $0.phase == .up }.count)
    }

    // MARK: transitions

    /// The kept lanes start connecting.
    public mutating func start() -> [Action] {
        (0..<kept).map { _ in
            let index = nextIndex
            nextIndex += 1
            lanes.append(Lane(index: index, isExtra: false, phase: .connecting))
            return .launch(lane: index, isExtra: false)
        }
    }

    /// The outcome of a lane's report: actions, and whether a connection
    /// attempt of the tunnel finished (every kept lane answered, or one came up).
    public struct Outcome: Equatable, Sendable {
        public var actions: [Action] = []
        public var attemptFinished = false
    }

    public mutating func report(_ report: Report, from index: Int, now: Instant) -> Outcome {
        guard !isStopped, let position = lanes.firstIndex(where: { $0.index == index }) else { return Outcome() }
        if lanes[position].isExtra { return Outcome(actions: extraReport(report, at: position, now: now)) }
        var outcome = Outcome()
        switch report {
        case .connecting:
            lanes[position].phase = everUp ? .reconnecting : .connecting
        case .up:
            lanes[position].phase = .up
            everUp = true
            answered.removeAll()
            outcome.attemptFinished = true
            outcome.actions = [.resumeService] + shedOnto(index)
        case .connectFailed(_, let isPermanent):
            lanes[position].phase = isPermanent ? .failed : .reconnecting
            // An attempt counts once every kept lane has answered: `tunnel up`
            // waits for that, not for the first lane's failure.
            answered.insert(index)
            if answered.count >= kept {
                answered.removeAll()
                outcome.attemptFinished = true
            }
            if !anyUp { outcome.actions = [.holdClients] }
        case .dropped:
            lanes[position].phase = .reconnecting
            if !anyUp { outcome.actions = [.holdClients] }
        }
        return outcome
    }

    private mutating func extraReport(_ report: Report, at position: Int, now: Instant) -> [Action] {
        let index = lanes[position].index
        switch report {
        case .connecting:
            lanes[position].phase = .connecting
            return []
        case .up:
            isGrowing = false
            lanes[position].phase = .up
            lanes[position].idleSince = now
            return [.log(.info, "extra SSH connection \(index + 1) up: \(lanes.count) of at most \(maxSessions)")]
                + shedOnto(index) + [.releaseHeldForGrowth, .scheduleIdleCheck(after: idleCheckInterval)]
        case .connectFailed(let message, _):
            isGrowing = false
            growthPausedUntil = now.adding(seconds: growthPauseSeconds)
            return [.log(.warning, "no extra SSH connection for \(Int(growthPauseSeconds)) s: \(message)")] + retire(at: position)
                + [.releaseHeldForGrowth]
        case .dropped:
            return retire(at: position)
        }
    }

    private func shedOnto(_ index: Int) -> [Action] {
        let others = lanes.filter { $0.index != index && $0.phase == .up }.map(\.index)
        return others.isEmpty ? [] : [.shed(lanes: others)]
    }

    private mutating func retire(at position: Int) -> [Action] {
        let index = lanes[position].index
        lanes.remove(at: position)
        // It may have been the only lane up while the kept ones reconnect.
        return [.retire(lane: index)] + (anyUp ? [] : [.holdClients])
    }

    private var idleCheckInterval: Double { min(1, extraIdleSeconds / 2) }

    /// Adds an extra lane while `pending` clients wait for a channel.
    public mutating func growIfBackedUp(pending: Int, now: Instant) -> [Action] {
        guard mayGrow(now: now), pending >= growthBacklog else { return [] }
        return grow(because: "\(pending) clients waiting for a channel", now: now)
    }

    /// How many of `count` new clients go to the up lanes now, whose loads
    /// are `loads` (as in `assign`). When every lane up carries
    /// `busyPerLane` clients and another SSH connection may open, it opens
    /// and the rest wait for it: until it is up or failed
    /// (`.releaseHeldForGrowth`), at most `growthHoldSeconds`. `stalled`:
    /// how many of those lanes count as full because a channel open hangs.
    public mutating func admit(count: Int, loads: [Int], stalled: Int = 0, now: Instant) -> (admitted: Int, actions: [Action]) {
        let room = loads.reduce(0) { $0 + max(0, busyPerLane - $1) }
        guard !loads.isEmpty, count > room else { return (count, []) }
        if isGrowing {
            let holding = growthStartedAt.map { now.seconds(since: $0) < growthHoldSeconds } ?? false
            return (holding ? room : count, [])
        }
        guard mayGrow(now: now) else { return (count, []) }
        let busy = loads.reduce(0, +)
        let why = stalled > 0 ? "a channel open hangs on \(stalled) of \(loads.count) SSH connection(s), \(count) more client(s) arriving"
                              : "\(busy) clients on \(loads.count) SSH connection(s), \(count) more arriving"
        return (room, grow(because: why, now: now)
                    + [.scheduleGrowthHoldEnd(after: growthHoldSeconds)])
    }

    private func mayGrow(now: Instant) -> Bool {
        !isStopped && !isGrowing && lanes.count < maxSessions && anyUp && !(now < growthPausedUntil)
    }

    private mutating func grow(because reason: String, now: Instant) -> [Action] {
        let index = nextIndex
        nextIndex += 1
        isGrowing = true
        growthStartedAt = now
        lanes.append(Lane(index: index, isExtra: true, phase: .connecting))
        return [.log(.info, "\(reason): opening extra SSH connection \(index + 1)"),
                .launch(lane: index, isExtra: true)]
    }

    /// Retires up extra lanes that have had no client for `extraIdleSeconds`.
    /// `load(index)`: the clients a lane holds now.
    public mutating func checkIdle(now: Instant, load: (Int) -> Int) -> [Action] {
        guard !isStopped else { return [] }
        var actions: [Action] = []
        for lane in lanes where lane.isExtra && lane.phase == .up {
            guard let position = lanes.firstIndex(where: { $0.index == lane.index }) else { continue }
            if load(lane.index) > 0 {
                lanes[position].idleSince = nil
            } else if let since = lane.idleSince {
                if now.seconds(since: since) >= extraIdleSeconds {
                    actions.append(.log(.info, "extra SSH connection \(lane.index + 1) closed: no clients for \(format1(extraIdleSeconds)) s"))
                    actions += retire(at: position)
                }
            } else {
                lanes[position].idleSince = now
            }
        }
        if lanes.contains(where: \.isExtra) { actions.append(.scheduleIdleCheck(after: idleCheckInterval)) }
        return actions
    }

    /// Spreads `count` clients over the up lanes, least loaded first (ties
    /// taken round-robin). `loads[k]` is the load of `upLanes[k]`. Returns
    /// one lane index per client; empty when no lane is up.
    public mutating func assign(count: Int, loads: [Int]) -> [Int] {
        let up = upLanes
        guard !up.isEmpty, loads.count == up.count else { return [] }
        var loads = loads
        var choice: [Int] = []
        choice.reserveCapacity(count)
        for _ in 0..<count {
            var best = roundRobin % up.count
            for k in up.indices where loads[k] < loads[best] { best = k }
            roundRobin &+= 1
            loads[best] += 1
            choice.append(up[best])
        }
        return choice
    }

    /// A lazy tunnel's first client arrived: the kept lanes start connecting.
    public mutating func wake() -> [Action] {
        guard isAsleep, !isStopped else { return [] }
        isAsleep = false
        return start()
    }

    /// A lazy tunnel had no client for its idle timeout: every lane stops
    /// (the returned indices) and the pool waits for the next `wake`.
    /// A failed tunnel stays failed instead: waking it would retry a
    /// failure retrying cannot fix on every new client.
    public mutating func sleep() -> [Int] {
        guard !isAsleep, !isStopped, summary.phase != .failed else { return [] }
        isAsleep = true
        everUp = false
        isGrowing = false
        answered.removeAll()
        let stopped = lanes.map(\.index)
        lanes.removeAll()
        return stopped
    }

    /// Every lane stops; later reports are ignored.
    public mutating func stop() -> [Int] {
        isStopped = true
        return lanes.map(\.index)
    }
}

func format1(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}
