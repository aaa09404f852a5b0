import Logging
import Synchronization
import TunnelConfig
import TunnelPOSIX
import TunnelSSH

/// One SSH connection of a tunnel, with its own reconnect logic, on its own
/// event loop. A tunnel has `profile.sessions` lanes; its runtime accepts the
/// clients and hands each to the least-loaded lane that is up, so busy
/// tunnels use more than one core here and more than one sshd process there.
/// While clients queue for channels the runtime adds extra lanes (up to
/// `profile.maxSessions`); an extra lane never reconnects: it reports its
/// failure or loss and the runtime retires it.
final class Lane: @unchecked Sendable {
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

    /// What a lane tells its runtime, always on the runtime's loop.
    enum Event {
        case connecting
        case up(authMethod: String)
        case connectFailed(message: String, isPermanent: Bool)
        case dropped(reason: String)
        /// Clients that were handed to this lane but never got a channel.
        case returned([Connection])
    }

    let index: Int
    let isExtra: Bool
    let loop: EventLoop
    private unowned let runtime: TunnelRuntime
    private let profile: Profile
    private let options: Connector.Options
    private let logger: Logger
    private var state: State = .idle
    private var backoff = Backoff()
    private var hook: UInt64?
    private let scratchSize = 256 * 1024
    private let scratch: UnsafeMutableRawPointer
    /// Clients handed over by the runtime, waiting for a channel, oldest first.
    private var inbox: [Connection] = []
    private var inboxHead = 0
    /// Clients handed to this lane and not yet finished: what the runtime balances on.
    let load = Atomic<Int>(0)

    init(index: Int, isExtra: Bool = false, loop: EventLoop, runtime: TunnelRuntime, options: Connector.Options, logger: Logger) {
        self.index = index
        self.isExtra = isExtra
        self.loop = loop
        self.runtime = runtime
        self.profile = runtime.profile
        self.options = options
        var logger = logger
        if isExtra {
            logger[metadataKey: "session"] = "\(index + 1) (extra)"
        } else if runtime.profile.sessions > 1 {
            logger[metadataKey: "session"] = "\(index + 1)/\(runtime.profile.sessions)"
        }
        self.logger = logger
        self.scratch = UnsafeMutableRawPointer.allocate(byteCount: scratchSize, alignment: 16)
    }

    deinit { scratch.deallocate() }

    // MARK: lifecycle (on `loop`)

    func start() {
        precondition(loop.inLoopThread)
        hook = loop.addIterationHook { [unowned self] in
            if case .up(let link) = self.state { link.serviceSession() }
        }
        connect()
    }

    /// Closes the session and every client it holds. Idempotent.
    func stop(graceful: Bool) {
        precondition(loop.inLoopThread)
        var unserved = takeInbox()
        switch state {
        case .stopped: return
        case .connecting(let connector): connector.cancel()
        case .up(let link): unserved += link.close(graceful: graceful)
        case .waiting(let timer), .failed(let timer): loop.cancel(timer)
        case .idle: break
        }
        state = .stopped
        if let hook { loop.removeIterationHook(hook) }
        hook = nil
        for c in unserved { closeUnserved(c) }
    }

    func retryNow() {
        switch state {
        case .waiting(let timer), .failed(let timer):
            loop.cancel(timer)
            backoff.reset()
            connect()
        default:
            break
        }
    }

    private func report(_ event: Event) {
        let runtime = self.runtime
        let message = Handoff(event)
        runtime.loop.execute { [self] in runtime.handle(message.value, from: self) }
    }

    // MARK: connecting

    private func connect() {
        let connector = Connector(loop: loop, profile: profile, options: options, logger: logger)
        state = .connecting(connector)
        report(.connecting)
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
        let link = Link(connected: connected, lane: self, loop: loop, logger: logger, scratch: scratch, scratchSize: scratchSize)
        do {
            try link.start(keepalive: profile.keepalive, keepaliveCount: profile.keepaliveCount)
        } catch {
            _ = link.close(graceful: false)
            connectFailed(ConnectFailure(kind: .network, message: "cannot watch the SSH socket: \(error)", isPermanent: false))
            return
        }
        state = .up(link)
        logger.info("up: \(profile.via) via \(connected.address), \(connected.authMethod); \(connected.session.negotiatedAlgorithms)")
        report(.up(authMethod: connected.authMethod))
    }

    private func connectFailed(_ failure: ConnectFailure) {
        guard case .connecting = state else { return }
        if isExtra {
            // The runtime logs it, with the pause it takes before another.
            state = .idle
            report(.connectFailed(message: failure.message, isPermanent: failure.isPermanent))
            return
        }
        let delay: Double
        if failure.isPermanent {
            delay = permanentFailureRetryInterval
            logger.error("\(failure.message); not retrying for \(Int(delay)) s (or until `tunnel up` asks again)")
        } else {
            delay = backoff.nextDelay()
            logger.warning("\(failure.message); retrying in \(format1(delay)) s")
        }
        let timer = loop.schedule(after: delay) { [unowned self] in self.connect() }
        state = failure.isPermanent ? .failed(timer) : .waiting(timer)
        report(.connectFailed(message: failure.message, isPermanent: failure.isPermanent))
    }

    /// The link died (socket error, EOF, keepalive deadline): reconnect soon.
    /// Clients still waiting for a channel go back to the runtime for another lane.
    func linkDied(_ link: Link, reason: String) {
        guard case .up(let current) = state, current === link else { return }
        let upFor = Instant.now().seconds(since: link.upSince)
        logger.warning("link lost after \(Int(upFor)) s: \(reason)")
        let requeue = link.close(graceful: false) + takeInbox()
        if isExtra {
            state = .idle
            report(.dropped(reason: reason))
            giveBack(requeue)
            return
        }
        backoff.linkDropped(afterUpFor: upFor)
        let delay = backoff.nextDelay()
        let timer = loop.schedule(after: delay) { [unowned self] in self.connect() }
        state = .waiting(timer)
        report(.dropped(reason: reason))
        giveBack(requeue)
    }

    // MARK: clients

    /// Clients from the runtime. A lane that is no longer up gives them back.
    func receive(_ batch: [Connection]) {
        precondition(loop.inLoopThread)
        switch state {
        case .up:
            inbox.append(contentsOf: batch)
        case .stopped:
            runtime.clientsLeftQueue(batch.count)
            for c in batch { closeUnserved(c) }
        default:
            runtime.clientsLeftQueue(batch.count)
            giveBack(batch)
        }
    }

    /// The next client for the link to open a channel for.
    func nextConnectionForChannel() -> Connection? {
        guard inboxHead < inbox.count else { return nil }
        let c = inbox[inboxHead]
        inboxHead += 1
        if inboxHead > 1024 && inboxHead * 2 > inbox.count {
            inbox.removeFirst(inboxHead)
            inboxHead = 0
        }
        runtime.clientsLeftQueue(1)
        return c
    }

    /// A client the link had taken ended.
    func connectionFinished() {
        load.subtract(1, ordering: .relaxed)
    }

    /// A new lane came up: the newer half of the clients still waiting here
    /// go back to the runtime, which hands them to the least-loaded lane.
    func shedWaiting() {
        precondition(loop.inLoopThread)
        let waiting = inbox.count - inboxHead
        guard waiting >= 2 else { return }
        let shed = Array(inbox[(inbox.count - waiting / 2)...])
        inbox.removeLast(shed.count)
        runtime.clientsLeftQueue(shed.count)
        giveBack(shed)
    }

    private func takeInbox() -> [Connection] {
        let rest = Array(inbox[inboxHead...])
        inbox.removeAll()
        inboxHead = 0
        if !rest.isEmpty { runtime.clientsLeftQueue(rest.count) }
        return rest
    }

    private func giveBack(_ connections: [Connection]) {
        guard !connections.isEmpty else { return }
        load.subtract(connections.count, ordering: .relaxed)
        report(.returned(connections))
    }

    private func closeUnserved(_ c: Connection) {
        c.closeUnserved()
        load.subtract(1, ordering: .relaxed)
    }
}

/// Moves loop-confined values (connections, events) to another loop's thread.
/// Safe because the sender lets go of them: exactly one thread owns them at a time.
struct Handoff<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
