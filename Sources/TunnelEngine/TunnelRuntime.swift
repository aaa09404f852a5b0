import Glibc
import Logging
import Synchronization
import TunnelConfig
import TunnelPOSIX
import TunnelSSH

/// One profile's tunnel: its listeners, the clients waiting for a link, and
/// its lanes (one SSH connection each; lane 0 runs on `loop`, the others on
/// threads of their own). `profile.sessions` lanes are kept; extra lanes, up
/// to `profile.maxSessions`, open while clients queue for channels and close
/// once idle. Everything here runs on `loop`'s thread; `status` and the
/// forward stats may be read from any thread.
public final class TunnelRuntime: @unchecked Sendable {
    public let profile: Profile
    public let loop: EventLoop
    public let forwardStats: [ForwardStats]
    private let statusBox = Locked(TunnelStatus())
    private let options: Connector.Options
    private let logger: Logger
    private var listeners: [Listener] = []
    /// The kept lanes first, then the extra ones.
    private var lanes: [Lane] = []
    /// Each lane's phase as last reported, by lane index; a retired extra lane has none.
    private var lanePhases: [Int: LinkPhase] = [:]
    private var nextLaneIndex = 0
    /// Lanes running on threads of their own, until they have closed everything.
    private let laneThreadsRunning = Atomic<Int>(0)
    /// An extra lane is connecting: one at a time, so a slow server is not
    /// hit by a burst of logins.
    private var isGrowing = false
    /// After an extra lane failed, none is tried before this.
    private var growthPausedUntil = Instant(nanoseconds: 0)
    /// Each up extra lane's last moment without clients (nil while it has some).
    private var extraIdleSince: [Int: Instant] = [:]
    private var extraCheckTimer: EventLoop.TimerID?
    /// Clients waiting for a channel (over all lanes) that make the tunnel add
    /// an SSH connection: libssh2 opens one channel at a time per connection,
    /// one round trip each, so a queue this long waits many round trips.
    static let growthBacklog = 16
    static let growthPauseSeconds = 30.0
    /// How long an extra SSH connection stays without clients before it closes.
    static let extraIdleSeconds: Double = currentEnvironment()["TUNNEL_EXTRA_SESSION_IDLE"].flatMap(Double.init) ?? 15
    /// Clients accepted earlier whose lane went down while no other lane was
    /// up, oldest first. They wait for the next lane up, or hold_timeout.
    private var queue: [Connection] = []
    private var isAccepting = false
    private var isStopped = false
    private var holdTimer: EventLoop.TimerID?
    /// Lanes that answered (up or failed) since the last counted attempt.
    private var answered: Set<Int> = []
    /// Round-robin start among equally loaded lanes.
    private var nextLane = 0
    /// Clients handed to lanes that have not asked for a channel yet; beyond
    /// `maxQueued`, new clients wait in the kernel's accept queue.
    private let pending = Atomic<Int>(0)
    private let acceptsPausedForQueue = Atomic<Bool>(false)
    private let maxQueued = 4096

    /// Called on the loop thread after every status change.
    public var onStatusChange: ((TunnelStatus) -> Void)?

    public init(profile: Profile, loop: EventLoop, options: Connector.Options, logger: Logger) {
        self.profile = profile
        self.loop = loop
        self.options = options
        self.logger = logger
        self.forwardStats = profile.forwards.map { _ in ForwardStats() }
        statusBox.withLock { $0.sessions = profile.sessions }
    }

    public var status: TunnelStatus { statusBox.withLock { $0 } }

    private func update(_ change: (inout TunnelStatus) -> Void) {
        let snapshot = statusBox.withLock { status -> TunnelStatus in
            change(&status)
            return status
        }
        onStatusChange?(snapshot)
    }

    // MARK: lifecycle

    /// Binds every listener, then starts the lanes connecting. A bind failure
    /// releases whatever was bound and throws: nothing is left half-done.
    public func start() throws(BindFailure) {
        precondition(loop.inLoopThread)
        var bound: [Listener] = []
        do {
            for (index, spec) in profile.forwards.enumerated() {
                bound.append(try Listener(spec: spec, stats: forwardStats[index]))
            }
        } catch {
            for listener in bound { listener.close(loop: loop) }
            throw error
        }
        listeners = bound
        for listener in listeners {
            do {
                listener.registration = try loop.register(fd: listener.socket.fd, events: []) { [unowned self, unowned listener] _ in
                    self.acceptClients(listener)
                }
            } catch {
                for l in listeners { l.close(loop: loop) }
                listeners = []
                throw BindFailure(address: listener.address.description, errno: error.errno, message: "cannot watch \(listener.address): \(error)")
            }
        }
        var loops = [loop]
        do {
            for _ in 1..<profile.sessions { loops.append(try EventLoop()) }
        } catch {
            for l in listeners { l.close(loop: loop) }
            listeners = []
            throw BindFailure(address: "", errno: error.errno, message: "cannot start an event loop: \(error)")
        }
        update { $0.boundAddresses = listeners.map { $0.address.description } }
        for listener in listeners where listener.spec.isPublic {
            logger.warning("\(listener.address) listens on a non-loopback address: the forwarded service is reachable from the network; protect it with firewall rules")
        }
        lanes = loops.enumerated().map { Lane(index: $0.offset, loop: $0.element, runtime: self, options: options, logger: logger) }
        nextLaneIndex = lanes.count
        for lane in lanes { lanePhases[lane.index] = .connecting }
        for lane in lanes.dropFirst() { launch(lane) }
        lanes[0].start()
    }

    /// Runs a lane other than the first on a thread of its own.
    private func launch(_ lane: Lane) {
        laneThreadsRunning.add(1, ordering: .sequentiallyConsistent)
        let laneLoop = lane.loop
        startThread(name: "tunnel-\(profile.name)-\(lane.index + 1)") { [self] in
            laneLoop.run()
            self.laneThreadsRunning.subtract(1, ordering: .sequentiallyConsistent)
        }
        laneLoop.execute { lane.start() }
    }

    /// Closes listeners, connections and the sessions. Idempotent. Returns
    /// once every lane has closed what it held.
    public func stop(graceful: Bool = true) {
        guard !isStopped else { return }
        isStopped = true
        isAccepting = false
        loop.cancel(holdTimer)
        holdTimer = nil
        loop.cancel(extraCheckTimer)
        extraCheckTimer = nil
        for lane in lanes.dropFirst() {
            lane.loop.execute {
                lane.stop(graceful: graceful)
                lane.loop.stop()
            }
        }
        lanes.first?.stop(graceful: graceful)
        // The other lanes close their clients on their own threads; wait (briefly)
        // so `down` means closed.
        let deadline = Instant.now().adding(seconds: 3)
        while laneThreadsRunning.load(ordering: .sequentiallyConsistent) > 0 && Instant.now() < deadline {
            usleep(1000)
        }
        for c in drainQueue() { c.closeUnserved() }
        let closed = listeners.map { $0.address.description }
        for listener in listeners { listener.close(loop: loop) }
        listeners = []
        logger.info("down: closed \(closed.joined(separator: ", "))")
        update { status in
            status.phase = .stopped
            status.sessionsUp = 0
            status.extraSessionsUp = 0
            status.since = wallClockSeconds()
        }
    }

    /// Retries at once (a second `tunnel up` of a failed tunnel).
    public func retryNow() {
        for lane in lanes { lane.loop.perform { lane.retryNow() } }
    }

    // MARK: lanes

    func handle(_ event: Lane.Event, from lane: Lane) {
        if isStopped {
            if case .returned(let connections) = event { for c in connections { c.closeUnserved() } }
            return
        }
        if lane.isExtra {
            return handleExtra(event, from: lane)
        }
        let i = lane.index
        switch event {
        case .connecting:
            lanePhases[i] = status.everUp ? .reconnecting : .connecting
            publish { _ in }
        case .up(let authMethod):
            lanePhases[i] = .up
            answered.removeAll()
            loop.cancel(holdTimer)
            holdTimer = nil
            publish { status in
                status.everUp = true
                status.authMethod = authMethod
                status.attempts += 1
            }
            setAccepting(true)
            let waiting = drainQueue()
            if !waiting.isEmpty { assign(waiting) }
            rebalance(onto: lane)
        case .connectFailed(let message, let isPermanent):
            lanePhases[i] = isPermanent ? .failed : .reconnecting
            // An attempt counts once every lane has answered: `tunnel up`
            // waits for that, not for the first lane's failure.
            answered.insert(i)
            let roundOver = answered.count == profile.sessions
            if roundOver { answered.removeAll() }
            publish { status in
                status.lastError = message
                if roundOver { status.attempts += 1 }
            }
            if !anyLaneUp { startHolding() }
        case .dropped(let reason):
            lanePhases[i] = .reconnecting
            publish { status in
                status.restarts += 1
                status.lastError = reason
            }
            if !anyLaneUp {
                setAccepting(false)
                startHolding()
            }
        case .returned(let connections):
            assign(connections)
        }
    }

    private var anyLaneUp: Bool { lanePhases.values.contains(.up) }

    /// What an extra lane reports: it never reconnects, so a failure or a
    /// loss retires it (its waiting clients come back as `.returned`).
    private func handleExtra(_ event: Lane.Event, from lane: Lane) {
        if case .returned(let connections) = event { return assign(connections) }
        // Events still in flight from a lane already retired.
        guard lanePhases[lane.index] != nil else { return }
        switch event {
        case .connecting:
            lanePhases[lane.index] = .connecting
        case .up:
            isGrowing = false
            lanePhases[lane.index] = .up
            extraIdleSince[lane.index] = Instant.now()
            logger.info("extra SSH connection \(lane.index + 1) up: \(lanes.count) of at most \(profile.maxSessions)")
            rebalance(onto: lane)
            scheduleExtraCheck()
            publish { _ in }
            growIfBackedUp()
        case .connectFailed(let message, _):
            isGrowing = false
            growthPausedUntil = Instant.now().adding(seconds: Self.growthPauseSeconds)
            logger.warning("no extra SSH connection for \(Int(Self.growthPauseSeconds)) s: \(message)")
            retire(lane)
        case .dropped:
            retire(lane)
        case .returned:
            break
        }
    }

    /// Adds an SSH connection while clients queue for channels.
    private func growIfBackedUp() {
        guard !isStopped, !isGrowing, lanes.count < profile.maxSessions, anyLaneUp,
              pending.load(ordering: .relaxed) >= Self.growthBacklog,
              !(Instant.now() < growthPausedUntil)
        else { return }
        let laneLoop: EventLoop
        do {
            laneLoop = try EventLoop()
        } catch {
            growthPausedUntil = Instant.now().adding(seconds: Self.growthPauseSeconds)
            logger.warning("cannot start an event loop for an extra SSH connection: \(error)")
            return
        }
        let lane = Lane(index: nextLaneIndex, isExtra: true, loop: laneLoop, runtime: self, options: options, logger: logger)
        nextLaneIndex += 1
        isGrowing = true
        lanes.append(lane)
        lanePhases[lane.index] = .connecting
        logger.info("\(pending.load(ordering: .relaxed)) clients waiting for a channel: opening extra SSH connection \(lane.index + 1)")
        launch(lane)
    }

    /// Closes an extra lane; it holds no clients unless its link just died.
    private func retire(_ lane: Lane) {
        lanes.removeAll { $0 === lane }
        lanePhases[lane.index] = nil
        extraIdleSince[lane.index] = nil
        lane.loop.execute {
            lane.stop(graceful: true)
            lane.loop.stop()
        }
        publish { _ in }
        // It may have been the only lane up while the kept ones reconnect.
        if !anyLaneUp {
            setAccepting(false)
            startHolding()
        }
    }

    /// A lane came up: the other lanes give back half of the clients still
    /// waiting for a channel, to be handed to the least loaded (the new one).
    private func rebalance(onto newLane: Lane) {
        for lane in lanes where lane !== newLane && lanePhases[lane.index] == .up {
            lane.loop.perform { lane.shedWaiting() }
        }
    }

    /// Retires extra lanes that have had no client for `extraIdleSeconds`.
    private func scheduleExtraCheck() {
        guard extraCheckTimer == nil else { return }
        extraCheckTimer = loop.schedule(after: min(1, Self.extraIdleSeconds / 2)) { [unowned self] in
            self.extraCheckTimer = nil
            guard !self.isStopped else { return }
            let now = Instant.now()
            for lane in self.lanes where lane.isExtra && self.lanePhases[lane.index] == .up {
                if lane.load.load(ordering: .relaxed) > 0 {
                    self.extraIdleSince[lane.index] = nil
                } else if let since = self.extraIdleSince[lane.index] {
                    if now.seconds(since: since) >= Self.extraIdleSeconds {
                        self.logger.info("extra SSH connection \(lane.index + 1) closed: no clients for \(format1(Self.extraIdleSeconds)) s")
                        self.retire(lane)
                    }
                } else {
                    self.extraIdleSince[lane.index] = now
                }
            }
            if self.lanes.contains(where: \.isExtra) { self.scheduleExtraCheck() }
        }
    }

    /// Updates the status from the lanes' phases plus `change`.
    private func publish(_ change: (inout TunnelStatus) -> Void) {
        let phases = lanes.filter { !$0.isExtra }.compactMap { lanePhases[$0.index] }
        let extraUp = lanes.filter { $0.isExtra && lanePhases[$0.index] == .up }.count
        update { status in
            change(&status)
            let phase: LinkPhase
            if phases.contains(.up) {
                phase = .up
            } else if phases.allSatisfy({ $0 == .failed }) {
                phase = .failed
            } else if status.everUp {
                phase = .reconnecting
            } else {
                phase = phases.contains(.connecting) ? .connecting : .reconnecting
            }
            if phase != status.phase { status.since = wallClockSeconds() }
            status.phase = phase
            status.sessionsUp = phases.filter { $0 == .up }.count
            status.sessionsConnecting = phases.filter { $0 == .connecting }.count
            status.extraSessionsUp = extraUp
        }
    }

    // MARK: accepting

    private func setAccepting(_ on: Bool) {
        isAccepting = on
        for listener in listeners {
            if on { listener.waitingSince.removeAll() }
            if let registration = listener.registration { loop.setInterest(registration, on ? .readable : []) }
        }
    }

    /// Accepts a batch of clients and hands them to the lanes.
    private func acceptClients(_ listener: Listener) {
        guard isAccepting else { return }
        var accepted: [Connection] = []
        defer { if !accepted.isEmpty { assign(accepted) } }
        for _ in 0..<256 {
            if pending.load(ordering: .relaxed) + accepted.count >= maxQueued {
                acceptsPausedForQueue.store(true, ordering: .sequentiallyConsistent)
                if let registration = listener.registration { loop.setInterest(registration, []) }
                return
            }
            let result: IOResult<(Socket, SocketAddress?)>
            do {
                result = try listener.socket.accept()
            } catch {
                if error.errno == .tooManyFiles || error.errno == .tooManyFilesSystem {
                    // Out of descriptors: leave clients in the kernel queue for a moment.
                    logger.error("accept on \(listener.address): \(error.errno); pausing accepts for 100 ms")
                    if let registration = listener.registration { loop.setInterest(registration, []) }
                    loop.schedule(after: 0.1) { [weak self] in
                        guard let self, self.isAccepting else { return }
                        self.setAccepting(true)
                    }
                } else {
                    logger.warning("accept on \(listener.address): \(error)")
                }
                return
            }
            guard case .done(let (socket, peer)) = result else { return }
            try? socket.setNoDelay()
            listener.stats.total.add(1, ordering: .relaxed)
            listener.stats.active.add(1, ordering: .relaxed)
            accepted.append(Connection(socket: socket, peer: peer, listener: listener, acceptedAt: Instant.now()))
        }
    }

    /// Hands clients to the least-loaded lanes that are up, or keeps them
    /// until one is.
    private func assign(_ connections: [Connection]) {
        defer { growIfBackedUp() }
        let up = lanes.filter { lanePhases[$0.index] == .up }
        guard !up.isEmpty else {
            queue.append(contentsOf: connections)
            startHolding()
            return
        }
        var loads = up.map { $0.load.load(ordering: .relaxed) }
        var batches = Array(repeating: [Connection](), count: up.count)
        for c in connections {
            var best = nextLane % up.count
            for k in up.indices where loads[k] < loads[best] { best = k }
            nextLane &+= 1
            loads[best] += 1
            batches[best].append(c)
        }
        for (k, lane) in up.enumerated() where !batches[k].isEmpty {
            lane.load.add(batches[k].count, ordering: .relaxed)
            pending.add(batches[k].count, ordering: .relaxed)
            let handoff = Handoff(batches[k])
            lane.loop.perform { lane.receive(handoff.value) }
        }
    }

    /// A lane took clients off its queue (for a channel, or to give back).
    func clientsLeftQueue(_ count: Int) {
        let left = pending.subtract(count, ordering: .relaxed).newValue
        guard left < maxQueued / 2,
              acceptsPausedForQueue.compareExchange(expected: true, desired: false, ordering: .sequentiallyConsistent).exchanged
        else { return }
        loop.perform { [weak self] in
            guard let self, self.isAccepting else { return }
            self.setAccepting(true)
        }
    }

    private func drainQueue() -> [Connection] {
        let rest = queue
        queue.removeAll()
        return rest
    }

    // MARK: hold_timeout

    /// While the link is down, clients wait (in our queue or the kernel's);
    /// those waiting longer than hold_timeout are accepted and closed so
    /// nobody hangs forever.
    private func startHolding() {
        guard holdTimer == nil else { return }
        holdTimer = loop.schedule(after: 0.25) { [unowned self] in
            self.holdTimer = nil
            if self.isStopped || self.anyLaneUp { return }
            self.enforceHold()
            self.startHolding()
        }
    }

    private func enforceHold() {
        let now = Instant.now()
        let hold = Double(profile.holdTimeout)
        // Our own queue first: these clients were accepted before the link dropped.
        var kept: [Connection] = []
        for c in drainQueue() {
            if now.seconds(since: c.acceptedAt) >= hold { c.closeUnserved() } else { kept.append(c) }
        }
        queue = kept
        for listener in listeners {
            guard let waiting = listener.socket.acceptQueueLength() else { continue }
            // New arrivals since the last look are stamped now; clients that
            // gave up leave from the front (they are the oldest).
            if waiting > listener.waitingSince.count {
                listener.waitingSince += Array(repeating: now, count: waiting - listener.waitingSince.count)
            } else if waiting < listener.waitingSince.count {
                listener.waitingSince.removeFirst(listener.waitingSince.count - waiting)
            }
            while let oldest = listener.waitingSince.first, now.seconds(since: oldest) >= hold {
                listener.waitingSince.removeFirst()
                guard case .done(let (socket, _)) = (try? listener.socket.accept()) ?? .wouldBlock else { break }
                listener.stats.total.add(1, ordering: .relaxed)
                socket.close()
            }
        }
    }
}

func format1(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}
