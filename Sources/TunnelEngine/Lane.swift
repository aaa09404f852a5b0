import Logging
import Synchronization
import TunnelConfig
import TunnelPOSIX
import TunnelSSH

/// One SSH connection of a tunnel, with its own reconnect logic, on a loop of
/// the tunnels' group (the first lane on its runtime's). The runtime accepts
/// the clients and sends each to the least-loaded lane that is up, so busy
/// tunnels use more than one core here and more than one sshd process there. An extra lane never reconnects: it
/// reports its failure or loss and the runtime retires it.
///
/// The runtime and its lanes exchange messages only: `send` runs a command on
/// the lane's loop, and the lane's `report` closure runs on the runtime's.
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

    /// What a lane tells its runtime, on the runtime's loop.
    enum Event {
        case connecting
        case up(authMethod: String)
        /// Right after `up`: what `tunnel status` shows about the connection.
        case connected(peer: String, algorithms: String, hostKeyFingerprint: String)
        case connectFailed(message: String, isPermanent: Bool)
        case dropped(reason: String)
        /// Clients that were sent to this lane but never got a channel.
        case returned([Connection])
        /// The channel queue fell below the mark at which accepting resumes.
        case queueDrained
        /// A remote forward's listener on the server changed.
        case remoteListener(index: Int, status: RemoteListenerStatus)
        /// A keepalive's round trip.
        case roundTrip(seconds: Double)
        /// After `.stop`: everything the lane held is closed.
        case stopped
    }

    /// What the runtime tells a lane, on the lane's loop.
    enum Command {
        case clients([Connection])
        /// A new lane came up: give back the newer half of the waiting clients.
        case shed
        /// Another `tunnel up`: connect now, with its options (its ssh-agent) if given.
        case retryNow(Connector.Options?)
        /// The network changed: probe the link, or reconnect without waiting.
        case networkChanged(NetworkChange)
        /// Close everything, then report `.stopped`.
        case stop(graceful: Bool)
    }

    let index: Int
    let isExtra: Bool
    let loop: EventLoop
    /// This lane's code on `loop`, which other tunnels share: its service hook runs when it had work.
    let owner = LoopOwner()
    /// Clients sent to this lane and not yet finished: what the runtime balances on.
    let load = Atomic<Int>(0)
    /// Its channel open has waited `Link.openStallSeconds` for the server:
    /// the runtime sends new clients to other lanes (or opens one).
    let isStalled = Atomic<Bool>(false)
    private let report: @Sendable (Event) -> Void
    private let pending: PendingClients
    private let profile: Profile
    private var options: Connector.Options
    private let logger: Logger
    private var state: State = .idle
    /// The jump hosts in front of the link, while connecting and while up.
    private var chain: HopChain?
    private var backoff = Backoff()
    private let scratch: Scratch
    /// Clients sent by the runtime, waiting for a channel, oldest first.
    private var inbox: [Connection] = []
    private var inboxHead = 0
    /// The remote forwards' listeners on the server (the first lane only;
    /// empty elsewhere), each forward's target here, and pending retries.
    private var remote: RemoteListeners
    private let remoteForwards: [RemoteForwardSpec]
    private let remoteTargets: [ChannelTarget]
    private var remoteRetries: [Int: EventLoop.TimerID] = [:]
    /// The server address the last link reached (the first hop's), for
    /// judging network changes while reconnecting.
    private var lastServer: IPAddress?

    /// `remoteStats`: one per `profile.remoteForwards` for the lane that asks
    /// the server for them; empty for every other lane.
    init(index: Int, isExtra: Bool, loop: EventLoop, profile: Profile, options: Connector.Options, logger: Logger,
         pending: PendingClients, remoteStats: [ForwardStats] = [], preferredRemotePorts: [UInt16] = [],
         report: @escaping @Sendable (Event) -> Void) {
        remoteForwards = remoteStats.isEmpty ? [] : profile.remoteForwards
        remote = RemoteListeners(forwards: remoteForwards, preferredPorts: preferredRemotePorts)
        remoteTargets = zip(remoteForwards, remoteStats).map { spec, stats in
            ChannelTarget(host: spec.targetHost, port: spec.targetPort, description: spec.targetDescription,
                          local: "remote \(spec.listenDescription())", stats: stats)
        }
        self.index = index
        self.isExtra = isExtra
        self.loop = loop
        self.profile = profile
        self.options = options
        self.pending = pending
        self.report = report
        var logger = logger
        if isExtra {
            logger[metadataKey: "session"] = "\(index + 1) (extra)"
        } else if profile.sessions > 1 {
            logger[metadataKey: "session"] = "\(index + 1)/\(profile.sessions)"
        }
        self.logger = logger
        self.scratch = Scratch(size: 256 * 1024)
    }

    /// Runs `command` on the lane's loop. Safe from any thread.
    func send(_ command: Command) {
        let message = Handoff(command)
        loop.perform(owner: owner) { [self] in handle(message.value) }
    }

    private func handle(_ command: Command) {
        switch command {
        case .clients(let batch): receive(batch)
        case .shed: shedWaiting()
        case .retryNow(let newOptions):
            if let newOptions { options = newOptions }
            retryNow()
        case .networkChanged(let change): networkChanged(change)
        case .stop(let graceful):
            stop(graceful: graceful)
            report(.stopped)
        }
    }

    // MARK: lifecycle (on `loop`)

    func start() {
        precondition(loop.inLoopThread)
        loop.addServiceHook(owner) { [unowned self] in
            self.chain?.serviceSessions()
            if case .up(let link) = self.state { link.serviceSession() }
        }
        loop.run(as: owner) { connect() }
    }

    /// Closes the session and every client it holds. Idempotent.
    private func stop(graceful: Bool) {
        var unserved = takeInbox()
        switch state {
        case .stopped: return
        case .connecting(let connector): connector.cancel()
        case .up(let link): unserved += link.close(graceful: graceful)
        case .waiting(let timer), .failed(let timer): loop.cancel(timer)
        case .idle: break
        }
        isStalled.store(false, ordering: .relaxed)
        closeChain()
        cancelRemoteRetries()
        state = .stopped
        loop.removeServiceHook(owner)
        for c in unserved { closeUnserved(c) }
    }

    private func retryNow() {
        switch state {
        case .waiting(let timer), .failed(let timer):
            loop.cancel(timer)
            backoff.reset()
            connect()
        default:
            break
        }
    }

    /// Up: probe, so a dead path is noticed in seconds. Waiting (or not yet
    /// past TCP connect): a new address or route may be the way back, so
    /// try now; the backoff keeps its count for the failures after.
    private func networkChanged(_ change: NetworkChange) {
        // Through jump hosts only the first hop's socket is TCP.
        let ends = chain?.links.first?.endpoints
        let reaction: NetworkChange.Reaction
        switch state {
        case .up(let link):
            let ends = ends ?? link.endpoints
            reaction = change.reaction(state: .up, local: ends.local, server: ends.server)
        case .waiting:
            reaction = change.reaction(state: .waiting, local: nil, server: lastServer)
        case .connecting(let connector) where chain == nil && connector.isBeforeTCPConnected:
            reaction = change.reaction(state: .connecting, local: nil, server: lastServer)
        default:
            return
        }
        switch (reaction, state) {
        case (.probe, .up(let link)):
            link.probe(after: "\(change)")
        case (.retryNow, .waiting(let timer)) where networkRetries.mayRetry(now: Instant.now()):
            logger.info("reconnecting now after \(change)")
            loop.cancel(timer)
            connect()
        case (.retryNow, .connecting(let connector)) where networkRetries.mayRetry(now: Instant.now()):
            logger.info("reconnecting now after \(change)")
            connector.cancel()
            connect()
        default:
            break
        }
    }

    private var networkRetries = NetworkRetrySpacing()

    // MARK: connecting

    private func connect() {
        let connector = Connector(loop: loop, profile: profile, options: options, logger: logger)
        state = .connecting(connector)
        report(.connecting)
        let done: (Result<ConnectedSession, ConnectFailure>) -> Void = { [unowned self] result in
            switch result {
            case .success(let connected): self.linkUp(connected)
            case .failure(let failure): self.connectFailed(failure)
            }
        }
        guard !profile.jump.isEmpty else { return connector.start(done) }
        let chain = HopChain(loop: loop, profile: profile, options: options, logger: logger, scratch: scratch)
        chain.onDeath = { [unowned self] reason in self.chainDied(reason) }
        self.chain = chain
        chain.connect(done)
    }

    /// An outer hop's link died: the whole chain goes, and the lane reconnects.
    private func chainDied(_ reason: String) {
        switch state {
        case .up(let link):
            linkDied(link, reason: reason)
        case .connecting:
            connectFailed(ConnectFailure(kind: .network, message: reason, isPermanent: false))
        default:
            closeChain()
        }
    }

    private func closeChain() {
        chain?.close()
        chain = nil
    }

    private func linkUp(_ connected: ConnectedSession) {
        guard case .connecting = state else {
            connected.session.close(graceful: false)
            return
        }
        let link = Link(session: connected.session, loop: loop, logger: logger, scratch: scratch)
        link.proxy = connected.proxy
        link.nextClient = { [unowned self] in self.nextConnectionForChannel() }
        link.onClientFinished = { [unowned self] in self.load.subtract(1, ordering: .relaxed) }
        link.onDeath = { [unowned self] link, reason in self.linkDied(link, reason: reason) }
        link.onRoundTrip = { [unowned self] seconds in self.report(.roundTrip(seconds: seconds)) }
        link.onOpenStalled = { [unowned self] stalled in self.openStalled(stalled) }
        if !remoteTargets.isEmpty {
            link.serveRemoteForwards(remoteTargets, connectTimeout: Double(profile.connectTimeout))
            link.onClientStarted = { [unowned self] in self.load.add(1, ordering: .relaxed) }
            link.onListenAnswer = { [unowned self] index, answer in
                switch answer {
                case .listening(let port): self.perform(self.remote.granted(index, port: port))
                case .refused: self.perform(self.remote.refused(index))
                case .failed(let message): self.perform(self.remote.failed(index, message))
                }
            }
        }
        do {
            try link.start(keepalive: profile.keepalive, keepaliveCount: profile.keepaliveCount)
        } catch {
            _ = link.close(graceful: false)
            connectFailed(ConnectFailure(kind: .network, message: "cannot watch the SSH socket: \(error)", isPermanent: false))
            return
        }
        state = .up(link)
        lastServer = (chain?.links.first ?? link).endpoints.server ?? lastServer
        if let shortcuts = CryptoShortcuts.statusOnce() { logger.info("\(shortcuts)") }
        // Through jump hosts `via` already names the path; directly, the address reached says which one it was.
        let path = profile.jump.isEmpty ? "\(profile.via) via \(connected.peer)" : profile.via
        logger.info("up: \(path), \(connected.authMethod); \(connected.session.negotiatedAlgorithms)")
        // The remote forwards' requests go first: a `tunnel up` waiting for
        // this link then waits for their answers, not for the last link's.
        perform(remote.linkUp())
        report(.up(authMethod: connected.authMethod))
        report(.connected(peer: path, algorithms: connected.session.negotiatedAlgorithms, hostKeyFingerprint: connected.hostKeyFingerprint))
    }

    private func connectFailed(_ failure: ConnectFailure) {
        guard case .connecting(let connector) = state else { return }
        connector.cancel()
        closeChain()
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
        // Before the failure, so the failure is the tunnel's last error.
        perform(remote.linkFailed())
        report(.connectFailed(message: failure.message, isPermanent: failure.isPermanent))
    }

    /// The link died (socket error, EOF, keepalive deadline): reconnect soon.
    /// Clients still waiting for a channel go back to the runtime for another lane.
    private func linkDied(_ link: Link, reason: String) {
        guard case .up(let current) = state, current === link else { return }
        let upFor = Instant.now().seconds(since: link.upSince)
        logger.warning("link lost after \(Int(upFor)) s: \(reason)")
        let requeue = link.close(graceful: false) + takeInbox()
        isStalled.store(false, ordering: .relaxed)
        closeChain()
        cancelRemoteRetries()
        perform(remote.linkDown())
        if isExtra {
            state = .idle
        } else {
            backoff.linkDropped(afterUpFor: upFor)
            let timer = loop.schedule(after: backoff.nextDelay()) { [unowned self] in self.connect() }
            state = .waiting(timer)
        }
        report(.dropped(reason: reason))
        giveBack(requeue)
    }

    // MARK: remote forwards

    /// Performs the remote listeners' actions (on `loop`).
    private func perform(_ actions: [RemoteListeners.Action]) {
        for action in actions {
            switch action {
            case .request(let index, let port):
                guard case .up(let link) = state else { continue }
                link.requestListener(index: index, host: remoteForwards[index].requestHost, port: port)
            case .scheduleRetry(let index, let after):
                loop.cancel(remoteRetries[index])
                remoteRetries[index] = loop.schedule(after: after) { [unowned self] in
                    self.remoteRetries[index] = nil
                    self.perform(self.remote.retryDue(index))
                }
            case .publish(let index, let status):
                report(.remoteListener(index: index, status: status))
            case .log(let level, let message):
                switch level {
                case .debug: logger.debug("\(message)")
                case .info: logger.info("\(message)")
                case .warning: logger.warning("\(message)")
                case .error: logger.error("\(message)")
                }
            }
        }
    }

    private func cancelRemoteRetries() {
        for timer in remoteRetries.values { loop.cancel(timer) }
        remoteRetries.removeAll()
    }

    // MARK: clients

    /// Clients from the runtime. A lane that is no longer up gives them back.
    private func receive(_ batch: [Connection]) {
        switch state {
        case .up:
            inbox.append(contentsOf: batch)
        case .stopped:
            leftQueue(batch.count)
            for c in batch { closeUnserved(c) }
        default:
            leftQueue(batch.count)
            giveBack(batch)
        }
    }

    /// The next client for the link to open a channel for.
    private func nextConnectionForChannel() -> Connection? {
        guard inboxHead < inbox.count else { return nil }
        let c = inbox[inboxHead]
        inboxHead += 1
        if inboxHead > 1024 && inboxHead * 2 > inbox.count {
            inbox.removeFirst(inboxHead)
            inboxHead = 0
        }
        leftQueue(1)
        return c
    }

    /// A new lane came up: the newer half of the clients still waiting here
    /// (all of them, if this lane's open is stalled) go back to the runtime,
    /// which sends them to the least-loaded lane.
    private func shedWaiting() {
        let waiting = inbox.count - inboxHead
        // A stalled lane keeps none: they would wait for its hanging open.
        let count = isStalled.load(ordering: .relaxed) ? waiting : (waiting >= 2 ? waiting / 2 : 0)
        guard count > 0 else { return }
        let shed = Array(inbox[(inbox.count - count)...])
        inbox.removeLast(shed.count)
        leftQueue(shed.count)
        giveBack(shed)
    }

    /// The link's channel open in flight has waited long for the server (its
    /// connect to the target hangs): the clients queued behind it go back to
    /// the runtime, which sends them, and new ones, to another lane.
    private func openStalled(_ stalled: Bool) {
        isStalled.store(stalled, ordering: .relaxed)
        guard stalled else { return }
        let waiting = takeInbox()
        let queued = waiting.isEmpty ? "" : " (\(waiting.count) waiting)"
        logger.info("a channel open has waited \(Int(Link.openStallSeconds)) s for the server; new clients go to another SSH connection until it is answered\(queued)")
        giveBack(waiting)
    }

    private func takeInbox() -> [Connection] {
        let rest = Array(inbox[inboxHead...])
        inbox.removeAll()
        inboxHead = 0
        if !rest.isEmpty { leftQueue(rest.count) }
        return rest
    }

    private func leftQueue(_ count: Int) {
        if pending.remove(count) { report(.queueDrained) }
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
