import Glibc
import Logging
import Synchronization
import TunnelConfig
import TunnelPOSIX
import TunnelSSH

/// One profile's tunnel: its listeners, its SSH link and the reconnect logic.
/// Everything here runs on `loop`'s thread; `status` and the forward stats
/// may be read from any thread.
public final class TunnelRuntime: @unchecked Sendable {
    private enum State {
        case idle
        case connecting(Connector)
        case up(Link)
        /// Waiting to retry after a transient failure or a dropped link.
        case waiting(EventLoop.TimerID)
        /// A failure retrying cannot fix; retried rarely or on request.
        case failed(EventLoop.TimerID)
        case stopped
    }

    public let profile: Profile
    public let loop: EventLoop
    public let forwardStats: [ForwardStats]
    private let statusBox = Mutex(TunnelStatus())
    private let options: Connector.Options
    private let logger: Logger
    private var listeners: [Listener] = []
    /// Accepted clients waiting for a channel, oldest first.
    private var queue: [Connection] = []
    private var queueHead = 0
    private var state: State = .idle
    private var backoff = Backoff()
    private var hook: UInt64?
    private var holdTimer: EventLoop.TimerID?
    private let scratchSize = 256 * 1024
    private let scratch: UnsafeMutableRawPointer
    /// Clients accepted but not yet given a channel; beyond this, new clients
    /// wait in the kernel's accept queue.
    private let maxQueued = 4096

    /// Called on the loop thread after every status change.
    public var onStatusChange: ((TunnelStatus) -> Void)?

    public init(profile: Profile, loop: EventLoop, options: Connector.Options, logger: Logger) {
        self.profile = profile
        self.loop = loop
        self.options = options
        self.logger = logger
        self.forwardStats = profile.forwards.map { _ in ForwardStats() }
        self.scratch = UnsafeMutableRawPointer.allocate(byteCount: scratchSize, alignment: 16)
    }

    deinit { scratch.deallocate() }

    public var status: TunnelStatus { statusBox.withLock { $0 } }

    private func update(_ change: (inout TunnelStatus) -> Void) {
        let snapshot = statusBox.withLock { status -> TunnelStatus in
            change(&status)
            return status
        }
        onStatusChange?(snapshot)
    }

    // MARK: lifecycle

    /// Binds every listener, then starts connecting. A bind failure releases
    /// whatever was bound and throws: nothing is left half-done.
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
        update { $0.boundAddresses = listeners.map { $0.address.description } }
        for listener in listeners where listener.spec.isPublic {
            logger.warning("\(listener.address) listens on a non-loopback address: the forwarded service is reachable from the network; protect it with firewall rules")
        }
        hook = loop.addIterationHook { [unowned self] in
            if case .up(let link) = self.state { link.serviceSession() }
        }
        connect()
    }

    /// Closes listeners, connections and the session. Idempotent.
    public func stop(graceful: Bool = true) {
        switch state {
        case .stopped: return
        case .connecting(let connector): connector.cancel()
        case .up(let link):
            // A client whose channel was still opening comes back unserved.
            for c in link.close(graceful: graceful) { closeUnserved(c) }
        case .waiting(let timer), .failed(let timer): loop.cancel(timer)
        case .idle: break
        }
        state = .stopped
        loop.cancel(holdTimer)
        holdTimer = nil
        if let hook { loop.removeIterationHook(hook) }
        hook = nil
        for c in drainQueue() { closeUnserved(c) }
        let closed = listeners.map { $0.address.description }
        for listener in listeners { listener.close(loop: loop) }
        listeners = []
        logger.info("down: closed \(closed.joined(separator: ", "))")
        update { status in
            status.phase = .stopped
            status.since = wallClockSeconds()
        }
    }

    /// Retries at once (a second `tunnel up` of a failed tunnel).
    public func retryNow() {
        switch state {
        case .waiting(let timer), .failed(let timer):
            loop.cancel(timer)
            backoff.reset()
            connect()
        default:
            break
        }
    }

    // MARK: connecting

    private func connect() {
        let connector = Connector(loop: loop, profile: profile, options: options, logger: logger)
        state = .connecting(connector)
        let everUp = status.everUp
        update { status in
            status.phase = everUp ? .reconnecting : .connecting
        }
        connector.start { [unowned self] result in
            switch result {
            case .success(let connected): self.linkUp(connected)
            case .failure(let failure): self.connectFailed(failure)
            }
        }
    }

    private func linkUp(_ connected: ConnectedSession) {
        guard case .connecting = state else {
            connected.session.close(graceful: false)
            return
        }
        let link = Link(connected: connected, runtime: self, loop: loop, logger: logger, scratch: scratch, scratchSize: scratchSize)
        do {
            try link.start(keepalive: profile.keepalive, keepaliveCount: profile.keepaliveCount)
        } catch {
            _ = link.close(graceful: false)
            connectFailed(ConnectFailure(kind: .network, message: "cannot watch the SSH socket: \(error)", isPermanent: false))
            return
        }
        state = .up(link)
        loop.cancel(holdTimer)
        holdTimer = nil
        logger.info("up: \(profile.via) via \(connected.address), \(connected.authMethod); \(connected.session.negotiatedAlgorithms)")
        update { status in
            status.phase = .up
            status.since = wallClockSeconds()
            status.everUp = true
            status.authMethod = connected.authMethod
            status.attempts += 1
        }
        setAccepting(true)
    }

    private func connectFailed(_ failure: ConnectFailure) {
        guard case .connecting = state else { return }
        let delay: Double
        if failure.isPermanent {
            delay = permanentFailureRetryInterval
            logger.error("\(failure.message); not retrying for \(Int(delay)) s (or until `tunnel up` asks again)")
        } else {
            delay = backoff.nextDelay()
            logger.warning("\(failure.message); retrying in \(String(format1(delay))) s")
        }
        let timer = loop.schedule(after: delay) { [unowned self] in self.connect() }
        state = failure.isPermanent ? .failed(timer) : .waiting(timer)
        update { status in
            status.phase = failure.isPermanent ? .failed : .reconnecting
            status.since = wallClockSeconds()
            status.lastError = failure.message
            status.attempts += 1
        }
        startHolding()
    }

    /// The link died (socket error, EOF, keepalive deadline): reconnect soon,
    /// keeping the listeners bound.
    func linkDied(_ link: Link, reason: String) {
        guard case .up(let current) = state, current === link else { return }
        let upFor = Instant.now().seconds(since: link.upSince)
        logger.warning("link lost after \(Int(upFor)) s: \(reason)")
        setAccepting(false)
        let requeue = link.close(graceful: false)
        if !requeue.isEmpty {
            queue.insert(contentsOf: requeue, at: queueHead)
        }
        backoff.linkDropped(afterUpFor: upFor)
        let delay = backoff.nextDelay()
        let timer = loop.schedule(after: delay) { [unowned self] in self.connect() }
        state = .waiting(timer)
        update { status in
            status.phase = .reconnecting
            status.since = wallClockSeconds()
            status.restarts += 1
            status.lastError = reason
        }
        startHolding()
    }

    // MARK: accepting

    private func setAccepting(_ on: Bool) {
        for listener in listeners {
            if on { listener.waitingSince.removeAll() }
            if let registration = listener.registration { loop.setInterest(registration, on ? .readable : []) }
        }
    }

    /// Accepts a batch of clients and queues them for channels.
    private func acceptClients(_ listener: Listener) {
        guard case .up = state else { return }
        for _ in 0..<256 {
            if queue.count - queueHead >= maxQueued {
                if let registration = listener.registration { loop.setInterest(registration, []) }
                return
            }
            let accepted: IOResult<(Socket, SocketAddress?)>
            do {
                accepted = try listener.socket.accept()
            } catch {
                if error.errno == .tooManyFiles || error.errno == .tooManyFilesSystem {
                    // Out of descriptors: leave clients in the kernel queue for a moment.
                    logger.error("accept on \(listener.address): \(error.errno); pausing accepts for 100 ms")
                    if let registration = listener.registration { loop.setInterest(registration, []) }
                    loop.schedule(after: 0.1) { [weak self] in
                        guard let self, case .up = self.state else { return }
                        self.setAccepting(true)
                    }
                } else {
                    logger.warning("accept on \(listener.address): \(error)")
                }
                return
            }
            guard case .done(let (socket, peer)) = accepted else { return }
            try? socket.setNoDelay()
            listener.stats.total.add(1, ordering: .relaxed)
            listener.stats.active.add(1, ordering: .relaxed)
            queue.append(Connection(socket: socket, peer: peer, listener: listener, acceptedAt: Instant.now()))
        }
    }

    /// The next queued client for the link to open a channel for.
    func nextConnectionForChannel() -> Connection? {
        guard queueHead < queue.count else { return nil }
        let c = queue[queueHead]
        queueHead += 1
        if queueHead > 1024 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
        if queue.count - queueHead < maxQueued / 2, case .up = state {
            // Room again: resume accepting on listeners paused for a full queue.
            for listener in listeners where loop.interest(listener.registration!) == [] {
                loop.setInterest(listener.registration!, .readable)
            }
        }
        return c
    }

    private func drainQueue() -> [Connection] {
        let rest = Array(queue[queueHead...])
        queue.removeAll()
        queueHead = 0
        return rest
    }

    private func closeUnserved(_ c: Connection) {
        c.socket.close()
        c.listener.stats.active.subtract(1, ordering: .relaxed)
    }

    // MARK: hold_timeout

    /// While the link is down, clients wait (in our queue or the kernel's);
    /// those waiting longer than hold_timeout are accepted and closed so
    /// nobody hangs forever.
    private func startHolding() {
        guard holdTimer == nil else { return }
        holdTimer = loop.schedule(after: 0.25) { [unowned self] in
            self.holdTimer = nil
            switch self.state {
            case .up, .stopped, .idle: return
            default: break
            }
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
            if now.seconds(since: c.acceptedAt) >= hold { closeUnserved(c) } else { kept.append(c) }
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
