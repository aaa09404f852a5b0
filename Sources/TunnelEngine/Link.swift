import Logging
import TunnelPOSIX
import TunnelSSH

/// One authenticated SSH session and the channels on it. Lives until the
/// session dies or the tunnel stops; the tunnel's listeners outlive it.
final class Link {
    enum Ping: Equatable {
        /// The ping channel is waiting its turn to open.
        case opening
        case idle
        case inFlight
        /// The server refused a session channel (e.g. MaxSessions 0): dead
        /// peers are then caught by TCP_USER_TIMEOUT only.
        case unavailable
    }

    let session: SSHSession
    let loop: EventLoop
    let logger: Logger
    let pump: Pump
    var registration: EventLoop.Registration?
    var active: [ObjectIdentifier: Connection] = [:]
    /// Connections whose upstream waits for a window or for the session queue.
    private var upWaiters: [ObjectIdentifier: Connection] = [:]
    /// The client whose channel open is in flight (one per session in libssh2 1.10).
    var opening: Connection?
    /// Fires when that open has waited `openStallSeconds` for the server.
    var openStallTimer: EventLoop.TimerID?
    /// The open in flight has waited that long: every open behind it waits too.
    var isOpenStalled = false
    /// The open in flight became stalled (true) or ended after being stalled (false).
    var onOpenStalled: (Bool) -> Void = { _ in }
    var pingChannel: SSHChannel?
    var ping: Ping = .opening
    var livenessTimer: EventLoop.TimerID?
    private var scannedThrough: UInt64 = 0
    /// Channels busy within `hotSeconds`: checked on every pass that brought
    /// bytes. All channels are checked too, but a full check waits twice as
    /// long as the previous one took, so thousands of quiet clients cost at
    /// most a third of the loop's time and never starve a busy one.
    private var hot: [Connection] = []
    private var fullScanOwed = false
    private var nextFullScan = Instant(nanoseconds: 0)
    private var fullScanTimer: EventLoop.TimerID?
    private static let hotSeconds = 0.5
    private(set) var isDead = false
    let upSince = Instant.now()

    /// The lane's next client waiting for a channel (all on the lane's loop).
    var nextClient: () -> Connection? = { nil }
    /// A client the link had taken ended.
    var onClientFinished: () -> Void = {}
    /// The session died; the lane reconnects.
    var onDeath: (Link, String) -> Void = { _, _ in }
    /// The proxy command the session runs over, ended with the link.
    var proxy: ProxyCommand?
    /// Why the server last refused a channel, for a jump chain's message.
    var lastRefusal: String?
    /// Its reason code, when the server refused (nil: it did not answer).
    var lastRefusalKind: ChannelOpenRefusal?

    // Remote forwards (the first lane's link only; see Link+Remote.swift).
    /// Where each remote forward's connections go here, and its counters.
    var remoteTargets: [ChannelTarget] = []
    /// tcpip-forward requests waiting their turn (one in flight per session).
    var listenQueue: [ListenRequest] = []
    var listenInFlight: ListenRequest?
    /// The server's listeners, by remote forward index.
    var remoteListeners: [Int: SSHListener] = [:]
    /// Forwarded connections whose local target is still being connected to.
    var dialing: [ObjectIdentifier: (attempt: DialAttempt, channel: SSHChannel, target: ChannelTarget)] = [:]
    var dialer: LocalDialer?
    /// The server answered a tcpip-forward request.
    var onListenAnswer: (Int, ListenAnswer) -> Void = { _, _ in }
    /// A forwarded connection arrived (it ends with `onClientFinished`).
    var onClientStarted: () -> Void = {}

    // Probes and round trips (see Link+Probe.swift).
    /// When the ping in flight was sent, for its round trip.
    var pingSentAt: Instant?
    /// A keepalive was answered after this many seconds.
    var onRoundTrip: (Double) -> Void = { _ in }
    /// The deadline of a probe after a network change.
    var probeTimer: EventLoop.TimerID?
    /// The session socket's two ends, when it is TCP.
    private(set) var endpoints: (local: IPAddress?, server: IPAddress?) = (nil, nil)

    init(session: SSHSession, loop: EventLoop, logger: Logger, scratch: Scratch) {
        self.session = session
        self.loop = loop
        self.logger = logger
        self.pump = Pump(session: session, scratch: scratch.pointer, scratchSize: scratch.size)
    }

    func start(keepalive: Int, keepaliveCount: Int) throws(SystemError) {
        session.coalescePackets()
        if keepalive > 0 {
            // Unacknowledged data fails the socket after the same deadline.
            session.failUnacknowledgedData(afterMilliseconds: Int32(min(keepalive * keepaliveCount * 1000, Int(Int32.max))))
        }
        registration = try loop.register(fd: session.socketFD, events: [.readable, .readHangup]) { [unowned self] events in
            self.session.socketEvents(events)
        }
        scheduleLiveness(keepalive: keepalive, count: keepaliveCount)
        let ends = session.endpoints
        endpoints = (ends.local.flatMap(IPAddress.init), ends.peer.flatMap(IPAddress.init))
    }

    // MARK: connections

    func track(_ c: Connection) {
        guard watch(c) else { return }
        active[ObjectIdentifier(c)] = c
        markHot(c)
        service(c, up: true, down: true)
    }

    func markHot(_ c: Connection) {
        c.lastBusy = Instant.now()
        if !c.isHot {
            c.isHot = true
            hot.append(c)
        }
    }

    private func localEvent(_ c: Connection, _ events: IOEvents) {
        guard c.phase == .pumping else { return }
        // HUP after our own EOF to the client is its EOF arriving: a finished
        // half-close whose last bytes may still wait behind the channel's
        // window, not a broken connection.
        if events.contains(.hangup) && !events.contains(.error) && c.down.isClosed { c.bothEndsShut = true }
        let broken = events.contains(.error) || (events.contains(.hangup) && !c.bothEndsShut)
        // A client that sent something probably awaits an answer.
        if events.contains(.readable) { markHot(c) }
        service(c, up: events.contains(.readable) || broken, down: events.contains(.writable) || broken)
        // A reset peer with nothing left to read or write would be reported forever.
        if broken && c.phase == .pumping && c.wantedEvents.isEmpty { finish(c, .failed) }
    }

    /// Pumps one connection and brings its epoll interest up to date.
    private func service(_ c: Connection, up: Bool, down: Bool) {
        do {
            if down { try pump.pumpDown(c) }
            if up { try pump.pumpUp(c) }
        } catch {
            switch error {
            case .local(let e):
                logger.debug("local connection failed: \(e)")
            case .channel(let e):
                if e.isTransportFailure { return die(session.lossReason(e)) }
                logger.info("channel failed: \(e.message)")
            }
            finish(c, .failed)
            return
        }
        if c.isDone { return finish(c, .completed) }
        if c.upWait != .none { upWaiters[ObjectIdentifier(c)] = c }
        updateInterest(c)
    }

    /// Brings the socket's epoll interest up to date. A socket with both
    /// ends shut is taken out of epoll while it waits on the channel (HUP
    /// would wake the loop on every pass) and put back when it has bytes
    /// to give; the channel's window or the send queue wakes it meanwhile.
    private func updateInterest(_ c: Connection) {
        let wanted = c.wantedEvents
        if let registration = c.registration {
            if c.bothEndsShut && wanted.isEmpty {
                loop.deregister(registration)
                c.registration = nil
            } else {
                loop.setInterest(registration, wanted)
            }
        } else if c.bothEndsShut && !wanted.isEmpty {
            watch(c)
        }
    }

    /// Puts the client's socket into epoll; a failure fails the client.
    @discardableResult
    private func watch(_ c: Connection) -> Bool {
        do {
            c.registration = try loop.register(fd: c.socket.fd, events: c.wantedEvents) { [unowned self, unowned c] events in
                self.localEvent(c, events)
            }
            return true
        } catch {
            logger.warning("cannot watch a local connection: \(error)")
            finish(c, .failed)
            return false
        }
    }

    enum Ending {
        /// Both directions ended with EOF: a normal close.
        case completed
        /// Closed without error (the target refused before any byte, or a
        /// stop after the target's side had ended).
        case closed
        /// Cut off mid-stream: the local socket is reset, so the client sees
        /// an error instead of a clean but truncated stream.
        case failed
    }

    /// Ends a connection: closes the local socket and the channel.
    func finish(_ c: Connection, _ ending: Ending) {
        guard c.phase != .finished else { return }
        c.phase = .finished
        let key = ObjectIdentifier(c)
        active.removeValue(forKey: key)
        upWaiters.removeValue(forKey: key)
        if let registration = c.registration { loop.deregister(registration) }
        c.registration = nil
        if ending != .completed { c.up.abort(); c.down.abort() }
        c.upPending.release()
        c.downPending.release()
        if ending == .failed { c.socket.resetOnClose() } else { c.socket.finishOnClose() }
        c.socket.close()
        if let channel = c.channel {
            // CLOSE goes out now; libssh2 may wait for the peer's CLOSE before
            // freeing, in which case the session frees it later.
            _ = try? channel.close()
            channel.free()
            c.channel = nil
        }
        c.target.stats.active.subtract(1, ordering: .relaxed)
        onClientFinished()
    }

    // MARK: the per-iteration pass

    /// Runs once per loop iteration: reads the session socket into libssh2,
    /// then serves every channel that may have changed, the channel opens, the ping.
    func serviceSession() {
        guard !isDead else { return }
        do {
            try session.readIncoming()
        } catch {
            return die(session.lossReason(error))
        }
        if let loss = session.connectionLoss { return die(loss.description) }

        session.reapChannels()
        discardPingChannelData()
        stepOpens()
        if isDead { return }
        if !remoteTargets.isEmpty {
            stepListens()
            if isDead { return }
            acceptForwarded()
        }
        if ping == .inFlight { stepPing() }
        if isDead { return }

        // libssh2's state changes only when bytes arrive: check channels then.
        if session.bytesReceived != scannedThrough {
            scannedThrough = session.bytesReceived
            fullScanOwed = true
        }
        if fullScanOwed && !scanChannels() { return }
        if !upWaiters.isEmpty && session.isSendQueueLow {
            for c in Array(upWaiters.values) {
                guard let channel = c.channel, c.phase == .pumping else { continue }
                if c.upWait == .session || channel.writeWindow > 0 {
                    upWaiters.removeValue(forKey: ObjectIdentifier(c))
                    service(c, up: true, down: false)
                    if isDead { return }
                }
            }
        }
        // Reading the socket needs a channel to read through. Without one (no
        // ping channel, no client) EPOLLIN would fire forever: watch only for
        // the server hanging up until a channel exists.
        let canRead = pingChannel != nil || opening != nil || ping == .opening || !active.isEmpty
            || listenInFlight != nil || !remoteListeners.isEmpty || !dialing.isEmpty
        let events = session.endPass(canRead: canRead)
        if let loss = session.connectionLoss { return die(loss.description) }
        if !canRead && session.serverHungUp { return die(SSHConnectionLoss.peerClosed.description) }
        if let registration { loop.setInterest(registration, events) }
    }

    /// Checks the hot channels on every pass, all of them when the last full
    /// check's cost allows; false once the link died.
    private func scanChannels() -> Bool {
        let now = Instant.now()
        guard !(now < nextFullScan) else {
            if !serviceIfChanged(hot) { return false }
            if fullScanTimer == nil {
                // Nothing else may wake the loop before the full check is due.
                fullScanTimer = loop.schedule(after: max(0.0001, nextFullScan.seconds(since: now))) { [weak self] in
                    self?.fullScanTimer = nil
                }
            }
            return true
        }
        fullScanOwed = false
        loop.cancel(fullScanTimer)
        fullScanTimer = nil
        if !serviceIfChanged(Array(active.values)) { return false }
        let end = Instant.now()
        hot.removeAll { c in
            let cold = c.phase != .pumping || end.seconds(since: c.lastBusy) >= Link.hotSeconds
            if cold { c.isHot = false }
            return cold
        }
        nextFullScan = end.adding(seconds: 2 * end.seconds(since: now))
        return true
    }

    /// Serves each pumping connection whose channel changed; false once the link died.
    private func serviceIfChanged(_ connections: [Connection]) -> Bool {
        for c in connections where c.phase == .pumping {
            serviceIfChanged(c)
            if isDead { return false }
        }
        return true
    }

    private func serviceIfChanged(_ c: Connection) {
        guard let channel = c.channel else { return }
        var down = false
        if c.down.isOpen && c.downPending.isEmpty {
            // Runs for every channel whenever bytes arrive: both tests only
            // walk libssh2's queue of unread packets (short while clients keep
            // up) and never touch the socket.
            down = channel.readAvailable > 0 || channel.isAtEOF
        }
        if c.eofOwed {
            do { try pump.sendEOF(c) } catch { return finish(c, .failed) }
        }
        // The peer closed the channel outright: nothing more can be sent.
        if c.down.isClosed && c.up.isOpen && channel.remoteClosed() {
            c.up.abort()
        }
        if down || c.isDone || (c.upWait == .window && channel.writeWindow > 0) {
            markHot(c)
            service(c, up: c.upWait == .window, down: down)
        }
    }

    // MARK: ending

    func die(_ reason: String) {
        guard !isDead else { return }
        isDead = true
        // A proxy command that exited says why better than the closed socket
        // does; its exit may trail the EOF by a moment, so only then wait for it.
        let wait = session.connectionLoss == .peerClosed ? 0.2 : 0
        onDeath(self, proxy?.exitReason(waitingUpTo: wait) ?? reason)
    }

    /// Closes every connection and the session. Connections still waiting for
    /// a channel go back to the runtime for another lane.
    func close(graceful: Bool) -> [Connection] {
        isDead = true
        loop.cancel(livenessTimer)
        livenessTimer = nil
        loop.cancel(probeTimer)
        probeTimer = nil
        loop.cancel(fullScanTimer)
        fullScanTimer = nil
        hot.removeAll()
        var requeue: [Connection] = []
        if let c = opening, c.channel == nil {
            requeue.append(c)
        }
        opening = nil
        loop.cancel(openStallTimer)
        openStallTimer = nil
        isOpenStalled = false
        closeRemote(graceful: graceful)
        // A client whose stream from the target has not ended gets a reset, so
        // that a cut (down, reload, a lost link) never reads as a complete
        // stream; one that already has the target's EOF keeps its clean end,
        // and whatever it has not read yet.
        for c in Array(active.values) { finish(c, c.down.isClosed ? .closed : .failed) }
        session.dataFreeChannel = nil
        pingChannel?.free()
        pingChannel = nil
        if let registration { loop.deregister(registration) }
        registration = nil
        session.close(graceful: graceful)
        proxy?.terminate()
        proxy = nil
        return requeue
    }
}
