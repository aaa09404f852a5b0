import Logging
import TunnelConfig
import TunnelPOSIX
import TunnelSSH

/// One profile's tunnel: its listeners, the clients waiting for a link, and
/// its lanes (one SSH connection each; lane 0 runs on `loop`, the others on
/// the least-loaded loops of `group`). The decisions are the two state machines'
/// (`AcceptGate`, `LanePool`); this class performs their actions. Everything
/// here runs on `loop`'s thread; `status` and the forward stats may be read
/// from any thread.
public final class TunnelRuntime: @unchecked Sendable {
    public let profile: Profile
    public let loop: EventLoop
    /// Where lanes other than the first run.
    let group: EventLoopGroup
    public let forwardStats: [ForwardStats]
    /// One per `profile.remoteForwards`: connections the server sent back.
    public let remoteStats: [ForwardStats]
    private let statusBox = Locked(TunnelStatus())
    private var options: Connector.Options
    let logger: Logger
    var listeners: [Listener] = []
    var gate: AcceptGate
    var pool: LanePool
    var lanes: [Int: Lane] = [:]
    /// Clients accepted earlier whose lane went down while no other lane was
    /// up, oldest first. They wait for the next lane up, or hold_timeout.
    var held: [Connection] = []
    /// Clients kept back (briefly) for an extra SSH connection being opened
    /// because every one up is busy (`LanePool.admit`), oldest first.
    var heldForGrowth: [Connection] = []
    var growthHoldTimer: EventLoop.TimerID?
    /// `-D` clients still sending their SOCKS requests.
    var negotiations: [ObjectIdentifier: SocksNegotiation] = [:]
    let pending: PendingClients
    var holdTimer: EventLoop.TimerID?
    private var idleCheckTimer: EventLoop.TimerID?
    /// A lazy tunnel awake: looks for clients every so often, and since
    /// when there has been none.
    var lazyTimer: EventLoop.TimerID?
    var quietSince: Instant?
    /// When each kept lane began its current connection attempt.
    var connectStarted: [Int: Instant] = [:]
    /// What each lane's current connection reported, for `tunnel status`.
    var laneFacts: [Int: ConnectionStatus] = [:]
    /// Lanes told to stop that have not yet said they closed everything (with
    /// the loop each ran on), and what to call once a stop has seen them all.
    private var stoppingLanes: [Int: EventLoop] = [:]
    private var stopCompletions: [() -> Void] = []
    var isStopped = false

    /// Called on the loop thread after every status change.
    public var onStatusChange: ((TunnelStatus) -> Void)?
    /// Set before `start`: the ports a restored tunnel asks for again.
    public var preferredPorts = PreferredPorts()

    /// `loop`: the runtime's and its first lane's; `group`: the other lanes'.
    public init(profile: Profile, loop: EventLoop, group: EventLoopGroup, options: Connector.Options, logger: Logger) {
        self.profile = profile
        self.loop = loop
        self.group = group
        self.options = options
        self.logger = logger
        self.forwardStats = profile.forwards.map { _ in ForwardStats() }
        self.remoteStats = profile.remoteForwards.map { _ in ForwardStats() }
        gate = AcceptGate(holdTimeout: Double(profile.holdTimeout))
        pending = PendingClients(resumeBelow: gate.maxQueued / 2)
        pool = LanePool(kept: profile.sessions, maxSessions: profile.maxSessions, asleep: TunnelRuntime.isLazy(profile))
        if let idle = currentEnvironment()["TUNNEL_EXTRA_SESSION_IDLE"].flatMap(Double.init) { pool.extraIdleSeconds = idle }
        statusBox.withLock {
            $0.sessions = profile.sessions
            $0.remoteListeners = profile.remoteForwards.map { _ in RemoteListenerStatus() }
        }
    }

    public var status: TunnelStatus { statusBox.withLock { $0 } }

    /// Lazy as configured, unless ssh_config added remote forwards: the
    /// server listens for those only while connected, so such a tunnel connects at once.
    public static func isLazy(_ profile: Profile) -> Bool { profile.lazy && profile.remoteForwards.isEmpty }

    // MARK: lifecycle

    /// Binds every listener, then starts the lanes connecting. A bind failure
    /// releases whatever was bound and throws: nothing is left half-done.
    public func start() throws(BindFailure) {
        precondition(loop.inLoopThread)
        do throws(BindFailure) {
            for (index, spec) in profile.forwards.enumerated() {
                let preferred = index < preferredPorts.local.count ? preferredPorts.local[index] : 0
                let listener = try Listener(spec: spec, stats: forwardStats[index], preferredPort: preferred)
                listeners.append(listener)
                do {
                    listener.registration = try loop.register(fd: listener.socket.fd, events: []) { [unowned self] _ in
                        self.acceptClients(from: index, socket: 0)
                    }
                } catch {
                    throw BindFailure(address: listener.address.description, errno: error.errno, message: "cannot watch \(listener.address): \(error)")
                }
            }
            // After every forward's own address, so one written as [::1]:PORT
            // keeps its port from another's companion.
            for (index, listener) in listeners.enumerated() { try bindCompanion(of: listener, index: index) }
        } catch {
            for listener in listeners { listener.close(loop: loop) }
            listeners = []
            throw error
        }
        update {
            $0.boundAddresses = listeners.map { $0.address.description }
            $0.companionAddresses = listeners.map { $0.companion?.address.description }
        }
        for listener in listeners where listener.spec.isPublic {
            logger.warning("\(listener.address) listens on a non-loopback address: the forwarded service is reachable from the network; protect it with firewall rules")
        }
        for spec in profile.remoteForwards where spec.isPublic {
            logger.warning("remote \(spec.listenDescription()) asks the server to listen on a non-loopback address: \(spec.targetDescription) here is reachable from its network")
        }
        if pool.isAsleep {
            // Listeners are watched, but a client is not accepted until a
            // lane is up: it waits in the kernel's queue while one connects.
            perform(gate.linkUp())
            publish(reason: "lazy: connects when the first client arrives") { _ in }
        } else {
            if profile.lazy { logger.warning("lazy = true is ignored: ssh_config adds remote forwards, which need the SSH connection up") }
            perform(pool.start())
        }
    }

    /// Also listens on the forward's IPv6 counterpart, as ssh does; without
    /// IPv6, or with that address taken, the forward keeps its main address
    /// (a taken one is logged: clients that try ::1 first reach someone else).
    private func bindCompanion(of listener: Listener, index: Int) throws(BindFailure) {
        guard let bind = listener.spec.ipv6Companion else { return }
        let port = listener.address.port
        if let other = profile.forwards.first(where: { $0.localPath == nil && $0.localPort == port && $0.bind.overlaps(bind) }) {
            return logger.debug("\(bind):\(port) is not added to \(listener.spec.localDescription): \(other.localDescription) is a forward of its own")
        }
        do throws(BindFailure) {
            try listener.bindCompanion(bind)
        } catch {
            switch error.errno {
            case .addressNotAvailable, .familyNotSupported:
                logger.debug("\(listener.address) only: no IPv6 \(bind) here (\(error.errno))")
            default:
                logger.warning("\(listener.address) only: \(error.message)")
            }
            return
        }
        guard let companion = listener.companion else { return }
        do {
            listener.companionRegistration = try loop.register(fd: companion.socket.fd, events: []) { [unowned self] _ in
                self.acceptClients(from: index, socket: 1)
            }
        } catch {
            throw BindFailure(address: companion.address.description, errno: error.errno, message: "cannot watch \(companion.address): \(error)")
        }
    }

    /// Closes listeners, connections and sessions; `completion` runs on the
    /// loop once every lane has closed what it held. Idempotent.
    public func stop(graceful: Bool = true, completion: @escaping () -> Void = {}) {
        precondition(loop.inLoopThread)
        stopCompletions.append(completion)
        if !isStopped {
            isStopped = true
            perform(gate.stop())
            loop.cancel(holdTimer)
            loop.cancel(idleCheckTimer)
            loop.cancel(lazyTimer)
            holdTimer = nil
            idleCheckTimer = nil
            lazyTimer = nil
            for index in pool.stop() { stopLane(index, graceful: graceful) }
            for c in held + heldForGrowth { c.closeUnserved() }
            held.removeAll()
            heldForGrowth.removeAll()
            loop.cancel(growthHoldTimer)
            growthHoldTimer = nil
            for negotiation in negotiations.values { negotiation.cancel() }
            negotiations.removeAll()
            let bound = statusBox.withLock { $0.remoteListeners }
            let closed = listeners.flatMap { [$0.address.description] + ($0.companion.map { [$0.address.description] } ?? []) }
                + zip(profile.remoteForwards, bound).map { "remote " + $0.listenDescription(boundPort: $1.boundPort) }
            for listener in listeners { listener.close(loop: loop) }
            listeners = []
            logger.info("down: closed \(closed.joined(separator: ", "))")
            publish(reason: "stopped") { _ in }
        }
        finishStopIfDone()
    }

    private func finishStopIfDone() {
        guard isStopped, stoppingLanes.isEmpty else { return }
        let completions = stopCompletions
        stopCompletions.removeAll()
        for completion in completions { completion() }
    }

    /// Retries at once (a second `tunnel up` of a failed tunnel), from now
    /// on with `newOptions` if given (the ssh-agent of the `up` that asked).
    public func retryNow(with newOptions: Connector.Options? = nil) {
        if let newOptions { options = newOptions }
        for lane in lanes.values { lane.send(.retryNow(newOptions)) }
    }

    // MARK: lanes

    private func launch(lane index: Int, isExtra: Bool) {
        // Extra connections open because clients pile up behind one sshd
        // process and libssh2's one channel open at a time, not because this
        // thread lacks CPU: on the tunnel's own loop they cost less CPU per
        // request than on another loop (no handoff between threads, one
        // wake-up serves both connections; docs/DEVELOPMENT.md). Kept
        // connections (`sessions`) spread over the group, as asked.
        var laneLoop = loop
        if index > 0 && !isExtra {
            do {
                laneLoop = try group.acquire()
            } catch {
                logger.warning("cannot start an event loop for SSH connection \(index + 1), so it shares the tunnel's: \(error)")
            }
        }
        let report: @Sendable (Lane.Event) -> Void = { [weak self, loop] event in
            let message = Handoff(event)
            loop.execute { [weak self] in self?.handle(message.value, from: index) }
        }
        // Only the first lane asks the server for the remote forwards' listeners.
        let lane = Lane(index: index, isExtra: isExtra, loop: laneLoop, profile: profile, options: options, logger: logger,
                        pending: pending, remoteStats: index == 0 && !isExtra ? remoteStats : [],
                        preferredRemotePorts: index == 0 && !isExtra ? preferredPorts.remote : [], report: report)
        lanes[index] = lane
        laneLoop.perform { lane.start() }
    }

    func stopLane(_ index: Int, graceful: Bool) {
        laneFacts.removeValue(forKey: index)
        guard let lane = lanes.removeValue(forKey: index) else { return }
        stoppingLanes[index] = lane.loop
        lane.send(.stop(graceful: graceful))
    }

    /// A lane closed what it held: its group loop carries one fewer.
    private func laneStopped(_ index: Int) {
        // The first lane runs on the runtime's loop, which is not the lanes' to release.
        if let laneLoop = stoppingLanes.removeValue(forKey: index), laneLoop !== loop { group.release(laneLoop) }
        finishStopIfDone()
    }

    private func handle(_ event: Lane.Event, from index: Int) {
        let report: LanePool.Report
        switch event {
        case .stopped:
            return laneStopped(index)
        case .returned(let connections):
            if isStopped { for c in connections { c.closeUnserved() } } else { assign(connections) }
            return
        case .queueDrained:
            perform(gate.queueShrank(pending: pending.value))
            return
        case .remoteListener(let index, let listener):
            guard !isStopped else { return }
            update { status in
                status.remoteListeners[index] = listener
                if let problem = listener.problem { status.lastError = problem }
            }
            return
        case .connected(let peer, let algorithms, let fingerprint):
            guard !isStopped, pool.lane(index) != nil else { return }
            laneFacts[index, default: ConnectionStatus(index: index)].peer = peer
            laneFacts[index]?.algorithms = algorithms
            laneFacts[index]?.hostKeyFingerprint = fingerprint
            publish { _ in }
            return
        case .roundTrip(let seconds):
            guard !isStopped, let lane = pool.lane(index) else { return }
            laneFacts[index]?.rttSeconds = seconds
            publish { status in if !lane.isExtra { status.rttSeconds = seconds } }
            return
        case .connecting:
            report = .connecting
        case .up:
            report = .up
        case .connectFailed(let message, let isPermanent):
            report = .connectFailed(message: message, isPermanent: isPermanent)
        case .dropped(let reason):
            report = .dropped(reason: reason)
        }
        guard !isStopped else { return }
        let isExtra = pool.lane(index)?.isExtra ?? true
        let now = Instant.now()
        switch event {
        case .up(let authMethod):
            laneFacts[index] = ConnectionStatus(index: index)
            laneFacts[index]?.upSince = wallClockSeconds()
            laneFacts[index]?.authMethod = authMethod
        default:
            laneFacts.removeValue(forKey: index)
        }
        let outcome = pool.report(report, from: index, now: now)
        var connectSeconds: Double?
        if !isExtra {
            switch event {
            case .connecting: connectStarted[index] = now
            case .up: connectSeconds = connectStarted.removeValue(forKey: index).map { now.seconds(since: $0) }
            default: connectStarted.removeValue(forKey: index)
            }
        }
        let reason: String?
        switch event {
        case .up(let authMethod): reason = "connected (\(authMethod))"
        case .connectFailed(let message, _): reason = message
        case .dropped(let why): reason = "link lost: \(why)"
        default: reason = nil
        }
        publish(reason: reason) { status in
            guard !isExtra else { return }
            if outcome.attemptFinished { status.attempts += 1 }
            if let connectSeconds { status.connectDurations.record(connectSeconds) }
            switch event {
            case .up(let authMethod): status.authMethod = authMethod
            case .connectFailed(let message, _): status.lastError = message
            case .dropped(let reason):
                status.restarts += 1
                status.lastError = reason
            default: break
            }
        }
        if outcome.attemptFinished { gate.firstAttemptEnded() }
        perform(outcome.actions)
    }

    func perform(_ actions: [LanePool.Action]) {
        // A status callback may have stopped the tunnel mid-transition.
        guard !isStopped else { return }
        for action in actions {
            switch action {
            case .launch(let index, let isExtra):
                launch(lane: index, isExtra: isExtra)
            case .retire(let index):
                stopLane(index, graceful: true)
                publish { _ in }
            case .shed(let indices):
                for index in indices { lanes[index]?.send(.shed) }
            case .resumeService:
                perform(gate.linkUp())
                let waiting = held
                held.removeAll()
                if !waiting.isEmpty { assign(waiting) }
            case .holdClients:
                perform(gate.linkDown())
            case .scheduleIdleCheck(let after):
                guard idleCheckTimer == nil else { continue }
                idleCheckTimer = loop.schedule(after: after) { [unowned self] in
                    self.idleCheckTimer = nil
                    self.perform(self.pool.checkIdle(now: Instant.now()) { self.lanes[$0]?.load.load(ordering: .relaxed) ?? 0 })
                }
            case .releaseHeldForGrowth:
                releaseHeldForGrowth()
            case .scheduleGrowthHoldEnd(let after):
                loop.cancel(growthHoldTimer)
                growthHoldTimer = loop.schedule(after: after) { [unowned self] in
                    self.growthHoldTimer = nil
                    self.releaseHeldForGrowth()
                }
            case .log(.info, let message):
                logger.info("\(message)")
            case .log(.warning, let message):
                logger.warning("\(message)")
            }
        }
    }

    // MARK: status

    private func update(_ change: (inout TunnelStatus) -> Void) {
        let snapshot = statusBox.withLock { status -> TunnelStatus in
            change(&status)
            return status
        }
        onStatusChange?(snapshot)
    }

    /// Updates the status from the pool's summary plus `change`; a change of
    /// phase goes into the history with `reason`.
    func publish(reason: @autoclosure () -> String? = nil, _ change: (inout TunnelStatus) -> Void) {
        let summary = pool.summary
        update { status in
            change(&status)
            status.everUp = status.everUp || pool.everUp
            // Each attempt of one outage moves between connecting and reconnecting:
            // that is one episode, dated from its start, not a change per retry
            // (which restarted "reconnecting for" and pushed the cause out of the history).
            let retrying: Set<LinkPhase> = [.connecting, .reconnecting]
            let sameOutage = !status.history.isEmpty && retrying.contains(summary.phase) && retrying.contains(status.phase)
            if (summary.phase != status.phase && !sameOutage) || status.history.isEmpty {
                let now = wallClockSeconds()
                status.since = now
                status.history.append(StateChange(time: now, phase: summary.phase, reason: reason()))
                if status.history.count > TunnelStatus.historyLimit { status.history.removeFirst(status.history.count - TunnelStatus.historyLimit) }
            }
            status.phase = summary.phase
            status.connections = pool.lanes.map { lane in
                var c = laneFacts[lane.index] ?? ConnectionStatus(index: lane.index)
                c.isExtra = lane.isExtra
                c.phase = lane.phase
                return c
            }
            status.sessionsUp = summary.sessionsUp
            status.sessionsConnecting = summary.sessionsConnecting
            status.extraSessionsUp = summary.extraSessionsUp
        }
    }
}
